//! Running one operation under its environment's lock.
//!
//! The lock is a lease in the database with an epoch that goes up each time it changes
//! hands. The holder renews it while the operation runs. Two rules keep an environment from
//! ever being run twice at once, even by a replica that was paused or cut off:
//! - **a lost lock stops the run**: when a renewal finds the lock held by another (or none
//!   succeeded for a whole lease), the run's future is dropped, which kills the script's
//!   process group, and nothing is recorded;
//! - **every write is fenced**: the operation's start and its result (with the inventory
//!   row and `ADE_STORAGE`) are each one transaction that applies only while this holder
//!   still holds the lock at its epoch ([`Fence`]), so a late writer changes nothing.
//!
//! The script's pid is recorded (awaited) before the run waits on it, so after a crash the
//! next start always finds the orphan ([`crate::runner::kill_orphan`]).

use super::{Item, RunSource};
use crate::forge::client::{ForgeError, GitHub, NewDeployment, NewDeploymentStatus};
use crate::ids::{OperationId, RepoName};
use crate::repo::Mirror;
use crate::runner::{self, Operation, RunOutcome, RunResult, RunSpec};
use crate::store::{
    reported, EnvState, EnvironmentUpdate, Fence, Finish, OpKind, OpState, OperationRecord,
    OperationUpdate, Store,
};
use crate::work::{Deps, Target, WorkError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs one planned operation: lock, deployment, script, inventory.
pub(crate) async fn run_operation(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    src: &RunSource,
    item: &Item,
    id: OperationId,
) -> Result<(), WorkError> {
    use tracing::Instrument;
    let span = tracing::info_span!("operation", id = %id, repository = %at.repo,
        environment = %item.op.env_name, kind = ?item.op.kind);
    async {
        let started = Instant::now();
        let result = run_operation_in_span(deps, gh, at, src, item, id).await;
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "operation run"
        );
        result
    }
    .instrument(span)
    .await
}

