//! Merge to `paved/provision`: time from sending the `pull_request` closed (merged) webhook
//! to the `paved/provision` success status at the GitHub emulator, for a PR adding 50
//! environments and for a PR adding 1, with a definition whose script does nothing
//! (`catalog/noop/deploy.sh` is `exit 0`). What is left is Paved's own cost per
//! environment: the operation record, the lock, the GitHub deployment and its statuses,
//! the definition exported from Git, the run directory, the script's spawn, the inventory
//! and the git note pushed to the repository.
//!
//! Run with `cargo bench --bench provision`. `PAVED_BENCH_REPS` (default 5) sets the
//! repetitions; `PAVED_RUNNER_CONCURRENCY` the runner concurrency (default 4).
//!
//! Everything is real but GitHub: the service (SQLite file, HTTP on loopback), the Git
//! repository (file://) it fetches from and pushes notes to, the scripts.

use github_emulator::{Emulator, EmulatorHandle};
use paved::config::{Config, GithubAuth, RunnerConfig, Secret};
use paved::ids::{CommitSha, RepoName};
use paved::service::Service;
use paved_testkit::{self as testkit, FileChange, GitRemote};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";
const MANY: usize = 50;
const DEADLINE: Duration = Duration::from_secs(120);

const NOOP_DEFINITION: &str = "name: noop
version: 1.0.0
summary: Does nothing
description: A definition whose scripts exit at once (benchmark).
runner: command
";
const NOOP_SCRIPT: &str = "#!/bin/sh\nexit 0\n";

/// The examples' platform.yaml with `noop` allowed for `dev` and room for every
/// environment the benchmark makes.
fn platform(examples: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(examples.join(".paved/platform.yaml"))?;
    let definitions = "definitions: [postgres-db, static-site]";
    let quota = "environments: 5";
    anyhow::ensure!(
        text.contains(definitions) && text.contains(quota),
        "examples/.paved/platform.yaml changed: update benches/provision.rs"
    );
    Ok(text
        .replacen(
            definitions,
            "definitions: [postgres-db, static-site, noop]",
            1,
        )
        .replacen(quota, "environments: 100000", 1))
}

fn manifest(name: &str) -> String {
    let expires = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "apiVersion: paved/v1
kind: Environment
metadata:
  name: {name}
  team: payments
  owner: octocat
spec:
  type: dev
  definition: noop
  expiresAt: {expires}
  tags:
    cost-center: cc-1234
"
    )
}

struct Bench {
    _tmp: tempfile::TempDir,
    github: EmulatorHandle,
    remote: GitRemote,
    repo: RepoName,
    service: Service,
    client: reqwest::Client,
    main: CommitSha,
    next_pr: u64,
    noop_dir: std::path::PathBuf,
}

/// One merge: how long it took, and the operations Paved recorded for it.
struct Merge {
    took: Duration,
    ops: Vec<serde_json::Value>,
    /// Wall-clock time the webhook was sent and `paved/provision` was stored.
    sent_at: chrono::DateTime<chrono::Utc>,
    done_at: chrono::DateTime<chrono::Utc>,
}

/// Where a merge's time went: webhook → first operation started (fetch, checks, records),
/// first started → last finished (the runs), last finished → `paved/provision` (the
/// reports: final deployment statuses and git notes).
fn phases(m: &Merge) -> Option<[Duration; 3]> {
    let times = |key: &str| -> Option<Vec<chrono::DateTime<chrono::Utc>>> {
        m.ops
            .iter()
            .map(|op| {
                let t = chrono::DateTime::parse_from_rfc3339(op[key].as_str()?).ok()?;
                Some(t.with_timezone(&chrono::Utc))
            })
            .collect()
    };
    let first_start = times("started_at")?.into_iter().min()?;
    let last_end = times("finished_at")?.into_iter().max()?;
    Some([
        (first_start - m.sent_at).to_std().ok()?,
        (last_end - first_start).to_std().ok()?,
        (m.done_at - last_end).to_std().ok()?,
    ])
}

