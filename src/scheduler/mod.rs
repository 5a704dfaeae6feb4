//! The scheduler (SPEC 11): runs what falls due by the lifecycle's clock — expiry warnings
//! and expiries, a schedule's stops and starts, drift checks, reconciles asked for.
//!
//! - **Durable.** Timers live in the store ([`crate::store::LifecycleStore`]), set by each
//!   merge ([`crate::timers`]) and by the scheduler itself; nothing is kept in memory,
//!   so a deadline passed while every replica was down is found at the next start and acted
//!   on once.
//! - **One replica at a time.** It runs only while it holds the scheduler's lease (three
//!   ticks long, renewed while a tick runs); another replica takes over when the holder
//!   stops renewing it.
//! - **Exactly once.** Every job is an operation keyed by its cause (`expire@<expiresAt>`,
//!   `stop@<day>`), run under the environment's lock and fenced like a merge's: a job
//!   repeated after a crash or a handover finds the one recorded and runs nothing more.
//! - **Git says what.** A timer says when; the manifest on the default branch's tip, read
//!   fresh, says whether it still holds (an extension merged meanwhile moves the expiry, and
//!   the old timer is set again from it instead of firing).

mod drift;
mod expiry;
mod jobs;
mod schedule;

use crate::store::{EnvironmentRecord, OpState, Timer, TimerKind};
use crate::timers;
use crate::work::{Deps, WorkError};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use drift::state_of as drift_state_of;

/// Timers read per tick; more wait for the next one.
const BATCH: u32 = 1000;

/// Runs the scheduler until `stop`: takes (or renews) the lease each tick, catches up when
/// it becomes the holder, then runs what is due. `wake` makes it look at once (a reconcile
/// asked for through this replica's API); so does every move of a manual clock.
pub async fn run(deps: Arc<Deps>, wake: Arc<Notify>, stop: CancellationToken) {
    let cfg = deps.config.lifecycle.clone();
    let ttl = cfg.tick * 3;
    let holder = format!("{}:scheduler", deps.instance);
    let mut moves = cfg.clock.moves();
    let mut leading = false;
    loop {
        match deps.store.try_scheduler_lease(&holder, ttl).await {
            Ok(Some(_)) => {
                if !leading {
                    tracing::info!("this replica runs the scheduler");
                    leading = true;
                    if let Err(e) = catch_up(&deps).await {
                        tracing::warn!(error = %e, "scheduler: catching up failed; the next tick tries again");
                        leading = false;
                    }
                }
                if leading {
                    // Aborted when the tick ends, or when this task is dropped mid-tick.
                    let _renew =
                        AbortOnDrop(tokio::spawn(keep_lease(deps.clone(), holder.clone(), ttl)));
                    if let Err(e) = tick(&deps).await {
                        tracing::warn!(error = %e, "scheduler: a tick failed");
                    }
                }
            }
            Ok(None) => {
                if leading {
                    tracing::info!("another replica runs the scheduler now");
                }
                leading = false;
            }
            Err(e) => tracing::warn!(error = %e, "scheduler: the lease could not be read"),
        }
        deps.metrics.set_scheduler_leading(leading);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(cfg.tick) => {}
            _ = wake.notified() => {}
            _ = clock_moved(&mut moves) => {}
        }
    }
    deps.metrics.set_scheduler_leading(false);
    if leading {
        if let Err(e) = deps.store.release_scheduler_lease(&holder).await {
            tracing::warn!(error = %e, "scheduler: releasing the lease failed; it runs out");
        }
    }
}

/// A task that ends with its handle.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when a manual clock moves; never for the system clock.
async fn clock_moved(moves: &mut Option<tokio::sync::watch::Receiver<DateTime<Utc>>>) {
    match moves {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Renews the lease every third of it while a tick runs.
async fn keep_lease(deps: Arc<Deps>, holder: String, ttl: std::time::Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match deps.store.try_scheduler_lease(&holder, ttl).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!("scheduler: the lease went to another replica during a tick");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "scheduler: renewing the lease failed"),
        }
    }
}

/// Sets the timers of every live environment from its manifest as governed:
/// those set before this version, or by a merge whose timers were lost, are there now.
/// Timers already set for the same cause are left as they are. A repository that cannot be
/// read now is logged and left for the next takeover: it must not hold up the others.
async fn catch_up(deps: &Deps) -> Result<(), WorkError> {
    for known in deps.store.repositories().await? {
        if let Err(e) = catch_up_repo(deps, &known).await {
            tracing::warn!(repo = %known.repo, error = %e,
                "scheduler: this repository's timers could not be caught up; its timers already set still run");
        }
    }
    Ok(())
}

async fn catch_up_repo(
    deps: &Deps,
    known: &crate::store::KnownRepository,
) -> Result<(), WorkError> {
    let live: Vec<EnvironmentRecord> = deps
        .store
        .environments(Some(&known.repo))
        .await?
        .into_iter()
        .filter(|e| e.state.is_live())
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    // Each one's manifest as governed (SPEC 12), not as the tip has it.
    let mut paths: Vec<(String, String, Option<crate::ids::CommitSha>)> = Vec::new();
    for e in &live {
        let at = jobs::governed_commits(deps.store.as_ref(), e)
            .await?
            .map(|(at, _)| at);
        paths.push((
            e.name.to_string(),
            format!("environments/{}/{}.yaml", e.team, e.name),
            at,
        ));
    }
    let manifests = deps
        .repos
        .with_branch(
            &known.repo,
            &known.clone_url,
            known.installation,
            &known.default_branch,
            move |mirror, tip| -> Result<Vec<_>, WorkError> {
                let mut out = Vec::new();
                for (name, path, at) in paths {
                    let tree = mirror.tree_at(at.as_ref().unwrap_or(tip))?;
                    let m = crate::manifest::read_text(&tree, &path)
                        .ok()
                        .flatten()
                        .and_then(|t| crate::manifest::environment::parse_manifest(&path, &t).ok())
                        .map(|m| m.manifest);
                    out.push((name, m));
                }
                Ok(out)
            },
        )
        .await?;
    for (name, m) in manifests {
        // A live environment without a manifest waits for its delete to merge.
        if let Some(m) = m {
            crate::work::set_timers(deps, &known.repo, &name, Some(&m)).await?;
        }
    }
    Ok(())
}

