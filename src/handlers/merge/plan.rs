//! Planning a merge: fetch, verify the merge commit is on the default branch, find where
//! governance is read (never a commit carrying the PR's own changes), recompute the checks,
//! check again a manifest the merge holds differently from the head, and work out one
//! operation per touched environment.

use super::MergePlan;
use crate::checks::{self, Change, ChangeKind, EnvironmentReport, Governance, PrContext, Report};
use crate::event::PrInfo;
use crate::handlers::{environment_changes, governance_changes, Deps, WorkError};
use crate::ids::{CommitSha, EnvName, Login, TeamName};
use crate::manifest::{environment, names, Manifest};
use crate::provision::{definition_runner, Item};
use crate::repo::{CommitWithParents, Mirror};
use crate::runner::RunnerKind;
use crate::store::{EnvState, EnvironmentRecord, NewOperation, OpKind, OpState};
use crate::tree::TreeReader;
use std::time::Duration;

/// Most commits of a pull request looked at when working out where governance is read;
/// beyond it the merge base is used.
const MAX_PR_COMMITS: usize = 250;

/// Fetches, verifies the merge commit, recomputes the checks and works out one item per
/// touched environment. `None` when no environment is touched.
pub(super) async fn plan(
    deps: &Deps,
    pr: &PrInfo,
    merge_sha: &CommitSha,
    ctx: &PrContext,
) -> Result<Option<MergePlan>, WorkError> {
    let inventory = deps.store.environments(Some(&pr.repo)).await?;
    let (pr2, merge_sha, ctx) = (pr.clone(), merge_sha.clone(), ctx.clone());
    // Lists the GitHub teams the default branch's platform.yaml names (cached), so the
    // checks below count their members as the PR's checks did.
    deps.directory.roles(&pr.repo).await;
    let limits = Limits {
        now: deps.config.lifecycle.clock.now(),
        default_timeout: deps.config.runner.default_timeout,
        max_manifests: deps.config.checks.max_manifests,
        teams: deps.directory.teams_snapshot(),
    };
    deps.repos
        .with_remote(&pr.repo, &pr.clone_url, pr.installation, move |s| {
            let pr = pr2;
            let mirror = &s.mirror;
            let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
            mirror.fetch(
                &s.url,
                &[
                    format!("+refs/heads/{}:{default_ref}", pr.default_branch),
                    format!(
                        "+refs/pull/{}/head:refs/paved/pull/{}",
                        pr.number, pr.number
                    ),
                ],
                s.token.as_ref(),
            )?;
            plan_fetched(mirror, &pr, &merge_sha, &ctx, &inventory, &limits)
        })
        .await
}

struct Limits {
    /// The lifecycle's clock at planning time (`expiresAt` rules).
    now: chrono::DateTime<chrono::Utc>,
    default_timeout: Duration,
    max_manifests: usize,
    /// GitHub teams' members as listed before the plan.
    teams: crate::identity::TeamSnapshot,
}

