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
    Accepted, Delivery, DeliveryRecord, DeliveryState, EnvironmentRecord, EnvironmentUpdate,
    NewDelivery, NewOperation, NewRun, OpState, OperationRecord, OperationUpdate, Outcome,
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
            OperationUpdate::Started { pid } => (
                "UPDATE operations SET state = 'running', started_at = ?2, pid = ?3 \
                 WHERE id = ?1 AND state = 'planned'",
                "only a planned operation can start",
                vec![Arg::Int(Some(now)), Arg::Int(pid)],
            ),
            OperationUpdate::Pid(pid) => (
                "UPDATE operations SET pid = ?2 WHERE id = ?1",
                "",
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
                     finished_at = ?6 WHERE id = ?1",
                    "",
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
        let parameters = env
            .parameters
            .as_ref()
            .map(|p| to_json(p, "parameters"))
            .transpose()?;
        let outputs = env
            .outputs
            .as_ref()
            .map(|o| to_json(o, "outputs"))
            .transpose()?;
        let now = now_ms();
        self.write(move |conn| {
            Box::pin(async move {
                // ?8 / ?9 NULL: keep the stored parameters / outputs ('{}' for a new row).
                // ?10 NULL keeps the stored last operation too: once there was one, it
                // stays the last until another replaces it.
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
                .bind(env.state.as_str())
                .bind(parameters)
                .bind(outputs)
                .bind(env.last_operation)
                .bind(now)
                .execute(&mut *conn)
                .await?;
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
    ) -> Result<bool, StoreError> {
        let repo = repo.to_string();
        let name = name.to_owned();
        let holder = holder.to_owned();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.write(move |conn| {
            Box::pin(async move {
                // The clock is read on the writer, so time spent queued does not shorten
                // the lease. A lease whose expires_at is now or past is free.
                let now = now_ms();
                let got: Option<String> = sqlx::query_scalar(
                    "INSERT INTO env_locks (repo, name, holder, expires_at) \
                     VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(repo, name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE env_locks.holder = excluded.holder OR env_locks.expires_at <= ?5 \
                     RETURNING holder",
                )
                .bind(&repo)
                .bind(&name)
                .bind(&holder)
                .bind(now.saturating_add(ttl))
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(got.is_some())
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
                sqlx::query("DELETE FROM env_locks WHERE repo = ?1 AND name = ?2 AND holder = ?3")
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
                let done = sqlx::query("DELETE FROM env_locks")
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
    use crate::store::{EnvState, OpKind};
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

    // ---- provisioning ----

    use crate::store::{reported, EnvironmentRecord};

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).expect("repo")
    }

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

    fn env_update(repo: &str, name: &str, state: EnvState) -> EnvironmentUpdate {
        EnvironmentUpdate {
            repo: repo.into(),
            name: name.into(),
            team: "payments".into(),
            owner: "alice".into(),
            env_type: "preview".into(),
            definition: "web-app".into(),
            state,
            parameters: None,
            outputs: None,
            last_operation: None,
        }
    }

    fn err_text(r: Result<impl std::fmt::Debug, StoreError>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[tokio::test]
    async fn planning_an_operation_twice_records_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let op = new_op("checkout", 'a', 1);
        let (id, created) = store.plan_operation(op.clone()).await.expect("plan");
        assert!(created);
        // A redelivered merge plans the same operation again (even if it computed
        // something different): the first one stands.
        let mut again = op.clone();
        again.parameters = serde_json::json!({"size": "huge"});
        assert_eq!(
            store.plan_operation(again).await.expect("plan again"),
            (id, false)
        );
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.op, op);
        assert_eq!(rec.state, OpState::Planned);
        assert_eq!(rec.op.parameters["cmd"], "$(rm -rf /)");
        assert_eq!((rec.started_at, rec.finished_at), (None, None));
        assert_eq!((rec.pid, rec.deployment_id, rec.error), (None, None, None));
        assert_eq!((rec.log.as_str(), rec.reported), ("", 0));
        assert_eq!(rec.outputs, serde_json::json!({}));
        assert!(chrono::DateTime::parse_from_rfc3339(&rec.created_at).is_ok());

        // A retry after an interruption is a new attempt, hence a new operation.
        let (id2, created2) = store
            .plan_operation(new_op("checkout", 'a', 2))
            .await
            .expect("plan attempt 2");
        assert!(created2);
        assert_ne!(id2, id);
        // Same environment, another kind: another operation too.
        let mut delete = new_op("checkout", 'a', 1);
        delete.kind = OpKind::Delete;
        let (id3, created3) = store.plan_operation(delete).await.expect("plan delete");
        assert!(created3);
        let of_merge = store
            .operations_for_merge(&repo("octo/envs"), &sha('a'))
            .await
            .expect("of merge");
        let ids: Vec<i64> = of_merge.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![id, id2, id3]);
        assert!(store
            .operations_for_merge(&repo("octo/envs"), &sha('b'))
            .await
            .expect("of other merge")
            .is_empty());
        assert!(store.operation(id3 + 1).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn a_refused_operation_is_final_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let mut op = new_op("checkout", 'a', 1);
        op.state = OpState::Refused;
        op.error = Some("paved/policy was failing at merge time".into());
        let (id, created) = store.plan_operation(op.clone()).await.expect("plan");
        assert!(created);
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.op, op);
        assert_eq!(rec.state, OpState::Refused);
        assert!(rec.state.is_final());
        assert_eq!(rec.error, op.error);
        assert!(rec.started_at.is_some());
        assert_eq!(rec.finished_at, rec.started_at);
        // Nothing can start it afterwards.
        let e = err_text(
            store
                .update_operation(id, OperationUpdate::Started { pid: None })
                .await,
        );
        assert!(e.contains("is refused"), "{e}");
        // Only planned or refused operations are recorded.
        let mut running = new_op("checkout", 'b', 1);
        running.state = OpState::Running;
        assert!(store.plan_operation(running).await.is_err());
    }

    #[tokio::test]
    async fn operation_lifecycle_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let (id, _) = store
            .plan_operation(new_op("checkout", 'a', 1))
            .await
            .expect("plan");
        store
            .update_operation(id, OperationUpdate::Started { pid: None })
            .await
            .expect("start");
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.state, OpState::Running);
        assert!(rec.started_at.is_some());
        assert_eq!((rec.pid, rec.finished_at), (None, None));
        // Started twice (a second worker): refused, so it cannot run twice.
        let e = err_text(
            store
                .update_operation(id, OperationUpdate::Started { pid: Some(1) })
                .await,
        );
        assert!(e.contains("is running"), "{e}");

        store
            .update_operation(id, OperationUpdate::Pid(4242))
            .await
            .expect("pid");
        store
            .update_operation(id, OperationUpdate::DeploymentCreated(9_000_000_001))
            .await
            .expect("deployment");
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.pid, Some(4242));
        assert_eq!(rec.deployment_id, Some(9_000_000_001));

        let outputs = serde_json::json!({
            "url": {"type": "string", "value": "https://x", "sensitive": false},
            "token": {"type": "string", "value": "s3cr3t", "sensitive": true}
        });
        store
            .update_operation(
                id,
                OperationUpdate::Finished {
                    state: OpState::Succeeded,
                    error: None,
                    log: "deployed\n".into(),
                    outputs: outputs.clone(),
                },
            )
            .await
            .expect("finish");
        store
            .update_operation(id, OperationUpdate::Reported(reported::DEPLOYMENT))
            .await
            .expect("reported");
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.state, OpState::Succeeded);
        assert_eq!(rec.reported, reported::DEPLOYMENT);
        // Bits are OR-ed: a repeated report changes nothing, another one adds its bit.
        for bits in [reported::NOTE, reported::DEPLOYMENT] {
            store
                .update_operation(id, OperationUpdate::Reported(bits))
                .await
                .expect("reported");
        }
        let rec = store.operation(id).await.expect("read").expect("stored");
        assert_eq!(rec.reported, reported::DEPLOYMENT | reported::NOTE);
        assert_eq!(rec.log, "deployed\n");
        assert_eq!(rec.outputs, outputs);
        assert_eq!(rec.error, None);
        assert_eq!(rec.pid, Some(4242));
        assert_eq!(rec.deployment_id, Some(9_000_000_001));
        let (started, finished) = (
            rec.started_at.expect("started"),
            rec.finished_at.expect("finished"),
        );
        assert!(started <= finished, "{started} > {finished}");
        assert_eq!(rec.op, new_op("checkout", 'a', 1));

        // A failure keeps its error.
        let (id2, _) = store
            .plan_operation(new_op("checkout", 'b', 1))
            .await
            .expect("plan");
        store
            .update_operation(
                id2,
                OperationUpdate::Finished {
                    state: OpState::Failed,
                    error: Some("deploy.sh exited with status 3".into()),
                    log: String::new(),
                    outputs: serde_json::json!({}),
                },
            )
            .await
            .expect("fail");
        let rec = store.operation(id2).await.expect("read").expect("stored");
        assert_eq!(rec.state, OpState::Failed);
        assert_eq!(rec.error.as_deref(), Some("deploy.sh exited with status 3"));

        let e = err_text(
            store
                .update_operation(id2 + 100, OperationUpdate::Pid(1))
                .await,
        );
        assert!(e.contains("does not exist"), "{e}");
        let e = err_text(
            store
                .update_operation(
                    id2,
                    OperationUpdate::Finished {
                        state: OpState::Running,
                        error: None,
                        log: String::new(),
                        outputs: serde_json::json!({}),
                    },
                )
                .await,
        );
        assert!(e.contains("cannot finish as running"), "{e}");
    }

    #[tokio::test]
    async fn operations_of_an_environment_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let mut ids = Vec::new();
        for c in ['a', 'b', 'c'] {
            ids.push(
                store
                    .plan_operation(new_op("checkout", c, 1))
                    .await
                    .expect("plan")
                    .0,
            );
        }
        store
            .plan_operation(new_op("other", 'a', 1))
            .await
            .expect("plan other");
        let mut other_repo = new_op("checkout", 'a', 1);
        other_repo.repo = "octo/else".into();
        store.plan_operation(other_repo).await.expect("plan");

        let got = store
            .operations_for_environment(&repo("octo/envs"), "checkout", 2)
            .await
            .expect("history");
        let got: Vec<i64> = got.iter().map(|r| r.id).collect();
        assert_eq!(got, vec![ids[2], ids[1]]);
        let all = store
            .operations_for_environment(&repo("octo/envs"), "checkout", 100)
            .await
            .expect("history");
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|r| r.op.env_name == "checkout"));
    }

    #[tokio::test]
    async fn restart_interrupts_only_running_operations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (planned, running, done) = {
            let store = open(&dir).await;
            let planned = store
                .plan_operation(new_op("a", 'a', 1))
                .await
                .expect("plan")
                .0;
            let running = store
                .plan_operation(new_op("b", 'a', 1))
                .await
                .expect("plan")
                .0;
            let done = store
                .plan_operation(new_op("c", 'a', 1))
                .await
                .expect("plan")
                .0;
            for id in [running, done] {
                store
                    .update_operation(
                        id,
                        OperationUpdate::Started {
                            pid: Some(500 + id),
                        },
                    )
                    .await
                    .expect("start");
            }
            store
                .update_operation(
                    done,
                    OperationUpdate::Finished {
                        state: OpState::Succeeded,
                        error: None,
                        log: String::new(),
                        outputs: serde_json::json!({}),
                    },
                )
                .await
                .expect("finish");
            // Dropped with `running` still running: the server died.
            (planned, running, done)
        };
        let store = open(&dir).await;
        let hit = store
            .interrupt_running_operations()
            .await
            .expect("interrupt");
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].id, running);
        // As it was: running, with the pid whose process group may need killing.
        assert_eq!(hit[0].state, OpState::Running);
        assert_eq!(hit[0].pid, Some(500 + running));
        assert_eq!(hit[0].finished_at, None);

        let rec = store.operation(running).await.expect("read").expect("b");
        assert_eq!(rec.state, OpState::Interrupted);
        assert_eq!(
            rec.error.as_deref(),
            Some("interrupted: the server stopped while it ran")
        );
        assert!(rec.finished_at.is_some());
        assert_eq!(rec.pid, Some(500 + running));
        let rec = store.operation(planned).await.expect("read").expect("a");
        assert_eq!(rec.state, OpState::Planned);
        let rec = store.operation(done).await.expect("read").expect("c");
        assert_eq!(rec.state, OpState::Succeeded);
        assert_eq!(rec.error, None);
        assert!(store
            .interrupt_running_operations()
            .await
            .expect("again")
            .is_empty());
    }

    #[tokio::test]
    async fn environment_lock_has_one_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        let minute = Duration::from_secs(60);
        assert!(store
            .try_lock_environment(&r, "checkout", "A", minute)
            .await
            .expect("A takes"));
        assert!(!store
            .try_lock_environment(&r, "checkout", "B", minute)
            .await
            .expect("B refused"));
        // Another environment, or the same name in another repo, is another lock.
        assert!(store
            .try_lock_environment(&r, "search", "B", minute)
            .await
            .expect("B other env"));
        assert!(store
            .try_lock_environment(&repo("octo/else"), "checkout", "B", minute)
            .await
            .expect("B other repo"));
        // Renewing as the same holder.
        assert!(store
            .try_lock_environment(&r, "checkout", "A", minute)
            .await
            .expect("A renews"));
        // B cannot release A's lock.
        store
            .unlock_environment(&r, "checkout", "B")
            .await
            .expect("B unlock");
        assert!(!store
            .try_lock_environment(&r, "checkout", "B", minute)
            .await
            .expect("still A's"));
        store
            .unlock_environment(&r, "checkout", "A")
            .await
            .expect("A unlock");
        assert!(store
            .try_lock_environment(&r, "checkout", "B", minute)
            .await
            .expect("B takes"));
        assert!(!store
            .try_lock_environment(&r, "checkout", "A", minute)
            .await
            .expect("A refused"));
    }

    #[tokio::test]
    async fn an_expired_lease_can_be_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        // A zero lease has run out as soon as it is taken.
        assert!(store
            .try_lock_environment(&r, "checkout", "A", Duration::ZERO)
            .await
            .expect("A takes"));
        assert!(store
            .try_lock_environment(&r, "checkout", "B", Duration::from_secs(60))
            .await
            .expect("B takes over"));
        assert!(!store
            .try_lock_environment(&r, "checkout", "A", Duration::from_secs(60))
            .await
            .expect("A refused"));
        // A, whose lease was taken over, cannot release B's lock.
        store
            .unlock_environment(&r, "checkout", "A")
            .await
            .expect("unlock");
        assert!(!store
            .try_lock_environment(&r, "checkout", "C", Duration::from_secs(60))
            .await
            .expect("C refused"));
    }

    #[tokio::test]
    async fn release_all_locks_frees_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        let hour = Duration::from_secs(3600);
        for env in ["a", "b"] {
            assert!(store
                .try_lock_environment(&r, env, "dead-node", hour)
                .await
                .expect("lock"));
        }
        assert_eq!(store.release_all_locks().await.expect("release"), 2);
        for env in ["a", "b"] {
            assert!(store
                .try_lock_environment(&r, env, "new-node", hour)
                .await
                .expect("lock"));
        }
        assert_eq!(store.release_all_locks().await.expect("release"), 2);
        assert_eq!(store.release_all_locks().await.expect("release"), 0);
    }

    #[tokio::test]
    async fn upserting_an_environment_keeps_what_is_not_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        assert!(store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .is_none());

        // A new row without parameters or outputs has empty ones.
        store
            .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
            .await
            .expect("insert");
        let e = store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(e.state, EnvState::Provisioning);
        assert_eq!(e.parameters, serde_json::json!({}));
        assert_eq!(e.outputs, serde_json::json!({}));
        assert_eq!(e.last_operation, None);

        let outputs = serde_json::json!({"url": {"type": "string", "value": "https://x"}});
        let mut ready = env_update("octo/envs", "checkout", EnvState::Ready);
        ready.parameters = Some(serde_json::json!({"size": "small"}));
        ready.outputs = Some(outputs.clone());
        ready.last_operation = Some(1);
        store.upsert_environment(ready).await.expect("ready");
        let before = store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .expect("row");

        // A delete starts: only the state, owner and last operation change.
        let mut deleting = env_update("octo/envs", "checkout", EnvState::Deleting);
        deleting.owner = "erin".into();
        deleting.last_operation = Some(2);
        store.upsert_environment(deleting).await.expect("deleting");
        let e = store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(e.state, EnvState::Deleting);
        assert_eq!(e.owner, "erin");
        assert_eq!(e.outputs, outputs);
        assert_eq!(e.parameters, serde_json::json!({"size": "small"}));
        assert_eq!(e.last_operation, Some(2));
        assert!(e.updated_at >= before.updated_at);
        // Without an operation id, the last one stays.
        store
            .upsert_environment(env_update("octo/envs", "checkout", EnvState::Deleted))
            .await
            .expect("deleted");
        let e = store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(e.state, EnvState::Deleted);
        assert!(!e.state.is_live());
        assert_eq!(e.last_operation, Some(2));
        // Given outputs replace the stored ones.
        let mut cleared = env_update("octo/envs", "checkout", EnvState::Deleted);
        cleared.outputs = Some(serde_json::json!({}));
        store.upsert_environment(cleared).await.expect("cleared");
        let e = store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .expect("row");
        assert_eq!(e.outputs, serde_json::json!({}));
        assert_eq!(store.environments(None).await.expect("all").len(), 1);
    }

    #[tokio::test]
    async fn public_record_drops_sensitive_outputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let mut up = env_update("octo/envs", "checkout", EnvState::Ready);
        up.outputs = Some(serde_json::json!({
            "url": {"type": "string", "value": "https://x", "sensitive": false},
            "host": {"type": "string", "value": "h"},
            "password": {"type": "string", "value": "hunter2", "sensitive": true}
        }));
        store.upsert_environment(up).await.expect("upsert");
        let e: EnvironmentRecord = store
            .environment(&repo("octo/envs"), "checkout")
            .await
            .expect("read")
            .expect("row");
        // The store keeps the secret (the next operation may need it)...
        assert_eq!(e.outputs["password"]["value"], "hunter2");
        // ...what is shown does not.
        let shown = e.public();
        assert!(shown.outputs.get("password").is_none());
        assert_eq!(shown.outputs["url"]["value"], "https://x");
        assert_eq!(shown.outputs["host"]["value"], "h");
        let text = serde_json::to_string(&shown).expect("json");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(shown.name, e.name);
        assert_eq!(shown.state, e.state);
    }

    #[tokio::test]
    async fn environment_storage_round_trips_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        // No environment row: nothing is created, and the caller hears about it.
        let e = err_text(
            store
                .set_environment_storage(&r, "checkout", vec![1, 2, 3])
                .await,
        );
        assert!(e.contains("does not exist"), "{e}");
        assert!(store
            .environment(&r, "checkout")
            .await
            .expect("read")
            .is_none());
        assert_eq!(
            store
                .environment_storage(&r, "checkout")
                .await
                .expect("read"),
            None
        );

        store
            .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
            .await
            .expect("insert");
        assert_eq!(
            store
                .environment_storage(&r, "checkout")
                .await
                .expect("read"),
            None
        );
        // Every byte value, NULs included, and more than a page.
        let archive: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
        store
            .set_environment_storage(&r, "checkout", archive.clone())
            .await
            .expect("store");
        // An inventory update does not touch the archive.
        store
            .upsert_environment(env_update("octo/envs", "checkout", EnvState::Ready))
            .await
            .expect("update");
        assert_eq!(
            store
                .environment_storage(&r, "checkout")
                .await
                .expect("read"),
            Some(archive)
        );
        store
            .set_environment_storage(&r, "checkout", Vec::new())
            .await
            .expect("store empty");
        assert_eq!(
            store
                .environment_storage(&r, "checkout")
                .await
                .expect("read"),
            Some(Vec::new())
        );
    }

    #[tokio::test]
    async fn environments_are_ordered_and_filtered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        for (r, n) in [
            ("octo/zeta", "b"),
            ("octo/alpha", "z"),
            ("octo/zeta", "a"),
            ("octo/alpha", "m"),
        ] {
            store
                .upsert_environment(env_update(r, n, EnvState::Ready))
                .await
                .expect("insert");
        }
        let all = store.environments(None).await.expect("all");
        let keys: Vec<(&str, &str)> = all
            .iter()
            .map(|e| (e.repo.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("octo/alpha", "m"),
                ("octo/alpha", "z"),
                ("octo/zeta", "a"),
                ("octo/zeta", "b")
            ]
        );
        let zeta = store
            .environments(Some(&repo("octo/zeta")))
            .await
            .expect("zeta");
        let names: Vec<&str> = zeta.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(zeta.iter().all(|e| e.repo == "octo/zeta"));
        assert!(store
            .environments(Some(&repo("octo/none")))
            .await
            .expect("none")
            .is_empty());
    }

    #[tokio::test]
    async fn merges_are_recorded_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let r = repo("octo/envs");
        assert_eq!(store.merge_of(&r, &sha('a')).await.expect("read"), None);
        store
            .record_merge(&r, &sha('a'), PrNumber(12))
            .await
            .expect("record");
        store
            .record_merge(&r, &sha('a'), PrNumber(12))
            .await
            .expect("record again");
        // The first record stands.
        store
            .record_merge(&r, &sha('a'), PrNumber(99))
            .await
            .expect("record other");
        assert_eq!(
            store.merge_of(&r, &sha('a')).await.expect("read"),
            Some(PrNumber(12))
        );
        assert_eq!(store.merge_of(&r, &sha('b')).await.expect("read"), None);
        assert_eq!(
            store
                .merge_of(&repo("octo/else"), &sha('a'))
                .await
                .expect("read"),
            None
        );
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
