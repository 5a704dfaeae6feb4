//! The embedded SQLite store.
//!
//! Durability and throughput of webhook acknowledgement are decided here:
//!
//! - The database runs in WAL mode with `synchronous=FULL`, so a commit has been fsync'd
//!   when it returns: a 202 means the delivery survives a power cut.
//! - Every write goes through one **writer task** that owns one connection. Callers of
//!   [`Store::accept_delivery`] compress the body (zstd) in their own task and send it over a
//!   channel; the writer takes everything waiting (up to [`MAX_BATCH`]), inserts it in one
//!   transaction, commits once (one fsync for the whole batch: *group commit*) and then
//!   answers each caller. Other writes (claim, finish, …) go through the same task, so
//!   writers never wait on SQLite's file lock.
//! - Reads use a small pool of connections; in WAL mode they never block the writer.
//! - The WAL is checkpointed (PASSIVE) by a background task on its own connection rather
//!   than by the committing writer, so copying pages to the database file does not stall
//!   acknowledgements. Under continuous writes a passive checkpoint never catches up
//!   with the writer, so SQLite would never start the WAL over and it would grow without
//!   bound; when it is large and the background task has copied nearly all of it, the
//!   writer itself runs a short `wal_checkpoint(RESTART)` between two batches.

use super::{
    Accepted, Delivery, DeliveryRecord, DeliveryState, NewDelivery, NewRun, Outcome, RunRecord,
    Store, StoreError,
};
use crate::ids::{DeliveryId, PrNumber, RepoName};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The most deliveries one group commit writes.
pub const MAX_BATCH: usize = 1024;

/// zstd level for stored bodies. Webhook JSON is very repetitive (URLs), so even the
/// fastest levels shrink a ~28 KB `pull_request` body several times over.
pub const BODY_ZSTD_LEVEL: i32 = 1;

/// Bodies larger than this are refused when read back (GitHub caps payloads at 25 MB).
const MAX_BODY_LEN: usize = 32 * 1024 * 1024;

/// How long a connection waits for SQLite's file lock (another process, a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Capacity of the writer's queue; callers wait (backpressure) when it is full.
const QUEUE_CAPACITY: usize = 8192;

/// How often the background task copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL size (pages) above which the writer starts the WAL over from its beginning...
#[cfg(not(test))]
const WAL_RESTART_PAGES: i64 = 8192;
#[cfg(test)]
const WAL_RESTART_PAGES: i64 = 256;
/// ...once no more than this many pages remain to be copied (so the stall is short)...
const WAL_RESTART_LAG: i64 = 64;
/// ...which the checkpoint task tries to reach in at most this many passes in a row.
const CATCH_UP_PASSES: usize = 8;
/// How long a WAL restart waits for readers before giving up until next time.
const RESTART_WAIT: Duration = Duration::from_millis(5);

/// Bodies at least this large are (de)compressed on a blocking thread, not a runtime one.
const BLOCKING_CODEC_BYTES: usize = 1024 * 1024;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, ()> + Send>;

struct PendingAccept {
    row: DeliveryRow,
    reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

/// A delivery ready for the INSERT: body already compressed.
struct DeliveryRow {
    id: String,
    event: String,
    action: Option<String>,
    queue_key: String,
    body: Vec<u8>,
    body_len: i64,
    now: i64,
}

enum Op {
    Accept(PendingAccept),
    Job(Job),
    Shutdown(oneshot::Sender<()>),
}

/// SQLite implementation of [`Store`]. Cheap to clone; the writer task stops when the
/// last clone is dropped or [`SqliteStore::close`] is called.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    pool: SqlitePool,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    deliveries: AtomicU64,
    wal_restarts: AtomicU64,
    max_commit_us: AtomicU64,
    slow_commits: AtomicU64,
    max_job_us: AtomicU64,
    max_restart_us: AtomicU64,
    /// Set by the checkpoint task, taken by the writer.
    restart_wanted: AtomicBool,
}

/// How well group commit is grouping: deliveries written per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommitStats {
    /// Transactions that wrote accepted deliveries.
    pub commits: u64,
    /// Deliveries written by them (new or duplicate).
    pub deliveries: u64,
    /// Times the writer started the WAL over.
    pub wal_restarts: u64,
    /// The longest group commit (insert + fsync), in microseconds.
    pub max_commit_us: u64,
    /// Group commits that took more than 5 ms.
    pub slow_commits: u64,
    /// The longest other write (claim, finish, …), in microseconds.
    pub max_job_us: u64,
    /// The longest WAL restart, in microseconds.
    pub max_restart_us: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Connection options for `url_or_path`: a `sqlite:` URL or a file path.
