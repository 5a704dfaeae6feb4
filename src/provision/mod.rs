//! Provisioning: what a merge makes real, and what a push to the default branch without a
//! merge is flagged as.
//!
//! **A merge** (`pull_request` closed with `merged: true`) goes through these steps, each
//! safe to repeat, so a redelivered event or a restart mid-way never runs an operation
//! twice:
//! 1. fetch the default branch and the PR head, and check that the merge commit is on the
//!    default branch (the payload alone is never trusted);
//! 2. read governance at the merge commit's first parent, manifests at the merge commit, and
//!    recompute the PR's checks for its final head;
//! 3. record one operation per touched environment (`deploy` for an added or changed
//!    manifest, `delete` for a removed one), keyed by (merge commit, environment, operation,
//!    attempt) in the store: recording it again finds the first one. An environment whose
//!    checks were not all green is recorded `refused` and never runs;
//! 4. run each operation under its environment's lock (held in the database), in parallel
//!    across environments up to `runner.concurrency`;
//! 5. report each one: a GitHub deployment (in_progress → success/failure), a git note on
//!    the merge commit, then `paved/provision` on the merge commit and the PR's comment.
//!
//! **An interrupted operation** (the server died while its script ran) is found at the next
//! start: its orphaned script is killed (only if it is still ours, checked by its
//! `PAVED_RUN_ID`), it is reported `interrupted` (deployment status `error`, a note), and
//! it is run again as a new attempt, at most [`MAX_OP_ATTEMPTS`] times in all.

mod push;
mod run;

pub use push::{PushEvent, GOVERNANCE_CONTEXT};

use crate::audit::{AuditRecord, CheckVerdict};
use crate::checks::{self, ChangeKind, Governance, PrContext, Report};
use crate::forge::client::{GitHub, NewDeploymentStatus, NewStatus, StatusState};
use crate::ids::{CommitSha, DeliveryId, RepoName};
use crate::manifest::definition::Runner;
use crate::manifest::environment;
use crate::manifest::names;
use crate::repo::Mirror;
use crate::runner::RunnerKind;
use crate::store::{
    public_outputs, reported, NewOperation, OpKind, OpState, OperationRecord, OperationUpdate,
};
use crate::tree::TreeReader;
use crate::worker::{PrInfo, PullRequestEvent, WorkError, Worker};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// An interrupted operation is tried again until it has been started this many times.
pub const MAX_OP_ATTEMPTS: u32 = 3;

pub const PROVISION_CONTEXT: &str = "paved/provision";

/// One environment a merge touches, with what is needed to run and report it.
#[derive(Debug, Clone)]
pub(super) struct Item {
    op: NewOperation,
    runner: RunnerKind,
    template_path: Option<String>,
    timeout: Duration,
    production: bool,
}

/// What the blocking part of a merge worked out.
pub(super) struct MergePlan {
    mirror_path: PathBuf,
    /// Where notes are pushed (the configured clone URL of the repository).
    clone_url: String,
    installation: Option<u64>,
    /// The PR came from a fork: no file it wrote is ever executed, so definitions are taken
    /// from the first parent (the default branch before the merge), not the merge commit.
    from_fork: bool,
    first_parent: CommitSha,
    report: Report,
    items: Vec<Item>,
}

