//! What a deploy identity costs (SPEC 13), measured in one run against its own baseline:
//!
//! 1. Token minting per run: a trivial `deploy.sh` run through `paved::runner::run` in the
//!    bubblewrap sandbox, as a merge runs it, without an identity and with an `oidc` one
//!    (the token signed by Paved's issuer on a SQLite store, written into the run, the AWS
//!    and Azure variables set), alternating so both see the same machine. Target: at most
//!    2 ms more (difference of the medians).
//! 2. The JWKS over HTTP on loopback (`GET /.well-known/jwks.json` of a running Paved, a
//!    kept-alive client), beside `GET /healthz` as the baseline. Target: p50 under 1 ms.
//!
//! Run with `cargo bench --bench identity`; `PAVED_BENCH_RUNS` (default 200) sets the runs
//! of each kind, `PAVED_BENCH_REQUESTS` (default 2000) the requests of each kind.

#[path = "support/runs.rs"]
mod runs;

use paved::config::{Config, GithubAuth, Secret};
use paved::oidc::{Issuer, RunClaims};
use paved::runner::RunIdentity;
use runs::{compare, kind_of, ms, quantile, setting, timed_run, Bench};
use std::path::Path;
use std::time::{Duration, Instant};

fn claims(run_id: i64) -> RunClaims {
    RunClaims {
        audience: "sts.amazonaws.com".into(),
        repository: "acme/envs".into(),
        environment: "bench".into(),
        team: "bench".into(),
        env_type: "dev".into(),
        definition: "def".into(),
        operation: "deploy".into(),
        run_id,
        requester: "octocat".into(),
        approvers: vec!["admin1".into()],
        governance_sha: "0".repeat(40),
        commit: "1".repeat(40),
    }
}

fn config(data: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data.to_path_buf(),
        database_url: format!("sqlite://{}", data.join("paved.sqlite").display()),
        public_url: Some("http://paved.bench".into()),
        workers: 1,
        webhook_secrets: vec![Secret::new("bench-secret-123")],
        api_url: "http://127.0.0.1:9".into(),
        auth: Some(GithubAuth::Token(Secret::new("bench-token-123"))),
        clone_url_template: None,
        runner: paved::config::RunnerConfig {
            sandbox: paved::config::SandboxMode::None,
            ..Default::default()
        },
        push_grace: Duration::from_secs(600),
        lease: Duration::from_secs(60),
        repositories: paved::config::RepoFilter::only(["acme/envs"]),
        checks: Default::default(),
        intake: Default::default(),
        report: None,
        store: Default::default(),
        portal: Default::default(),
        lifecycle: Default::default(),
        oidc: Default::default(),
        log_format: Default::default(),
        api: Default::default(),
    }
}

async fn get(client: &reqwest::Client, url: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let r = client.get(url).send().await?;
    anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
    let _ = r.bytes().await?;
    Ok(t.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = setting("PAVED_BENCH_RUNS", 200);
    let requests = setting("PAVED_BENCH_REQUESTS", 2000);
    let bench = Bench::new()?;

    // The service: its store holds the issuer's keys; its HTTP serves the JWKS.
    let data = bench.root.join("data");
    std::fs::create_dir_all(&data)?;
    let service = paved::service::start(config(&data)).await?;
    let store = paved::store::sqlite::SqliteStore::open(&format!(
        "sqlite://{}",
        data.join("paved.sqlite").display()
    ))
    .await?;
    let issuer = Issuer::new(
        std::sync::Arc::new(store),
        "http://paved.bench",
        Duration::from_secs(30 * 24 * 3600),
        paved::clock::Clock::system(),
    );
    // The first token makes the first key (a one-time cost, not a run's).
    issuer.mint(&claims(0), Duration::from_secs(60)).await?;

    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs * 2 {
        let kind = kind_of(i);
        let run_id = i as i64 + 1;
        let start = Instant::now();
        let mut s = bench.spec(bench.sandboxed.clone(), run_id);
        if kind == 1 {
            let token = issuer.mint(&claims(run_id), s.timeout).await?;
            s.secrets.push(token.jwt.clone());
            s.identity = Some(RunIdentity {
                name: "dev-deployer".into(),
                vars: vec![("REGION".into(), "eu".into())],
                token: Some(token.jwt),
                aws_role_arn: Some("arn:aws:iam::123456789012:role/paved-dev".into()),
                azure: Some(paved::runner::AzureRun {
                    client_id: "c".into(),
                    tenant_id: "t".into(),
                    ..Default::default()
                }),
                gcp: None,
            });
        }
        timed_run(s, start, &mut times[kind]).await?;
    }
    println!("runs of each kind: {runs} (bubblewrap sandbox)");
    compare(
        ["no identity:", "oidc identity+token:"],
        &mut times,
        "the identity",
        "at most 2 ms",
    );

    // Minting alone, for the record.
    let mut mint = Vec::with_capacity(runs);
    for i in 0..runs {
        let t = Instant::now();
        issuer
            .mint(&claims(i as i64), Duration::from_secs(60))
            .await?;
        mint.push(t.elapsed());
    }
    mint.sort();
    println!(
        "minting alone:        median {:7.3} ms   p90 {:7.3} ms",
        ms(quantile(&mint, 0.5)),
        ms(quantile(&mint, 0.9))
    );

    let client = reqwest::Client::new();
    let base = service.url();
    let (jwks_url, health_url) = (
        format!("{base}/.well-known/jwks.json"),
        format!("{base}/healthz"),
    );
    for _ in 0..50 {
        get(&client, &jwks_url).await?;
        get(&client, &health_url).await?;
    }
    let (mut jwks, mut health) = (Vec::new(), Vec::new());
    for _ in 0..requests {
        jwks.push(get(&client, &jwks_url).await?);
        health.push(get(&client, &health_url).await?);
    }
    jwks.sort();
    health.sort();
    println!("requests of each kind: {requests} (loopback, kept alive)");
    println!(
        "GET /healthz:              p50 {:6.3} ms   p99 {:6.3} ms",
        ms(quantile(&health, 0.5)),
        ms(quantile(&health, 0.99))
    );
    println!(
        "GET /.well-known/jwks.json: p50 {:6.3} ms   p99 {:6.3} ms   ({:.2}x /healthz; target: p50 under 1 ms)",
        ms(quantile(&jwks, 0.5)),
        ms(quantile(&jwks, 0.99)),
        ms(quantile(&jwks, 0.5)) / ms(quantile(&health, 0.5))
    );
    service.shutdown().await?;
    Ok(())
}