/// [`plan`] once the commits are in the mirror.
fn plan_fetched(
    mirror: &Mirror,
    pr: &PrInfo,
    merge_sha: &CommitSha,
    ctx: &PrContext,
    inventory: &[EnvironmentRecord],
    limits: &Limits,
) -> Result<Option<MergePlan>, WorkError> {
    let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
    mirror.require_commit(merge_sha)?;
    mirror.require_commit(&pr.head_sha)?;
    let tip = mirror
        .resolve(&default_ref)
        .ok_or_else(|| WorkError::Internal(format!("{default_ref} missing after fetch")))?;
    if !mirror.is_ancestor_or_same(merge_sha, &tip)? {
        return Err(WorkError::Payload(format!(
            "merge commit {merge_sha} is not on {} (tip {tip}); nothing provisioned",
            pr.default_branch
        )));
    }
    let parent = mirror
        .first_parent(merge_sha)?
        .ok_or_else(|| WorkError::Payload(format!("merge commit {merge_sha} has no parent")))?;
    // The PR's own changes: from where it forked off the default branch to its head.
    let fork = mirror.merge_base(&parent, &pr.head_sha)?;
    let changes = environment_changes(mirror, &fork, &pr.head_sha)?;
    if changes.is_empty() {
        return Ok(None);
    }
    if changes.len() > limits.max_manifests {
        return Err(WorkError::TooManyManifests {
            count: changes.len(),
            max: limits.max_manifests,
        });
    }
    // Where governance is read: the default branch just before the PR landed.
    let first_parent = default_branch_before(mirror, merge_sha, &parent, &fork, pr)?;
    let base = mirror.tree_at(&first_parent)?;
    let governance = Governance::load(&base);
    let head = mirror.tree_at(&pr.head_sha)?;
    let mut report = super::super::judge(
        &governance,
        &limits.teams,
        &head,
        &base,
        &changes,
        ctx,
        limits.now,
    );
    let changed_governance = governance_changes(mirror, &fork, &pr.head_sha)?;
    if !changed_governance.is_empty() {
        report.governance = Some(super::super::judge_governance(
            &governance,
            &limits.teams,
            &head,
            &base,
            &changed_governance,
            ctx,
            limits.now,
        ));
    }
    let merged = mirror.tree_at(merge_sha)?;
    // What is deployed must be what was checked: a manifest the merge commit holds
    // differently from the checked head (a conflict resolution, a squash onto a changed
    // default branch) is checked again as merged.
    let differing = differing_manifests(mirror, pr, merge_sha, &first_parent, &changes)?;
    let as_merged = (!differing.is_empty()).then(|| {
        super::super::judge(
            &governance,
            &limits.teams,
            &merged,
            &base,
            &differing,
            ctx,
            limits.now,
        )
    });
    let planner = Planner {
        pr,
        merge_sha,
        gov: &governance,
        report: &report,
        as_merged: as_merged.as_ref(),
        merged: &merged,
        base: &base,
        inventory,
        default_timeout: limits.default_timeout,
        now: limits.now,
    };
    let mut items = Vec::new();
    let (mut extended, mut gone, mut unnamed) = (Vec::new(), Vec::new(), Vec::new());
    for env in &report.environments {
        match planner.item(env) {
            Planned::Run(item) => items.push(*item),
            Planned::Extend(name) => extended.push(name),
            Planned::Gone(name) => gone.push(name),
            Planned::Unnamed(path) => unnamed.push(path),
            Planned::Nothing => {}
        }
    }
    // Each touched environment's manifest as merged: its timers follow it (expiry,
    // schedule), once the operations ran.
    let manifests = report
        .environments
        .iter()
        .filter_map(|env| {
            let mp = names::parse_manifest_path(&env.path).ok()?;
            let text = crate::manifest::read_text(&merged, &env.path)
                .ok()
                .flatten();
            let m = text.and_then(|t| environment::parse_manifest(&env.path, &t).ok());
            Some((mp.name, m.map(|m| m.manifest)))
        })
        .collect();
    Ok(Some(MergePlan {
        source: crate::provision::RunSource {
            mirror_path: mirror.path().to_path_buf(),
            from_fork: pr.from_fork,
            first_parent,
        },
        report,
        items,
        quiet: super::Quiet {
            extended,
            gone,
            unnamed,
        },
        manifests,
    }))
}

/// The changed manifests the merge commit holds differently from the PR's head.
fn differing_manifests(
    mirror: &Mirror,
    pr: &PrInfo,
    merge_sha: &CommitSha,
    first_parent: &CommitSha,
    changes: &[Change],
) -> Result<Vec<Change>, WorkError> {
    let mut differing = Vec::new();
    for c in changes {
        let at_merge = mirror.blob_id(merge_sha, &c.path)?;
        if at_merge != mirror.blob_id(&pr.head_sha, &c.path)? {
            let kind = match (&at_merge, mirror.blob_id(first_parent, &c.path)?) {
                (None, _) => ChangeKind::Deleted,
                (Some(_), None) => ChangeKind::Added,
                (Some(_), Some(_)) => ChangeKind::Modified,
            };
            differing.push(Change {
                path: c.path.clone(),
                kind,
            });
        }
    }
    Ok(differing)
}