async fn run_operation_in_span(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    src: &RunSource,
    item: &Item,
    id: OperationId,
) -> Result<(), WorkError> {
    let repo = &at.repo;
    let name = &item.op.env_name;
    let holder = format!("{}:{id}", deps.instance);
    // The lock first, then a runner slot: waiting for a lock must not hold a slot.
    let epoch = loop {
        match deps
            .store
            .try_lock_environment(repo, name, &holder, deps.config.lease)
            .await?
        {
            Some(epoch) => break epoch,
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let fence = Fence { holder, epoch };
    let lost = CancellationToken::new();
    let renew = tokio::spawn(keep_lock(
        deps.store.clone(),
        repo.clone(),
        name.to_string(),
        fence.clone(),
        deps.config.lease,
        lost.clone(),
    ));
    let result = tokio::select! {
        r = run_locked(deps, gh, at, src, item, id, &fence) => r,
        // Dropping the run kills its script's process group; nothing is recorded.
        _ = lost.cancelled() => {
            tracing::warn!(op = %id, env = %name,
                "lost the environment's lock: the script was stopped and nothing was recorded");
            Ok(())
        }
    };
    renew.abort();
    if !lost.is_cancelled() {
        if let Err(e) = deps
            .store
            .unlock_environment(repo, name, &fence.holder)
            .await
        {
            tracing::warn!(error = %e, "releasing an environment lock failed; its lease runs out");
        }
    }
    result
}

async fn run_locked(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    src: &RunSource,
    item: &Item,
    id: OperationId,
    fence: &Fence,
) -> Result<(), WorkError> {
    // Another delivery (or replica) may have run it while this one waited.
    let Some(rec) = runnable(deps, id).await? else {
        return Ok(());
    };
    let _slot = deps
        .runner_slots
        .acquire()
        .await
        .map_err(|_| WorkError::Internal("runner slots closed".into()))?;
    let op = &rec.op;
    announce(deps, gh, at, item, &rec).await?;

    let previous = deps.store.environment(&at.repo, &op.env_name).await?;
    // A deploy of a deleted environment starts its next generation (SPEC 12): nothing of
    // the last one (its `ADE_STORAGE`, its operations) carries over.
    let new_generation = op.kind.deploys()
        && previous
            .as_ref()
            .is_some_and(|p| p.state == EnvState::Deleted);
    let storage = if new_generation {
        None
    } else {
        deps.store
            .environment_storage(&at.repo, &op.env_name)
            .await
            .ok()
            .flatten()
    };
    let running = match op.kind {
        OpKind::Deploy | OpKind::Reconcile | OpKind::Adopt => EnvState::Provisioning,
        OpKind::Delete | OpKind::Expire => EnvState::Deleting,
        // A stop or start leaves the state as it was until it ends.
        OpKind::Stop | OpKind::Start => previous.as_ref().map_or(EnvState::Ready, |p| p.state),
    };
    // The deploy identity (and its token) before anything is marked running: a database
    // out of reach here is retried with the delivery, and nothing has started.
    let identity = if op.kind == OpKind::Adopt {
        Ok(None)
    } else {
        super::identity::prepare(deps, item, op, (rec.id.0, item.timeout), op.kind.as_str()).await?
    };
    let starting = EnvironmentUpdate {
        new_generation,
        ..EnvironmentUpdate::of(op, running, id)
    };
    if !deps.store.start_operation(id, fence, starting).await? {
        tracing::warn!(
            op = %id,
            "lost the environment's lock before the run started; nothing ran"
        );
        return Ok(());
    }

    let started = Instant::now();
    let result = if op.kind == OpKind::Adopt {
        Some(super::adopt::result(deps, op).await?)
    } else {
        run_definition(
            deps,
            src,
            item,
            &rec,
            (identity, storage),
            previous.as_ref(),
        )
        .await?
    };
    let (finish, storage) = finish_of(&rec, result);
    let succeeded = finish.state == OpState::Succeeded;
    // A delete that worked ends the generation: its `ADE_STORAGE` goes with it.
    let storage = match (op.kind.removes(), succeeded) {
        (true, true) => Some(Vec::new()),
        _ => storage,
    };
    deps.metrics.operation(
        op.kind.as_str(),
        if succeeded { "succeeded" } else { "failed" },
        started.elapsed(),
    );
    let ended = match (op.kind, succeeded) {
        (OpKind::Deploy | OpKind::Reconcile | OpKind::Start | OpKind::Adopt, true) => {
            EnvState::Ready
        }
        (OpKind::Delete | OpKind::Expire, true) => EnvState::Deleted,
        (OpKind::Stop, true) => EnvState::Stopped,
        (_, false) => EnvState::Failed,
    };
    let env = EnvironmentUpdate {
        parameters: (op.kind.deploys() && succeeded).then(|| op.parameters.clone()),
        outputs: match succeeded {
            true if op.kind.deploys() => Some(finish.outputs.clone()),
            true if op.kind.removes() => Some(serde_json::json!({})),
            _ => None,
        },
        ..EnvironmentUpdate::of(op, ended, id)
    };
    crate::chaos::point("result-write");
    if !deps
        .store
        .finish_operation(id, fence, finish, env, storage)
        .await?
    {
        tracing::warn!(op = %id,
            "the environment's lock changed hands while the script ran: its result was not recorded");
    }
    Ok(())
}

/// The operation, when it is still to run. One found running, yet whose lock was free for
/// this replica to take, belonged to a replica that stopped renewing its lease (it died, or
/// lost touch): it is marked interrupted (its own late result is fenced off) and `None` is
/// returned, as for any operation that already ended.
async fn runnable(deps: &Deps, id: OperationId) -> Result<Option<OperationRecord>, WorkError> {
    let rec = super::operation(deps, id).await?;
    if rec.state == OpState::Running {
        tracing::warn!(op = %id, "taking over an operation whose replica stopped");
        deps.store
            .update_operation(
                id,
                OperationUpdate::Finished {
                    state: OpState::Interrupted,
                    error: Some(
                        "interrupted: the replica running it stopped renewing its lock".into(),
                    ),
                    log: rec.log.clone(),
                    outputs: serde_json::json!({}),
                },
            )
            .await?;
        return Ok(None);
    }
    Ok((rec.state == OpState::Planned).then_some(rec))
}

/// The operation's GitHub deployment (made once) goes `in_progress`.
async fn announce(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    item: &Item,
    rec: &OperationRecord,
) -> Result<(), WorkError> {
    let id = rec.id;
    let deployment_id = match rec.deployment_id {
        Some(d) => d,
        None => {
            let d = ensure_deployment(deps, gh, at, item, rec).await?;
            crate::chaos::point("deployment");
            deps.store
                .update_operation(id, OperationUpdate::DeploymentCreated(d))
                .await?;
            d
        }
    };
    gh.create_deployment_status(
        &at.repo,
        deployment_id,
        &NewDeploymentStatus {
            state: "in_progress".into(),
            description: format!("{} running (run {id})", rec.op.kind.as_str()),
            log_url: Some(format!("{}/api/v1/operations/{id}", deps.public_url())),
            environment_url: None,
            auto_inactive: None,
        },
    )
    .await?;
    Ok(())
}

/// The definition folder at the merge commit (for a delete whose definition left the
/// catalog in the same merge: at the first parent), in a folder of its own. A fork's PR
/// never supplies code: its definitions come from the first parent only. `None`: the
/// folder exists at neither.
pub(crate) async fn export_definition(
    deps: &Deps,
    src: &RunSource,
    op: &crate::store::NewOperation,
    run_id: i64,
) -> Result<Option<PathBuf>, WorkError> {
    let def_dir = deps
        .config
        .data_dir
        .join("runs")
        .join(format!("def-{run_id}-{}", rand::random::<u32>()));
    let mirror_path = src.mirror_path.clone();
    let merged_at = op.merge_sha.clone();
    let commits = if src.from_fork {
        vec![src.first_parent.clone()]
    } else {
        vec![merged_at, src.first_parent.clone()]
    };
    let folder = format!("catalog/{}", op.definition);
    let dest = def_dir.clone();
    let found = crate::work::blocking(move || -> Result<bool, WorkError> {
        let mirror = Mirror::open_path(&mirror_path)?;
        for c in &commits {
            if mirror.export_dir(c, &folder, &dest)? {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await?;
    Ok(found.then_some(def_dir))
}

/// What the runner gets: the ADE contract's inputs, the variables the service config
/// allows, and every secret to redact (webhook secrets, the GitHub token, `pass_env`
/// and `[runner.env]` values, the previous run's sensitive outputs).
pub(crate) fn run_spec(
    deps: &Deps,
    item: &Item,
    (run_id, operation): (i64, Operation),
    definition_dir: PathBuf,
    previous: Option<&crate::store::EnvironmentRecord>,
    storage: Option<Vec<u8>>,
) -> RunSpec {
    let op = &item.op;
    let runner = &deps.config.runner;
    let mut secrets: Vec<String> = deps
        .config
        .webhook_secrets
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    if let Some(crate::config::GithubAuth::Token(t)) = &deps.config.auth {
        secrets.push(t.expose().to_string());
    }
    let mut env: Vec<(String, String)> = runner.vars.clone();
    for (k, v) in runner.pass_env.iter().chain(&runner.env) {
        env.push((k.clone(), v.expose().to_string()));
        secrets.push(v.expose().to_string());
    }
    if let Some(prev) = previous {
        secrets.extend(sensitive_values(&prev.outputs));
    }
    // Beside PAVED_RUN_ID: how the next start finds this run's processes should the
    // server die (`kill_orphan`), and only this instance's.
    env.push((
        "PAVED_INSTANCE".into(),
        crate::runner::instance_of(&deps.config.data_dir),
    ));
    RunSpec {
        run_id,
        operation,
        environment_name: op.env_name.to_string(),
        environment_type: op.env_type.clone(),
        team: op.team.to_string(),
        repository: op.repo.to_string(),
        commit: op.merge_sha.to_string(),
        definition_dir,
        runner: item.runner,
        template_path: item.template_path.clone(),
        terraform_binary: runner.terraform_binary.clone(),
        parameters: op.parameters.clone(),
        storage,
        timeout: item.timeout,
        output_limit: runner.output_limit,
        env,
        path: runner.path.clone(),
        secrets,
        work_root: crate::config::absolute(&runner.work_dir),
        sandbox: deps.sandbox.clone(),
        network: item.network,
        definition: op.definition.clone(),
        owner: op.owner.to_string(),
        identity: None,
        ade_program: ade_program(&deps.config),
        plan: None,
    }
}

/// The program runs find as `ade`: the configured one, else this executable when it is
/// Paved's own binary (a test harness's executable is not).
fn ade_program(config: &crate::config::Config) -> Option<PathBuf> {
    static OWN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    config.runner.ade_program.clone().or_else(|| {
        OWN.get_or_init(|| {
            std::env::current_exe()
                .ok()
                .filter(|p| p.file_name().is_some_and(|n| n == "paved"))
        })
        .clone()
    })
}

/// The script an operation runs: an expiry deletes, a reconcile deploys again.
fn script_of(kind: OpKind) -> Operation {
    match kind {
        OpKind::Deploy | OpKind::Reconcile | OpKind::Adopt => Operation::Deploy,
        OpKind::Delete | OpKind::Expire => Operation::Delete,
        OpKind::Stop => Operation::Stop,
        OpKind::Start => Operation::Start,
    }
}

/// The GitHub deployment of an operation, made once: when an earlier try asked for it
/// (a crash may have kept its id from being recorded) or its answer was lost, the
/// deployments are searched for this operation's run id before another is made.
async fn ensure_deployment(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    item: &Item,
    rec: &OperationRecord,
) -> Result<crate::ids::DeploymentId, WorkError> {
    let op = &rec.op;
    let id = rec.id;
    let find = || gh.find_deployment(&at.repo, op.merge_sha.as_str(), &op.env_name, id);
    if rec.reported & reported::DEPLOYMENT_REQUESTED != 0 {
        if let Some(d) = find().await? {
            return Ok(d);
        }
    }
    deps.store
        .update_operation(
            id,
            OperationUpdate::Reported(reported::DEPLOYMENT_REQUESTED),
        )
        .await?;
    let new = NewDeployment {
        git_ref: op.merge_sha.to_string(),
        task: op.kind.as_str().into(),
        environment: op.env_name.to_string(),
        description: format!(
            "{} {}/{} (run {id})",
            op.kind.as_str(),
            op.team,
            op.env_name
        ),
        payload: serde_json::json!({
            "paved": {"run": id.0, "environment": op.env_name,
                      "team": op.team, "operation": op.kind.as_str(),
                      "attempt": op.attempt}
        }),
        required_contexts: Vec::new(),
        auto_merge: false,
        transient_environment: false,
        production_environment: item.production,
    };
    match gh.create_deployment(&at.repo, &new).await {
        Ok(d) => Ok(d),
        Err(ForgeError::AnswerLost(_)) => match find().await? {
            Some(d) => Ok(d),
            None => Ok(gh.create_deployment(&at.repo, &new).await?),
        },
        Err(e) => Err(e.into()),
    }
}

/// Renews the environment's lock every third of the lease until aborted. Cancels `lost`
/// when the lock is found held by another, or when no renewal has succeeded for a whole
/// lease (the database unreachable: another replica may have taken it by now).
async fn keep_lock(
    store: Arc<dyn Store>,
    repo: RepoName,
    name: String,
    fence: Fence,
    ttl: Duration,
    lost: CancellationToken,
) {
    let mut confirmed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store
            .try_lock_environment(&repo, &name, &fence.holder, ttl)
            .await
        {
            Ok(Some(epoch)) if epoch == fence.epoch => confirmed = Instant::now(),
            Ok(_) => {
                tracing::warn!(env = %name, "the environment's lock is held by another replica now");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing an environment lock failed");
                if confirmed.elapsed() >= ttl {
                    tracing::warn!(env = %name, "no lock renewal for a whole lease: assuming it lost");
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// How the run ended, as recorded, and the `ADE_STORAGE` to keep (none when nothing ran).
fn finish_of(rec: &OperationRecord, result: Option<RunResult>) -> (Finish, Option<Vec<u8>>) {
    let Some(r) = result else {
        return (
            Finish {
                state: OpState::Failed,
                error: Some(format!(
                    "definition folder catalog/{} not found at the merge commit",
                    rec.op.definition
                )),
                log: String::new(),
                outputs: serde_json::json!({}),
            },
            None,
        );
    };
    let outputs = serde_json::to_value(&r.outputs).unwrap_or_else(|_| serde_json::json!({}));
    let (state, error) = match (&r.outcome, &r.outputs_error) {
        // `ade operation-result`: the script said it failed, and why (SPEC 13).
        (outcome, _) if r.operation_result.is_some() => {
            let (code, message) = r.operation_result.clone().unwrap_or_default();
            let reported = match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (true, false) => message,
                (false, true) => code,
                (true, true) => "the script reported a failure".to_string(),
            };
            let why = match outcome {
                RunOutcome::Succeeded => reported,
                other => format!("{}: {reported}", other.describe()),
            };
            (OpState::Failed, Some(why))
        }
        (RunOutcome::Succeeded, None) => (OpState::Succeeded, None),
        (RunOutcome::Succeeded, Some(e)) => {
            (OpState::Failed, Some(format!("bad ADE_OUTPUTS: {e}")))
        }
        (other, _) => {
            let mut why = other.describe();
            if let Some(last) = r.error_log.lines().rev().find(|l| !l.trim().is_empty()) {
                why = format!("{why}: {}", last.trim());
            }
            (OpState::Failed, Some(why))
        }
    };
    (
        Finish {
            state,
            error,
            log: r.log,
            outputs,
        },
        Some(r.storage),
    )
}

/// The values of the outputs marked sensitive (redacted from the next run's log).
fn sensitive_values(outputs: &serde_json::Value) -> Vec<String> {
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

/// Runs the operation's definition (exported at the merge) with its deploy identity and the
/// approved preview; `None`: the definition folder is not there.
async fn run_definition(
    deps: &Deps,
    src: &RunSource,
    item: &Item,
    rec: &OperationRecord,
    (identity, storage): (
        Result<Option<super::identity::Prepared>, String>,
        Option<Vec<u8>>,
    ),
    previous: Option<&crate::store::EnvironmentRecord>,
) -> Result<Option<RunResult>, WorkError> {
    let (op, id) = (&rec.op, rec.id);
    Ok(match export_definition(deps, src, op, rec.id.0).await? {
        Some(def_dir) => {
            let mut spec = run_spec(
                deps,
                item,
                (rec.id.0, script_of(op.kind)),
                def_dir.clone(),
                previous,
                storage,
            );
            // What is applied is what was previewed (SPEC 14).
            let approved = match &identity {
                Ok(_) => super::approved::give(deps, src, item, &mut spec, previous).await?,
                Err(_) => Ok(()),
            };
            let identity = identity.and_then(|p| approved.map(|()| p));
            let r = match identity {
                Ok(prepared) => {
                    if let Some(p) = prepared {
                        p.apply(&mut spec);
                    }
                    let store = deps.store.clone();
                    runner::run(spec, move |pid| async move {
                        if let Err(e) = store
                            .update_operation(id, OperationUpdate::Pid(i64::from(pid)))
                            .await
                        {
                            tracing::warn!(error = %e, "recording the script's pid failed");
                        }
                    })
                    .await
                }
                Err(why) => runner::not_run(why, spec.storage.unwrap_or_default()),
            };
            let _ = tokio::fs::remove_dir_all(&def_dir).await;
            Some(r)
        }
        None => None,
    })
}
