//! Pull-request events processed per second by one and by two `paved serve` replicas
//! sharing one PostgreSQL database. Run with
//! `PAVED_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench replicas`;
//! without `PAVED_TEST_DATABASE_URL` it prints SKIPPED and exits 0.
//!
//! For each configuration (1 replica, then 2; a fresh database `paved_bench_<hex>` each,
//! dropped at the end), against the GitHub emulator and a local Git remote holding
//! `examples/`:
//! 1. N pull requests are prepared (`PAVED_BENCH_PRS`, default 200), each adding one
//!    manifest `environments/payments/<name>.yaml`;
//! 2. every replica's Git mirror is warmed up with pull requests that are not counted
//!    (the shared queue decides which replica takes one, so they are sent until each
//!    replica's mirror exists);
//! 3. the N signed `pull_request` `opened` deliveries are sent alternately to the
//!    replicas, as fast as they are acknowledged (16 in flight), and the clock runs from
//!    the first send until every delivery is `done` in Paved's API.
//!
//! Replicas run the release binary with `PAVED_WORKERS` at its default (4 each).

use futures::StreamExt;
use github_emulator::{Emulator, EmulatorHandle};
use paved::ids::{CommitSha, RepoName};
use paved_testkit::{self as testkit, GitRemote, PullRequestSpec};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SECRET: &str = "bench-secret-for-paved";
const REPO: &str = "acme/environments";
/// Deliveries in flight while sending.
const IN_FLIGHT: usize = 16;
/// How long a replica may take to become ready, or a warm-up to finish.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the measured deliveries may take, in all.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