fn connect_options(url_or_path: &str) -> Result<SqliteConnectOptions, StoreError> {
    let opts = if url_or_path.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url_or_path)?
    } else {
        SqliteConnectOptions::new().filename(Path::new(url_or_path))
    };
    Ok(opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true))
}

/// Applies the migrations in `migrations/sqlite` to the database at `url_or_path`
/// (created if missing).
pub async fn migrate(url_or_path: &str) -> Result<(), StoreError> {
    let mut conn = connect_options(url_or_path)?.connect().await?;
    sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database at `url_or_path`, a
    /// `sqlite:` URL or a file path, and starts the writer task. Must be called from
    /// within a Tokio runtime.
    pub async fn open(url_or_path: &str) -> Result<Self, StoreError> {
        let opts = connect_options(url_or_path)?;
        let mut conn = opts
            .clone()
            // Checkpoints are the background task's job, never the committing writer's.
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", "67108864")
            .disable_statement_logging()
            .connect()
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;

        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;

        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(Counters::default());
        tokio::spawn(writer_loop(conn, rx, stats.clone()));
        let checkpointer = opts.clone().disable_statement_logging().connect().await?;
        tokio::spawn(checkpoint_loop(checkpointer, tx.downgrade(), stats.clone()));
        Ok(SqliteStore {
            writer: tx,
            pool,
            stats,
        })
    }

    /// Applies the migrations without opening a store (same as [`migrate`]).
    pub async fn migrate(url_or_path: &str) -> Result<(), StoreError> {
        migrate(url_or_path).await
    }

    /// Group commit counters since open.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            deliveries: self.stats.deliveries.load(Ordering::Relaxed),
            wal_restarts: self.stats.wal_restarts.load(Ordering::Relaxed),
            max_commit_us: self.stats.max_commit_us.load(Ordering::Relaxed),
            slow_commits: self.stats.slow_commits.load(Ordering::Relaxed),
            max_job_us: self.stats.max_job_us.load(Ordering::Relaxed),
            max_restart_us: self.stats.max_restart_us.load(Ordering::Relaxed),
        }
    }

    /// Finishes the writes already queued, stops the writer and closes the connections.
    /// Later calls on any clone fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Op::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.pool.close().await;
    }

    /// [`Store::claim_delivery`] with an explicit clock (Unix milliseconds).
    pub async fn claim_delivery_at(&self, now_ms: i64) -> Result<Option<Delivery>, StoreError> {
        let row = self
            .write(move |conn| Box::pin(async move { claim(conn, now_ms).await }))
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(Delivery {
                id: DeliveryId::parse(&r.id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                body: if usize::try_from(r.body_len).unwrap_or(usize::MAX) >= BLOCKING_CODEC_BYTES {
                    let (data, len) = (r.body, r.body_len);
                    tokio::task::spawn_blocking(move || decompress_body(&data, len))
                        .await
                        .map_err(|e| StoreError::Corrupt(format!("decompression task: {e}")))??
                } else {
                    decompress_body(&r.body, r.body_len)?
                },
                event: r.event,
                action: r.action,
                queue_key: r.queue_key,
                attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            })),
        }
    }

    /// Runs `f` on the writer's connection, in order with the other writes.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let _ = tx.send(f(conn).await);
            })
        });
        self.writer
            .send(Op::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses a body with a per-thread reusable zstd context.
fn compress_body(body: &[u8]) -> Result<Vec<u8>, StoreError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Compressor::new(BODY_ZSTD_LEVEL)
                    .map_err(|e| StoreError::Corrupt(format!("zstd: {e}")))?,
            );
        }
        match slot.as_mut() {
            Some(c) => c
                .compress(body)
                .map_err(|e| StoreError::Corrupt(format!("zstd: {e}"))),
            None => Err(StoreError::Corrupt("zstd: no compressor".into())),
        }
    })
}

