//! What every scheduled job starts from: the environment's manifest and definition as they
//! were governed (SPEC 12): read at the merge commit of its last governed change, never at
//! the default branch's tip, which a direct push may have changed (a timer says when, the
//! governed commit says what); and one operation run as a merge runs them: recorded once
//! per cause, under the environment's lock, fenced, with its deployment and its git note.

use crate::checks::Governance;
use crate::ids::{CommitSha, Login, PrNumber, TeamName};
use crate::manifest::{environment, Manifest};
use crate::provision::{self, Item, RunSource};
use crate::runner::RunnerKind;
use crate::store::{EnvironmentRecord, KnownRepository, NewOperation, OpKind, OpState};
use crate::store::{OperationRecord, Store};
use crate::tree::TreeReader;
use crate::work::{Deps, Target, WorkError};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// The environment as it was governed.
pub(super) struct Snapshot {
    pub known: KnownRepository,
    pub target: Target,
    /// The default branch's tip (a clean-up pull request starts there).
    pub tip: CommitSha,
    /// The merge commit of the environment's last governed change: its manifest is read
    /// there, and its operations are recorded (and noted) at it.
    pub at: CommitSha,
    /// Where its definition is read: `at`, or the first parent of a fork's merge.
    pub code: CommitSha,
    pub mirror_path: PathBuf,
    pub manifest_path: String,
    /// `None`: the manifest is gone from the default branch (a delete is on its way).
    pub manifest: Option<Manifest>,
    pub runner: RunnerKind,
    pub template_path: Option<String>,
    pub timeout: Duration,
    pub production: bool,
    /// Whether runs share the host's network (the type's `network`).
    pub network: bool,
    /// The deploy identity the type names (SPEC 13).
    pub identity: Option<String>,
    /// Which of the optional scripts (`stop`, `start`, `status`) the definition has.
    pub scripts: BTreeSet<&'static str>,
    /// The type's `maxTtl`, as written (for the expiry warning).
    pub max_ttl: Option<String>,
    /// The default branch's commit that last changed the manifest (`None`: further back
    /// than Paved looks).
    pub changed_in: Option<CommitSha>,
}

/// Commits looked back through for the one that last changed a manifest.
const MAX_LOOKBACK: usize = 500;

/// The first-parent commit from `tip` back that last changed `path`.
fn last_change(
    mirror: &crate::repo::Mirror,
    tip: &CommitSha,
    path: &str,
) -> Result<Option<CommitSha>, crate::repo::RepoError> {
    let mut at = tip.clone();
    let blob = mirror.blob_id(&at, path)?;
    for _ in 0..MAX_LOOKBACK {
        match mirror.first_parent(&at)? {
            Some(parent) if mirror.blob_id(&parent, path)? == blob => at = parent,
            _ => return Ok(Some(at)),
        }
    }
    Ok(None)
}

/// The commits an environment's jobs read: its last governed change (manifest) and where
/// its definition was taken from. Rows from before they were recorded fall back to the
/// commit of their last operation; `None` when there is neither.
pub(super) async fn governed_commits(
    store: &dyn Store,
    env: &EnvironmentRecord,
) -> Result<Option<(CommitSha, CommitSha)>, WorkError> {
    let parse = |s: &str| CommitSha::parse(s).ok();
    if let Some(at) = env.governed_sha.as_deref().and_then(parse) {
        let code = env
            .code_sha
            .as_deref()
            .and_then(parse)
            .unwrap_or(at.clone());
        return Ok(Some((at, code)));
    }
    let Some(last) = env.last_operation else {
        return Ok(None);
    };
    Ok(store
        .operation(last)
        .await?
        .map(|o| (o.op.merge_sha.clone(), o.op.merge_sha)))
}

