//! What a preview adds to a pull request's checks (SPEC 14): for a PR touching 1 and 20
//! environments of a definition whose `plan.sh` is a no-op, the time from the webhook's 202
//! to the other checks posted, and to `paved/plan` posted, at the GitHub emulator. Run with
//! `cargo bench --bench preview`.
//!
//! Everything is real but GitHub: the service (SQLite file, HTTP on loopback), the Git
//! repository it fetches from (file://), the previews run in the sandbox (bubblewrap as
//! `nobody`, as `paved serve` runs them), up to `runner.concurrency` (4) at a time.
//!
//! The baseline measured in the same run: as many trivial sandboxed runs as previews,
//! straight through `paved::runner::run`, 4 at a time: what the runs alone cost on this
//! machine, which no preview can be faster than (one sandbox per environment).

#[path = "support/setup.rs"]
mod setup;
use setup::SECRET;

#[path = "support/runs.rs"]
mod runs;

use chrono::{DateTime, Utc};
use github_emulator::Emulator;
use paved::ids::RepoName;
use paved_testkit::{self as testkit, FileChange, GitRemote};
use std::time::Duration;

const TEAM: &str = "bench";
const RUNS: usize = 30;
const PLAN: &str = "paved/plan";
/// Posted after the previews too (it depends on them): not one of "the other checks".
const APPROVAL: &str = "paved/approval";

/// A static-site manifest (the example definition), expiring in two days.
fn manifest(name: &str) -> String {
    let expires = (Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: {name}\n  team: {TEAM}\n  \
         owner: octocat\nspec:\n  type: dev\n  definition: static-site\n  expiresAt: {expires}\n  \
         tags:\n    cost-center: cc-1234\n"
    )
}

/// The example repository, with a team that has room, and a `plan.sh` that changes nothing.
fn base_files() -> anyhow::Result<Vec<FileChange>> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut platform = std::fs::read_to_string(examples.join(".paved/platform.yaml"))?;
    platform = platform.replacen(
        "teams:\n",
        &format!(
            "teams:\n  {TEAM}:\n    members: [octocat]\n    quota:\n      environments: 100000\n"
        ),
        1,
    );
    let mut files: Vec<FileChange> = GitRemote::files_of(&examples)?
        .into_iter()
        .filter(|(p, _)| !p.starts_with("environments/") && p != "catalog/static-site/plan.sh")
        .collect();
    files.push((".paved/platform.yaml".into(), Some(platform.into_bytes())));
    files.push((
        "catalog/static-site/plan.sh".into(),
        Some(b"#!/bin/sh\nexit 0\n".to_vec()),
    ));
    Ok(files)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn since(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

/// Per PR: (202 → the last of the other checks, 202 → `paved/plan`), from the times the
/// emulator received the statuses.
async fn measure(touched: usize) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let tmp = tempfile::tempdir()?;
    let github = Emulator::start().await?;
    let repo = RepoName::parse("bench/environments")?;
    let remote = GitRemote::create(&tmp.path().join("git"), &repo)?;
    let base = remote.commit("refs/heads/main", None, &base_files()?, "base")?;
    let data = tmp.path().join("data");
    let service = paved::service::start(setup::config(
        github.url(),
        remote.clone_url_template(),
        &data,
        "bench/environments",
    ))
    .await?;
    let client = reqwest::Client::new();
    let (mut others, mut plans) = (Vec::new(), Vec::new());
    // Run 0 warms the mirror (first clone) and the governance cache; it is not counted.
    for run in 0..=RUNS {
        let number = 1000 + run as u64;
        let changes: Vec<FileChange> = (0..touched)
            .map(|i| {
                let name = format!("r{run:03}-e{i:02}");
                (
                    format!("environments/{TEAM}/{name}.yaml"),
                    Some(manifest(&name).into_bytes()),
                )
            })
            .collect();
        let spec = remote.open_pull(number, &base, &base, &changes, "add")?;
        let head = spec.head_sha.to_string();
        github.set_pull(&repo.to_string(), number, testkit::pull_json(&spec)?);
        let body = testkit::pull_request_payload(&spec)?;
        let status = testkit::post_webhook(
            &client,
            &service.url(),
            "pull_request",
            &format!("preview-{touched}-{run}"),
            SECRET,
            body,
        )
        .await?;
        anyhow::ensure!(status == 202, "webhook answered {status}");
        let acked = Utc::now();
        let r = repo.to_string();
        let sha = head.clone();
        github
            .wait_until(Duration::from_secs(120), "paved/plan", move |gh| {
                gh.latest_statuses(&r, &sha)
                    .get(PLAN)
                    .is_some_and(|s| s.state != "pending")
            })
            .await?;
        // Every status this PR's head received, in the order the emulator received them.
        let all = github.statuses(&repo.to_string(), &head);
        let plan = all
            .iter()
            .filter(|s| s.context == PLAN && s.state != "pending")
            .map(|s| s.created_at)
            .min()
            .ok_or_else(|| anyhow::anyhow!("no {PLAN} status"))?;
        let other = all
            .iter()
            .filter(|s| s.context != PLAN && s.context != APPROVAL && s.state != "pending")
            .map(|s| s.created_at)
            .max()
            .ok_or_else(|| anyhow::anyhow!("no other check posted"))?;
        let latest = github.latest_statuses(&repo.to_string(), &head);
        anyhow::ensure!(
            latest[PLAN].state == "success",
            "the preview failed in the benchmark: {:?}",
            latest[PLAN]
        );
        if run > 0 {
            others.push(since(acked, other));
            plans.push(since(acked, plan));
        }
    }
    anyhow::ensure!(github.rejected().is_empty(), "emulator rejected requests");
    service.shutdown().await?;
    others.sort();
    plans.sort();
    Ok((others, plans))
}

