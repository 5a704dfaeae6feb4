//! Webhook acknowledgement: how much durable storage costs against a handler that only
//! verifies the signature. Run with `cargo bench --bench webhook_ack`.
//!
//! (a) a bare axum handler that verifies `X-Hub-Signature-256` and stores nothing;
//! (b) Paved's intake router with a `SqliteStore` on a temporary file (fsync'd commits);
//! (c) as (b), with a worker claiming and finishing deliveries at the same time;
//! (d) and (e): as (b) and (c) with a `PgStore` on a fresh PostgreSQL database, when
//! `PAVED_TEST_DATABASE_URL` names a server (e.g. `postgres://postgres@127.0.0.1:5432/test`;
//! the bench creates `paved_bench_<hex>` there and drops it at the end). Without it the
//! PostgreSQL part is skipped, and the output says so.
//!
//! Each is driven over loopback HTTP/1.1 by a load generator on its own runtime:
//! closed loop (64 connections, as fast as they are answered) for throughput, and open
//! loop (a fixed 500 requests/s, latency measured from the scheduled send time, so a
//! stall is not hidden) for p50/p99. The body is GitHub's `pull_request` `opened`
//! example (28,011 bytes), with a unique delivery id per request.
//!
//! `PAVED_BENCH_SECS` (default 5) sets the length of each measurement;
//! `PAVED_BENCH_VERBOSE=1` prints the store's group-commit counters after each phase
//! (commits, deliveries per commit, commits slower than 5 ms, WAL restarts).

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use paved::intake::{self, sign, verify, IntakeState, WebhookSecret, SIGNATURE_HEADER};
use paved::store::postgres::PgStore;
use paved::store::prelude::*;
use paved::store::sqlite::SqliteStore;
use paved::store::{Outcome, Store};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";
const CONNECTIONS: usize = 64;
const OPEN_LOOP_RATE: u64 = 500;

struct Target {
    addr: SocketAddr,
    body: Bytes,
    signature: String,
}

#[derive(Default, Clone, Copy)]
struct Figures {
    closed_rps: f64,
    closed_errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    open_sent: usize,
    open_errors: u64,
}

fn bare_router(secrets: Arc<Vec<WebhookSecret>>) -> Router {
    Router::new()
        .route(
            "/webhooks/github",
            post(move |headers: HeaderMap, body: Bytes| {
                let secrets = secrets.clone();
                async move {
                    let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
                    match verify(&secrets, &body, sig) {
                        Ok(()) => (StatusCode::ACCEPTED, "{\"ok\":true}"),
                        Err(_) => (StatusCode::UNAUTHORIZED, "{\"ok\":false}"),
                    }
                }
            }),
        )
        .layer(DefaultBodyLimit::max(intake::MAX_BODY_BYTES))
}

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn send(client: &reqwest::Client, t: &Target) -> bool {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let res = client
        .post(format!("http://{}/webhooks/github", t.addr))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", format!("bench-{id:012}"))
        .header(SIGNATURE_HEADER, t.signature.as_str())
        .body(t.body.clone())
        .send()
        .await;
    match res {
        Ok(r) => {
            let ok = r.status() == StatusCode::ACCEPTED;
            ok & r.bytes().await.is_ok()
        }
        Err(_) => false,
    }
}

/// `CONNECTIONS` loops sending back to back for `secs`; returns (requests/s, errors).
async fn closed_loop(t: Arc<Target>, secs: f64) -> (f64, u64) {
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, t, stop, ok, errors) = (
            client.clone(),
            t.clone(),
            stop.clone(),
            ok.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if send(&client, &t).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        errors.load(Ordering::Relaxed),
    )
}