/// Runs every timer due now, each environment's in order (warning before expiry), up to
/// `lifecycle.drift_concurrency` environments at once.
pub async fn tick(deps: &Deps) -> Result<usize, WorkError> {
    let now = deps.config.lifecycle.clock.now();
    let due = deps.store.due_timers(timers::ms(now), BATCH).await?;
    let n = due.len();
    let mut by_env: BTreeMap<(String, String), Vec<Timer>> = BTreeMap::new();
    for t in due {
        by_env
            .entry((t.repo.to_string(), t.env_name.clone()))
            .or_default()
            .push(t);
    }
    futures::stream::iter(by_env.into_values())
        .for_each_concurrent(
            deps.config.lifecycle.drift_concurrency,
            |mut timers| async move {
                timers.sort_by_key(|t| t.kind);
                if let Err(e) = run_env(deps, &timers, now).await {
                    tracing::warn!(error = %e, env = %timers[0].env_name,
                    "scheduler: a job failed; it is tried again at the next tick");
                }
            },
        )
        .await;
    Ok(n)
}

/// One environment's due timers, read against its manifest as governed.
async fn run_env(deps: &Deps, timers: &[Timer], now: DateTime<Utc>) -> Result<(), WorkError> {
    let first = &timers[0];
    let repo = &first.repo;
    let env = match deps.store.environment(repo, &first.env_name).await? {
        Some(e) if e.state.is_live() => e,
        _ => {
            deps.store.clear_timers(repo, &first.env_name, &[]).await?;
            return Ok(());
        }
    };
    let Some(known) = deps.store.repository(repo).await? else {
        tracing::warn!(%repo, "scheduler: a timer of a repository Paved knows nothing of");
        return Ok(());
    };
    let snap = jobs::snapshot(deps, &known, &env).await?;
    let Some(manifest) = snap.manifest.clone() else {
        // Gone from the default branch: its delete runs when that merge is handled.
        deps.store.clear_timers(repo, &env.name, &[]).await?;
        return Ok(());
    };
    let expires = timers::expires_at(&manifest).map(timers::canonical);
    let mut env = env;
    for t in timers {
        let current = |cause: &str| expires.as_deref() == Some(cause);
        match t.kind {
            TimerKind::Warn | TimerKind::Expire if !current(&t.cause) => {
                // expiresAt moved since this timer was set: set again from the manifest.
                crate::work::set_timers(deps, repo, &env.name, Some(&manifest)).await?;
            }
            TimerKind::Warn => {
                // Past expiresAt already (a downtime): the expiry itself says it all.
                let expired = timers::expires_at(&manifest).is_some_and(|e| e <= now);
                if !expired {
                    expiry::warn(deps, &snap, &env, t).await?;
                }
                deps.store.fired_timer(t, None).await?;
            }
            TimerKind::Expire => {
                let state = expiry::expire(deps, &snap, &env, t).await?;
                deps.store.fired_timer(t, None).await?;
                if state == OpState::Succeeded {
                    deps.store.clear_timers(repo, &env.name, &[]).await?;
                    return Ok(());
                }
            }
            TimerKind::Stop | TimerKind::Start => {
                let next = schedule::switch(deps, &snap, &env, t, now).await?;
                deps.store.fired_timer(t, next).await?;
            }
            TimerKind::Drift => {
                let checked = drift::check(deps, &snap, &env, now).await?;
                let wait = if checked {
                    deps.config.lifecycle.drift_interval
                } else {
                    deps.config.lifecycle.tick
                };
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                deps.store
                    .fired_timer(t, Some((timers::ms(next), t.cause.clone())))
                    .await?;
            }
            TimerKind::Reconcile => {
                reconcile(deps, &snap, &env, t, now).await?;
            }
        }
        if let Some(e) = deps.store.environment(repo, &env.name).await? {
            env = e;
        }
    }
    Ok(())
}

/// `deploy` again with the last parameters, for whom the timer's cause names; then a drift
/// check right away, so the drift issue closes when it worked.
async fn reconcile(
    deps: &Deps,
    snap: &jobs::Snapshot,
    env: &EnvironmentRecord,
    t: &Timer,
    now: DateTime<Utc>,
) -> Result<(), WorkError> {
    let requester = t.cause.split_once(':').map_or("paved", |(_, who)| who);
    let pr = jobs::last_pull_request(deps.store.as_ref(), snap, env).await?;
    let item = snap.item(
        env,
        crate::store::OpKind::Reconcile,
        format!("reconcile@{}", t.cause),
        requester,
        pr,
    );
    let done = snap.run(deps, item).await?;
    deps.store
        .clear_timers(&t.repo, &env.name, &[TimerKind::Reconcile])
        .await?;
    if done.state == OpState::Succeeded && !deps.config.lifecycle.drift_interval.is_zero() {
        let cause = timers::drift_cause(&deps.config.lifecycle);
        let drift = Timer {
            kind: TimerKind::Drift,
            cause: cause.clone(),
            ..t.clone()
        };
        deps.store
            .fired_timer(&drift, Some((timers::ms(now), cause)))
            .await?;
    }
    Ok(())
}
