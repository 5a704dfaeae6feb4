//! Previews on the pull request (SPEC 14): for each environment a change creates, changes
//! or deletes, its definition's `plan.sh` or `terraform plan`, in the sandbox, with the
//! type's `planIdentity` (else its `identity`), the definition and governance from where
//! governance is read, the parameters from the head, and a copy of the environment's
//! `ADE_STORAGE`. Nothing is changed and the environment's lock is not taken: a preview
//! never records an operation, and its storage copy is thrown away.
//!
//! Previews run in parallel up to `runner.concurrency` (each takes a runner slot). What
//! they found is kept per pull request ([`crate::store::PreviewStore`]), with the
//! Terraform plan files, so the merge applies the approved one on any replica; each
//! approval is bound to the digest of the previews shown when Paved first saw it.

use super::{Deps, WorkError};
use crate::checks::{CheckKind, EnvironmentReport, Governance, Review, ReviewState};
use crate::ids::{CommitSha, EnvName, Login, RepoName, TeamName};
use crate::manifest::change::ChangeKind;
use crate::manifest::environment;
use crate::preview::{self, EnvPreview, Inputs, PreviewSet, Status};
use crate::provision::preview::{governance_input, parameters_digest, run_preview, state_digest};
use crate::provision::{definition_runner, Item};
use crate::runner::{command, Operation, RunOutcome, RunResult, RunnerKind};
use crate::store::{EnvState, NewOperation, NewPreview, OpKind, OpState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A preview's text kept at most (the check run and the comment show less).
const TEXT_MAX: usize = 32 * 1024;

/// Where a change is previewed.
#[derive(Debug, Clone)]
pub(crate) struct PreviewAt {
    pub repo: RepoName,
    pub pr: u64,
    /// The commit whose manifests give the parameters (the PR's head, a queue's commit).
    pub head_sha: CommitSha,
    /// Where governance and definitions are read.
    pub governance_sha: CommitSha,
    /// The default branch, where a deleted manifest is read.
    pub default_sha: CommitSha,
    pub requester: Login,
    pub approvers: Vec<Login>,
}

/// The previews made, and the Terraform plan files by manifest path.
pub(crate) struct Made {
    pub set: PreviewSet,
    pub plans: Vec<(String, Vec<u8>)>,
}

/// One environment to preview, once its definition has a preview.
struct Job {
    preview: EnvPreview,
    item: Item,
    def_dir: PathBuf,
}

/// Makes the previews of the report's environments.
pub(crate) async fn make(
    deps: &Deps,
    at: &PreviewAt,
    gov: &Arc<Governance>,
    environments: &[EnvironmentReport],
) -> Result<Made, WorkError> {
    let default_timeout = deps.config.runner.default_timeout;
    let runs_dir = deps.config.data_dir.join("runs");
    let (at2, gov2, envs) = (at.clone(), gov.clone(), environments.to_vec());
    let (prepared, exports) = deps
        .repos
        .read(&at.repo, move |mirror| -> Result<_, WorkError> {
            let mut exports = Exports::new(runs_dir);
            let mut out = Vec::new();
            for env in &envs {
                let j = job(&mirror, &at2, &gov2, env, default_timeout, &mut exports);
                match j {
                    Ok(j) => out.push(j),
                    Err(e) => {
                        exports.remove();
                        return Err(e);
                    }
                }
            }
            Ok((out, exports))
        })
        .await?;
    let runs = prepared.into_iter().map(|p| async move {
        match p {
            Err(done) => Ok((*done, None)),
            Ok(job) => run(deps, at, job).await,
        }
    });
    let ran = futures::future::join_all(runs).await;
    let _ = tokio::task::spawn_blocking(move || exports.remove()).await;
    let mut set = PreviewSet::default();
    let mut plans = Vec::new();
    for r in ran {
        let (preview, plan) = r?;
        if let Some(p) = plan {
            plans.push((preview.path.clone(), p));
        }
        set.environments.push(preview);
    }
    Ok(Made { set, plans })
}

/// The definitions a set of previews uses, each exported once from the governance commit
/// (twenty environments of one definition share one copy; each run copies it into its own
/// folder), with what governs it.
struct Exports {
    runs_dir: PathBuf,
    /// By definition: its folder and governance input, or why it has no preview.
    by_def: std::collections::HashMap<String, Result<(PathBuf, String), String>>,
}

impl Exports {
    fn new(runs_dir: PathBuf) -> Exports {
        Exports {
            runs_dir,
            by_def: Default::default(),
        }
    }

    /// `def`'s folder and governance input, or (`Ok(Err)`) why it has no preview.
    fn get(
        &mut self,
        mirror: &crate::repo::Mirror,
        at: &CommitSha,
        def: &str,
        runner: RunnerKind,
    ) -> Result<Result<(PathBuf, String), String>, WorkError> {
        if let Some(known) = self.by_def.get(def) {
            return Ok(known.clone());
        }
        let def_dir = self
            .runs_dir
            .join(format!("preview-{}", rand::random::<u64>()));
        let folder = format!("catalog/{def}");
        let found = if !mirror.export_dir(at, &folder, &def_dir)? {
            Err(format!("no preview for {def}: {folder} not found"))
        } else if runner == RunnerKind::Arm
            || (runner == RunnerKind::Command
                && command::find_script(&def_dir, Operation::Plan).is_none())
        {
            let _ = std::fs::remove_dir_all(&def_dir);
            Err(format!("no preview for {def}"))
        } else {
            Ok((def_dir, governance_input(mirror, at, def)?))
        };
        self.by_def.insert(def.to_string(), found.clone());
        Ok(found)
    }

    /// Removes the exported folders.
    fn remove(self) {
        for (dir, _) in self.by_def.into_values().flatten() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What to run for one environment, or (`Err`) its preview already: none to make.
#[allow(clippy::result_large_err)]
fn job(
    mirror: &crate::repo::Mirror,
    at: &PreviewAt,
    gov: &Governance,
    env: &EnvironmentReport,
    default_timeout: Duration,
    exports: &mut Exports,
) -> Result<Result<Job, Box<EnvPreview>>, WorkError> {
    let deleted = env.change == ChangeKind::Deleted;
    let mut p = EnvPreview {
        path: env.path.clone(),
        label: env.label(),
        env_type: env.env_type.clone(),
        definition: None,
        operation: if deleted { "delete" } else { "deploy" }.to_string(),
        status: Status::NoPreview,
        changes: Vec::new(),
        text: String::new(),
        reason: None,
        required: false,
        inputs: Inputs::default(),
        plan_file: false,
    };
    let none = |mut p: EnvPreview, why: String| {
        p.reason = Some(why);
        Ok(Err(Box::new(p)))
    };
    let schema_fails = env
        .outcome(CheckKind::Schema)
        .is_some_and(|o| !o.verdict.is_pass());
    let name = env.name.as_deref().and_then(|n| EnvName::parse(n).ok());
    let team = env.team.as_deref().and_then(|t| TeamName::parse(t).ok());
    let (Some(name), Some(team)) = (name, team) else {
        return none(
            p,
            "not previewed: no environment can be named from this path".into(),
        );
    };
    if schema_fails {
        return none(
            p,
            "not previewed: the manifest does not pass paved/schema".into(),
        );
    }
    let read_at = if deleted {
        &at.default_sha
    } else {
        &at.head_sha
    };
    let text = crate::manifest::read_text(&mirror.tree_at(read_at)?, &env.path)
        .ok()
        .flatten();
    let Some(manifest) = text
        .and_then(|t| environment::parse_manifest(&env.path, &t).ok())
        .map(|m| m.manifest)
    else {
        return none(p, "not previewed: the manifest could not be read".into());
    };
    let def = manifest.spec.definition.clone();
    p.definition = Some(def.clone());
    p.env_type = Some(manifest.spec.env_type.clone());
    let ty = gov
        .platform()
        .and_then(|pl| pl.environment_types.get(&manifest.spec.env_type));
    p.required = ty.is_some_and(|t| t.require_plan);
    let Some((runner, template_path)) = definition_runner(gov, &def) else {
        return none(p, format!("no preview for {def}: not in the catalog"));
    };
    let (def_dir, governance) = match exports.get(mirror, &at.governance_sha, &def, runner)? {
        Ok(found) => found,
        Err(why) => return none(p, why),
    };
    p.inputs.governance = governance;
    let parameters = serde_json::to_value(&manifest.spec.parameters).unwrap_or_default();
    p.inputs.parameters = parameters_digest(&parameters);
    let item = Item {
        op: NewOperation {
            repo: at.repo.clone(),
            env_name: name,
            kind: if deleted {
                OpKind::Delete
            } else {
                OpKind::Deploy
            },
            merge_sha: at.head_sha.clone(),
            pr: Some(crate::ids::PrNumber(at.pr)),
            attempt: 1,
            delivery_id: None,
            cause: String::new(),
            team,
            owner: manifest
                .metadata
                .owner
                .as_deref()
                .and_then(|o| Login::parse(o).ok())
                .unwrap_or_else(|| at.requester.clone()),
            env_type: manifest.spec.env_type.clone(),
            definition: def,
            manifest_path: env.path.clone(),
            parameters,
            requester: at.requester.clone(),
            merger: None,
            approvers: at.approvers.clone(),
            governance_sha: at.governance_sha.to_string(),
            checks: serde_json::json!([]),
            state: OpState::Planned,
            error: None,
        },
        runner,
        template_path,
        timeout: ty
            .and_then(|t| t.timeout.as_ref())
            .map(|t| t.as_std())
            .unwrap_or(default_timeout),
        production: false,
        network: ty.is_none_or(|t| t.network.is_shared()),
        identity: ty.and_then(|t| t.plan_identity.clone().or_else(|| t.identity.clone())),
    };
    Ok(Ok(Job {
        preview: p,
        item,
        def_dir,
    }))
}

/// Runs one preview in a runner slot; the plan file it made, for Terraform.
async fn run(
    deps: &Deps,
    at: &PreviewAt,
    job: Job,
) -> Result<(EnvPreview, Option<Vec<u8>>), WorkError> {
    let Job {
        mut preview,
        item,
        def_dir,
    } = job;
    let r = run_in_slot(deps, at, &item, &def_dir, &mut preview).await?;
    let plan = read_result(&mut preview, &item, r);
    Ok((preview, plan))
}

async fn run_in_slot(
    deps: &Deps,
    at: &PreviewAt,
    item: &Item,
    def_dir: &std::path::Path,
    preview: &mut EnvPreview,
) -> Result<RunResult, WorkError> {
    let _slot = deps
        .runner_slots
        .acquire()
        .await
        .map_err(|_| WorkError::Internal("runner slots closed".into()))?;
    let previous = deps.store.environment(&at.repo, &item.op.env_name).await?;
    // A deleted environment's next generation starts from nothing (SPEC 12).
    let storage = match &previous {
        Some(p) if p.state != EnvState::Deleted => deps
            .store
            .environment_storage(&at.repo, &item.op.env_name)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    preview.inputs.state = state_digest(storage.as_deref());
    run_preview(deps, item, def_dir, previous.as_ref(), storage).await
}

/// Fills the preview from the run: exit 0 no changes, 2 changes (with the change list),
/// anything else failed. Returns the Terraform plan file.
fn read_result(p: &mut EnvPreview, item: &Item, r: RunResult) -> Option<Vec<u8>> {
    let mut text = r.log.trim().to_string();
    if text.len() > TEXT_MAX {
        let mut cut = TEXT_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[…]");
    }
    p.text = text;
    let failed = |p: &mut EnvPreview, why: String| {
        p.status = Status::Failed;
        p.reason = Some(why);
        p.changes.clear();
        None
    };
    if let Some((code, message)) = &r.operation_result {
        return failed(p, format!("{code}: {message}"));
    }
    let changes = match &r.outcome {
        RunOutcome::Succeeded => false,
        RunOutcome::Failed {
            exit_code: Some(2), ..
        } => true,
        other => {
            let first = r.error_log.lines().find(|l| !l.trim().is_empty());
            let why = match first {
                Some(l) => format!("{}: {}", other.describe(), l.trim()),
                None => other.describe(),
            };
            return failed(p, why);
        }
    };
    p.status = if changes {
        Status::Changes
    } else {
        Status::NoChanges
    };
    let listed = match item.runner {
        RunnerKind::Command => r
            .plan
            .changes
            .as_deref()
            .map(preview::summary::parse_change_list),
        RunnerKind::Terraform => r
            .plan
            .terraform_show
            .as_deref()
            .map(preview::summary::terraform_changes),
        RunnerKind::Arm => None,
    };
    match listed {
        Some(Ok(list)) if changes => p.changes = list,
        Some(Ok(_)) | None => {}
        Some(Err(e)) => return failed(p, e),
    }
    let plan = r.plan.terraform_plan;
    p.plan_file = plan.is_some();
    plan
}

/// Binds the approving reviews of `head` that are not bound yet to `digest` (the previews
/// shown now), then gives every review the digest it is bound to.
pub(crate) async fn bind_reviews(
    deps: &Deps,
    repo: &RepoName,
    pr: u64,
    head: &CommitSha,
    reviews: &mut [Review],
    digest: Option<&str>,
) -> Result<(), WorkError> {
    let bound: std::collections::HashMap<u64, String> = deps
        .store
        .review_digests(repo, pr)
        .await?
        .into_iter()
        .collect();
    if let Some(digest) = digest {
        let unbound: Vec<u64> = reviews
            .iter()
            .filter(|r| r.state == ReviewState::Approved)
            .filter(|r| {
                r.commit_id
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(head.as_str()))
            })
            .filter_map(|r| r.id)
            .filter(|id| !bound.contains_key(id))
            .collect();
        deps.store.bind_reviews(repo, pr, &unbound, digest).await?;
        for r in reviews.iter_mut() {
            if r.id.is_some_and(|id| unbound.contains(&id)) {
                r.digest = Some(digest.to_string());
            }
        }
    }
    for r in reviews.iter_mut() {
        if let Some(d) = r.id.and_then(|id| bound.get(&id)) {
            r.digest = Some(d.clone());
        }
    }
    Ok(())
}

/// The pull request's kept previews when they are of `head`.
pub(crate) async fn stored(
    deps: &Deps,
    repo: &RepoName,
    pr: u64,
    head: &CommitSha,
) -> Result<Option<(i64, PreviewSet)>, WorkError> {
    let Some(rec) = deps.store.latest_preview(repo, pr).await? else {
        return Ok(None);
    };
    if &rec.head_sha != head {
        return Ok(None);
    }
    let set: PreviewSet = serde_json::from_value(rec.previews)
        .map_err(|e| WorkError::Internal(format!("kept previews unreadable: {e}")))?;
    Ok(Some((rec.id, set)))
}

/// Keeps a pull request's previews.
pub(crate) async fn keep(deps: &Deps, at: &PreviewAt, made: &Made) -> Result<(), WorkError> {
    let previews =
        serde_json::to_value(&made.set).map_err(|e| WorkError::Internal(e.to_string()))?;
    deps.store
        .save_preview(NewPreview {
            repo: at.repo.clone(),
            pr: at.pr,
            head_sha: at.head_sha.clone(),
            digest: made.set.digest(),
            previews,
            plans: made.plans.clone(),
            created_at: deps.config.lifecycle.clock.now().timestamp_millis(),
        })
        .await?;
    Ok(())
}