/// Where a merge's governance is read: the default branch as it was just before the PR
/// landed, and never a commit that carries any of the PR's own changes (a PR must not
/// judge itself).
///
/// - A merge commit whose second parent is the PR's head: its first parent.
/// - A squash, or a rebase of one commit: the first parent, which is the default branch
///   before the merge either way.
/// - "Rebase and merge" of k > 1 commits replays the PR's commits one by one, so the first
///   parent is the PR's own second-to-last commit. The commit k steps back (k counting the
///   PR's non-merge commits, which are what a rebase replays) is the one, when the k
///   replayed commits change exactly what the PR changes under `environments/`, `.paved/`
///   and `catalog/`.
/// - Otherwise (a squash of several commits, or a history this does not recognise), the
///   first parent only if it holds, at every path any commit of the PR touched, what the
///   PR forked from; else the merge base of the PR with the default branch, which can hold
///   nothing of the PR's.
fn default_branch_before(
    mirror: &Mirror,
    merge_sha: &CommitSha,
    first_parent: &CommitSha,
    fork: &CommitSha,
    pr: &PrInfo,
) -> Result<CommitSha, WorkError> {
    let parents = mirror.parents(merge_sha)?;
    if parents.len() >= 2 {
        return Ok(if parents[1..].contains(&pr.head_sha) {
            first_parent.clone()
        } else {
            fork.clone()
        });
    }
    let Some(commits) = mirror.commits_between(fork, &pr.head_sha, MAX_PR_COMMITS)? else {
        return Ok(fork.clone());
    };
    let own: Vec<&CommitWithParents> = commits.iter().filter(|(_, p)| p.len() <= 1).collect();
    let k = own.len();
    if k <= 1 {
        return Ok(first_parent.clone());
    }
    let changed = |from: &CommitSha, to: &CommitSha| -> Result<Vec<String>, WorkError> {
        let mut paths: Vec<String> = environment_changes(mirror, from, to)?
            .into_iter()
            .map(|c| c.path)
            .collect();
        paths.extend(governance_changes(mirror, from, to)?);
        paths.sort();
        Ok(paths)
    };
    if let Some(before) = mirror.nth_single_parent(merge_sha, k)? {
        if mirror.is_ancestor_or_same(fork, &before)?
            && changed(&before, merge_sha)? == changed(fork, &pr.head_sha)?
        {
            return Ok(before);
        }
    }
    // Every path any of the PR's commits touched (a path changed and changed back leaves no
    // trace in the PR's net diff, yet a replayed commit in between holds it changed).
    let mut touched = std::collections::BTreeSet::new();
    for (sha, parents) in &own {
        if let Some(parent) = parents.first() {
            touched.extend(changed(parent, sha)?);
        }
    }
    for path in &touched {
        if mirror.blob_id(first_parent, path)? != mirror.blob_id(fork, path)? {
            tracing::info!(repo = %pr.repo, pr = %pr.number, %path,
                "the merge's first parent may hold the PR's own changes; governance is read at the merge base");
            return Ok(fork.clone());
        }
    }
    Ok(first_parent.clone())
}

/// Works out the operation of each environment a merge touches.
struct Planner<'a> {
    pr: &'a PrInfo,
    merge_sha: &'a CommitSha,
    gov: &'a Governance,
    report: &'a Report,
    as_merged: Option<&'a Report>,
    merged: &'a dyn TreeReader,
    base: &'a dyn TreeReader,
    inventory: &'a [EnvironmentRecord],
    default_timeout: Duration,
    now: chrono::DateTime<chrono::Utc>,
}

/// What a merge does with one environment it touches.
enum Planned {
    Run(Box<Item>),
    /// Only `expiresAt` moved, within the rules, on a live environment: no script runs,
    /// its expiry timers move (SPEC 11).
    Extend(EnvName),
    /// The manifest of an environment already deleted goes (the pull request Paved opens
    /// after an expiry): nothing runs.
    Gone(EnvName),
    /// A manifest path no environment can be named from (`paved/schema` failed on it):
    /// nothing runs, and the merge's verdict says so.
    Unnamed(String),
    /// Nothing to do: a delete of something Paved never knew.
    Nothing,
}

/// Who and what an operation is about.
struct Subject {
    team: TeamName,
    owner: Login,
    env_type: String,
    definition: String,
    parameters: serde_json::Value,
}