impl Worker {
    /// Handles a merged pull request (see the module documentation).
    pub(crate) async fn handle_merge(
        &self,
        ev: &PullRequestEvent,
        delivery: &DeliveryId,
    ) -> Result<(), WorkError> {
        let pr = PrInfo::from_event(ev)?;
        let merge_sha = ev
            .pull_request
            .merge_commit_sha
            .as_deref()
            .ok_or_else(|| {
                WorkError::Payload("merged pull request without merge_commit_sha".into())
            })
            .and_then(|s| CommitSha::parse(s).map_err(|e| WorkError::Payload(e.to_string())))?;
        let merger = ev
            .pull_request
            .merged_by
            .as_ref()
            .map(|u| u.login.clone())
            .unwrap_or_default();
        if pr.base_ref != pr.default_branch {
            tracing::info!(repo = %pr.repo, pr = %pr.number, base = %pr.base_ref,
                "merged into a branch other than the default one; nothing to provision");
            return Ok(());
        }
        let gh = self.forge.client(pr.installation)?;

        // Everything the checks need, read again at merge time: the PR's final reviews too.
        let reviews = crate::worker::reviews_of(&gh, &pr).await?;
        let approvers = crate::worker::approvers_in(&reviews, &pr.author);
        let live = self.live_by_team(&pr.repo).await?;
        let ctx = PrContext {
            author: pr.author.clone(),
            approvers: approvers.clone(),
            live,
            reviews,
            head_sha: Some(pr.head_sha.to_string()),
        };
        let plan = match self.plan_merge(&pr, &merge_sha, &ctx).await {
            Err(e @ (WorkError::Panicked(_) | WorkError::TooManyManifests { .. })) => {
                // A bug met on this merge's input, or a merge too large to plan: provision
                // nothing, and say so.
                let why = match e {
                    WorkError::Panicked(_) => crate::worker::INTERNAL_ERROR.to_string(),
                    other => {
                        // Verified on the default branch before it was counted: its push
                        // is explained by this (refused) merge.
                        self.store
                            .record_merge(&pr.repo, &merge_sha, pr.number)
                            .await?;
                        other.to_string()
                    }
                };
                gh.create_status(
                    &pr.repo,
                    &merge_sha,
                    &NewStatus {
                        state: StatusState::Failure,
                        context: PROVISION_CONTEXT.into(),
                        description: format!("{why}; nothing was provisioned"),
                        target_url: None,
                    },
                )
                .await?;
                return Ok(());
            }
            other => other?,
        };
        // The merge commit is verified to be on the default branch: a push of it is
        // explained by this merge (recorded even when nothing is provisioned).
        self.store
            .record_merge(&pr.repo, &merge_sha, pr.number)
            .await?;
        let Some(plan) = plan else {
            tracing::info!(repo = %pr.repo, pr = %pr.number, "merge touches no environment");
            return Ok(());
        };

        let run_list_url = format!(
            "{}/api/v1/repos/{}/merges/{}",
            self.public_url(),
            pr.repo,
            merge_sha
        );
        gh.create_status(
            &pr.repo,
            &merge_sha,
            &NewStatus {
                state: StatusState::Pending,
                context: PROVISION_CONTEXT.into(),
                description: format!("Provisioning {} environment(s)", plan.items.len()),
                target_url: Some(run_list_url.clone()),
            },
        )
        .await?;

        // Record every operation (or find the ones recorded by an earlier delivery).
        let mut first_ids = Vec::new();
        for item in &plan.items {
            let mut op = item.op.clone();
            op.merger = merger.clone();
            op.approvers = approvers.clone();
            op.delivery_id = delivery.to_string();
            op.governance_sha = plan.first_parent.to_string();
            let (id, created) = self.store.plan_operation(op).await?;
            if !created {
                tracing::info!(op = id, env = %item.op.env_name, "operation already recorded");
            }
            first_ids.push((item.clone(), id));
        }

        // Run what has not run, in parallel across environments. An attempt found running
        // whose lock this replica then gets was abandoned by a dead replica: it becomes
        // interrupted, and the next round runs the next attempt.
        let mut current = Vec::new();
        for _round in 0..=MAX_OP_ATTEMPTS {
            current.clear();
            for (item, id) in &first_ids {
                let rec = self.latest_attempt(&gh, &pr.repo, &plan, *id).await?;
                current.push((item.clone(), rec));
            }
            let runs: Vec<_> = current
                .iter()
                .filter(|(_, rec)| !rec.state.is_final())
                .map(|(item, rec)| self.run_operation(&gh, &pr, &plan, item, rec.id))
                .collect();
            if runs.is_empty() {
                break;
            }
            for r in futures::future::join_all(runs).await {
                r?;
            }
        }

        // Report everything that is not reported yet.
        let mut finals = Vec::new();
        for (_, rec) in &current {
            finals.push(self.operation(rec.id).await?);
        }
        self.report_operations(&gh, &pr.repo, &plan, &finals)
            .await?;

        // The comment before the final status: `paved/provision` leaving pending is the
        // last thing a merge does, so whoever waits for it sees every report made.
        let body = merge_comment(self.public_url(), &pr, &merge_sha, &plan.report, &finals);
        self.upsert_comment(&gh, &pr, &body).await?;
        let (state, description) = provision_verdict(&finals);
        gh.create_status(
            &pr.repo,
            &merge_sha,
            &NewStatus {
                state,
                context: PROVISION_CONTEXT.into(),
                description,
                target_url: Some(run_list_url),
            },
        )
        .await?;
        Ok(())
    }