impl Bench {
    async fn start(concurrency: usize) -> anyhow::Result<Bench> {
        let tmp = tempfile::tempdir()?;
        let github = Emulator::start().await?;
        let repo = RepoName::parse("bench/environments")?;
        let remote = GitRemote::create(&tmp.path().join("git"), &repo)?;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut files: Vec<FileChange> = GitRemote::files_of(&examples)?
            .into_iter()
            .filter(|(p, _)| !p.starts_with("environments/"))
            .collect();
        files.push((
            ".paved/platform.yaml".into(),
            Some(platform(&examples)?.into_bytes()),
        ));
        for (path, text) in [
            ("catalog/noop/environment.yaml", NOOP_DEFINITION),
            ("catalog/noop/deploy.sh", NOOP_SCRIPT),
            ("catalog/noop/delete.sh", NOOP_SCRIPT),
        ] {
            files.push((path.into(), Some(text.as_bytes().to_vec())));
        }
        let main = remote.commit("refs/heads/main", None, &files, "base")?;

        // A copy of the no-op definition on disk, for timing the script alone.
        let noop_dir = tmp.path().join("noop");
        std::fs::create_dir_all(&noop_dir)?;
        std::fs::write(noop_dir.join("deploy.sh"), NOOP_SCRIPT)?;

        let data = tmp.path().join("data");
        let service = paved::service::start(Config {
            listen: "127.0.0.1:0".into(),
            data_dir: data.clone(),
            database_url: format!("sqlite://{}", data.join("paved.sqlite").display()),
            public_url: None,
            workers: 4,
            webhook_secrets: vec![Secret::new(SECRET)],
            api_url: github.url(),
            auth: Some(GithubAuth::Token(Secret::new("bench-token"))),
            clone_url_template: Some(remote.clone_url_template()),
            runner: RunnerConfig {
                concurrency,
                ..Default::default()
            },
            push_grace: Duration::from_secs(600),
            lease: std::time::Duration::from_secs(60),
            repositories: paved::config::RepoFilter::only(["bench/environments"]),
            checks: Default::default(),
            intake: Default::default(),
            report: None,
            store: Default::default(),
            portal: Default::default(),
            lifecycle: Default::default(),
            oidc: Default::default(),
            log_format: Default::default(),
            api: paved::config::ApiConfig {
                tokens: vec![paved::config::ServiceToken {
                    name: "bench".into(),
                    sha256: {
                        let hex = paved_testkit::service_token_sha256();
                        let mut out = [0u8; 32];
                        for (i, b) in out.iter_mut().enumerate() {
                            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
                        }
                        out
                    },
                }],
                ..Default::default()
            },
        })
        .await?;
        Ok(Bench {
            _tmp: tmp,
            github,
            remote,
            repo,
            service,
            client: paved_testkit::service_client(),
            main,
            next_pr: 1,
            noop_dir,
        })
    }

    /// Merges a PR adding `n` environments; times webhook → `paved/provision` success.
    async fn merge(&mut self, n: usize) -> anyhow::Result<Merge> {
        let number = self.next_pr;
        self.next_pr += 1;
        let changes: Vec<FileChange> = (0..n)
            .map(|i| {
                let name = format!("p{number}-e{i:03}");
                (
                    format!("environments/payments/{name}.yaml"),
                    Some(manifest(&name).into_bytes()),
                )
            })
            .collect();
        let spec =
            self.remote
                .open_pull(number, &self.main, &self.main, &changes, "add environments")?;
        let merge = self.remote.merge_pull(&spec)?;
        self.main = merge.clone();
        let body = testkit::merged_payload(&spec, &merge, "hubot")?;
        let event: serde_json::Value = serde_json::from_slice(&body)?;
        let repo = self.repo.to_string();
        self.github
            .set_pull(&repo, number, event["pull_request"].clone());
        self.github.set_pull_reviews(&repo, number, Vec::new());

        let sent = Instant::now();
        let sent_at = chrono::Utc::now();
        let status = testkit::post_webhook(
            &self.client,
            &self.service.url(),
            "pull_request",
            &format!("bench-merge-{number}"),
            SECRET,
            body,
        )
        .await?;
        anyhow::ensure!(status == 202, "webhook answered {status}");
        let sha = merge.to_string();
        self.github
            .wait_until(DEADLINE, "paved/provision", move |gh| {
                gh.latest_statuses(&repo, &sha)
                    .get("paved/provision")
                    .is_some_and(|s| s.state != "pending")
            })
            .await?;
        let took = sent.elapsed();
        let provision = self
            .github
            .latest_statuses(&self.repo.to_string(), merge.as_str())["paved/provision"]
            .clone();
        anyhow::ensure!(
            provision.state == "success",
            "paved/provision {}: {:?}",
            provision.state,
            provision.description
        );
        let ops: Vec<serde_json::Value> = self
            .client
            .get(format!(
                "{}/api/v1/repos/{}/merges/{merge}",
                self.service.url(),
                self.repo
            ))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(
            ops.len() == n,
            "{} operations for {n} environments",
            ops.len()
        );
        Ok(Merge {
            took,
            ops,
            sent_at,
            done_at: provision.created_at,
        })
    }

