//! What the run benches share: a trivial definition, a runs folder, the sandbox `paved
//! serve` makes, the spec a merge would give the runner, and quantiles.
#![allow(dead_code)] // each bench uses a part of it

use paved::runner::{Bubblewrap, Operation, RunSpec, RunnerKind, Sandbox};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A folder with a `deploy.sh` that exits 0, and a runs folder the runner's user reaches.
pub struct Bench {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub definition: PathBuf,
    pub work: PathBuf,
    /// bubblewrap as `nobody`, tried once.
    pub sandboxed: Sandbox,
}

impl Bench {
    pub fn new() -> anyhow::Result<Bench> {
        let tmp = tempfile::tempdir()?;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
        let definition = tmp.path().join("definition");
        std::fs::create_dir(&definition)?;
        let script = definition.join("deploy.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n")?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        let work = tmp.path().join("runs");
        std::fs::create_dir(&work)?;
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o711))?;
        let bwrap = Bubblewrap::resolve("bwrap", "/usr/bin:/bin", "nobody", vec![], vec![])
            .map_err(anyhow::Error::msg)?;
        bwrap.probe(&work).map_err(anyhow::Error::msg)?;
        Ok(Bench {
            root: tmp.path().to_path_buf(),
            _tmp: tmp,
            definition,
            work,
            sandboxed: Sandbox::Bubblewrap(std::sync::Arc::new(bwrap)),
        })
    }

    /// The spec of run `run_id` of the trivial definition, in `sandbox`.
    pub fn spec(&self, sandbox: Sandbox, run_id: i64) -> RunSpec {
        spec(&self.definition, &self.work, sandbox, run_id)
    }
}

fn spec(def: &Path, work: &Path, sandbox: Sandbox, run_id: i64) -> RunSpec {
    RunSpec {
        run_id,
        operation: Operation::Deploy,
        environment_name: "bench".into(),
        environment_type: "dev".into(),
        team: "bench".into(),
        repository: "acme/envs".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        definition_dir: def.to_path_buf(),
        runner: RunnerKind::Command,
        template_path: None,
        terraform_binary: None,
        parameters: serde_json::json!({}),
        storage: None,
        timeout: Duration::from_secs(60),
        output_limit: 1 << 20,
        env: vec![],
        path: "/usr/local/bin:/usr/bin:/bin".into(),
        secrets: vec![],
        work_root: work.to_path_buf(),
        sandbox,
        network: true,
        definition: "def".into(),
        owner: "alice".into(),
        identity: None,
        ade_program: None,
        plan: None,
    }
}

/// The `q` quantile of sorted durations.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Which of two kinds run `i` of an alternating series is: the order flips every pair, so
/// neither always runs on a warmer machine.
pub fn kind_of(i: usize) -> usize {
    (i + i / 2) % 2
}

/// `PAVED_BENCH_RUNS`-style settings: the variable's number, else `default`.
pub fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `spec` and adds the time since `start` (what preparing the spec took included) to
/// `times`; an error when the run failed.
pub async fn timed_run(
    spec: paved::runner::RunSpec,
    start: std::time::Instant,
    times: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    let r = paved::runner::run(spec, |_| async {}).await;
    let took = start.elapsed();
    anyhow::ensure!(
        r.outcome.is_success(),
        "run failed: {:?}\n{}",
        r.outcome,
        r.log
    );
    times.push(took);
    Ok(())
}

/// Prints the median and p90 of each kind and what the second adds to the first (medians,
/// and as a ratio).
pub fn compare(names: [&str; 2], times: &mut [Vec<Duration>; 2], what: &str, target: &str) {
    for t in times.iter_mut() {
        t.sort();
    }
    for (name, t) in names.iter().zip(times.iter()) {
        println!(
            "{name:<22} median {:7.2} ms   p90 {:7.2} ms",
            ms(quantile(t, 0.5)),
            ms(quantile(t, 0.9))
        );
    }
    let (a, b) = (ms(quantile(&times[0], 0.5)), ms(quantile(&times[1], 0.5)));
    println!(
        "added by {what} (medians): {:.3} ms, {:.3}x  (target: {target})",
        b - a,
        b / a
    );
}
