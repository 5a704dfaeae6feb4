//! The sandbox's cost per run (SPEC 12): a trivial `deploy.sh` (`exit 0`) run through
//! `paved::runner::run`, as a merge runs it, with the sandbox `paved serve` makes
//! (bubblewrap as `nobody`) and with `runner.sandbox = "none"`, alternating so both see the
//! same machine. It prints each one's median and p90 and the difference of the medians:
//! the target is at most 10 ms more with the sandbox.
//!
//! Run with `cargo bench --bench sandbox`; `PAVED_BENCH_RUNS` (default 200) sets the runs
//! of each kind.

use paved::runner::{self, Bubblewrap, Operation, RunSpec, RunnerKind, Sandbox};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

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
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("PAVED_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711))?;
    let def = tmp.path().join("definition");
    std::fs::create_dir(&def)?;
    let script = def.join("deploy.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let work = tmp.path().join("runs");
    std::fs::create_dir(&work)?;
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o711))?;
    let bwrap = Bubblewrap::resolve("bwrap", "/usr/bin:/bin", "nobody", vec![], vec![])
        .map_err(anyhow::Error::msg)?;
    bwrap.probe(&work).map_err(anyhow::Error::msg)?;
    let sandboxed = Sandbox::Bubblewrap(std::sync::Arc::new(bwrap));

    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs * 2 {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let kind = (i + i / 2) % 2;
        let sandbox = if kind == 0 {
            Sandbox::None
        } else {
            sandboxed.clone()
        };
        let s = spec(&def, &work, sandbox, i as i64 + 1);
        let start = Instant::now();
        let r = runner::run(s, |_| async {}).await;
        let took = start.elapsed();
        anyhow::ensure!(
            r.outcome.is_success(),
            "run failed: {:?}\n{}",
            r.outcome,
            r.log
        );
        times[kind].push(took);
    }
    for t in times.iter_mut() {
        t.sort();
    }
    let (none, bw) = (&times[0], &times[1]);
    println!("runs of each kind: {runs}");
    println!(
        "sandbox none:       median {:7.2} ms   p90 {:7.2} ms",
        ms(quantile(none, 0.5)),
        ms(quantile(none, 0.9))
    );
    println!(
        "sandbox bubblewrap: median {:7.2} ms   p90 {:7.2} ms",
        ms(quantile(bw, 0.5)),
        ms(quantile(bw, 0.9))
    );
    let added = ms(quantile(bw, 0.5)) - ms(quantile(none, 0.5));
    println!(
        "added by the sandbox (medians): {added:.2} ms, {:.2}x  (target: at most 10 ms)",
        ms(quantile(bw, 0.5)) / ms(quantile(none, 0.5))
    );
    Ok(())
}
