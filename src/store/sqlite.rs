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

use super::rows::{
    counts_by_state, delivery_from_row, environment_from_row, invalid, operation_from_row,
    run_from_row, to_i64, to_json, to_u64, ENV_COLUMNS, OP_COLUMNS,
};
use super::{
    Accepted, Delivery, DeliveryRecord, DeliveryState, EnvironmentRecord, EnvironmentUpdate, Fence,
    Finish, NewDelivery, NewOperation, NewRun, OpState, OperationRecord, OperationUpdate, Outcome,
    ProvisionStore, RunRecord, Store, StoreError,
};
use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
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
pub(super) const BLOCKING_CODEC_BYTES: usize = 1024 * 1024;

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
                received_at_ms: r.received_at,
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

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses a body with a per-thread reusable zstd context.
pub(super) fn compress_body(body: &[u8]) -> Result<Vec<u8>, StoreError> {
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

pub(super) fn decompress_body(data: &[u8], len: i64) -> Result<Vec<u8>, StoreError> {
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
    received_at: i64,
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
     RETURNING id, event, action, queue_key, body, body_len, attempts, received_at";

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
            received_at: r.try_get("received_at")?,
        })),
    }
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
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        counts_by_state(rows)
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
        row.as_ref().map(run_from_row).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Provisioning: environments, operations, locks, merges
// ---------------------------------------------------------------------------------------

/// Why `update_operation` changed nothing: the id is unknown, or its state forbids it.
async fn explain_unchanged(conn: &mut SqliteConnection, id: i64, wanted: &str) -> StoreError {
    let state: Result<Option<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT state FROM operations WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await;
    match state {
        Err(e) => e.into(),
        Ok(None) => invalid(format!("operation {id} does not exist")),
        Ok(Some(s)) if wanted.is_empty() => {
            invalid(format!("operation {id} ({s}) was not changed"))
        }
        Ok(Some(s)) => invalid(format!("operation {id} is {s}; {wanted}")),
    }
}

/// An inventory row to write, with its JSON already encoded.
struct EnvRow {
    repo: String,
    name: String,
    team: String,
    owner: String,
    env_type: String,
    definition: String,
    state: &'static str,
    parameters: Option<String>,
    outputs: Option<String>,
    last_operation: Option<i64>,
}

impl EnvRow {
    fn of(env: &EnvironmentUpdate) -> Result<EnvRow, StoreError> {
        Ok(EnvRow {
            repo: env.repo.clone(),
            name: env.name.clone(),
            team: env.team.clone(),
            owner: env.owner.clone(),
            env_type: env.env_type.clone(),
            definition: env.definition.clone(),
            state: env.state.as_str(),
            parameters: env
                .parameters
                .as_ref()
                .map(|p| to_json(p, "parameters"))
                .transpose()?,
            outputs: env
                .outputs
                .as_ref()
                .map(|o| to_json(o, "outputs"))
                .transpose()?,
            last_operation: env.last_operation,
        })
    }
}