fn decompress_body(data: &[u8], len: i64) -> Result<Vec<u8>, StoreError> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_BODY_LEN)
        .ok_or_else(|| StoreError::Corrupt(format!("body length {len}")))?;
    let body = zstd::bulk::decompress(data, len)
        .map_err(|e| StoreError::Corrupt(format!("body does not decompress: {e}")))?;
    if body.len() != len {
        return Err(StoreError::Corrupt(format!(
            "body is {} bytes, expected {len}",
            body.len()
        )));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------
// The writer task
// ---------------------------------------------------------------------------------------

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>, stats: Arc<Counters>) {
    let mut accepts: Vec<PendingAccept> = Vec::new();
    let mut jobs: Vec<Job> = Vec::new();
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut taken = 0usize;
        while let Some(op) = next.take() {
            taken += 1;
            match op {
                Op::Accept(a) => accepts.push(a),
                Op::Job(j) => jobs.push(j),
                Op::Shutdown(reply) => {
                    shutdown = Some(reply);
                    break;
                }
            }
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !accepts.is_empty() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .deliveries
                .fetch_add(accepts.len() as u64, Ordering::Relaxed);
            let t = std::time::Instant::now();
            write_batch(&mut conn, &mut accepts).await;
            let us = t.elapsed().as_micros() as u64;
            stats.max_commit_us.fetch_max(us, Ordering::Relaxed);
            if us > 5_000 {
                stats.slow_commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        for job in jobs.drain(..) {
            let t = std::time::Instant::now();
            job(&mut conn).await;
            let us = t.elapsed().as_micros() as u64;
            stats.max_job_us.fetch_max(us, Ordering::Relaxed);
        }
        if stats.restart_wanted.swap(false, Ordering::Relaxed) {
            let t = std::time::Instant::now();
            match restart_wal(&mut conn).await {
                Ok(true) => {
                    stats.wal_restarts.fetch_add(1, Ordering::Relaxed);
                }
                // A reader still uses the WAL; the checkpoint task will ask again.
                Ok(false) => tracing::debug!("WAL restart postponed: readers busy"),
                Err(e) => tracing::warn!(error = %e, "WAL restart failed"),
            }
            let us = t.elapsed().as_micros() as u64;
            stats.max_restart_us.fetch_max(us, Ordering::Relaxed);
        }
        if let Some(reply) = shutdown.take() {
            rx.close();
            // Answer whatever was queued before the channel closed.
            while let Ok(op) = rx.try_recv() {
                match op {
                    Op::Accept(a) => accepts.push(a),
                    Op::Job(j) => jobs.push(j),
                    Op::Shutdown(r) => {
                        let _ = r.send(());
                    }
                }
            }
            if !accepts.is_empty() {
                write_batch(&mut conn, &mut accepts).await;
            }
            for job in jobs.drain(..) {
                job(&mut conn).await;
            }
            let _ = conn.close().await;
            let _ = reply.send(());
            return;
        }
    }
    let _ = conn.close().await;
}

/// Copies the last few WAL pages and makes the next commit start the WAL over. Waits at
/// most [`RESTART_WAIT`] for readers still using the WAL (acknowledgements wait behind
/// this); gives up (`Ok(false)`) rather than wait longer.
async fn restart_wal(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        RESTART_WAIT.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    let res: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut *conn)
            .await;
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    let (busy, _log, _copied) = res?;
    Ok(busy == 0)
}

/// Rows per INSERT statement: a batch is written as one statement per set bit of its
/// size (a batch of 7 is 4 + 2 + 1 rows), so few statements run per commit and only
/// `log2(MAX_BATCH) + 1` statement shapes exist, each prepared once and cached.
const CHUNK_SHIFTS: u32 = MAX_BATCH.trailing_zeros() + 1;
const PARAMS_PER_ROW: usize = 7;
const _: () = assert!(MAX_BATCH.is_power_of_two() && MAX_BATCH * PARAMS_PER_ROW <= 32766);

/// `INSERT … VALUES (…), (…) … ON CONFLICT(id) DO NOTHING RETURNING id` for
/// `1 << shift` rows. Rows skipped as duplicates are not returned.
fn insert_sql(shift: u32) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..CHUNK_SHIFTS)
            .map(|shift| {
                let rows: Vec<String> = (0..1usize << shift)
                    .map(|r| {
                        let p = r * PARAMS_PER_ROW;
                        format!(
                            "(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, 'pending', 0, ?{}, ?{})",
                            p + 1,
                            p + 2,
                            p + 3,
                            p + 4,
                            p + 5,
                            p + 6,
                            p + 7,
                            p + 7
                        )
                    })
                    .collect();
                format!(
                    "INSERT INTO deliveries (id, event, action, queue_key, body, body_len, \
                     state, attempts, next_attempt_at, received_at) VALUES {} \
                     ON CONFLICT(id) DO NOTHING RETURNING id",
                    rows.join(", ")
                )
            })
            .collect()
    });
    all.get(shift as usize).map_or("", String::as_str)
}

/// Splits `n` rows into chunks of powers of two, largest first.
fn chunks(n: usize) -> impl Iterator<Item = u32> {
    (0..CHUNK_SHIFTS).rev().filter(move |s| n & (1 << s) != 0)
}

