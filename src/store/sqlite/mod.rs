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

pub mod backup;
mod deliveries;
#[cfg(test)]
mod tests;
mod writer;

use super::{Accepted, Delivery, StoreError};
use crate::ids::DeliveryId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};
use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{checkpoint_loop, claim, writer_loop};

/// The most deliveries one group commit writes.
pub const MAX_BATCH: usize = 1024;

/// zstd level for stored bodies. Webhook JSON is very repetitive (URLs), so even the
/// fastest levels shrink a ~28 KB `pull_request` body several times over.
pub const BODY_ZSTD_LEVEL: i32 = 1;

/// Bodies larger than this are refused when read back (GitHub caps payloads at 25 MB).
pub(super) const MAX_BODY_LEN: usize = 32 * 1024 * 1024;

/// How long a connection waits for SQLite's file lock (another process, a checkpoint).
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Capacity of the writer's queue; callers wait (backpressure) when it is full.
const QUEUE_CAPACITY: usize = 8192;

/// How often the background task copies the WAL into the database file.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL size (pages) above which the writer starts the WAL over from its beginning...
#[cfg(not(test))]
pub(super) const WAL_RESTART_PAGES: i64 = 8192;
#[cfg(test)]
pub(super) const WAL_RESTART_PAGES: i64 = 256;
/// ...once no more than this many pages remain to be copied (so the stall is short)...
pub(super) const WAL_RESTART_LAG: i64 = 64;
/// ...which the checkpoint task tries to reach in at most this many passes in a row.
pub(super) const CATCH_UP_PASSES: usize = 8;
/// How long a WAL restart waits for readers before giving up until next time.
pub(super) const RESTART_WAIT: Duration = Duration::from_millis(5);

/// Bodies at least this large are (de)compressed on a blocking thread, not a runtime one.
pub(crate) const BLOCKING_CODEC_BYTES: usize = 1024 * 1024;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A write: runs its statements on the writer's connection (inside the round's
/// transaction, under a savepoint of its own) and says whether they succeeded, with the
/// answer to give its caller once the round's commit is known.
pub(super) type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Reply)> + Send>;

/// Answers a job's caller with the round's commit outcome (`Err`: the commit failed, so
/// nothing the job wrote is there).
pub(super) type Reply = Box<dyn FnOnce(Result<(), Arc<str>>) + Send>;

pub(super) struct PendingAccept {
    pub(super) row: DeliveryRow,
    pub(super) reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

/// A delivery ready for the INSERT: body already compressed.
pub(super) struct DeliveryRow {
    pub(super) id: String,
    pub(super) event: String,
    pub(super) action: Option<String>,
    pub(super) queue_key: String,
    pub(super) body: Vec<u8>,
    pub(super) body_len: i64,
    pub(super) now: i64,
}

pub(super) enum Op {
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
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) deliveries: AtomicU64,
    pub(super) wal_restarts: AtomicU64,
    pub(super) max_commit_us: AtomicU64,
    pub(super) slow_commits: AtomicU64,
    pub(super) max_job_us: AtomicU64,
    pub(super) max_restart_us: AtomicU64,
    /// Set by the checkpoint task, taken by the writer.
    pub(super) restart_wanted: AtomicBool,
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
                // One process, no leases: nothing to take over.
                taken_over: false,
            })),
        }
    }

    /// Runs `f` on the writer's connection, in order with the other writes.
    /// Runs `f` on the writer task's connection (every write goes through it).
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
                let result = f(conn).await;
                let ok = result.is_ok();
                let reply: Reply = Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => result,
                        Err(why) => Err(StoreError::CommitFailed(why.to_string())),
                    });
                });
                (ok, reply)
            })
        });
        self.writer
            .send(Op::Job(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The pool reads go through (WAL: they never block the writer).
    fn reader(&self) -> &SqlitePool {
        &self.pool
    }
}

super::evaluations::impl_evaluation_store!(SqliteStore, super::sql::sqlite);
super::inventory::impl_inventory_store!(SqliteStore, super::sql::sqlite);
super::operations::impl_operation_store!(SqliteStore, super::sql::sqlite);
super::locks::impl_lock_store!(SqliteStore, super::sql::sqlite);
super::merges::impl_merge_store!(SqliteStore, super::sql::sqlite);
super::notes::impl_note_store!(SqliteStore, super::sql::sqlite);
super::keys::impl_key_store!(SqliteStore, super::sql::sqlite);
super::previews::impl_preview_store!(SqliteStore, super::sql::sqlite);
super::imports::impl_import_store!(SqliteStore, super::sql::sqlite);
super::repositories::impl_repository_store!(SqliteStore, super::sql::sqlite);
super::requests::impl_request_store!(SqliteStore, super::sql::sqlite);
super::retention::impl_retention_store!(SqliteStore, super::sql::sqlite);
super::lifecycle::impl_lifecycle_store!(SqliteStore, super::sql::sqlite);

pub(super) fn now_ms() -> i64 {
    crate::clock::wall().timestamp_millis()
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses a body with a per-thread reusable zstd context.
pub(crate) fn compress_body(body: &[u8]) -> Result<Vec<u8>, StoreError> {
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

pub(crate) fn decompress_body(data: &[u8], len: i64) -> Result<Vec<u8>, StoreError> {
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
