//! Provisioning: running an environment's operations (SPEC 5, 12, 13), for whoever asks:
//! a merge ([`crate::handlers::merge`]), the scheduler's jobs (expiry, schedules, drift,
//! reconcile) and a pull request's previews alike.
//!
//! - [`run`]: one operation under its environment's lock, fenced, in the sandbox;
//! - [`identity`]: the type's deploy identity for a run (SPEC 13);
//! - [`approved`]: a deploy gets the preview its approvals were bound to (SPEC 14);
//! - [`preview`]: a preview's run (`plan.sh`, `terraform plan`) and its digests;
//! - [`adopt`]: an imported environment's `adopt` operation (no script runs);
//! - [`report`]: each finished operation's deployment status and audit note.
//!
//! **An interrupted operation** (the server died while its script ran) is found at the next
//! start: its orphaned script is killed (only if it is still ours, checked by its
//! `PAVED_RUN_ID`), it is reported `interrupted` (deployment status `error`, a note), and
//! it is run again as a new attempt, at most [`MAX_OP_ATTEMPTS`] times in all
//! ([`run_rounds`]).

pub(crate) mod adopt;
mod approved;
pub(crate) mod identity;
pub(crate) mod preview;
pub(crate) mod report;
pub(crate) mod run;

use crate::checks::Governance;
use crate::forge::client::GitHub;
use crate::ids::{CommitSha, OperationId};
use crate::runner::RunnerKind;
use crate::store::{NewOperation, OpState, OperationRecord};
use crate::work::{Deps, Target, WorkError};
use std::path::PathBuf;
use std::time::Duration;

/// An interrupted operation is tried again until it has been started this many times.
pub const MAX_OP_ATTEMPTS: u32 = 3;

/// One environment a merge touches, with what is needed to run and report it.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub op: NewOperation,
    pub runner: RunnerKind,
    pub template_path: Option<String>,
    pub timeout: Duration,
    pub production: bool,
    /// Whether the run shares the host's network (the type's `network`, SPEC 12).
    pub network: bool,
    /// The deploy identity the type names (SPEC 13), at the governing commit.
    pub identity: Option<String>,
}

/// Where an operation's definition folder is read: the merge commit (its
/// `merge_sha`), else `first_parent`.
#[derive(Debug, Clone)]
pub(crate) struct RunSource {
    pub mirror_path: PathBuf,
    /// The PR came from a fork: no file it wrote is ever executed, so definitions are taken
    /// from the first parent (the default branch before the merge), not the merge commit.
    pub from_fork: bool,
    pub first_parent: CommitSha,
}

/// How a catalog definition runs (its `runner:` and `templatePath`); `None`: not in the
/// catalog (or unreadable there).
pub(crate) fn definition_runner(
    gov: &Governance,
    definition: &str,
) -> Option<(RunnerKind, Option<String>)> {
    let d = gov.catalog().get(definition)?.as_ref().ok()?;
    Some((
        RunnerKind::from(&d.definition.runner),
        d.definition.template_path.clone(),
    ))
}

/// Runs what has not run, in parallel across environments. An attempt found running whose
/// lock this replica then gets was abandoned by a dead replica: it becomes interrupted, and
/// the next round runs the next attempt. Returns each environment's final attempt.
pub(crate) async fn run_rounds(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    src: &RunSource,
    first_ids: &[(Item, OperationId)],
) -> Result<Vec<OperationRecord>, WorkError> {
    let mut current = Vec::new();
    for _round in 0..=MAX_OP_ATTEMPTS {
        current.clear();
        for (item, id) in first_ids {
            let rec = latest_attempt(deps, gh, at, *id).await?;
            current.push((item.clone(), rec));
        }
        let runs: Vec<_> = current
            .iter()
            .filter(|(_, rec)| !rec.state.is_final())
            .map(|(item, rec)| run::run_operation(deps, gh, at, src, item, rec.id))
            .collect();
        if runs.is_empty() {
            break;
        }
        for r in futures::future::join_all(runs).await {
            r?;
        }
    }
    let mut finals = Vec::new();
    for (_, rec) in &current {
        finals.push(operation(deps, rec.id).await?);
    }
    Ok(finals)
}

pub(crate) async fn operation(deps: &Deps, id: OperationId) -> Result<OperationRecord, WorkError> {
    deps.store
        .operation(id)
        .await?
        .ok_or_else(|| WorkError::Internal(format!("operation {id} vanished")))
}

/// Follows interrupted attempts: reports each and records the next attempt, up to
/// [`MAX_OP_ATTEMPTS`]. Returns the attempt that is current.
async fn latest_attempt(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    first: OperationId,
) -> Result<OperationRecord, WorkError> {
    let mut rec = operation(deps, first).await?;
    while rec.state == OpState::Interrupted {
        report::report_operations(deps, gh, at, std::slice::from_ref(&rec)).await?;
        if rec.op.attempt >= MAX_OP_ATTEMPTS {
            break;
        }
        let mut next = rec.op.clone();
        next.attempt += 1;
        next.state = OpState::Planned;
        next.error = None;
        let (id, _) = deps.store.plan_operation(next).await?;
        rec = operation(deps, id).await?;
    }
    Ok(rec)
}