/// Runs the inserts for `rows` (a power of two of them) and adds the ids inserted.
async fn insert_chunk<'c>(
    conn: &mut SqliteConnection,
    shift: u32,
    rows: impl Iterator<Item = &'c DeliveryRow>,
    inserted: &mut std::collections::HashSet<String>,
) -> Result<(), sqlx::Error> {
    let mut q = sqlx::query_scalar::<_, String>(insert_sql(shift));
    for row in rows {
        q = q
            .bind(row.id.as_str())
            .bind(row.event.as_str())
            .bind(row.action.as_deref())
            .bind(row.queue_key.as_str())
            .bind(row.body.as_slice())
            .bind(row.body_len)
            .bind(row.now);
    }
    inserted.extend(q.fetch_all(&mut *conn).await?);
    Ok(())
}

/// Writes `rows` durably: one statement (autocommit) when the batch size is a power of
/// two, else one transaction. Either way, one commit and one fsync. Returns, for each
/// row, whether it was new; of several rows with one id, the first wins.
async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[&DeliveryRow],
) -> Result<Vec<Accepted>, sqlx::Error> {
    let mut inserted = std::collections::HashSet::with_capacity(rows.len());
    if rows.len().is_power_of_two() {
        insert_chunk(
            conn,
            rows.len().trailing_zeros(),
            rows.iter().copied(),
            &mut inserted,
        )
        .await?;
    } else {
        let mut tx = conn.begin().await?;
        let mut at = 0;
        for shift in chunks(rows.len()) {
            let n = 1usize << shift;
            insert_chunk(
                &mut tx,
                shift,
                rows[at..at + n].iter().copied(),
                &mut inserted,
            )
            .await?;
            at += n;
        }
        tx.commit().await?;
    }
    // `inserted` holds each new id once: its first row is the new one.
    Ok(rows
        .iter()
        .map(|r| {
            if inserted.remove(&r.id) {
                Accepted::New
            } else {
                Accepted::Duplicate
            }
        })
        .collect())
}

/// Inserts all of `batch` with one commit (one fsync) and answers every caller. If that
/// fails, each delivery is retried on its own, so every caller gets its own answer.
async fn write_batch(conn: &mut SqliteConnection, batch: &mut Vec<PendingAccept>) {
    let rows: Vec<&DeliveryRow> = batch.iter().map(|p| &p.row).collect();
    let result = insert_rows(conn, &rows).await;
    drop(rows);
    match result {
        Ok(results) => {
            for (p, r) in batch.drain(..).zip(results) {
                let _ = p.reply.send(Ok(r));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "group commit failed; writing one by one");
            for p in batch.drain(..) {
                let r = insert_rows(conn, &[&p.row])
                    .await
                    .map_err(StoreError::from)
                    .and_then(|v| {
                        v.into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Corrupt("insert gave no result".into()))
                    });
                let _ = p.reply.send(r);
            }
        }
    }
}

/// Checkpoints the WAL from its own connection, so the writer never copies pages while
/// callers wait. PASSIVE only: it never takes the write lock, so it never makes the
/// writer wait. When the WAL has grown past [`WAL_RESTART_PAGES`], it checkpoints again
/// and again until it has caught up with the writer to within [`WAL_RESTART_LAG`] pages,
/// then asks the writer to start the WAL over (see the module docs) and stays out of its
/// way until it has. Stops when the store is gone.
async fn checkpoint_loop(
    mut conn: SqliteConnection,
    writer: mpsc::WeakSender<Op>,
    stats: Arc<Counters>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'ticks: loop {
        tick.tick().await;
        if writer.upgrade().is_none() {
            break;
        }
        if stats.restart_wanted.load(Ordering::Relaxed) {
            continue;
        }
        for _pass in 0..CATCH_UP_PASSES {
            let res: Result<(i64, i64, i64), sqlx::Error> =
                sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await;
            match res {
                Ok((_busy, log, copied)) => {
                    if log < WAL_RESTART_PAGES {
                        break;
                    }
                    if log - copied <= WAL_RESTART_LAG {
                        stats.restart_wanted.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                    continue 'ticks;
                }
            }
        }
    }
    let _ = conn.close().await;
}

// ---------------------------------------------------------------------------------------
// Claim and finish (run on the writer's connection)
// ---------------------------------------------------------------------------------------

struct ClaimedRow {
    id: String,
    event: String,
    action: Option<String>,
    queue_key: String,
    body: Vec<u8>,
    body_len: i64,
    attempts: i64,
}