/// Fetches the default branch and reads the environment's manifest and definition as they
/// were governed (see [`governed_commits`]).
pub(super) async fn snapshot(
    deps: &Deps,
    known: &KnownRepository,
    env: &EnvironmentRecord,
) -> Result<Snapshot, WorkError> {
    let governed = governed_commits(deps.store.as_ref(), env).await?;
    let manifest_path = format!("environments/{}/{}.yaml", env.team, env.name);
    let default_timeout = deps.config.runner.default_timeout;
    let (path, definition, env_type) = (
        manifest_path.clone(),
        env.definition.clone(),
        env.env_type.clone(),
    );
    let known2 = known.clone();
    deps.repos
        .with_branch(
            &known.repo,
            &known.clone_url,
            known.installation,
            &known.default_branch,
            move |mirror, tip| -> Result<Snapshot, WorkError> {
                let (at, code) = governed.unwrap_or_else(|| (tip.clone(), tip.clone()));
                let tree = mirror.tree_at(&at)?;
                let code_tree = mirror.tree_at(&code)?;
                let manifest = crate::manifest::read_text(&tree, &path)
                    .ok()
                    .flatten()
                    .and_then(|t| environment::parse_manifest(&path, &t).ok())
                    .map(|m| m.manifest);
                let definition = manifest
                    .as_ref()
                    .map_or(definition, |m| m.spec.definition.clone());
                let env_type = manifest
                    .as_ref()
                    .map_or(env_type, |m| m.spec.env_type.clone());
                let changed_in = last_change(mirror, &at, &path)?;
                let gov = Governance::load(&code_tree);
                let defn = gov
                    .catalog()
                    .get(&definition)
                    .and_then(|d| d.as_ref().ok())
                    .map(|d| d.definition.clone());
                let ty = gov
                    .platform()
                    .and_then(|p| p.environment_types.get(&env_type).cloned());
                let mut scripts = BTreeSet::new();
                for name in ["stop", "start", "status"] {
                    let found = [
                        format!("catalog/{definition}/{name}.sh"),
                        format!("catalog/{definition}/scripts/{name}.sh"),
                    ]
                    .iter()
                    .any(|p| code_tree.read(p).ok().flatten().is_some());
                    if found {
                        scripts.insert(name);
                    }
                }
                Ok(Snapshot {
                    target: Target::from(&known2),
                    known: known2,
                    tip: tip.clone(),
                    at,
                    code,
                    mirror_path: mirror.path().to_path_buf(),
                    manifest_path: path,
                    manifest,
                    runner: defn
                        .as_ref()
                        .map_or(RunnerKind::Command, |d| (&d.runner).into()),
                    template_path: defn.and_then(|d| d.template_path),
                    timeout: ty
                        .as_ref()
                        .and_then(|t| t.timeout.as_ref())
                        .map_or(default_timeout, |t| t.as_std()),
                    production: gov.resolve_workflow(Some(&env_type)).name == "production",
                    network: ty.as_ref().is_none_or(|t| t.network.is_shared()),
                    identity: ty.as_ref().and_then(|t| t.identity.clone()),
                    max_ttl: ty.and_then(|t| t.max_ttl).map(|t| t.to_string()),
                    scripts,
                    changed_in,
                })
            },
        )
        .await
}

/// The pull request that last changed the environment's manifest (for notes and
/// warnings): the one whose merge is the commit that last changed it (an extension's too,
/// though it ran nothing), else the last one an operation ran for.
pub(super) async fn last_pull_request(
    store: &dyn Store,
    snap: &Snapshot,
    env: &EnvironmentRecord,
) -> Result<Option<u64>, WorkError> {
    let repo = &snap.known.repo;
    if let Some(commit) = &snap.changed_in {
        if let Some(pr) = store.merge_of(repo, commit).await? {
            return Ok(Some(pr.0));
        }
    }
    Ok(store
        .operations_for_environment(repo, &env.name, 50)
        .await?
        .into_iter()
        .filter(|o| env.owns(o) && o.op.cause.is_empty())
        .find_map(|o| o.op.pr)
        .map(|p| p.0))
}

impl Snapshot {
    /// Where its runs read their definition: the governed commit, or (a fork's merge)
    /// only its first parent.
    pub(super) fn source(&self) -> RunSource {
        RunSource {
            mirror_path: self.mirror_path.clone(),
            from_fork: self.code != self.at,
            first_parent: self.code.clone(),
        }
    }

    /// The operation of `kind` for `cause`, on the tip, by `requester`, with the last
    /// deployed parameters.
    pub(super) fn item(
        &self,
        env: &EnvironmentRecord,
        kind: OpKind,
        cause: String,
        requester: &str,
        pr: Option<u64>,
    ) -> Item {
        let m = self.manifest.as_ref();
        Item {
            op: NewOperation {
                repo: self.known.repo.clone(),
                env_name: env.name.clone(),
                kind,
                merge_sha: self.at.clone(),
                pr: pr.map(PrNumber),
                attempt: 1,
                delivery_id: None,
                cause,
                // The governed manifest's team was checked when it merged.
                team: m
                    .and_then(|m| TeamName::parse(&m.metadata.team).ok())
                    .unwrap_or_else(|| env.team.clone()),
                owner: m
                    .and_then(|m| m.metadata.owner.as_deref())
                    .and_then(|o| Login::parse(o).ok())
                    .unwrap_or_else(|| env.owner.clone()),
                env_type: m.map_or_else(|| env.env_type.clone(), |m| m.spec.env_type.clone()),
                definition: m.map_or_else(|| env.definition.clone(), |m| m.spec.definition.clone()),
                manifest_path: self.manifest_path.clone(),
                parameters: env.parameters.clone(),
                // `paved`, or who asked for a reconcile (a caller's login).
                requester: Login::parse(requester).unwrap_or_else(|_| Login::paved()),
                merger: None,
                approvers: Vec::new(),
                governance_sha: self.code.to_string(),
                checks: serde_json::json!([]),
                state: OpState::Planned,
                error: None,
            },
            runner: self.runner,
            template_path: self.template_path.clone(),
            timeout: self.timeout,
            production: self.production,
            network: self.network,
            identity: self.identity.clone(),
        }
    }

    /// Records the operation (or finds it, recorded for the same cause before a restart),
    /// runs it as a merge's operations run, and reports it. Returns its final record.
    pub(super) async fn run(&self, deps: &Deps, item: Item) -> Result<OperationRecord, WorkError> {
        let gh = deps.forge.client(self.target.installation)?;
        let (id, _) = deps.store.plan_operation(item.op.clone()).await?;
        let src = self.source();
        let finals = provision::run_rounds(deps, &gh, &self.target, &src, &[(item, id)]).await?;
        provision::report::report_operations(deps, &gh, &self.target, &finals).await?;
        finals
            .into_iter()
            .next()
            .ok_or_else(|| WorkError::Internal(format!("operation {id} vanished")))
    }
}