/// A request every 1/`OPEN_LOOP_RATE` s for `secs`; latency from the scheduled send time.
async fn open_loop(t: Arc<Target>, secs: f64) -> (Vec<Duration>, u64) {
    let client = client();
    let n = (secs * OPEN_LOOP_RATE as f64) as usize;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / OPEN_LOOP_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let scheduled = tick.tick().await;
        let (client, t) = (client.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let ok = send(&client, &t).await;
            (ok, scheduled.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((true, d)) => latencies.push(d),
            _ => errors += 1,
        }
    }
    latencies.sort();
    (latencies, errors)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The disk's own durable-write latency: 4 KiB appended and `fdatasync`ed, 1,000 times,
/// in the folder the SQLite file lives in. (p50, p99) in ms: the floor under any
/// acknowledgement that waits for its delivery to be on disk.
fn disk_sync_latency(dir: &std::path::Path) -> std::io::Result<(f64, f64)> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut lat = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    std::fs::remove_file(&path)?;
    lat.sort();
    Ok((percentile(&lat, 0.50), percentile(&lat, 0.99)))
}

/// Open loop (latency at 500 req/s) then closed loop (saturation throughput) against `t`; `probe` is called after each (diagnostics).
fn measure(
    load: &tokio::runtime::Runtime,
    t: Arc<Target>,
    secs: f64,
    probe: &dyn Fn(&str),
) -> Figures {
    load.block_on(async {
        // Warm up connections, caches and the database file, then let the background
        // checkpointer catch up, so the latency phase sees the steady state of a service
        // taking 500 req/s rather than the backlog of a saturation run.
        let _ = closed_loop(t.clone(), 0.5).await;
        probe("warm-up");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (lat, open_errors) = open_loop(t.clone(), secs).await;
        probe("open loop");
        let (closed_rps, closed_errors) = closed_loop(t, secs).await;
        probe("closed loop");
        Figures {
            closed_rps,
            closed_errors,
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
            open_sent: lat.len() + open_errors as usize,
            open_errors,
        }
    })
}