/// The head of a queue key is its oldest delivery that is pending or running. A
/// delivery is claimable when it is pending, due, and the head of its key with nothing
/// of that key running, so one key's deliveries run one at a time and in arrival order
/// (a delivery waiting for a retry holds back the later ones of its key).
///
/// Both `NOT EXISTS` are index lookups (`deliveries_active_by_key`, `deliveries_running`);
/// the outer scan walks pending deliveries in arrival order and stops at the first
/// claimable one.
const CLAIM: &str = "UPDATE deliveries SET state = 'running', attempts = attempts + 1 \
     WHERE seq = ( \
       SELECT d.seq FROM deliveries d \
       WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries r \
           WHERE r.queue_key = d.queue_key AND r.state = 'running') \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries o \
           WHERE o.queue_key = d.queue_key AND o.state IN ('pending', 'running') \
             AND o.seq < d.seq) \
       ORDER BY d.seq LIMIT 1) \
     RETURNING id, event, action, queue_key, body, body_len, attempts";

async fn claim(conn: &mut SqliteConnection, now: i64) -> Result<Option<ClaimedRow>, StoreError> {
    let row = sqlx::query(CLAIM)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(None),
        Some(r) => Ok(Some(ClaimedRow {
            id: r.try_get("id")?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            queue_key: r.try_get("queue_key")?,
            body: r.try_get("body")?,
            body_len: r.try_get("body_len")?,
            attempts: r.try_get("attempts")?,
        })),
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is negative")))
}