    async fn operation(&self, id: i64) -> Result<OperationRecord, WorkError> {
        self.store
            .operation(id)
            .await?
            .ok_or_else(|| WorkError::Internal(format!("operation {id} vanished")))
    }

    /// Follows interrupted attempts: reports each and records the next attempt, up to
    /// [`MAX_OP_ATTEMPTS`]. Returns the attempt that is current.
    async fn latest_attempt(
        &self,
        gh: &GitHub,
        repo: &RepoName,
        plan: &MergePlan,
        first: i64,
    ) -> Result<OperationRecord, WorkError> {
        let mut rec = self.operation(first).await?;
        while rec.state == OpState::Interrupted {
            self.report_operations(gh, repo, plan, std::slice::from_ref(&rec))
                .await?;
            if rec.op.attempt >= MAX_OP_ATTEMPTS {
                break;
            }
            let mut next = rec.op.clone();
            next.attempt += 1;
            next.state = OpState::Planned;
            next.error = None;
            let (id, _) = self.store.plan_operation(next).await?;
            rec = self.operation(id).await?;
        }
        Ok(rec)
    }

    /// Environments the inventory holds as live, by team (the quota counts them).
    pub(crate) async fn live_by_team(
        &self,
        repo: &RepoName,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, WorkError> {
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.store.environments(Some(repo)).await? {
            if e.state.is_live() {
                live.entry(e.team).or_default().insert(e.name);
            }
        }
        Ok(live)
    }

    /// Fetches, verifies the merge commit, recomputes the checks and works out one item
    /// per touched environment. `None` when no environment is touched.
    async fn plan_merge(
        &self,
        pr: &PrInfo,
        merge_sha: &CommitSha,
        ctx: &PrContext,
    ) -> Result<Option<MergePlan>, WorkError> {
        let lock = self.repo_lock(&pr.repo);
        let _held = lock.lock().await;
        let data_dir = self.config.data_dir.clone();
        let url = self.config.clone_url(&pr.repo, &pr.clone_url);
        let token = self.forge.git_token(pr.installation).await?;
        let pr = pr.clone();
        let merge_sha = merge_sha.clone();
        let ctx = ctx.clone();
        let default_timeout = self.config.runner.default_timeout;
        let max_manifests = self.config.checks.max_manifests;
        let inventory = self.store.environments(Some(&pr.repo)).await?;
        crate::worker::blocking(move || -> Result<Option<MergePlan>, WorkError> {
            let mirror = Mirror::open(&data_dir, &pr.repo)?;
            let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
            mirror.fetch(
                &url,
                &[
                    format!("+refs/heads/{}:{default_ref}", pr.default_branch),
                    format!(
                        "+refs/pull/{}/head:refs/paved/pull/{}",
                        pr.number, pr.number
                    ),
                ],
                token.as_ref(),
            )?;
            mirror.require_commit(&merge_sha)?;
            mirror.require_commit(&pr.head_sha)?;
            let tip = mirror
                .resolve(&default_ref)
                .ok_or_else(|| WorkError::Internal(format!("{default_ref} missing after fetch")))?;
            if !mirror.is_ancestor_or_same(&merge_sha, &tip)? {
                return Err(WorkError::Payload(format!(
                    "merge commit {merge_sha} is not on {} (tip {tip}); nothing provisioned",
                    pr.default_branch
                )));
            }
            let parent = mirror.first_parent(&merge_sha)?.ok_or_else(|| {
                WorkError::Payload(format!("merge commit {merge_sha} has no parent"))
            })?;
            // The PR's own changes: from where it forked off the default branch to its head.
            let fork = mirror.merge_base(&parent, &pr.head_sha)?;
            let changes = crate::worker::environment_changes(&mirror, &fork, &pr.head_sha)?;
            if changes.is_empty() {
                return Ok(None);
            }
            if changes.len() > max_manifests {
                return Err(WorkError::TooManyManifests {
                    count: changes.len(),
                    max: max_manifests,
                });
            }
            // Where governance is read: the default branch just before the PR landed.
            let first_parent = default_branch_before(&mirror, &merge_sha, &parent, &fork, &pr)?;
            let governance_changes =
                crate::worker::governance_changes(&mirror, &fork, &pr.head_sha)?;
            let base = mirror.tree_at(&first_parent)?;
            let governance = Governance::load(&base);
            let head = mirror.tree_at(&pr.head_sha)?;
            let mut report = checks::evaluate(&governance, &head, &base, &changes, &ctx);
            if !governance_changes.is_empty() {
                report.governance = Some(checks::evaluate_governance(
                    &governance,
                    &head,
                    &base,
                    &governance_changes,
                    &ctx,
                ));
            }
            let merged = mirror.tree_at(&merge_sha)?;
            // What is deployed must be what was checked: a manifest the merge commit holds
            // differently from the checked head (a conflict resolution, a squash onto a
            // changed default branch) is checked again as merged.
            let mut differing = Vec::new();
            for c in &changes {
                let at_merge = mirror.blob_id(&merge_sha, &c.path)?;
                if at_merge != mirror.blob_id(&pr.head_sha, &c.path)? {
                    let kind = match (&at_merge, mirror.blob_id(&first_parent, &c.path)?) {
                        (None, _) => ChangeKind::Deleted,
                        (Some(_), None) => ChangeKind::Added,
                        (Some(_), Some(_)) => ChangeKind::Modified,
                    };
                    differing.push(checks::Change {
                        path: c.path.clone(),
                        kind,
                    });
                }
            }
            let as_merged = (!differing.is_empty())
                .then(|| checks::evaluate(&governance, &merged, &base, &differing, &ctx));
            let items = plan_items(
                &pr,
                &merge_sha,
                &governance,
                &report,
                as_merged.as_ref(),
                &merged,
                &base,
                &inventory,
                default_timeout,
            );
            Ok(Some(MergePlan {
                mirror_path: mirror.path().to_path_buf(),
                clone_url: url,
                installation: pr.installation,
                from_fork: pr.from_fork,
                first_parent,
                report,
                items,
            }))
        })
        .await
    }

    /// Makes the reports of a finished operation that are not made yet: the final
    /// deployment status, then the git note.
    /// Makes the reports of finished operations that are not made yet: each one's final
    /// deployment status (concurrently), then one git note holding every record, written
    /// and pushed once (a note per operation would cost a commit and a push each).
    async fn report_operations(
        &self,
        gh: &GitHub,
        repo: &RepoName,
        plan: &MergePlan,
        recs: &[OperationRecord],
    ) -> Result<(), WorkError> {
        let finished: Vec<&OperationRecord> = recs.iter().filter(|r| r.state.is_final()).collect();
        let posts = finished
            .iter()
            .filter(|r| r.reported & reported::DEPLOYMENT == 0)
            .map(|r| self.report_deployment(gh, repo, r));
        for r in futures::future::join_all(posts).await {
            r?;
        }
        let unnoted: Vec<&&OperationRecord> = finished
            .iter()
            .filter(|r| r.reported & reported::NOTE == 0)
            .collect();
        let Some(first) = unnoted.first() else {
            return Ok(());
        };
        let text = unnoted
            .iter()
            .map(|r| crate::audit::render(&audit_record(r)))
            .collect::<Vec<_>>()
            .join("\n");
        let merge = CommitSha::parse(&first.op.merge_sha)
            .map_err(|e| WorkError::Internal(e.to_string()))?;
        {
            let lock = self.repo_lock(repo);
            let _held = lock.lock().await;
            let url = plan.clone_url.clone();
            let token = self.forge.git_token(plan.installation).await?;
            let mirror_path = plan.mirror_path.clone();
            crate::worker::blocking(move || -> Result<(), WorkError> {
                let mirror = Mirror::open_path(&mirror_path)?;
                mirror.append_note(&url, token.as_ref(), &merge, &text)?;
                Ok(())
            })
            .await?;
        }
        for r in unnoted {
            self.store
                .update_operation(r.id, OperationUpdate::Reported(reported::NOTE))
                .await?;
        }
        Ok(())
    }

    /// The final deployment status of a finished operation.
    async fn report_deployment(
        &self,
        gh: &GitHub,
        repo: &RepoName,
        rec: &OperationRecord,
    ) -> Result<(), WorkError> {
        let run_url = format!("{}/api/v1/operations/{}", self.public_url(), rec.id);
        if let Some(d) = rec.deployment_id {
            let (state, description) = match rec.state {
                OpState::Succeeded => ("success", format!("{} succeeded", rec.op.kind.as_str())),
                OpState::Interrupted => (
                    "error",
                    if rec.op.attempt < MAX_OP_ATTEMPTS {
                        "interrupted by a server restart; running it again".to_string()
                    } else {
                        "interrupted by a server restart; gave up".to_string()
                    },
                ),
                _ => (
                    "failure",
                    rec.error.clone().unwrap_or_else(|| "failed".into()),
                ),
            };
            let environment_url = (rec.state == OpState::Succeeded)
                .then(|| output_url(&rec.outputs))
                .flatten();
            gh.create_deployment_status(
                repo,
                d,
                &NewDeploymentStatus {
                    state: state.into(),
                    description,
                    log_url: Some(run_url),
                    environment_url,
                    auto_inactive: None,
                },
            )
            .await?;
        }
        self.store
            .update_operation(rec.id, OperationUpdate::Reported(reported::DEPLOYMENT))
            .await?;
        Ok(())
    }
}

/// Most commits of a pull request looked at when working out where governance is read;
/// beyond it the merge base is used.
const MAX_PR_COMMITS: usize = 250;

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
    let own: Vec<&crate::repo::CommitWithParents> =
        commits.iter().filter(|(_, p)| p.len() <= 1).collect();
    let k = own.len();
    if k <= 1 {
        return Ok(first_parent.clone());
    }
    let changed = |from: &CommitSha, to: &CommitSha| -> Result<Vec<String>, WorkError> {
        let mut paths: Vec<String> = crate::worker::environment_changes(mirror, from, to)?
            .into_iter()
            .map(|c| c.path)
            .collect();
        paths.extend(crate::worker::governance_changes(mirror, from, to)?);
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

/// The `url` output, when the run wrote one and it is not sensitive.
fn output_url(outputs: &serde_json::Value) -> Option<String> {
    let o = public_outputs(outputs);
    let v = o.get("url")?.get("value")?;
    v.as_str().map(str::to_string)
}

pub(super) fn sensitive_values(outputs: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    if let serde_json::Value::Object(map) = outputs {
        for v in map.values() {
            if v.get("sensitive").and_then(|s| s.as_bool()) == Some(true) {
                match v.get("value") {
                    Some(serde_json::Value::String(s)) => out.push(s.clone()),
                    Some(other) if !other.is_null() => out.push(other.to_string()),
                    _ => {}
                }
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn plan_items(
    pr: &PrInfo,
    merge_sha: &CommitSha,
    gov: &Governance,
    report: &Report,
    as_merged: Option<&Report>,
    merged: &dyn TreeReader,
    base: &dyn TreeReader,
    inventory: &[crate::store::EnvironmentRecord],
    default_timeout: Duration,
) -> Vec<Item> {
    let mut items = Vec::new();
    for env in &report.environments {
        let Ok(mp) = names::parse_manifest_path(&env.path) else {
            continue;
        };
        let mut checks_json: Vec<serde_json::Value> = env
            .checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "context": c.check.context(),
                    "verdict": if c.verdict.is_pass() { "pass" } else { "fail" },
                })
            })
            .collect();
        if let Some(g) = &report.governance {
            checks_json.push(serde_json::json!({
                "context": checks::GOVERNANCE_CONTEXT,
                "verdict": if g.verdict.is_pass() { "pass" } else { "fail" },
            }));
        }
        let mut failing: Vec<&str> = env
            .checks
            .iter()
            .filter(|c| !c.verdict.is_pass())
            .map(|c| c.check.context())
            .collect();
        // A PR that changes governance without its approvals provisions nothing.
        if report
            .governance
            .as_ref()
            .is_some_and(|g| !g.verdict.is_pass())
        {
            failing.push(checks::GOVERNANCE_CONTEXT);
        }
        // The manifest as merged decides the operation: present → deploy, gone → delete.
        let text = crate::manifest::read_text(merged, &env.path).ok().flatten();
        let parsed = text
            .as_deref()
            .and_then(|t| environment::parse_manifest(&env.path, t).ok());
        let (kind, manifest) = match (&text, parsed) {
            (Some(_), Some(m)) => (OpKind::Deploy, Some(m.manifest)),
            (Some(_), None) => (OpKind::Deploy, None),
            (None, _) => {
                // Deleted: what it was comes from the first parent, else the inventory.
                let before = crate::manifest::read_text(base, &env.path)
                    .ok()
                    .flatten()
                    .and_then(|t| environment::parse_manifest(&env.path, &t).ok())
                    .map(|m| m.manifest);
                (OpKind::Delete, before)
            }
        };
        let known = inventory.iter().find(|e| e.name == mp.name);
        if kind == OpKind::Delete && manifest.is_none() && known.is_none() {
            continue;
        }
        let (team, owner, env_type, definition, parameters) = match (&manifest, known) {
            (Some(m), _) => (
                m.metadata.team.clone(),
                m.metadata
                    .owner
                    .clone()
                    .unwrap_or_else(|| pr.author.clone()),
                m.spec.env_type.clone(),
                m.spec.definition.clone(),
                serde_json::to_value(&m.spec.parameters).unwrap_or_default(),
            ),
            (None, Some(k)) => (
                k.team.clone(),
                k.owner.clone(),
                k.env_type.clone(),
                k.definition.clone(),
                k.parameters.clone(),
            ),
            (None, None) => (
                mp.team.clone(),
                pr.author.clone(),
                String::new(),
                String::new(),
                serde_json::json!({}),
            ),
        };
        // A delete of an environment Paved never made and whose checks failed is noise;
        // a deploy must be green; a delete must be green too (issue 4 adds approvals).
        // The manifest as merged, when it differs from the checked head: all its checks
        // must pass too.
        let failing_as_merged: Vec<&str> = as_merged
            .and_then(|r| r.environments.iter().find(|e| e.path == env.path))
            .map(|e| {
                e.checks
                    .iter()
                    .filter(|c| !c.verdict.is_pass())
                    .map(|c| c.check.context())
                    .collect()
            })
            .unwrap_or_default();
        let refused = if !failing.is_empty() {
            Some(format!(
                "not provisioned: {} did not pass for the pull request's head {}",
                failing.join(", "),
                pr.head_sha.short()
            ))
        } else if !failing_as_merged.is_empty() {
            Some(format!(
                "not provisioned: the manifest as merged in {} differs from the checked head {} and fails {}",
                merge_sha.short(),
                pr.head_sha.short(),
                failing_as_merged.join(", ")
            ))
        } else {
            None
        };
        let defn = gov
            .catalog()
            .get(&definition)
            .and_then(|d| d.as_ref().ok())
            .map(|d| d.definition.clone());
        let (runner, template_path) = match &defn {
            Some(d) => (
                match d.runner {
                    Runner::Terraform => RunnerKind::Terraform,
                    _ => RunnerKind::Command,
                },
                d.template_path.clone(),
            ),
            None => (RunnerKind::Command, None),
        };
        let ty = gov
            .platform()
            .and_then(|p| p.environment_types.get(&env_type));
        let timeout = ty
            .and_then(|t| t.timeout.as_ref())
            .map(|t| t.as_std())
            .unwrap_or(default_timeout);
        let workflow = gov.resolve_workflow(Some(&env_type)).name;
        items.push(Item {
            op: NewOperation {
                repo: pr.repo.to_string(),
                env_name: mp.name.clone(),
                kind,
                merge_sha: merge_sha.to_string(),
                pr: pr.number.0,
                attempt: 1,
                delivery_id: String::new(),
                team,
                owner,
                env_type,
                definition,
                manifest_path: env.path.clone(),
                parameters,
                requester: pr.author.clone(),
                merger: String::new(),
                approvers: Vec::new(),
                governance_sha: String::new(),
                checks: serde_json::Value::Array(checks_json),
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
        });
    }
    items
}

/// The audit note of one operation attempt. Never holds outputs or logs: only who, what,
/// which checks, which governance, when and how it ended.
fn audit_record(rec: &OperationRecord) -> AuditRecord {
    let op = &rec.op;
    let checks = op
        .checks
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| CheckVerdict {
                    context: c["context"].as_str().unwrap_or_default().to_string(),
                    verdict: c["verdict"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let message = match rec.state {
        OpState::Succeeded => format!("{} succeeded", op.kind.as_str()),
        OpState::Interrupted => "interrupted: the server stopped while it ran".to_string(),
        _ => rec
            .error
            .clone()
            .unwrap_or_else(|| rec.state.as_str().to_string()),
    };
    AuditRecord {
        environment: op.env_name.clone(),
        team: op.team.clone(),
        operation: op.kind.as_str().to_string(),
        outcome: rec.state.as_str().to_string(),
        run_id: Some(rec.id),
        repository: op.repo.clone(),
        pull_request: Some(op.pr),
        requester: Some(op.requester.clone()),
        merger: (!op.merger.is_empty()).then(|| op.merger.clone()),
        approvers: op.approvers.clone(),
        checks,
        governance_commit: (!op.governance_sha.is_empty()).then(|| op.governance_sha.clone()),
        started_at: rec.started_at.clone(),
        finished_at: rec.finished_at.clone(),
        message: Some(message),
        attempt: Some(op.attempt),
    }
}

/// `paved/provision`: success only when every operation succeeded.
fn provision_verdict(ops: &[OperationRecord]) -> (StatusState, String) {
    let ok = ops.iter().filter(|o| o.state == OpState::Succeeded).count();
    let bad: Vec<&OperationRecord> = ops
        .iter()
        .filter(|o| o.state != OpState::Succeeded)
        .collect();
    if bad.is_empty() {
        return (
            StatusState::Success,
            format!("{ok} environment operation(s) succeeded"),
        );
    }
    let first = bad[0];
    let why = match first.state {
        OpState::Refused => format!("{} refused: checks did not pass", first.op.env_name),
        _ => format!(
            "{} {} {}: {}",
            first.op.env_name,
            first.op.kind.as_str(),
            first.state.as_str(),
            first.error.as_deref().unwrap_or("")
        ),
    };
    let more = if bad.len() > 1 {
        format!(" (+{} more)", bad.len() - 1)
    } else {
        String::new()
    };
    (
        StatusState::Failure,
        format!("{ok}/{} succeeded; {why}{more}", ops.len()),
    )
}

/// The PR's summary comment after the merge: the checks as recomputed, then what
/// provisioning did, with non-sensitive outputs only.
fn merge_comment(
    public_url: &str,
    pr: &PrInfo,
    merge_sha: &CommitSha,
    report: &Report,
    ops: &[OperationRecord],
) -> String {
    let fork = if pr.from_fork {
        format!("> {}\n\n", crate::worker::FORK_NOTE)
    } else {
        String::new()
    };
    let mut s = format!(
        "{}\n### Paved: merged as `{}`\n\n{fork}#### Provisioning\n\n| environment | operation | outcome | outputs | run |\n|---|---|---|---|---|\n",
        crate::worker::COMMENT_MARKER,
        merge_sha.short()
    );
    for o in ops {
        let outputs = public_outputs(&o.outputs);
        let shown: Vec<String> = outputs
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let val = match v.get("value") {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        format!("`{k}` = `{}`", val.replace('`', "'").replace('|', "\\|"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let outcome = match (o.state, &o.error) {
            (OpState::Succeeded, _) => "✅ succeeded".to_string(),
            (state, Some(e)) => format!(
                "❌ {}: {}",
                state.as_str(),
                e.replace('|', "\\|").replace('\n', " ")
            ),
            (state, None) => format!("❌ {}", state.as_str()),
        };
        s.push_str(&format!(
            "| `{}/{}` | {} | {} | {} | [{}]({public_url}/api/v1/operations/{}) |\n",
            o.op.team,
            o.op.env_name,
            o.op.kind.as_str(),
            outcome,
            if shown.is_empty() {
                "—".to_string()
            } else {
                shown.join("<br>")
            },
            o.id,
            o.id
        ));
    }
    s.push_str(&format!(
        "\n#### Checks at merge (head `{}`)\n\n{}\n",
        pr.head_sha.short(),
        checks::render_markdown(report)
    ));
    s
}