/// `n` trivial sandboxed runs through the runner, 4 at a time, `RUNS` times: each time taken.
async fn floor(bench: &runs::Bench, n: usize) -> anyhow::Result<Vec<Duration>> {
    use futures::StreamExt;
    let mut times = Vec::new();
    let mut id = 0i64;
    for _ in 0..RUNS {
        let start = std::time::Instant::now();
        let specs: Vec<_> = (0..n)
            .map(|_| {
                id += 1;
                bench.spec(bench.sandboxed.clone(), id)
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(specs)
            .map(|spec| paved::runner::run(spec, |_| async {}))
            .buffer_unordered(4)
            .collect()
            .await;
        times.push(start.elapsed());
        for r in results {
            anyhow::ensure!(r.outcome.is_success(), "run failed: {:?}", r.outcome);
        }
    }
    times.sort();
    Ok(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("preview: bench");
        return Ok(());
    }
    if std::env::var_os("PAVED_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("PAVED_LOG"))
            .init();
    }
    println!(
        "PR → the other checks vs PR → {PLAN} (no-op plan.sh, sandboxed), {RUNS} PRs each, p50;"
    );
    println!("baseline: as many trivial sandboxed runs as previews, 4 at a time, p50");
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>10} {:>14}",
        "touched", "other checks", PLAN, "added", "baseline", "added-baseline"
    );
    let bench = runs::Bench::new()?;
    for touched in [1usize, 20] {
        let (others, plans) = measure(touched).await?;
        let base = percentile(&floor(&bench, touched).await?, 0.5);
        let (o, p) = (percentile(&others, 0.5), percentile(&plans, 0.5));
        let added = p.saturating_sub(o);
        println!(
            "{:>8} {:>12.1?} {:>12.1?} {:>10.1?} {:>10.1?} {:>14.1?}",
            touched,
            o,
            p,
            added,
            base,
            added.saturating_sub(base)
        );
    }
    println!(
        "target: {PLAN} at most 50 ms after the other checks (p50), for 1 and 20 environments"
    );
    Ok(())
}
