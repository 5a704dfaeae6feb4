//! Drift (SPEC 11): every `lifecycle.drift_interval` a live environment's definition is
//! asked whether what exists still matches its parameters: `status.sh` (exit 0 in sync, 2
//! drifted, anything else unknown; its output is the summary), or for `runner: terraform`,
//! `terraform plan -detailed-exitcode`. The result goes to the inventory (API, Graph,
//! `/metrics`), and one GitHub issue per drifted environment tells of it: edited while it
//! stays drifted, closed when it is back in sync. `/paved reconcile` on that issue, or
//! `POST …/reconcile`, runs `deploy` again with the last parameters.

use super::jobs::Snapshot;
use crate::provision::run as provision_run;
use crate::runner::{self, Operation, RunOutcome, RunnerKind};
use crate::store::{DriftState, EnvState, EnvironmentRecord, OpKind};
use crate::work::{Deps, WorkError};
use chrono::{DateTime, Utc};

/// The most of a check's output kept as its summary.
const SUMMARY_LIMIT: usize = 4000;

/// What a check's exit means.
pub fn state_of(outcome: &RunOutcome) -> DriftState {
    match outcome {
        RunOutcome::Succeeded => DriftState::InSync,
        RunOutcome::Failed {
            exit_code: Some(2), ..
        } => DriftState::Drifted,
        _ => DriftState::Unknown,
    }
}

/// Checks one environment, records the result and keeps its issue. `false`: not checked
/// now (its lock is held by a running operation, or it is not up).
pub(super) async fn check(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    now: DateTime<Utc>,
) -> Result<bool, WorkError> {
    if env.state != EnvState::Ready {
        return Ok(true);
    }
    if snap.runner == RunnerKind::Command && !snap.scripts.contains("status") {
        return Ok(true);
    }
    let repo = &snap.known.repo;
    let holder = format!("{}:drift", deps.instance);
    // The check reads ADE_STORAGE: never beside an operation that writes it.
    if deps
        .store
        .try_lock_environment(repo, &env.name, &holder, deps.config.lease)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    let result = run_check(deps, snap, env).await;
    if let Err(e) = deps
        .store
        .unlock_environment(repo, &env.name, &holder)
        .await
    {
        tracing::warn!(error = %e, "releasing an environment lock failed; its lease runs out");
    }
    let (state, summary) = result?;
    deps.store
        .record_drift(repo, &env.name, state, &summary, now.timestamp_millis())
        .await?;
    keep_issue(deps, snap, env, state, &summary).await?;
    Ok(true)
}

/// Runs the check (no operation: nothing changes) and returns its verdict and summary.
async fn run_check(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
) -> Result<(DriftState, String), WorkError> {
    // The run's inputs are those of a deploy with the last parameters; the script it runs
    // is `Operation::Status`, given below, and nothing is recorded as an operation.
    let item = snap.item(env, OpKind::Reconcile, String::new(), "paved", None);
    let src = snap.source();
    // Runs carry an id for PAVED_RUN_ID; a check's is its own, apart from operations'.
    let run_id = -(deps.config.lifecycle.clock.now().timestamp_millis());
    let Some(def_dir) = provision_run::export_definition(deps, &src, &item.op, run_id).await?
    else {
        return Ok((
            DriftState::Unknown,
            format!("definition folder catalog/{} not found", env.definition),
        ));
    };
    let repo = &snap.known.repo;
    let storage = deps
        .store
        .environment_storage(repo, &env.name)
        .await
        .ok()
        .flatten();
    let mut spec = provision_run::run_spec(
        deps,
        &item,
        (run_id, Operation::Status),
        def_dir.clone(),
        Some(env),
        storage,
    );
    // A drift check gets its own token, its operation `drift` (SPEC 13).
    let identity =
        crate::provision::identity::prepare(deps, &item, &item.op, (run_id, spec.timeout), "drift")
            .await;
    let r = match identity {
        Ok(Ok(prepared)) => {
            if let Some(p) = prepared {
                p.apply(&mut spec);
            }
            runner::run(spec, |_| async {}).await
        }
        Ok(Err(why)) => runner::not_run(why, Vec::new()),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&def_dir).await;
            return Err(e);
        }
    };
    let _ = tokio::fs::remove_dir_all(&def_dir).await;
    let state = state_of(&r.outcome);
    let mut summary = r.log.trim().to_string();
    if state == DriftState::Unknown {
        summary = format!("{}\n{summary}", r.outcome.describe());
    }
    if summary.len() > SUMMARY_LIMIT {
        let mut cut = SUMMARY_LIMIT;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str("\n[…]");
    }
    Ok((state, summary))
}

/// One issue per drifted environment: opened the first time, edited while it stays
/// drifted, closed when it is back in sync. An unknown result leaves it as it is.
async fn keep_issue(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    state: DriftState,
    summary: &str,
) -> Result<(), WorkError> {
    let repo = &snap.known.repo;
    let gh = deps.forge.client(snap.target.installation)?;
    let open = env.drift.as_ref().and_then(|d| d.issue);
    let (team, name) = (&env.team, &env.name);
    let quoted = format!("```\n{}\n```", summary.replace("```", "'''"));
    match (state, open) {
        (DriftState::Drifted, issue) => {
            let body = format!(
                "`{team}/{name}` no longer matches its manifest `{}` (checked at `{}` on `{}`).\n\n{quoted}\n\nTo put it back as the manifest says, comment `/paved reconcile` here (a member of `{team}` or the platform team): Paved runs its deploy again with the last parameters. This issue is edited by each check and closed when the environment is back in sync.\n",
                snap.manifest_path,
                crate::timers::canonical(deps.config.lifecycle.clock.now()),
                snap.at.short(),
            );
            match issue {
                Some(n) => {
                    gh.update_issue(repo, n, &body, Some("open")).await?;
                }
                None => {
                    let title = format!("Drift: {team}/{name}");
                    let opened = gh
                        .create_issue(repo, &title, &body, &["paved", "drift"])
                        .await?;
                    deps.store
                        .set_drift_issue(repo, name, Some(opened.number))
                        .await?;
                }
            }
        }
        (DriftState::InSync, Some(n)) => {
            let body = format!(
                "`{team}/{name}` is back in sync with its manifest (checked at `{}`).\n\n{quoted}\n",
                crate::timers::canonical(deps.config.lifecycle.clock.now())
            );
            gh.update_issue(repo, n, &body, Some("closed")).await?;
            deps.store.set_drift_issue(repo, name, None).await?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_mean_what_the_contract_says() {
        assert_eq!(state_of(&RunOutcome::Succeeded), DriftState::InSync);
        let exit = |c| RunOutcome::Failed {
            exit_code: Some(c),
            signal: None,
        };
        assert_eq!(state_of(&exit(2)), DriftState::Drifted);
        assert_eq!(state_of(&exit(1)), DriftState::Unknown);
        assert_eq!(state_of(&exit(3)), DriftState::Unknown);
        assert_eq!(
            state_of(&RunOutcome::NotRunnable("no status.sh".into())),
            DriftState::Unknown
        );
    }
}