impl Planner<'_> {
    /// What to do with one environment of the report.
    fn item(&self, env: &EnvironmentReport) -> Planned {
        let Ok(mp) = names::parse_manifest_path(&env.path) else {
            // No environment can be named from this path: nothing can run, and a merge that
            // adds or changes such a file must not read as a success (its checks failed on
            // the PR). Removing one is fine.
            let present = matches!(
                crate::manifest::read_text(self.merged, &env.path),
                Ok(Some(_))
            );
            return if present {
                Planned::Unnamed(env.path.clone())
            } else {
                Planned::Nothing
            };
        };
        // The manifest as merged decides the operation: present → deploy, gone → delete.
        let text = crate::manifest::read_text(self.merged, &env.path)
            .ok()
            .flatten();
        let (kind, manifest) = match &text {
            Some(t) => (
                OpKind::Deploy,
                environment::parse_manifest(&env.path, t)
                    .ok()
                    .map(|m| m.manifest),
            ),
            // Deleted: what it was comes from the first parent, else the inventory.
            None => (
                OpKind::Delete,
                crate::manifest::read_text(self.base, &env.path)
                    .ok()
                    .flatten()
                    .and_then(|t| environment::parse_manifest(&env.path, &t).ok())
                    .map(|m| m.manifest),
            ),
        };
        let known = self.inventory.iter().find(|e| e.name == mp.name);
        if kind == OpKind::Delete && known.is_some_and(|k| k.state == EnvState::Deleted) {
            return Planned::Gone(mp.name);
        }
        if kind == OpKind::Delete && manifest.is_none() && known.is_none() {
            return Planned::Nothing;
        }
        let subject = self.subject(&mp, manifest.as_ref(), known);
        // Already past expiresAt: refused with that reason first, whatever else failed
        // (the policy's "in the past" follows from it).
        let expired = manifest
            .as_ref()
            .and_then(crate::timers::expires_at)
            .filter(|exp| kind == OpKind::Deploy && *exp <= self.now)
            .map(|exp| {
                format!(
                    "expired: expiresAt {} is already past, so nothing was provisioned; move it in a new pull request",
                    crate::timers::canonical(exp)
                )
            });
        let refused = expired.or_else(|| self.refusal(env));
        if kind == OpKind::Deploy && refused.is_none() {
            if let Some(m) = &manifest {
                if self.only_expiry_moved(&env.path, m, known) {
                    return Planned::Extend(mp.name);
                }
            }
        }
        let (runner, template_path) = self.runner_of(&subject.definition);
        let ty = self
            .gov
            .platform()
            .and_then(|p| p.environment_types.get(&subject.env_type));
        let timeout = ty
            .and_then(|t| t.timeout.as_ref())
            .map(|t| t.as_std())
            .unwrap_or(self.default_timeout);
        let workflow = self.gov.resolve_workflow(Some(&subject.env_type)).name;
        Planned::Run(Box::new(Item {
            op: NewOperation {
                repo: self.pr.repo.clone(),
                env_name: mp.name.clone(),
                kind,
                merge_sha: self.merge_sha.clone(),
                pr: Some(self.pr.number),
                attempt: 1,
                delivery_id: None,
                cause: String::new(),
                team: subject.team,
                owner: subject.owner,
                env_type: subject.env_type,
                definition: subject.definition,
                manifest_path: env.path.clone(),
                parameters: subject.parameters,
                requester: self.pr.author.clone(),
                merger: None,
                approvers: Vec::new(),
                governance_sha: String::new(),
                checks: self.checks_json(env),
                state: if refused.is_some() {
                    OpState::Refused
                } else {
                    OpState::Planned
                },
                error: refused,
            },
            runner,
            template_path,
            timeout,
            production: workflow == "production",
            network: ty.is_none_or(|t| t.network.is_shared()),
            identity: ty.and_then(|t| t.identity.clone()),
        }))
    }

    /// The manifest as merged differs from the default branch's before the merge only in
    /// `expiresAt`, which is still ahead, and the environment is up: an extension.
    fn only_expiry_moved(
        &self,
        path: &str,
        merged: &Manifest,
        known: Option<&EnvironmentRecord>,
    ) -> bool {
        if !known.is_some_and(|k| matches!(k.state, EnvState::Ready | EnvState::Stopped)) {
            return false;
        }
        let Some(before) = crate::manifest::read_text(self.base, path)
            .ok()
            .flatten()
            .and_then(|t| environment::parse_manifest(path, &t).ok())
            .map(|m| m.manifest)
        else {
            return false;
        };
        let new_exp = crate::timers::expires_at(merged);
        if new_exp.is_none_or(|e| e <= self.now) || new_exp == crate::timers::expires_at(&before) {
            return false;
        }
        let strip = |m: &Manifest| {
            let mut m = m.clone();
            m.spec.expires_at = None;
            m
        };
        strip(&before) == strip(merged)
    }

    /// Team, owner, type, definition and parameters: from the manifest, else (a delete
    /// whose manifest cannot be read) from the inventory.
    fn subject(
        &self,
        mp: &names::ManifestPath,
        manifest: Option<&Manifest>,
        known: Option<&EnvironmentRecord>,
    ) -> Subject {
        match (manifest, known) {
            (Some(m), _) => Subject {
                // A manifest whose team is not a team name is refused by the checks;
                // its operation is recorded under its folder's team.
                team: TeamName::parse(&m.metadata.team).unwrap_or_else(|_| mp.team.clone()),
                // An owner that is not a login is refused by the checks; the author then.
                owner: m
                    .metadata
                    .owner
                    .as_deref()
                    .and_then(|o| Login::parse(o).ok())
                    .unwrap_or_else(|| self.pr.author.clone()),
                env_type: m.spec.env_type.clone(),
                definition: m.spec.definition.clone(),
                parameters: serde_json::to_value(&m.spec.parameters).unwrap_or_default(),
            },
            (None, Some(k)) => Subject {
                team: k.team.clone(),
                owner: k.owner.clone(),
                env_type: k.env_type.clone(),
                definition: k.definition.clone(),
                parameters: k.parameters.clone(),
            },
            (None, None) => Subject {
                team: mp.team.clone(),
                owner: self.pr.author.clone(),
                env_type: String::new(),
                definition: String::new(),
                parameters: serde_json::json!({}),
            },
        }
    }

    /// Each check's verdict, as the audit note records them.
    fn checks_json(&self, env: &EnvironmentReport) -> serde_json::Value {
        let verdict = |pass: bool| if pass { "pass" } else { "fail" };
        let mut checks: Vec<serde_json::Value> = env
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "context": c.check.context(),
                    "verdict": verdict(c.verdict.is_pass()),
                })
            })
            .collect();
        if let Some(g) = &self.report.governance {
            checks.push(serde_json::json!({
                "context": checks::GOVERNANCE_CONTEXT,
                "verdict": verdict(g.verdict.is_pass()),
            }));
        }
        serde_json::Value::Array(checks)
    }

    /// Why the environment is not provisioned: a check failed for the head, governance
    /// changed without its approvals, or the manifest as merged differs and fails.
    fn refusal(&self, env: &EnvironmentReport) -> Option<String> {
        let failing_of = |e: &EnvironmentReport| -> Vec<&'static str> {
            e.checks
                .iter()
                .filter(|c| !c.verdict.is_pass())
                .map(|c| c.check.context())
                .collect()
        };
        let mut failing = failing_of(env);
        // A PR that changes governance without its approvals provisions nothing.
        if self
            .report
            .governance
            .as_ref()
            .is_some_and(|g| !g.verdict.is_pass())
        {
            failing.push(checks::GOVERNANCE_CONTEXT);
        }
        let failing_as_merged: Vec<&str> = self
            .as_merged
            .and_then(|r| r.environments.iter().find(|e| e.path == env.path))
            .map(failing_of)
            .unwrap_or_default();
        if !failing.is_empty() {
            Some(format!(
                "not provisioned: {} did not pass for the pull request's head {}",
                failing.join(", "),
                self.pr.head_sha.short()
            ))
        } else if !failing_as_merged.is_empty() {
            Some(format!(
                "not provisioned: the manifest as merged in {} differs from the checked head {} and fails {}",
                self.merge_sha.short(),
                self.pr.head_sha.short(),
                failing_as_merged.join(", ")
            ))
        } else {
            None
        }
    }

    /// How the definition runs (its `runner:` and `templatePath`).
    fn runner_of(&self, definition: &str) -> (RunnerKind, Option<String>) {
        definition_runner(self.gov, definition).unwrap_or((RunnerKind::Command, None))
    }
}