    /// The no-op script alone: `/bin/sh deploy.sh`, spawned and waited for, `n` times.
    fn script_time(&self, n: usize) -> anyhow::Result<Duration> {
        let started = Instant::now();
        for _ in 0..n {
            let status = std::process::Command::new("/bin/sh")
                .arg(self.noop_dir.join("deploy.sh"))
                .current_dir(&self.noop_dir)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .status()?;
            anyhow::ensure!(status.success(), "the no-op script failed");
        }
        Ok(started.elapsed())
    }
}

/// started_at → finished_at of each operation, as Paved recorded them.
fn op_durations(ops: &[serde_json::Value]) -> Vec<Duration> {
    ops.iter()
        .filter_map(|op| {
            let start = chrono::DateTime::parse_from_rfc3339(op["started_at"].as_str()?).ok()?;
            let end = chrono::DateTime::parse_from_rfc3339(op["finished_at"].as_str()?).ok()?;
            (end - start).to_std().ok()
        })
        .collect()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("provision: bench");
        return Ok(());
    }
    if std::env::var_os("PAVED_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("PAVED_LOG"))
            .init();
    }
    let reps: usize = std::env::var("PAVED_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5);
    let concurrency: usize = std::env::var("PAVED_RUNNER_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(RunnerConfig::default().concurrency);

    let mut bench = Bench::start(concurrency).await?;
    println!(
        "Merge → paved/provision success (webhook sent → status at the GitHub emulator), \
         no-op script, runner concurrency {concurrency}, {reps} repetitions, median"
    );
    // The first merge clones the repository into Paved's mirror; it is not counted.
    bench.merge(1).await?;

    let mut one = Vec::new();
    let mut many = Vec::new();
    let mut op_times = Vec::new();
    let mut phase_times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..reps {
        one.push(bench.merge(1).await?.took);
        let m = bench.merge(MANY).await?;
        many.push(m.took);
        op_times.extend(op_durations(&m.ops));
        if let Some(p) = phases(&m) {
            for (all, d) in phase_times.iter_mut().zip(p) {
                all.push(d);
            }
        }
    }
    let script_runs = MANY * reps;
    let script_total = bench.script_time(script_runs)?;
    let script = script_total / script_runs as u32;
    anyhow::ensure!(
        bench.github.rejected().is_empty(),
        "the emulator rejected requests: {:?}",
        bench.github.rejected()
    );
    bench.service.shutdown().await?;

    let (t1, t50) = (median(&one), median(&many));
    let marginal = t50.saturating_sub(t1) / (MANY as u32 - 1);
    let script_share = script * MANY as u32 / concurrency as u32;
    let overhead = t50.saturating_sub(script_share) / MANY as u32;
    let fmt_all = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  {MANY:>2} environments: {:>8.1} ms   (runs: {} ms)",
        ms(t50),
        fmt_all(&many)
    );
    println!(
        "   1 environment:  {:>8.1} ms   (runs: {} ms)",
        ms(t1),
        fmt_all(&one)
    );
    println!(
        "  no-op script alone (/bin/sh deploy.sh, {script_runs} spawns in a row): {:.2} ms each",
        ms(script)
    );
    println!(
        "  operation started → finished as Paved records it (50-environment merges): median {:.1} ms",
        ms(median(&op_times))
    );
    if phase_times[0].len() == reps {
        println!(
            "  50-environment merge by phase: webhook → first run {:.0} ms, runs {:.0} ms, \
             last run → paved/provision (deployment statuses, git notes) {:.0} ms",
            ms(median(&phase_times[0])),
            ms(median(&phase_times[1])),
            ms(median(&phase_times[2]))
        );
    }
    println!(
        "  marginal cost per environment, (t50 - t1) / 49:                         {:>7.1} ms",
        ms(marginal)
    );
    println!(
        "  overhead per environment, (t50 - script × 50 / concurrency {concurrency}) / 50: {:>7.1} ms",
        ms(overhead)
    );
    println!(
        "  throughput: {:.1} environments/s",
        MANY as f64 / t50.as_secs_f64()
    );
    Ok(())
}
