//! The sandbox's cost per run (SPEC 12): a trivial `deploy.sh` (`exit 0`) run through
//! `paved::runner::run`, as a merge runs it, with the sandbox `paved serve` makes
//! (bubblewrap as `nobody`) and with `runner.sandbox = "none"`, alternating so both see the
//! same machine. It prints each one's median and p90 and the difference of the medians:
//! the target is at most 10 ms more with the sandbox.
//!
//! Run with `cargo bench --bench sandbox`; `PAVED_BENCH_RUNS` (default 200) sets the runs
//! of each kind.

#[path = "support/runs.rs"]
mod runs;

use paved::runner::Sandbox;
use runs::{compare, kind_of, setting, timed_run, Bench};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = setting("PAVED_BENCH_RUNS", 200);
    let bench = Bench::new()?;
    let sandboxed = bench.sandboxed.clone();

    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs * 2 {
        let kind = kind_of(i);
        let sandbox = if kind == 0 {
            Sandbox::None
        } else {
            sandboxed.clone()
        };
        timed_run(
            bench.spec(sandbox, i as i64 + 1),
            Instant::now(),
            &mut times[kind],
        )
        .await?;
    }
    println!("runs of each kind: {runs}");
    compare(
        ["sandbox none:", "sandbox bubblewrap:"],
        &mut times,
        "the sandbox",
        "at most 10 ms",
    );
    Ok(())
}
