//! `[lifecycle]`: expiry warnings, drift checks and the scheduler (SPEC 11).

use super::{duration, ConfigError, Env};
use crate::clock::Clock;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLifecycle {
    warn_before: Option<String>,
    drift_interval: Option<String>,
    drift_concurrency: Option<usize>,
    tick: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// How long before `expiresAt` the owner is warned (`warn_before`, default 24h).
    pub warn_before: Duration,
    /// How often each live environment is checked for drift (`drift_interval`, default 6h;
    /// `0` turns drift checks off).
    pub drift_interval: Duration,
    /// Drift checks running at once (`drift_concurrency`, default 4).
    pub drift_concurrency: usize,
    /// How often the scheduler looks for timers that fell due (`tick`, default 30s), and
    /// how long its lease lasts without renewal (three ticks).
    pub tick: Duration,
    /// The time timers fall due by: the system's, or one a test moves.
    pub clock: Clock,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            warn_before: Duration::from_secs(24 * 3600),
            drift_interval: Duration::from_secs(6 * 3600),
            drift_concurrency: 4,
            tick: Duration::from_secs(30),
            clock: Clock::system(),
        }
    }
}

/// A duration where `0` means "off".
fn duration_or_off(what: &str, v: &str) -> Result<Duration, ConfigError> {
    if v.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    duration(what, v)
}

/// `[lifecycle]`, each key replaced by its variable when set (`PAVED_LIFECYCLE_WARN_BEFORE`,
/// `PAVED_LIFECYCLE_DRIFT_INTERVAL`, `PAVED_LIFECYCLE_DRIFT_CONCURRENCY`,
/// `PAVED_LIFECYCLE_TICK`).
pub(super) fn load_lifecycle(
    mut file: FileLifecycle,
    env: Env,
) -> Result<LifecycleConfig, ConfigError> {
    for (var, slot) in [
        ("PAVED_LIFECYCLE_WARN_BEFORE", &mut file.warn_before),
        ("PAVED_LIFECYCLE_DRIFT_INTERVAL", &mut file.drift_interval),
        ("PAVED_LIFECYCLE_TICK", &mut file.tick),
    ] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            *slot = Some(v);
        }
    }
    let mut l = LifecycleConfig::default();
    if let Some(v) = &file.warn_before {
        l.warn_before = duration_or_off("lifecycle.warn_before", v)?;
    }
    if let Some(v) = &file.drift_interval {
        l.drift_interval = duration_or_off("lifecycle.drift_interval", v)?;
    }
    if let Some(v) = env("PAVED_LIFECYCLE_DRIFT_CONCURRENCY") {
        file.drift_concurrency = Some(v.trim().parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "PAVED_LIFECYCLE_DRIFT_CONCURRENCY: not a number: {v}"
            ))
        })?);
    }
    if let Some(n) = file.drift_concurrency {
        if n == 0 {
            return Err(ConfigError::Invalid(
                "lifecycle.drift_concurrency must be at least 1".into(),
            ));
        }
        l.drift_concurrency = n;
    }
    if let Some(v) = &file.tick {
        l.tick = duration("lifecycle.tick", v)?;
        if l.tick < Duration::from_secs(1) {
            return Err(ConfigError::Invalid(
                "lifecycle.tick must be at least 1s".into(),
            ));
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, vars: &[(&str, &str)]) -> Result<LifecycleConfig, ConfigError> {
        let file: FileLifecycle = toml::from_str(toml_text).expect("toml");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        load_lifecycle(file, &env)
    }

    #[test]
    fn defaults_file_variables_and_off() {
        let d = load("", &[]).expect("defaults");
        assert_eq!(d.warn_before, Duration::from_secs(86_400));
        assert_eq!(d.drift_interval, Duration::from_secs(6 * 3600));
        let l = load(
            "warn_before = \"2h\"\ndrift_interval = \"0\"\ntick = \"5s\"",
            &[("PAVED_LIFECYCLE_WARN_BEFORE", "30m")],
        )
        .expect("valid");
        assert_eq!(
            l.warn_before,
            Duration::from_secs(1800),
            "the variable wins"
        );
        assert_eq!(l.drift_interval, Duration::ZERO, "0 turns drift checks off");
        assert_eq!(l.tick, Duration::from_secs(5));
        let e = load("tick = \"10ms\"", &[]).expect_err("too short");
        assert!(e.to_string().contains("lifecycle.tick"), "{e}");
        let e = load("drift_interval = \"often\"", &[]).expect_err("bad");
        assert!(e.to_string().contains("lifecycle.drift_interval"), "{e}");
        assert!(
            toml::from_str::<FileLifecycle>("warn = \"1h\"").is_err(),
            "unknown key"
        );
    }
}
