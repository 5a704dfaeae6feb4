//! What falls due for an environment (SPEC 11): its timers, worked out from its manifest on
//! the default branch, the service's `[lifecycle]` settings and the clock.
//!
//! - **expire** at `expiresAt`, and **warn** `lifecycle.warn_before` earlier; both carry
//!   the `expiresAt` they are for, so moving it (an extension) replaces them and setting
//!   them again for the same time changes nothing (a warning is never posted twice);
//! - **stop** and **start** at the schedule's next local times (`spec.schedule`), each
//!   carrying the local day it is for;
//! - **drift**: the next check, `lifecycle.drift_interval` from now, unless one is set.
//!
//! The merge handler sets an environment's timers after each merge that touches it; the
//! scheduler sets them for every live environment when it takes over (catching up with
//! anything set before), and runs them when they fall due.

use crate::config::LifecycleConfig;
use crate::ids::RepoName;
use crate::manifest::schedule::{self, Switch};
use crate::manifest::Manifest;
use crate::store::{Timer, TimerKind};
use chrono::{DateTime, Utc};

/// Milliseconds since the Unix epoch, the unit timers are kept in.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `expiresAt` as one canonical text (`2026-12-31T00:00:00Z`), so the same instant written
/// two ways is one cause.
pub fn canonical(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `expiresAt` of a manifest, when set and valid.
pub fn expires_at(m: &Manifest) -> Option<DateTime<Utc>> {
    m.spec
        .expires_at
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The cause of the drift timer: the interval, so a new interval resets it.
pub fn drift_cause(cfg: &LifecycleConfig) -> String {
    format!("every {}s", cfg.drift_interval.as_secs())
}

/// The timers a live environment with manifest `m` should have at `now`, and the kinds it
/// should not have (to clear).
pub fn timers_for(
    repo: &RepoName,
    m: &Manifest,
    cfg: &LifecycleConfig,
    now: DateTime<Utc>,
) -> (Vec<Timer>, Vec<TimerKind>) {
    let name = &m.metadata.name;
    let timer = |kind, due: DateTime<Utc>, cause: String| Timer {
        repo: repo.clone(),
        env_name: name.clone(),
        kind,
        due_at: Some(ms(due)),
        cause,
    };
    let mut set = Vec::new();
    let mut clear = Vec::new();
    match expires_at(m) {
        Some(exp) => {
            let cause = canonical(exp);
            set.push(timer(TimerKind::Expire, exp, cause.clone()));
            let warn = chrono::Duration::from_std(cfg.warn_before).unwrap_or_default();
            if warn > chrono::Duration::zero() {
                set.push(timer(TimerKind::Warn, exp - warn, cause));
            } else {
                clear.push(TimerKind::Warn);
            }
        }
        None => clear.extend([TimerKind::Expire, TimerKind::Warn]),
    }
    let plan = m
        .spec
        .schedule
        .as_ref()
        .and_then(|s| schedule::check(s).ok());
    for (kind, switch) in [
        (TimerKind::Stop, Switch::Stop),
        (TimerKind::Start, Switch::Start),
    ] {
        match plan.as_ref().and_then(|p| p.next(switch, now)) {
            Some((due, day)) => set.push(timer(kind, due, switch_cause(switch, day))),
            None => clear.push(kind),
        }
    }
    if cfg.drift_interval.is_zero() {
        clear.push(TimerKind::Drift);
    } else {
        let every = chrono::Duration::from_std(cfg.drift_interval).unwrap_or_default();
        set.push(timer(TimerKind::Drift, now + every, drift_cause(cfg)));
    }
    (set, clear)
}

/// The cause of a schedule's timer: which switch, on which local day.
pub fn switch_cause(switch: Switch, day: chrono::NaiveDate) -> String {
    match switch {
        Switch::Stop => format!("stop@{day}"),
        Switch::Start => format!("start@{day}"),
    }
}

/// Asks for a reconcile of `env` by `login` (SPEC 11): a timer due now, which the scheduler
/// runs as operation `reconcile`. Durable like every timer; asked twice before it runs, it
/// runs once, for the later asker.
pub async fn ask_reconcile(
    store: &dyn crate::store::Store,
    repo: &crate::ids::RepoName,
    env_name: &str,
    login: &str,
    now: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    store
        .set_timer(&Timer {
            repo: repo.clone(),
            env_name: env_name.to_string(),
            kind: TimerKind::Reconcile,
            due_at: Some(ms(now)),
            cause: format!("{}:{login}", ms(now)),
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        let text = format!(
            "apiVersion: paved/v1\nkind: Environment\nmetadata: {{name: web, team: payments}}\nspec:\n  type: dev\n  definition: static-site\n{extra}"
        );
        crate::manifest::environment::parse_manifest("environments/payments/web.yaml", &text)
            .expect("manifest")
            .manifest
    }

    #[test]
    fn expiry_schedule_and_drift_timers() {
        let repo = RepoName::parse("acme/envs").expect("repo");
        let now = DateTime::parse_from_rfc3339("2026-03-27T12:00:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let cfg = LifecycleConfig::default();
        let m = manifest(
            "  expiresAt: 2026-03-30T02:00:00+02:00\n  schedule: {stop: \"19:00\", start: \"08:00\", timeZone: Europe/Berlin, days: [mon, fri]}\n",
        );
        let (set, clear) = timers_for(&repo, &m, &cfg, now);
        assert!(clear.is_empty(), "{clear:?}");
        let by = |k| set.iter().find(|t| t.kind == k).expect("timer").clone();
        let expire = by(TimerKind::Expire);
        assert_eq!(
            expire.cause, "2026-03-30T00:00:00Z",
            "one text for one instant"
        );
        assert_eq!(
            by(TimerKind::Warn).due_at,
            Some(expire.due_at.expect("due") - 86_400_000)
        );
        assert_eq!(by(TimerKind::Stop).cause, "stop@2026-03-27");
        assert_eq!(by(TimerKind::Start).cause, "start@2026-03-30");
        assert_eq!(by(TimerKind::Drift).due_at, Some(ms(now) + 6 * 3_600_000));
        let off = LifecycleConfig {
            drift_interval: std::time::Duration::ZERO,
            ..LifecycleConfig::default()
        };
        let (set, clear) = timers_for(&repo, &manifest(""), &off, now);
        assert!(set.is_empty(), "{set:?}");
        assert_eq!(clear.len(), 5, "{clear:?}");
    }
}