fn server_url() -> Option<String> {
    std::env::var("PAVED_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates `paved_bench_<hex>` on `server`; returns (its name, its URL).
async fn create_database(server: &str) -> Result<(String, String), BoxError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await?;
    let name = format!("paved_bench_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let mut url = url::Url::parse(server)?;
    url.set_path(&format!("/{name}"));
    Ok((name, url.to_string()))
}

async fn drop_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}

/// A `paved serve` process, killed when dropped.
struct Replica {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Whether this replica has opened its mirror of the repository.
    fn has_mirror(&self) -> bool {
        self.data_dir
            .join("mirrors/acme/environments.git")
            .join("HEAD")
            .exists()
    }
}

fn free_port() -> Result<u16, BoxError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Fixture {
    tmp: tempfile::TempDir,
    github: EmulatorHandle,
    remote: GitRemote,
    base: CommitSha,
    client: reqwest::Client,
}

impl Fixture {
    async fn new() -> Result<Fixture, BoxError> {
        let tmp = tempfile::tempdir()?;
        let github = Emulator::start().await?;
        let repo = RepoName::parse(REPO)?;
        let remote = GitRemote::create(&tmp.path().join("git"), &repo)?;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let files = GitRemote::files_of(&examples)?;
        let base = remote.commit("refs/heads/main", None, &files, "initial")?;
        Ok(Fixture {
            tmp,
            github,
            remote,
            base,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(IN_FLIGHT * 2)
                .default_headers(reqwest::header::HeaderMap::from_iter([(
                    reqwest::header::AUTHORIZATION,
                    reqwest::header::HeaderValue::from_str(&format!(
                        "Bearer {}",
                        paved_testkit::SERVICE_TOKEN
                    ))?,
                )]))
                .build()?,
        })
    }

    async fn spawn_replica(&self, name: &str, database: &str) -> Result<Replica, BoxError> {
        let port = free_port()?;
        let data_dir = self.tmp.path().join(name);
        let child = Command::new(env!("CARGO_BIN_EXE_paved"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
            .env("PAVED_DATA_DIR", &data_dir)
            .env("PAVED_DATABASE_URL", database)
            .env("PAVED_WEBHOOK_SECRET", SECRET)
            .env("PAVED_GITHUB_API_URL", self.github.url())
            .env("PAVED_GITHUB_TOKEN", "bench-token")
            .env("PAVED_GITHUB_REPOSITORIES", "bench/environments")
            .env(
                "PAVED_GIT_CLONE_URL_TEMPLATE",
                self.remote.clone_url_template(),
            )
            .env("PAVED_PUBLIC_URL", "http://paved.test")
            .env(
                "PAVED_API_TOKENS",
                format!("bench={}", paved_testkit::service_token_sha256()),
            )
            .env("PAVED_LOG", "paved=warn")
            .current_dir(self.tmp.path())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.tmp.path().join(format!("{name}.log")))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()?;
        let replica = Replica {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", replica.url))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(replica);
                }
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(format!(
                    "replica {name} not ready within {READY_DEADLINE:?}: {}",
                    self.log(name)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Pull request `number`, adding `environments/payments/<name>.yaml`, published on
    /// the remote and in the emulator.
    fn open_pull(&self, number: u64, name: &str) -> Result<PullRequestSpec, BoxError> {
        let path = format!("environments/payments/{name}.yaml");
        let manifest = testkit::manifest(name, "payments", "small").into_bytes();
        let spec = self.remote.open_pull(
            number,
            &self.base,
            &self.base,
            &[(path, Some(manifest))],
            "add an environment",
        )?;
        self.github
            .set_pull(REPO, number, testkit::pull_json(&spec)?);
        Ok(spec)
    }

    /// Sends `spec` as a signed `pull_request` delivery `id` to `url`.
    async fn send(&self, url: &str, id: &str, spec: &PullRequestSpec) -> Result<(), BoxError> {
        let body = testkit::pull_request_payload(spec)?;
        let status =
            testkit::post_webhook(&self.client, url, "pull_request", id, SECRET, body).await?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("delivery {id} answered {status}").into());
        }
        Ok(())
    }

    /// The delivery's state in Paved's API (`None` while it is unknown).
    async fn delivery_state(&self, url: &str, id: &str) -> Result<Option<String>, BoxError> {
        let r = self
            .client
            .get(format!("{url}/api/v1/deliveries/{id}"))
            .send()
            .await?;
        if !r.status().is_success() {
            return Ok(None);
        }
        let v: serde_json::Value = r.json().await?;
        Ok(v["state"].as_str().map(str::to_owned))
    }

    /// Waits until every delivery in `ids` is `done` or `failed`; returns how many failed.
    async fn wait_finished(
        &self,
        url: &str,
        ids: &[String],
        deadline: Duration,
    ) -> Result<usize, BoxError> {
        let start = Instant::now();
        let mut failed = 0;
        for id in ids {
            loop {
                match self.delivery_state(url, id).await?.as_deref() {
                    Some("done") => break,
                    Some("failed") => {
                        failed += 1;
                        break;
                    }
                    _ => {}
                }
                if start.elapsed() > deadline {
                    return Err(format!("delivery {id} not finished within {deadline:?}").into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(failed)
    }
}

struct RunFigures {
    replicas: usize,
    events: usize,
    secs: f64,
    send_secs: f64,
    failed: usize,
    missing_verdicts: usize,
    warmups: usize,
}

impl RunFigures {
    fn per_sec(&self) -> f64 {
        self.events as f64 / self.secs
    }
}

/// One configuration: `replicas` replicas on a fresh database, `n` measured events.
async fn run(server: &str, replicas: usize, n: usize) -> Result<RunFigures, BoxError> {
    let (db_name, db_url) = create_database(server).await?;
    let result = run_on(&db_url, replicas, n).await;
    if let Err(e) = drop_database(server, &db_name).await {
        eprintln!("warning: could not drop database {db_name}: {e}");
    }
    result
}

async fn run_on(database: &str, replicas: usize, n: usize) -> Result<RunFigures, BoxError> {
    let fx = Fixture::new().await?;
    let mut running = Vec::new();
    for i in 0..replicas {
        running.push(fx.spawn_replica(&format!("replica-{i}"), database).await?);
    }
    let urls: Vec<String> = running.iter().map(|r| r.url.clone()).collect();
    let mut delivery = 0u64;
    let mut next_id = || {
        delivery += 1;
        format!("00000000-0000-4000-8000-{delivery:012}")
    };

    // Warm-up: until every replica has a mirror (any replica may claim a delivery).
    let mut warmups = 0;
    let start = Instant::now();
    while !running.iter().all(Replica::has_mirror) {
        if warmups >= 8 * replicas || start.elapsed() > READY_DEADLINE {
            return Err(format!(
                "warm-up: not every replica opened its mirror after {warmups} pull requests"
            )
            .into());
        }
        let target = running
            .iter()
            .position(|r| !r.has_mirror())
            .unwrap_or_default();
        let spec = fx.open_pull(1 + warmups as u64, &format!("warm-{warmups:02}"))?;
        let id = next_id();
        fx.send(&urls[target], &id, &spec).await?;
        fx.wait_finished(&urls[0], &[id], READY_DEADLINE).await?;
        warmups += 1;
    }

    // The measured pull requests, prepared before the clock starts.
    let mut work = Vec::with_capacity(n);
    for i in 0..n {
        let spec = fx.open_pull(1000 + i as u64, &format!("bench-{i:04}"))?;
        work.push((urls[i % replicas].clone(), next_id(), spec));
    }
    let ids: Vec<String> = work.iter().map(|(_, id, _)| id.clone()).collect();

    let start = Instant::now();
    let sent: Vec<Result<(), BoxError>> = futures::stream::iter(work.iter())
        .map(|(url, id, spec)| fx.send(url, id, spec))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let send_secs = start.elapsed().as_secs_f64();
    for r in sent {
        r?;
    }
    let failed = fx.wait_finished(&urls[0], &ids, RUN_DEADLINE).await?;
    let secs = start.elapsed().as_secs_f64();

    // Each measured head got its three verdicts (none left pending).
    let missing_verdicts = work
        .iter()
        .filter(|(_, _, spec)| {
            let latest = fx.github.latest_statuses(REPO, spec.head_sha.as_str());
            latest.len() < 3 || latest.values().any(|s| s.state == "pending")
        })
        .count();
    drop(running);
    fx.github.shutdown().await;
    Ok(RunFigures {
        replicas,
        events: n,
        secs,
        send_secs,
        failed,
        missing_verdicts,
        warmups,
    })
}

fn main() -> Result<(), BoxError> {
    let Some(server) = server_url() else {
        println!("SKIPPED replicas bench: PAVED_TEST_DATABASE_URL is not set (set it to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/test)");
        return Ok(());
    };
    let n: usize = std::env::var("PAVED_BENCH_PRS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "{n} pull_request opened events per configuration, sent alternately to the replicas ({IN_FLIGHT} in flight); timed from the first send until every delivery is done"
    );
    let mut figures = Vec::new();
    for replicas in [1, 2] {
        let f = rt.block_on(run(&server, replicas, n))?;
        println!(
            "{} replica{}: {} events in {:.2} s = {:.1} events/s (sent and acknowledged in {:.2} s; {} warm-up PRs not counted; {} failed, {} heads without 3 verdicts)",
            f.replicas,
            if f.replicas == 1 { "" } else { "s" },
            f.events,
            f.secs,
            f.per_sec(),
            f.send_secs,
            f.warmups,
            f.failed,
            f.missing_verdicts
        );
        figures.push(f);
    }
    println!(
        "2 replicas / 1 replica = {:.2}",
        figures[1].per_sec() / figures[0].per_sec()
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "note: both replicas share this machine's {cores} cores with the load generator, the GitHub emulator and PostgreSQL, so the ratio measures coordination overhead (shared queue, leases, advisory locks) more than scale-out."
    );
    Ok(())
}