/// A worker claiming and finishing deliveries on `store` until `stop`; counts them.
fn spawn_worker(
    server: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    processed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    server.spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match store.claim_delivery().await {
                Ok(Some(d)) => {
                    let _ = store.finish_delivery(&d.id, Outcome::Done).await;
                    processed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

/// The PostgreSQL server to bench against, from `PAVED_TEST_DATABASE_URL`.
fn pg_server_url() -> Option<String> {
    std::env::var("PAVED_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Creates `paved_bench_<hex>` on `server`; returns (its name, its URL).
async fn create_bench_database(
    server: &str,
) -> Result<(String, String), Box<dyn std::error::Error>> {
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

/// Drops the bench database (its store must be closed first; FORCE ends stragglers).
async fn drop_bench_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(())
}

/// What the PostgreSQL phases measured.
struct PgRun {
    paved: Figures,
    mixed: Figures,
    stored: u64,
    accepted: u64,
    processed: u64,
    db_bytes: i64,
}

/// (d) and (e): Paved's intake on a `PgStore` at `url`, then with a worker draining it.
fn bench_postgres(
    server: &tokio::runtime::Runtime,
    load: &tokio::runtime::Runtime,
    url: &str,
    body: &Bytes,
    signature: &str,
    secrets: &[WebhookSecret],
    secs: f64,
) -> Result<PgRun, Box<dyn std::error::Error>> {
    let pg = server.block_on(PgStore::open(url))?;
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let state = IntakeState::new(
        store.clone(),
        secrets.to_vec(),
        Arc::new(tokio::sync::Notify::new()),
        paved::config::RepoFilter::any(),
    );
    let addr = server.block_on(serve(intake::router(state.clone())))?;
    let target = Arc::new(Target {
        addr,
        body: body.clone(),
        signature: signature.to_owned(),
    });
    let paved = measure(load, target.clone(), secs, &|_| {});
    let stored: u64 = server.block_on(store.delivery_counts())?.values().sum();
    let accepted = state.metrics.webhook_count("accepted");
    let stop = Arc::new(AtomicBool::new(false));
    let processed = Arc::new(AtomicU64::new(0));
    let worker = spawn_worker(server, store.clone(), stop.clone(), processed.clone());
    let mixed = measure(load, target, secs, &|_| {});
    stop.store(true, Ordering::Relaxed);
    let _ = server.block_on(worker);
    let db_bytes = server
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
                .fetch_one(&mut conn)
                .await?;
            let _ = conn.close().await;
            Ok::<_, sqlx::Error>(size)
        })
        .unwrap_or(0);
    server.block_on(pg.close());
    Ok(PgRun {
        paved,
        mixed,
        stored,
        accepted,
        processed: processed.load(Ordering::Relaxed),
        db_bytes,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("PAVED_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 60.0)
        .unwrap_or(5.0);
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/github/webhooks/pull_request/opened.payload.json"
    );
    let body = Bytes::from(std::fs::read(fixture)?);
    let secret = WebhookSecret::new(SECRET);
    let signature = sign(&secret, &body);
    let secrets = vec![secret];
    let compressed = zstd::bulk::compress(&body, paved::store::sqlite::BODY_ZSTD_LEVEL)?;
    println!(
        "body: {} bytes, stored as {} bytes (zstd level {}); {} connections closed loop, {} req/s open loop, {secs} s each",
        body.len(),
        compressed.len(),
        paved::store::sqlite::BODY_ZSTD_LEVEL,
        CONNECTIONS,
        OPEN_LOOP_RATE
    );

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("server")
        .enable_all()
        .build()?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let (sync_p50, sync_p99) = disk_sync_latency(dir.path())?;

    // (a) bare handler.
    let addr = server.block_on(serve(bare_router(Arc::new(secrets.clone()))))?;
    let bare = measure(
        &load,
        Arc::new(Target {
            addr,
            body: body.clone(),
            signature: signature.clone(),
        }),
        secs,
        &|_| {},
    );

    // (b) Paved's intake with SQLite.
    let db = dir.path().join("bench.db");
    let db = db.to_str().ok_or("temp path is not UTF-8")?.to_owned();
    let store = Arc::new(server.block_on(SqliteStore::open(&db))?);
    let state = IntakeState::new(
        store.clone(),
        secrets.clone(),
        Arc::new(tokio::sync::Notify::new()),
        paved::config::RepoFilter::any(),
    );
    let addr = server.block_on(serve(intake::router(state.clone())))?;
    let target = Arc::new(Target {
        addr,
        body: body.clone(),
        signature: signature.clone(),
    });
    let verbose = std::env::var_os("PAVED_BENCH_VERBOSE").is_some();
    let probe = |phase: &str| {
        if verbose {
            println!("  after {phase}: {:?}", store.group_commit_stats());
        }
    };
    let paved = measure(&load, target.clone(), secs, &probe);
    let gc = store.group_commit_stats();
    let stored: u64 = server.block_on(store.delivery_counts())?.values().sum();
    let accepted = state.metrics.webhook_count("accepted");

    // (c) the same, with a worker draining the queue concurrently.
    let stop = Arc::new(AtomicBool::new(false));
    let processed = Arc::new(AtomicU64::new(0));
    let worker = spawn_worker(&server, store.clone(), stop.clone(), processed.clone());
    let mixed = measure(&load, target, secs, &probe);
    stop.store(true, Ordering::Relaxed);
    let _ = server.block_on(worker);
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let wal_bytes = std::fs::metadata(format!("{db}-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    server.block_on(store.close());

    // (d), (e) Paved's intake with PostgreSQL, on a database made for this run.
    let postgres: Result<PgRun, String> = match pg_server_url() {
        None => Err("skipped: PAVED_TEST_DATABASE_URL is not set (set it to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/test, to measure (d) and (e))".into()),
        Some(server_url) => match server.block_on(create_bench_database(&server_url)) {
            Err(e) => Err(format!("failed: cannot create a bench database on {}: {e}", paved::service::redact_url(&server_url))),
            Ok((name, url)) => {
                let run = bench_postgres(&server, &load, &url, &body, &signature, &secrets, secs)
                    .map_err(|e| format!("failed: {e}"));
                if let Err(e) = server.block_on(drop_bench_database(&server_url, &name)) {
                    eprintln!("warning: could not drop database {name}: {e}");
                }
                run
            }
        },
    };

    println!();
    println!(
        "{:<44} {:>12} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "", "closed req/s", "p50 ms", "p99 ms", "max ms", "open n", "errors"
    );
    let mut rows = vec![
        ("(a) bare handler, signature only", bare),
        ("(b) Paved intake + SQLite (fsync)", paved),
        ("(c) as (b), worker claiming concurrently", mixed),
    ];
    if let Ok(pg) = &postgres {
        rows.push(("(d) Paved intake + PostgreSQL", pg.paved));
        rows.push(("(e) as (d), worker claiming concurrently", pg.mixed));
    }
    for (name, f) in rows {
        println!(
            "{:<44} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>7}",
            name,
            f.closed_rps,
            f.p50_ms,
            f.p99_ms,
            f.max_ms,
            f.open_sent,
            f.closed_errors + f.open_errors
        );
    }
    println!();
    println!(
        "disk: 4 KiB write + fdatasync p50 {sync_p50:.2} ms, p99 {sync_p99:.2} ms (the floor under a durable acknowledgement)"
    );
    println!(
        "throughput (b)/(a) = {:.2} (target >= 0.5); p99 at {} req/s: (c)/(a) = {:.2} (target <= 3), (c)/(b) = {:.2} (what the worker adds), (c)/((a) + disk p99) = {:.2}",
        paved.closed_rps / bare.closed_rps,
        OPEN_LOOP_RATE,
        mixed.p99_ms / bare.p99_ms,
        mixed.p99_ms / paved.p99_ms,
        mixed.p99_ms / (bare.p99_ms + sync_p99)
    );
    println!(
        "(b) stored {stored} deliveries for {accepted} acknowledged, in {} commits ({:.1} per commit), {} WAL restarts; (c) worker processed {}; database {:.1} MB, WAL {:.1} MB",
        gc.commits,
        gc.deliveries as f64 / gc.commits.max(1) as f64,
        gc.wal_restarts,
        processed.load(Ordering::Relaxed),
        db_bytes as f64 / 1e6,
        wal_bytes as f64 / 1e6
    );
    match &postgres {
        Ok(pg) => {
            println!(
                "(d) stored {} deliveries for {} acknowledged; (e) worker processed {}; database {:.1} MB",
                pg.stored,
                pg.accepted,
                pg.processed,
                pg.db_bytes as f64 / 1e6
            );
            println!();
            println!(
                "{:<44} {:>12} {:>9} {:>9}",
                "per store (intake only)", "closed req/s", "p50 ms", "p99 ms"
            );
            for (name, f) in [("SQLite (b)", paved), ("PostgreSQL (d)", pg.paved)] {
                println!(
                    "{:<44} {:>12.0} {:>9.2} {:>9.2}",
                    name, f.closed_rps, f.p50_ms, f.p99_ms
                );
            }
            println!(
                "PostgreSQL/SQLite: throughput (d)/(b) {:.2} (target >= 0.5), p99 {:.2} (with a worker, (e)/(c): throughput {:.2}, p99 {:.2})",
                pg.paved.closed_rps / paved.closed_rps,
                pg.paved.p99_ms / paved.p99_ms,
                pg.mixed.closed_rps / mixed.closed_rps,
                pg.mixed.p99_ms / mixed.p99_ms
            );
            Ok(())
        }
        Err(why) => {
            println!("PostgreSQL (d), (e): {why}");
            if why.starts_with("failed") {
                Err(why.clone().into())
            } else {
                Ok(())
            }
        }
    }
}