/// Inserts or updates an inventory row. ?8 / ?9 NULL: keep the stored parameters /
/// outputs ('{}' for a new row). ?10 NULL keeps the stored last operation too: once there
/// was one, it stays the last until another replaces it.
async fn upsert_env<'c, E>(conn: E, env: &EnvRow, now: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "INSERT INTO environments (repo, name, team, owner, env_type, definition, \
         state, parameters, outputs, last_operation, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, '{}'), \
         COALESCE(?9, '{}'), ?10, ?11) \
         ON CONFLICT(repo, name) DO UPDATE SET team = excluded.team, \
         owner = excluded.owner, env_type = excluded.env_type, \
         definition = excluded.definition, state = excluded.state, \
         parameters = COALESCE(?8, environments.parameters), \
         outputs = COALESCE(?9, environments.outputs), \
         last_operation = COALESCE(?10, environments.last_operation), \
         updated_at = excluded.updated_at",
    )
    .bind(&env.repo)
    .bind(&env.name)
    .bind(&env.team)
    .bind(&env.owner)
    .bind(&env.env_type)
    .bind(&env.definition)
    .bind(env.state)
    .bind(&env.parameters)
    .bind(&env.outputs)
    .bind(env.last_operation)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl ProvisionStore for SqliteStore {
    async fn plan_operation(&self, op: NewOperation) -> Result<(i64, bool), StoreError> {
        if !matches!(op.state, OpState::Planned | OpState::Refused) {
            return Err(invalid(format!(
                "an operation is planned as planned or refused, not {}",
                op.state.as_str()
            )));
        }
        let pr = to_i64(op.pr, "pull request number")?;
        let parameters = to_json(&op.parameters, "parameters")?;
        let approvers = to_json(&op.approvers, "approvers")?;
        let checks = to_json(&op.checks, "checks")?;
        let now = now_ms();
        // A refused operation is final at once.
        let done_at = (op.state == OpState::Refused).then_some(now);
        self.write(move |conn| {
            Box::pin(async move {
                let new: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO operations (repo, env_name, kind, merge_sha, pr, attempt, \
                     delivery_id, team, owner, env_type, definition, manifest_path, parameters, \
                     requester, merger, approvers, governance_sha, checks, state, error, \
                     started_at, finished_at, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17, ?18, ?19, ?20, ?21, ?21, ?22) \
                     ON CONFLICT(repo, merge_sha, env_name, kind, attempt) DO NOTHING \
                     RETURNING id",
                )
                .bind(&op.repo)
                .bind(&op.env_name)
                .bind(op.kind.as_str())
                .bind(&op.merge_sha)
                .bind(pr)
                .bind(i64::from(op.attempt))
                .bind(&op.delivery_id)
                .bind(&op.team)
                .bind(&op.owner)
                .bind(&op.env_type)
                .bind(&op.definition)
                .bind(&op.manifest_path)
                .bind(&parameters)
                .bind(&op.requester)
                .bind(&op.merger)
                .bind(&approvers)
                .bind(&op.governance_sha)
                .bind(&checks)
                .bind(op.state.as_str())
                .bind(&op.error)
                .bind(done_at)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(id) = new {
                    return Ok((id, true));
                }
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM operations WHERE repo = ?1 AND merge_sha = ?2 \
                     AND env_name = ?3 AND kind = ?4 AND attempt = ?5",
                )
                .bind(&op.repo)
                .bind(&op.merge_sha)
                .bind(&op.env_name)
                .bind(op.kind.as_str())
                .bind(i64::from(op.attempt))
                .fetch_one(&mut *conn)
                .await?;
                Ok((id, false))
            })
        })
        .await
    }

    async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operation_from_row).transpose()
    }

    async fn operations_for_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE repo = ?1 AND merge_sha = ?2 ORDER BY id"
        ))
        .bind(repo.to_string())
        .bind(merge_sha.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn operations_for_environment(
        &self,
        repo: &RepoName,
        env_name: &str,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE repo = ?1 AND env_name = ?2 \
             ORDER BY id DESC LIMIT ?3"
        ))
        .bind(repo.to_string())
        .bind(env_name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn update_operation(&self, id: i64, update: OperationUpdate) -> Result<(), StoreError> {
        let now = now_ms();
        // (statement, what the row must be for it to apply; bound as ?1 = id, then `args`)
        enum Arg {
            Int(Option<i64>),
            Text(Option<String>),
        }
        let (sql, wanted, args): (&'static str, &'static str, Vec<Arg>) = match update {
            OperationUpdate::Pid(pid) => (
                "UPDATE operations SET pid = ?2 WHERE id = ?1 AND state = 'running'",
                "only a running operation has a script",
                vec![Arg::Int(Some(pid))],
            ),
            OperationUpdate::DeploymentCreated(d) => (
                "UPDATE operations SET deployment_id = ?2 WHERE id = ?1",
                "",
                vec![Arg::Int(Some(to_i64(d, "deployment id")?))],
            ),
            OperationUpdate::Finished {
                state,
                error,
                log,
                outputs,
            } => {
                if !matches!(
                    state,
                    OpState::Succeeded | OpState::Failed | OpState::Interrupted
                ) {
                    return Err(invalid(format!(
                        "operation {id} cannot finish as {}",
                        state.as_str()
                    )));
                }
                (
                    "UPDATE operations SET state = ?2, error = ?3, log = ?4, outputs = ?5, \
                     finished_at = ?6 WHERE id = ?1 AND state = 'running'",
                    "only a running operation can finish",
                    vec![
                        Arg::Text(Some(state.as_str().to_owned())),
                        Arg::Text(error),
                        Arg::Text(Some(log)),
                        Arg::Text(Some(to_json(&outputs, "outputs")?)),
                        Arg::Int(Some(now)),
                    ],
                )
            }
            OperationUpdate::Reported(bits) => (
                "UPDATE operations SET reported = reported | ?2 WHERE id = ?1",
                "",
                vec![Arg::Int(Some(i64::from(bits)))],
            ),
        };
        self.write(move |conn| {
            Box::pin(async move {
                let mut q = sqlx::query(sql).bind(id);
                for a in args {
                    q = match a {
                        Arg::Int(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                    };
                }
                if q.execute(&mut *conn).await?.rows_affected() == 0 {
                    return Err(explain_unchanged(conn, id, wanted).await);
                }
                Ok(())
            })
        })
        .await
    }

    async fn start_operation(
        &self,
        id: i64,
        fence: &Fence,
        env: EnvironmentUpdate,
    ) -> Result<bool, StoreError> {
        let fence = fence.clone();
        let env = EnvRow::of(&env)?;
        self.write(move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let mut tx = conn.begin().await?;
                let started = sqlx::query(
                    "UPDATE operations SET state = 'running', started_at = ?2, holder = ?3, \
                     lease_epoch = ?4 WHERE id = ?1 AND state = 'planned' AND EXISTS ( \
                       SELECT 1 FROM env_locks WHERE repo = ?5 AND name = ?6 \
                       AND holder = ?3 AND epoch = ?4)",
                )
                .bind(id)
                .bind(now)
                .bind(&fence.holder)
                .bind(fence.epoch)
                .bind(&env.repo)
                .bind(&env.name)
                .execute(&mut *tx)
                .await?;
                if started.rows_affected() == 0 {
                    return Ok(false);
                }
                upsert_env(&mut *tx, &env, now).await?;
                tx.commit().await?;
                Ok(true)
            })
        })
        .await
    }

    async fn finish_operation(
        &self,
        id: i64,
        fence: &Fence,
        finish: Finish,
        env: EnvironmentUpdate,
        storage: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        if !matches!(finish.state, OpState::Succeeded | OpState::Failed) {
            return Err(invalid(format!(
                "operation {id} cannot finish as {}",
                finish.state.as_str()
            )));
        }
        let fence = fence.clone();
        let env = EnvRow::of(&env)?;
        let outputs = to_json(&finish.outputs, "outputs")?;
        self.write(move |conn| {
            Box::pin(async move {
                let now = now_ms();
                let mut tx = conn.begin().await?;
                let done = sqlx::query(
                    "UPDATE operations SET state = ?2, error = ?3, log = ?4, outputs = ?5, \
                     finished_at = ?6 WHERE id = ?1 AND state = 'running' AND holder = ?7 \
                     AND lease_epoch = ?8 AND EXISTS ( \
                       SELECT 1 FROM env_locks WHERE repo = ?9 AND name = ?10 \
                       AND holder = ?7 AND epoch = ?8)",
                )
                .bind(id)
                .bind(finish.state.as_str())
                .bind(&finish.error)
                .bind(&finish.log)
                .bind(&outputs)
                .bind(now)
                .bind(&fence.holder)
                .bind(fence.epoch)
                .bind(&env.repo)
                .bind(&env.name)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                upsert_env(&mut *tx, &env, now).await?;
                if let Some(archive) = storage {
                    sqlx::query(
                        "UPDATE environments SET storage = ?3 WHERE repo = ?1 AND name = ?2",
                    )
                    .bind(&env.repo)
                    .bind(&env.name)
                    .bind(archive)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(true)
            })
        })
        .await
    }

    async fn interrupt_running_operations(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let now = now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin().await?;
                let rows = sqlx::query(&format!(
                    "SELECT {OP_COLUMNS} FROM operations WHERE state = 'running' ORDER BY id"
                ))
                .fetch_all(&mut *tx)
                .await?;
                let before = rows
                    .iter()
                    .map(operation_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                sqlx::query(
                    "UPDATE operations SET state = 'interrupted', finished_at = ?1, \
                     error = 'interrupted: the server stopped while it ran' \
                     WHERE state = 'running'",
                )
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(before)
            })
        })
        .await
    }

    async fn environment(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE repo = ?1 AND name = ?2"
        ))
        .bind(repo.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    async fn environments(
        &self,
        repo: Option<&RepoName>,
    ) -> Result<Vec<EnvironmentRecord>, StoreError> {
        let rows = match repo {
            Some(repo) => {
                sqlx::query(&format!(
                    "SELECT {ENV_COLUMNS} FROM environments WHERE repo = ?1 ORDER BY name"
                ))
                .bind(repo.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ENV_COLUMNS} FROM environments ORDER BY repo, name"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(environment_from_row).collect()
    }

    async fn upsert_environment(&self, env: EnvironmentUpdate) -> Result<(), StoreError> {
        let env = EnvRow::of(&env)?;
        self.write(move |conn| {
            Box::pin(async move {
                upsert_env(&mut *conn, &env, now_ms()).await?;
                Ok(())
            })
        })
        .await
    }

    async fn environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT storage FROM environments WHERE repo = ?1 AND name = ?2")
                .bind(repo.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.flatten())
    }

    async fn set_environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
        archive: Vec<u8>,
    ) -> Result<(), StoreError> {
        let repo = repo.to_string();
        let name = name.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE environments SET storage = ?3 WHERE repo = ?1 AND name = ?2",
                )
                .bind(&repo)
                .bind(&name)
                .bind(archive)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(invalid(format!(
                        "environment {name} of {repo} does not exist: its storage has nowhere \
                         to go"
                    )));
                }
                Ok(())
            })
        })
        .await
    }

    async fn try_lock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let repo = repo.to_string();
        let name = name.to_owned();
        let holder = holder.to_owned();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Box::pin(async move {
                // The clock is read on the writer, so time spent queued does not shorten
                // the lease. A lease whose expires_at is now or past is free.
                let now = now_ms();
                // The epoch stays for a renewal and goes up when the lock changes hands.
                let got: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO env_locks (repo, name, holder, expires_at, epoch) \
                     VALUES (?1, ?2, ?3, ?4, 1) \
                     ON CONFLICT(repo, name) DO UPDATE SET \
                     epoch = CASE WHEN env_locks.holder = excluded.holder \
                             THEN env_locks.epoch ELSE env_locks.epoch + 1 END, \
                     holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE env_locks.holder = excluded.holder OR env_locks.expires_at <= ?5 \
                     RETURNING epoch",
                )
                .bind(&repo)
                .bind(&name)
                .bind(&holder)
                .bind(now.saturating_add(ttl))
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(got)
            })
        })
        .await
    }

    async fn unlock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let repo = repo.to_string();
        let name = name.to_owned();
        let holder = holder.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                // The row stays (with its epoch, which must only ever go up): released.
                sqlx::query(
                    "UPDATE env_locks SET holder = '', expires_at = 0 \
                     WHERE repo = ?1 AND name = ?2 AND holder = ?3",
                )
                .bind(&repo)
                .bind(&name)
                .bind(&holder)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn release_all_locks(&self) -> Result<u64, StoreError> {
        self.write(|conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE env_locks SET holder = '', expires_at = 0 WHERE holder <> ''",
                )
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn record_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
        pr: PrNumber,
    ) -> Result<(), StoreError> {
        let repo = repo.to_string();
        let sha = merge_sha.as_str().to_owned();
        let pr = to_i64(pr.0, "pull request number")?;
        let now = now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO merges (repo, merge_sha, pr, recorded_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT(repo, merge_sha) DO NOTHING",
                )
                .bind(&repo)
                .bind(&sha)
                .bind(pr)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn merge_of(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Option<PrNumber>, StoreError> {
        let pr: Option<i64> =
            sqlx::query_scalar("SELECT pr FROM merges WHERE repo = ?1 AND merge_sha = ?2")
                .bind(repo.to_string())
                .bind(merge_sha.as_str())
                .fetch_optional(&self.pool)
                .await?;
        pr.map(|p| to_u64(p, "pull request number").map(PrNumber))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpKind;
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

    // ---- provisioning ----

    fn sha(c: char) -> CommitSha {
        CommitSha::parse(&c.to_string().repeat(40)).expect("sha")
    }

    fn new_op(env: &str, merge: char, attempt: u32) -> NewOperation {
        NewOperation {
            repo: "octo/envs".into(),
            env_name: env.into(),
            kind: OpKind::Deploy,
            merge_sha: sha(merge).as_str().into(),
            pr: 7,
            attempt,
            delivery_id: "d-merge".into(),
            team: "payments".into(),
            owner: "alice".into(),
            env_type: "preview".into(),
            definition: "web-app".into(),
            manifest_path: format!("environments/payments/{env}.yaml"),
            parameters: serde_json::json!({"size": "small", "cmd": "$(rm -rf /)"}),
            requester: "alice".into(),
            merger: "bob".into(),
            approvers: vec!["carol".into(), "dave".into()],
            governance_sha: sha('9').as_str().into(),
            checks: serde_json::json!([{"context": "paved/schema", "verdict": "pass"}]),
            state: OpState::Planned,
            error: None,
        }
    }

    #[tokio::test]
    async fn provisioning_migration_upgrades_a_schema_1_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("paved.db");
        let path = path.to_str().expect("utf-8");
        // A database as the previous release left it: schema 1 only, with a delivery.
        let mut first = sqlx::migrate!("./migrations/sqlite");
        let only_1: Vec<_> = first.migrations.iter().take(1).cloned().collect();
        assert_eq!(only_1[0].version, 1);
        first.migrations = only_1.into();
        let mut conn = connect_options(path)
            .expect("options")
            .connect()
            .await
            .expect("connect");
        first.run(&mut conn).await.expect("schema 1");
        sqlx::query(
            "INSERT INTO deliveries (id, event, queue_key, body, body_len, next_attempt_at, \
             received_at) VALUES ('old', 'push', 'k', ?1, 2, 0, 1700000000000)",
        )
        .bind(compress_body(b"{}").expect("zstd"))
        .execute(&mut conn)
        .await
        .expect("old delivery");
        conn.close().await.expect("close");

        let store = SqliteStore::open(path).await.expect("open upgrades");
        let old = store.claim_delivery().await.expect("claim").expect("kept");
        assert_eq!(old.id.as_str(), "old");
        assert_eq!(old.received_at_ms, 1_700_000_000_000);
        assert_eq!(old.body, b"{}");
        let (id, created) = store
            .plan_operation(new_op("checkout", 'a', 1))
            .await
            .expect("plan");
        assert!(created);
        assert!(store.operation(id).await.expect("read").is_some());
        store.close().await;
        // Opening again applies nothing new.
        let store = SqliteStore::open(path).await.expect("reopen");
        assert!(store.operation(id).await.expect("read").is_some());
    }

    #[tokio::test]
    async fn claimed_delivery_knows_when_it_was_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let before = now_ms();
        store
            .accept_delivery(delivery("t1", "k", "{}"))
            .await
            .expect("accept");
        let after = now_ms();
        let c = store.claim_delivery().await.expect("claim").expect("t1");
        assert!(
            (before..=after).contains(&c.received_at_ms),
            "{before} <= {} <= {after}",
            c.received_at_ms
        );
    }
}
