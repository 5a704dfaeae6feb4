//! The scheduler's tick (SPEC 11) over a real SQLite file, driven directly (no server):
//! - **nothing due**, with 1,000 and with 10,000 environments (each with an expiry, its
//!   warning and a drift check set, all in the future): time per tick, and 10,000 / 1,000
//!   (target: flat: the tick reads only what is due, through an index);
//! - **K due** (100, 1,000, 10,000) among 10,000 environments: time per tick and per due
//!   timer (target: linear in K). What is timed is the scheduler's own work for each due
//!   timer: reading it, reading its environment, acting, recording it. Here each due timer
//!   belongs to an environment already deleted, so acting is clearing its timers; a real
//!   job's script and GitHub calls come on top and are measured by `benches/provision.rs`.
//!
//! `cargo bench --bench scheduler` (`PAVED_BENCH_ROUNDS`, default 200 ticks per "nothing
//! due" figure; the "due" figures take 5 ticks each, the timers set again between them).

use chrono::{DateTime, Utc};
use paved::clock::Clock;
use paved::config::{Config, GithubAuth, Secret};
use paved::ids::RepoName;
use paved::store::{EnvState, EnvironmentUpdate, Timer, TimerKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

struct Bench {
    _tmp: tempfile::TempDir,
    deps: Arc<paved::work::Deps>,
    repo: RepoName,
}

/// `n` ready environments with their timers in the future, and `gone` deleted ones.
async fn bench(n: usize, gone: usize) -> anyhow::Result<Bench> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data)?;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data.clone(),
        database_url: format!("sqlite://{}", data.join("paved.sqlite").display()),
        public_url: Some("http://paved.bench".into()),
        workers: 4,
        webhook_secrets: vec![Secret::new("bench-secret-123")],
        api_url: "http://127.0.0.1:9".into(),
        auth: Some(GithubAuth::Token(Secret::new("bench-token-123"))),
        clone_url_template: None,
        runner: Default::default(),
        push_grace: Duration::from_secs(600),
        lease: Duration::from_secs(60),
        repositories: paved::config::RepoFilter::only(["bench/environments"]),
        checks: Default::default(),
        intake: Default::default(),
        report: None,
        store: Default::default(),
        portal: Default::default(),
        lifecycle: paved::config::LifecycleConfig {
            clock: Clock::manual(t0()),
            ..Default::default()
        },
        api: Default::default(),
        oidc: Default::default(),
        log_format: Default::default(),
    };
    let deps = paved::service::handler_deps(config).await?;
    let repo = RepoName::parse("bench/environments")?;
    let future = |days: i64| (t0() + chrono::Duration::days(days)).timestamp_millis();
    for i in 0..n + gone {
        let name = format!("env-{i:05}");
        deps.store
            .upsert_environment(EnvironmentUpdate {
                repo: repo.clone(),
                name: name.parse()?,
                team: "payments".parse()?,
                owner: "octocat".parse()?,
                env_type: "dev".into(),
                definition: "static-site".into(),
                state: if i < n {
                    EnvState::Ready
                } else {
                    EnvState::Deleted
                },
                parameters: Some(serde_json::json!({"title": "t"})),
                outputs: None,
                last_operation: None,
                new_generation: false,
            })
            .await?;
        for (kind, due) in [
            (TimerKind::Expire, future(30)),
            (TimerKind::Warn, future(29)),
            (TimerKind::Drift, future(1)),
        ] {
            deps.store
                .set_timer(&Timer {
                    repo: repo.clone(),
                    env_name: name.clone(),
                    kind,
                    due_at: Some(due),
                    cause: format!("bench {due}"),
                })
                .await?;
        }
    }
    Ok(Bench {
        _tmp: tmp,
        deps,
        repo,
    })
}

/// Makes the first `k` deleted environments' reconcile timers due now.
async fn make_due(b: &Bench, n: usize, k: usize, round: usize) -> anyhow::Result<()> {
    for i in n..n + k {
        b.deps
            .store
            .set_timer(&Timer {
                repo: b.repo.clone(),
                env_name: format!("env-{i:05}"),
                kind: TimerKind::Reconcile,
                due_at: Some(t0().timestamp_millis() - 1),
                cause: format!("round {round}"),
            })
            .await?;
    }
    Ok(())
}

async fn tick(b: &Bench, expect: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let ran = paved::scheduler::tick(&b.deps).await?;
    let took = t.elapsed();
    anyhow::ensure!(ran == expect, "the tick ran {ran} timers, not {expect}");
    Ok(took)
}

/// Ticks until nothing is due (a tick takes at most 1,000 timers); the time of them all,
/// and how many ticks it took.
async fn drain(b: &Bench, k: usize) -> anyhow::Result<(Duration, usize)> {
    let (mut total, mut ticks, mut left) = (Duration::ZERO, 0, k);
    while left > 0 {
        let t = Instant::now();
        let ran = paved::scheduler::tick(&b.deps).await?;
        total += t.elapsed();
        ticks += 1;
        anyhow::ensure!(ran > 0 && ran <= left, "a tick ran {ran} of {left} due");
        left -= ran;
    }
    Ok((total, ticks))
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let rounds: usize = std::env::var("PAVED_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        println!("setting up 1,000 and 10,000 environments (3 timers each)…");
        let small = bench(1_000, 0).await?;
        let large = bench(10_000, 10_000).await?;

        // Nothing due: interleaved, which goes first alternating (going first costs more:
        // a measured bias of its own), so noise falls on both alike.
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                s.push(tick(&small, 0).await?);
                l.push(tick(&large, 0).await?);
            } else {
                l.push(tick(&large, 0).await?);
                s.push(tick(&small, 0).await?);
            }
        }
        let (s50, s99, l50, l99) = (
            pct(&mut s, 0.5),
            pct(&mut s, 0.99),
            pct(&mut l, 0.5),
            pct(&mut l, 0.99),
        );
        println!("tick, nothing due,  1,000 environments: p50 {s50:.3} ms  p99 {s99:.3} ms");
        println!("tick, nothing due, 10,000 environments: p50 {l50:.3} ms  p99 {l99:.3} ms");
        println!(
            "  10,000 / 1,000: {:.2}x (p50), {:.2}x (p99)   (target: flat)",
            l50 / s50,
            l99 / s99
        );

        // K due among 10,000 live environments.
        let mut per = Vec::new();
        for k in [100usize, 1_000, 10_000] {
            let mut times = Vec::new();
            let mut ticks = 0;
            for round in 0..5 {
                make_due(&large, 10_000, k, round).await?;
                let (took, n) = drain(&large, k).await?;
                times.push(took);
                ticks = n;
            }
            let p50 = pct(&mut times, 0.5);
            let each = p50 * 1000.0 / k as f64;
            per.push(p50);
            println!(
                "{k:>6} due among 10,000 environments: p50 {p50:.1} ms in {ticks} tick(s)  ({each:.1} µs per due timer)"
            );
        }
        println!(
            "  1,000 due / 100 due: {:.1}x; 10,000 due / 1,000 due: {:.1}x   (target: linear, 10x)",
            per[1] / per[0],
            per[2] / per[1]
        );
        Ok(())
    })
}