fn parse_state(s: &str) -> Result<DeliveryState, StoreError> {
    Ok(match s {
        "pending" => DeliveryState::Pending,
        "running" => DeliveryState::Running,
        "done" => DeliveryState::Done,
        "failed" => DeliveryState::Failed,
        other => return Err(StoreError::Corrupt(format!("delivery state {other:?}"))),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError> {
        let NewDelivery {
            id,
            event,
            action,
            queue_key,
            body,
        } = delivery;
        // Compressed here, in the caller's task, so the writer only writes.
        let compressed = if body.len() >= BLOCKING_CODEC_BYTES {
            let body = body.clone();
            tokio::task::spawn_blocking(move || compress_body(&body))
                .await
                .map_err(|e| StoreError::Corrupt(format!("compression task: {e}")))??
        } else {
            compress_body(&body)?
        };
        let body_len =
            i64::try_from(body.len()).map_err(|_| StoreError::Corrupt("body too large".into()))?;
        let (tx, rx) = oneshot::channel();
        let op = Op::Accept(PendingAccept {
            row: DeliveryRow {
                id: id.as_str().to_owned(),
                event,
                action,
                queue_key,
                body: compressed,
                body_len,
                now: now_ms(),
            },
            reply: tx,
        });
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim_delivery(&self) -> Result<Option<Delivery>, StoreError> {
        self.claim_delivery_at(now_ms()).await
    }

    async fn finish_delivery(&self, id: &DeliveryId, outcome: Outcome) -> Result<(), StoreError> {
        let log_id = id.clone();
        let id = id.as_str().to_owned();
        let now = now_ms();
        let (state, error, next) = match outcome {
            Outcome::Done => (DeliveryState::Done, None, None),
            Outcome::Failed { error } => (DeliveryState::Failed, Some(error), None),
            Outcome::Retry { error, after } => {
                let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                (
                    DeliveryState::Pending,
                    Some(error),
                    Some(now.saturating_add(after)),
                )
            }
        };
        let changed = self
            .write(move |conn| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "UPDATE deliveries SET state = ?2, last_error = ?3, \
                         next_attempt_at = COALESCE(?4, next_attempt_at) \
                         WHERE id = ?1 AND state = 'running'",
                    )
                    .bind(&id)
                    .bind(state.as_str())
                    .bind(error)
                    .bind(next)
                    .execute(&mut *conn)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await?;
        if changed == 0 {
            tracing::warn!(delivery = %log_id, "finish_delivery: delivery was not running");
        }
        Ok(())
    }

    async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
        self.write(|conn| {
            Box::pin(async move {
                let done =
                    sqlx::query("UPDATE deliveries SET state = 'pending' WHERE state = 'running'")
                        .execute(&mut *conn)
                        .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, event, action, queue_key, state, attempts, last_error, received_at \
             FROM deliveries WHERE id = ?1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let state: String = r.try_get("state")?;
        let attempts: i64 = r.try_get("attempts")?;
        Ok(Some(DeliveryRecord {
            id: r.try_get("id")?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            queue_key: r.try_get("queue_key")?,
            state: parse_state(&state)?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            last_error: r.try_get("last_error")?,
            received_at: format_ms(r.try_get("received_at")?),
        }))
    }

    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        let mut out: BTreeMap<String, u64> = [
            DeliveryState::Pending,
            DeliveryState::Running,
            DeliveryState::Done,
            DeliveryState::Failed,
        ]
        .into_iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
        for (state, n) in rows {
            out.insert(state, to_u64(n, "count")?);
        }
        Ok(out)
    }

    async fn pr_comment(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT comment_id FROM pr_comments WHERE repo = ?1 AND pr = ?2")
                .bind(repo.to_string())
                .bind(to_i64(pr.0, "pull request number")?)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(c,)| to_u64(c, "comment id")).transpose()
    }

    async fn set_pr_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment_id: u64,
    ) -> Result<(), StoreError> {
        let repo = repo.to_string();
        let pr = to_i64(pr.0, "pull request number")?;
        let comment_id = to_i64(comment_id, "comment id")?;
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO pr_comments (repo, pr, comment_id) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
                )
                .bind(&repo)
                .bind(pr)
                .bind(comment_id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn insert_run(&self, run: NewRun) -> Result<i64, StoreError> {
        let pr = to_i64(run.pr.0, "pull request number")?;
        let report = serde_json::to_string(&run.report)
            .map_err(|e| StoreError::Corrupt(format!("report: {e}")))?;
        let now = now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO runs (repo, pr, head_sha, base_sha, delivery_id, report, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                )
                .bind(run.repo.to_string())
                .bind(pr)
                .bind(run.head_sha.as_str())
                .bind(run.base_sha.as_str())
                .bind(run.delivery_id.as_str())
                .bind(report)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?;
                Ok(id)
            })
        })
        .await
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, repo, pr, head_sha, base_sha, delivery_id, report, created_at \
             FROM runs WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let report: String = r.try_get("report")?;
        Ok(Some(RunRecord {
            id: r.try_get("id")?,
            repo: r.try_get("repo")?,
            pr: to_u64(r.try_get("pr")?, "pull request number")?,
            head_sha: r.try_get("head_sha")?,
            base_sha: r.try_get("base_sha")?,
            delivery_id: r.try_get("delivery_id")?,
            report: serde_json::from_str(&report)
                .map_err(|e| StoreError::Corrupt(format!("run {id} report: {e}")))?,
            created_at: format_ms(r.try_get("created_at")?),
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn delivery(id: &str, key: &str, body: &str) -> NewDelivery {
        NewDelivery {
            id: DeliveryId::parse(id).expect("test id"),
            event: "pull_request".into(),
            action: Some("opened".into()),
            queue_key: key.into(),
            body: Bytes::from(body.to_owned()),
        }
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteStore {
        let path = dir.path().join("paved.db");
        SqliteStore::open(path.to_str().expect("utf-8 path"))
            .await
            .expect("open store")
    }

    fn id(s: &str) -> DeliveryId {
        DeliveryId::parse(s).expect("test id")
    }

    #[tokio::test]
    async fn duplicate_id_is_reported_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let a = store
            .accept_delivery(delivery("d-1", "o/r#1", "{\"first\":true}"))
            .await
            .expect("accept");
        assert_eq!(a, Accepted::New);
        let mut second = delivery("d-1", "o/r#2", "{\"second\":true}");
        second.event = "push".into();
        let b = store.accept_delivery(second).await.expect("accept again");
        assert_eq!(b, Accepted::Duplicate);

        let rec = store
            .delivery(&id("d-1"))
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(rec.event, "pull_request");
        assert_eq!(rec.queue_key, "o/r#1");
        assert_eq!(rec.state, DeliveryState::Pending);
        let claimed = store.claim_delivery().await.expect("claim").expect("one");
        assert_eq!(claimed.body, b"{\"first\":true}");
        assert_eq!(claimed.attempts, 1);
        assert!(store.claim_delivery().await.expect("claim").is_none());
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts.values().sum::<u64>(), 1);
    }

    #[tokio::test]
    async fn duplicates_within_one_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.accept_delivery(delivery(&format!("x-{}", i % 10), "o/r#1", "{}"))
                    .await
            }));
        }
        let mut new = 0;
        let mut dup = 0;
        for t in tasks {
            match t.await.expect("join").expect("accept") {
                Accepted::New => new += 1,
                Accepted::Duplicate => dup += 1,
            }
        }
        assert_eq!((new, dup), (10, 40));
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["pending"], 10);
    }

    #[test]
    fn batches_split_into_powers_of_two() {
        assert_eq!(chunks(7).collect::<Vec<_>>(), vec![2, 1, 0]);
        assert_eq!(chunks(1).collect::<Vec<_>>(), vec![0]);
        assert_eq!(
            chunks(MAX_BATCH).collect::<Vec<_>>(),
            vec![CHUNK_SHIFTS - 1]
        );
        assert_eq!(chunks(MAX_BATCH - 1).count(), CHUNK_SHIFTS as usize - 1);
        assert!(insert_sql(CHUNK_SHIFTS - 1).contains(&format!("?{}", MAX_BATCH * 7)));
    }

    #[tokio::test]
    async fn one_batch_with_duplicates_across_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paved.db");
        let store = open(&dir).await;
        store
            .accept_delivery(delivery("old", "k", "{}"))
            .await
            .expect("accept");
        store.close().await;
        let mut conn = connect_options(path.to_str().expect("utf-8"))
            .expect("options")
            .connect()
            .await
            .expect("connect");
        let row = |id: &str| DeliveryRow {
            id: id.into(),
            event: "push".into(),
            action: None,
            queue_key: "k".into(),
            body: compress_body(b"{}").expect("zstd"),
            body_len: 2,
            now: 0,
        };
        // 7 rows: chunks of 4, 2 and 1; "a" repeats in the second chunk, "b" within the
        // first, "old" was stored before.
        let rows = [
            row("a"),
            row("b"),
            row("b"),
            row("old"),
            row("a"),
            row("c"),
            row("d"),
        ];
        let refs: Vec<&DeliveryRow> = rows.iter().collect();
        let got = insert_rows(&mut conn, &refs).await.expect("insert");
        use Accepted::{Duplicate as D, New as N};
        assert_eq!(got, vec![N, N, D, D, D, N, N]);
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 5);
    }

    #[tokio::test]
    async fn body_round_trips_large_and_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        // Over BLOCKING_CODEC_BYTES: (de)compressed on a blocking thread.
        let body: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut d = delivery("big", "k", "");
        d.body = Bytes::from(body.clone());
        store.accept_delivery(d).await.expect("accept");
        let c = store.claim_delivery().await.expect("claim").expect("one");
        assert_eq!(c.body, body);
    }

    #[tokio::test]
    async fn claim_keeps_per_key_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        for (i, key) in [
            ("a1", "o/r#1"),
            ("a2", "o/r#1"),
            ("b1", "o/r#2"),
            ("a3", "o/r#1"),
        ] {
            store
                .accept_delivery(delivery(i, key, "{}"))
                .await
                .expect("accept");
        }
        let first = store.claim_delivery().await.expect("claim").expect("a1");
        assert_eq!(first.id.as_str(), "a1");
        // a2 waits for a1; b1 (another key) is claimable.
        let second = store.claim_delivery().await.expect("claim").expect("b1");
        assert_eq!(second.id.as_str(), "b1");
        assert!(store.claim_delivery().await.expect("claim").is_none());
        let rec = store.delivery(&id("a1")).await.expect("read").expect("a1");
        assert_eq!(rec.state, DeliveryState::Running);

        store
            .finish_delivery(&first.id, Outcome::Done)
            .await
            .expect("finish");
        let third = store.claim_delivery().await.expect("claim").expect("a2");
        assert_eq!(third.id.as_str(), "a2");
        store
            .finish_delivery(
                &third.id,
                Outcome::Failed {
                    error: "bad manifest".into(),
                },
            )
            .await
            .expect("finish");
        let rec = store.delivery(&id("a2")).await.expect("read").expect("a2");
        assert_eq!(rec.state, DeliveryState::Failed);
        assert_eq!(rec.last_error.as_deref(), Some("bad manifest"));
        // A failed delivery does not hold back the rest of its key.
        let fourth = store.claim_delivery().await.expect("claim").expect("a3");
        assert_eq!(fourth.id.as_str(), "a3");
    }

    #[tokio::test]
    async fn retry_delay_is_respected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        store
            .accept_delivery(delivery("r1", "o/r#1", "{}"))
            .await
            .expect("accept");
        store
            .accept_delivery(delivery("r2", "o/r#1", "{}"))
            .await
            .expect("accept");
        store
            .accept_delivery(delivery("s1", "o/r#9", "{}"))
            .await
            .expect("accept");
        let c = store.claim_delivery().await.expect("claim").expect("r1");
        assert_eq!(c.id.as_str(), "r1");
        let before = now_ms();
        store
            .finish_delivery(
                &c.id,
                Outcome::Retry {
                    error: "GitHub answered 502".into(),
                    after: Duration::from_secs(60),
                },
            )
            .await
            .expect("retry");
        let rec = store.delivery(&id("r1")).await.expect("read").expect("r1");
        assert_eq!(rec.state, DeliveryState::Pending);
        assert_eq!(rec.last_error.as_deref(), Some("GitHub answered 502"));
        // Not due yet, and r2 waits behind it; the other key goes ahead.
        let other = store.claim_delivery().await.expect("claim").expect("s1");
        assert_eq!(other.id.as_str(), "s1");
        assert!(store.claim_delivery().await.expect("claim").is_none());
        assert!(store
            .claim_delivery_at(before + 59_000)
            .await
            .expect("claim")
            .is_none());
        let again = store
            .claim_delivery_at(now_ms() + 61_000)
            .await
            .expect("claim")
            .expect("r1 due");
        assert_eq!(again.id.as_str(), "r1");
        assert_eq!(again.attempts, 2);
    }

    #[tokio::test]
    async fn requeue_after_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open(&dir).await;
            store
                .accept_delivery(delivery("c1", "o/r#1", "{\"n\":1}"))
                .await
                .expect("accept");
            store
                .accept_delivery(delivery("c2", "o/r#2", "{\"n\":2}"))
                .await
                .expect("accept");
            let c = store.claim_delivery().await.expect("claim").expect("c1");
            assert_eq!(c.id.as_str(), "c1");
            // Dropped without finishing: the process "crashed" while c1 was running.
        }
        let store = open(&dir).await;
        let rec = store.delivery(&id("c1")).await.expect("read").expect("c1");
        assert_eq!(rec.state, DeliveryState::Running);
        assert_eq!(store.requeue_interrupted().await.expect("requeue"), 1);
        let c = store
            .claim_delivery()
            .await
            .expect("claim")
            .expect("c1 again");
        assert_eq!(c.id.as_str(), "c1");
        assert_eq!(c.attempts, 2);
        assert_eq!(c.body, b"{\"n\":1}");
        let c2 = store.claim_delivery().await.expect("claim").expect("c2");
        assert_eq!(c2.id.as_str(), "c2");
        store.close().await;
        assert!(matches!(
            store.accept_delivery(delivery("late", "k", "{}")).await,
            Err(StoreError::Closed)
        ));
    }

    /// Random bytes do not compress: each body costs its size in the WAL.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wal_stays_bounded_under_continuous_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        // Writers that never let the writer task idle, so SQLite never starts the WAL
        // over by itself: only the checkpoint task + writer restart keep it bounded.
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let (s, stop) = (store.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut d = delivery(&format!("w-{t}-{n}"), "k", "");
                    d.body = Bytes::from(noise(16 * 1024, t << 32 | n));
                    s.accept_delivery(d).await.expect("accept");
                    n += 1;
                }
                n
            }));
        }
        let mut written = 0u64;
        let wal = dir.path().join("paved.db-wal");
        let mut largest = 0u64;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            written += t.await.expect("join");
        }
        let stats = store.group_commit_stats();
        let bytes = written * 16 * 1024;
        // Without restarts the WAL would hold every byte written.
        assert!(
            stats.wal_restarts > 0 || bytes < 4 * 1024 * 1024,
            "{stats:?}, {bytes} bytes written"
        );
        assert!(
            largest < (bytes / 2).max(4 * 1024 * 1024),
            "WAL reached {largest} bytes for {bytes} written: {stats:?}"
        );
        let counts = store.delivery_counts().await.expect("counts");
        assert_eq!(counts["pending"], written);
    }

    #[tokio::test]
    async fn comments_and_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let repo = RepoName::parse("octo/env").expect("repo");
        assert_eq!(
            store.pr_comment(&repo, PrNumber(3)).await.expect("get"),
            None
        );
        store
            .set_pr_comment(&repo, PrNumber(3), 11)
            .await
            .expect("set");
        store
            .set_pr_comment(&repo, PrNumber(3), 12)
            .await
            .expect("set");
        assert_eq!(
            store.pr_comment(&repo, PrNumber(3)).await.expect("get"),
            Some(12)
        );
        let sha = crate::ids::CommitSha::parse(&"a".repeat(40)).expect("sha");
        let run_id = store
            .insert_run(NewRun {
                repo: repo.clone(),
                pr: PrNumber(3),
                head_sha: sha.clone(),
                base_sha: sha,
                delivery_id: id("d-9"),
                report: serde_json::json!({"checks": [{"name": "paved/schema", "ok": true}]}),
            })
            .await
            .expect("insert run");
        let run = store.run(run_id).await.expect("run").expect("stored");
        assert_eq!(run.repo, "octo/env");
        assert_eq!(run.pr, 3);
        assert_eq!(run.report["checks"][0]["name"], "paved/schema");
        assert!(store.run(run_id + 1).await.expect("run").is_none());
        store.ping().await.expect("ping");
    }

    #[tokio::test]
    async fn claim_query_uses_the_partial_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CLAIM}"))
                .bind(0i64)
                .fetch_all(&store.pool)
                .await
                .expect("plan");
        let text: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
        let joined = text.join("\n");
        assert!(joined.contains("deliveries_pending"), "{joined}");
        assert!(joined.contains("deliveries_active_by_key"), "{joined}");
        assert!(joined.contains("deliveries_running"), "{joined}");
    }
}
