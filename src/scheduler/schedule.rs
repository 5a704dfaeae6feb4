//! Schedules (SPEC 11): at the schedule's stop time the definition's `stop.sh` runs
//! (operation `stop`), at its start time `start.sh` (operation `start`), each audited like
//! any operation. After a downtime only the latest missed switch runs, once.

use super::jobs::Snapshot;
use crate::manifest::schedule::{self, Switch};
use crate::store::{EnvState, EnvironmentRecord, OpKind, Timer, TimerKind};
use crate::work::{Deps, WorkError};
use chrono::{DateTime, Utc};

/// Runs the switch the timer is for, when the environment is in the state it applies to and
/// the definition has the script; returns the next timer of the same kind.
pub(super) async fn switch(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    timer: &Timer,
    now: DateTime<Utc>,
) -> Result<Option<(i64, String)>, WorkError> {
    let (switch, kind, script, from) = match timer.kind {
        TimerKind::Stop => (Switch::Stop, OpKind::Stop, "stop", EnvState::Ready),
        _ => (Switch::Start, OpKind::Start, "start", EnvState::Stopped),
    };
    let Some(plan) = snap
        .manifest
        .as_ref()
        .and_then(|m| m.spec.schedule.as_ref())
        .and_then(|s| schedule::check(s).ok())
    else {
        return Ok(None);
    };
    if env.state != from {
        tracing::info!(env = %env.name, state = env.state.as_str(), op = script,
            "the schedule's switch does not apply in this state; skipped");
    } else if !snap.scripts.contains(script) {
        tracing::warn!(env = %env.name, definition = %env.definition,
            "the environment has a schedule but its definition has no {script}.sh; nothing ran");
    } else {
        let item = snap.item(env, kind, timer.cause.clone(), "paved", None);
        snap.run(deps, item).await?;
    }
    let after = timer
        .due_at
        .and_then(DateTime::from_timestamp_millis)
        .map_or(now, |due| due.max(now));
    Ok(plan.next(switch, after).map(|(at, day)| {
        (
            at.timestamp_millis(),
            crate::timers::switch_cause(switch, day),
        )
    }))
}
