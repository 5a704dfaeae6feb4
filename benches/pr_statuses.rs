//! PR to statuses: time from the webhook's 202 to the last commit status received by the
//! GitHub emulator, for a PR adding one manifest to a repository holding 100 and 10,000
//! manifests. Run with `cargo bench --bench pr_statuses`.
//!
//! Everything is real but GitHub: the service (SQLite file, HTTP on loopback), the Git
//! repository it fetches from (file://), policies compiled by regorus.

#[path = "support/setup.rs"]
mod setup;
use setup::SECRET;

use github_emulator::Emulator;
use paved::ids::RepoName;
use paved_testkit::{self as testkit, FileChange, GitRemote};
use std::time::{Duration, Instant};

const TEAMS: usize = 50;
const RUNS: usize = 40;

fn manifest(name: &str, team: &str) -> String {
    testkit::manifest(name, team, "small")
}

/// platform.yaml of the examples with `TEAMS` more teams, each with room for many environments.
fn platform(examples: &std::path::Path) -> anyhow::Result<String> {
    let mut text = std::fs::read_to_string(examples.join(".paved/platform.yaml"))?;
    let mut teams = String::new();
    for t in 0..TEAMS {
        teams.push_str(&format!(
            "  team-{t:03}:\n    members: [octocat]\n    quota:\n      environments: 100000\n"
        ));
    }
    text = text.replacen("teams:\n", &format!("teams:\n{teams}"), 1);
    Ok(text)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(manifests: usize) -> anyhow::Result<Vec<Duration>> {
    let tmp = tempfile::tempdir()?;
    let github = Emulator::start().await?;
    let repo = RepoName::parse("bench/environments")?;
    let remote = GitRemote::create(&tmp.path().join("git"), &repo)?;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<FileChange> = GitRemote::files_of(&examples)?
        .into_iter()
        .filter(|(p, _)| !p.starts_with("environments/"))
        .collect();
    files.push((
        ".paved/platform.yaml".into(),
        Some(platform(&examples)?.into_bytes()),
    ));
    for i in 0..manifests {
        let team = format!("team-{:03}", i % TEAMS);
        let name = format!("env-{i:05}");
        files.push((
            format!("environments/{team}/{name}.yaml"),
            Some(manifest(&name, &team).into_bytes()),
        ));
    }
    let base = remote.commit("refs/heads/main", None, &files, "base")?;
    let data = tmp.path().join("data");
    let service = paved::service::start(setup::config(
        github.url(),
        remote.clone_url_template(),
        &data,
        "bench/environments",
    ))
    .await?;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    // Run 0 warms the mirror (first clone) and the governance cache; it is not counted.
    for run in 0..=RUNS {
        let number = 1000 + run as u64;
        let team = format!("team-{:03}", run % TEAMS);
        let name = format!("new-{run:04}");
        let spec = remote.open_pull(
            number,
            &base,
            &base,
            &[(
                format!("environments/{team}/{name}.yaml"),
                Some(manifest(&name, &team).into_bytes()),
            )],
            "add one",
        )?;
        let head = spec.head_sha.clone();
        // As on GitHub, the pull request exists in the API (its reviews can be listed).
        github.set_pull(&repo.to_string(), number, testkit::pull_json(&spec)?);
        let body = testkit::pull_request_payload(&spec)?;
        let status = testkit::post_webhook(
            &client,
            &service.url(),
            "pull_request",
            &format!("bench-{manifests}-{run}"),
            SECRET,
            body,
        )
        .await?;
        anyhow::ensure!(status == 202, "webhook answered {status}");
        let acked = Instant::now();
        let (r, sha) = (repo.to_string(), head.to_string());
        github
            .wait_until(Duration::from_secs(120), "verdicts", move |gh| {
                let latest = gh.latest_statuses(&r, &sha);
                latest.len() >= 3 && latest.values().all(|s| s.state != "pending")
            })
            .await?;
        let took = acked.elapsed();
        let latest = github.latest_statuses(&repo.to_string(), head.as_str());
        anyhow::ensure!(
            latest.values().all(|s| s.state == "success"),
            "a check failed in the benchmark: {latest:?}"
        );
        if run > 0 {
            times.push(took);
        }
    }
    anyhow::ensure!(github.rejected().is_empty(), "emulator rejected requests");
    service.shutdown().await?;
    times.sort();
    Ok(times)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("pr_statuses: bench");
        return Ok(());
    }
    if std::env::var_os("PAVED_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("PAVED_LOG"))
            .init();
    }
    let mut p50s = Vec::new();
    println!("PR to statuses (webhook 202 → last verdict status at the GitHub emulator), {RUNS} PRs each");
    println!(
        "{:>10} {:>10} {:>10} {:>10}",
        "manifests", "p50", "p90", "max"
    );
    for n in [100usize, 10_000] {
        let t = measure(n).await?;
        let p50 = percentile(&t, 0.5);
        println!(
            "{:>10} {:>10.1?} {:>10.1?} {:>10.1?}",
            n,
            p50,
            percentile(&t, 0.9),
            t[t.len() - 1]
        );
        p50s.push(p50);
    }
    let ratio = p50s[1].as_secs_f64() / p50s[0].as_secs_f64();
    println!("p50 ratio 10,000 / 100 manifests: {ratio:.2} (target ≤ 2.0); target p50 < 150 ms");
    Ok(())
}
