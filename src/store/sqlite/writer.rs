//! The writer task: one connection, every write through it, acceptances grouped into one
//! commit (group commit), and the background WAL checkpoint; and the claim query.

use super::{
    Counters, DeliveryRow, Job, Op, PendingAccept, Reply, BUSY_TIMEOUT, CATCH_UP_PASSES,
    CHECKPOINT_EVERY, MAX_BATCH, RESTART_WAIT, WAL_RESTART_LAG, WAL_RESTART_PAGES,
};
use crate::store::{Accepted, StoreError};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Row};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------
// The writer task
// ---------------------------------------------------------------------------------------

pub(super) async fn writer_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<Op>,
    stats: Arc<Counters>,
) {
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
        if !accepts.is_empty() || !jobs.is_empty() {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .deliveries
                .fetch_add(accepts.len() as u64, Ordering::Relaxed);
            let t = std::time::Instant::now();
            commit_round(&mut conn, &mut accepts, &mut jobs).await;
            let us = t.elapsed().as_micros() as u64;
            stats.max_commit_us.fetch_max(us, Ordering::Relaxed);
            if us > 5_000 {
                stats.slow_commits.fetch_add(1, Ordering::Relaxed);
            }
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
            if !accepts.is_empty() || !jobs.is_empty() {
                commit_round(&mut conn, &mut accepts, &mut jobs).await;
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
pub(super) const CHUNK_SHIFTS: u32 = MAX_BATCH.trailing_zeros() + 1;
const PARAMS_PER_ROW: usize = 7;
const _: () = assert!(MAX_BATCH.is_power_of_two() && MAX_BATCH * PARAMS_PER_ROW <= 32766);

/// `INSERT … VALUES (…), (…) … ON CONFLICT(id) DO NOTHING RETURNING id` for
/// `1 << shift` rows. Rows skipped as duplicates are not returned.
pub(super) fn insert_sql(shift: u32) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..CHUNK_SHIFTS)
            .map(|shift| rows_sql(1 << shift))
            .collect()
    });
    all.get(shift as usize).map_or("", String::as_str)
}

/// The INSERT of `n` rows, duplicates skipped and the new ids returned.
fn rows_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
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
}

/// Batches of at most this many acceptances, with no job in the round, are written as one
/// statement of exactly their size in one transaction ([`commit_alone`]): three round trips
/// to SQLite's thread instead of up to ten (BEGIN, savepoints, chunks, RELEASEs, COMMIT),
/// each a thread handoff that, on a busy machine, waits for a core.
pub(super) const ONE_STATEMENT_MAX: usize = 64;

/// `INSERT … VALUES` for exactly `n` rows (1 to [`ONE_STATEMENT_MAX`]), made once each.
fn insert_sql_exactly(n: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| (1..=ONE_STATEMENT_MAX).map(rows_sql).collect());
    n.checked_sub(1)
        .and_then(|i| all.get(i))
        .map_or("", String::as_str)
}

/// Splits `n` rows into chunks of powers of two, largest first.
pub(super) fn chunks(n: usize) -> impl Iterator<Item = u32> {
    (0..CHUNK_SHIFTS).rev().filter(move |s| n & (1 << s) != 0)
}

/// Runs the inserts for `rows` (a power of two of them) and adds the ids inserted.
async fn insert_chunk<'c>(
    conn: &mut SqliteConnection,
    sql: &'static str,
    rows: impl Iterator<Item = &'c DeliveryRow>,
    inserted: &mut std::collections::HashSet<String>,
) -> Result<(), sqlx::Error> {
    let mut q = sqlx::query_scalar::<_, String>(sql);
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
pub(super) async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[&DeliveryRow],
) -> Result<Vec<Accepted>, sqlx::Error> {
    let mut inserted = std::collections::HashSet::with_capacity(rows.len());
    if rows.len().is_power_of_two() {
        insert_chunk(
            conn,
            insert_sql(rows.len().trailing_zeros()),
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
                insert_sql(shift),
                rows[at..at + n].iter().copied(),
                &mut inserted,
            )
            .await?;
            at += n;
        }
        tx.commit().await?;
    }
    Ok(outcomes(rows, inserted))
}

/// Each row's outcome, `inserted` holding each new id once: its first row is the new one.
fn outcomes(
    rows: &[&DeliveryRow],
    mut inserted: std::collections::HashSet<String>,
) -> Vec<Accepted> {
    rows.iter()
        .map(|r| {
            if inserted.remove(&r.id) {
                Accepted::New
            } else {
                Accepted::Duplicate
            }
        })
        .collect()
}

/// A round of acceptances alone ([`ONE_STATEMENT_MAX`] at most, no job): BEGIN, one
/// INSERT of exactly their rows, COMMIT; three round trips, one fsync, every caller answered
/// after the COMMIT returned. (Not the INSERT alone in autocommit: SQLite commits an
/// implicit transaction when the statement is reset, which sqlx does not promise to do
/// before it hands the rows back, and an answer must never come before the commit.)
/// `false`, with nothing written, when the INSERT failed: the caller takes the general
/// path, which writes them one by one where it must.
async fn commit_alone(conn: &mut SqliteConnection, accepts: &mut Vec<PendingAccept>) -> bool {
    let rows: Vec<&DeliveryRow> = accepts.iter().map(|p| &p.row).collect();
    let mut inserted = std::collections::HashSet::with_capacity(rows.len());
    let sql = insert_sql_exactly(rows.len());
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::warn!(error = %e, "BEGIN failed; trying the general path");
            return false;
        }
    };
    if let Err(e) = insert_chunk(&mut tx, sql, rows.iter().copied(), &mut inserted).await {
        tracing::warn!(error = %e, size = rows.len(), "one-statement insert failed; writing one by one");
        let _ = tx.rollback().await;
        return false;
    }
    let committed = tx
        .commit()
        .await
        .map_err(|e| StoreError::CommitFailed(format!("COMMIT: {e}")));
    if let Err(e) = &committed {
        tracing::error!(error = %e, "a write round failed to commit; its callers get the error");
    }
    let results = outcomes(&rows, inserted);
    drop(rows);
    for (p, r) in accepts.drain(..).zip(results) {
        let _ = p.reply.send(match &committed {
            Ok(()) => Ok(r),
            Err(e) => Err(StoreError::CommitFailed(e.to_string())),
        });
    }
    true
}

/// One round of the writer: the acceptances and the jobs queued meanwhile, in one
/// transaction, so one commit (one fsync) covers them all. A webhook's acknowledgement
/// then never queues behind the worker's commits one by one; the worker's writes ride on
/// the same fsync. Each job runs under a savepoint of its own: one that fails is rolled
/// back alone. Every caller is answered only after the commit, with its outcome.
async fn commit_round(
    conn: &mut SqliteConnection,
    accepts: &mut Vec<PendingAccept>,
    jobs: &mut Vec<Job>,
) {
    if jobs.is_empty()
        && (1..=ONE_STATEMENT_MAX).contains(&accepts.len())
        && commit_alone(conn, accepts).await
    {
        return;
    }
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            let why: Arc<str> = Arc::from(format!("BEGIN: {e}"));
            fail_round(accepts, jobs, &why);
            return;
        }
    };
    let accepted = write_batch(&mut tx, accepts).await;
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        let mut savepoint = match (*tx).begin().await {
            Ok(sp) => sp,
            Err(e) => {
                let why: Arc<str> = Arc::from(format!("SAVEPOINT: {e}"));
                let (_, reply) = job_failed(job, &why);
                replies.push(reply);
                continue;
            }
        };
        let (ok, reply) = job(&mut savepoint).await;
        let ended = if ok {
            savepoint.commit().await
        } else {
            savepoint.rollback().await
        };
        if let Err(e) = ended {
            tracing::warn!(error = %e, "closing a job's savepoint failed");
        }
        replies.push(reply);
    }
    let committed: Result<(), Arc<str>> = tx
        .commit()
        .await
        .map_err(|e| Arc::from(format!("COMMIT: {e}")));
    if let Err(why) = &committed {
        tracing::error!(error = %why, "a write round failed to commit; its callers get the error");
    }
    for (p, r) in accepted {
        let _ = p.reply.send(match &committed {
            Ok(()) => r,
            Err(why) => Err(StoreError::CommitFailed(why.to_string())),
        });
    }
    for reply in replies {
        reply(committed.clone());
    }
}

/// Answers everyone in a round that could not start.
fn fail_round(accepts: &mut Vec<PendingAccept>, jobs: &mut Vec<Job>, why: &Arc<str>) {
    tracing::error!(error = %why, "a write round could not start");
    for p in accepts.drain(..) {
        let _ = p.reply.send(Err(StoreError::CommitFailed(why.to_string())));
    }
    for job in jobs.drain(..) {
        // The job is dropped unrun: its caller's channel closes, which it reads as the
        // store being unavailable.
        drop(job);
    }
}

/// A job that could not get its savepoint: dropped unrun (its caller sees the store
/// closed), with a reply that does nothing.
fn job_failed(job: Job, why: &Arc<str>) -> (bool, Reply) {
    tracing::warn!(error = %why, "a job could not run");
    drop(job);
    (false, Box::new(|_| {}))
}

/// Inserts all of `batch` (within the round's transaction, under a savepoint). If that
/// fails, each delivery is tried on its own, so every caller gets its own answer. The
/// answers are returned, to be sent once the round has committed.
async fn write_batch(
    conn: &mut SqliteConnection,
    batch: &mut Vec<PendingAccept>,
) -> Vec<(PendingAccept, Result<Accepted, StoreError>)> {
    if batch.is_empty() {
        return Vec::new();
    }
    let rows: Vec<&DeliveryRow> = batch.iter().map(|p| &p.row).collect();
    let result = insert_in_savepoint(conn, &rows).await;
    drop(rows);
    match result {
        Ok(results) => batch.drain(..).zip(results.into_iter().map(Ok)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, size = batch.len(), "group insert failed; writing one by one");
            let mut out = Vec::with_capacity(batch.len());
            for p in batch.drain(..) {
                let r = insert_in_savepoint(conn, &[&p.row])
                    .await
                    .map_err(StoreError::from)
                    .and_then(|v| {
                        v.into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Corrupt("insert gave no result".into()))
                    });
                out.push((p, r));
            }
            out
        }
    }
}

/// [`insert_rows`] under a savepoint: released when it succeeds, rolled back when it
/// fails (leaving the round's transaction as it was).
async fn insert_in_savepoint(
    conn: &mut SqliteConnection,
    rows: &[&DeliveryRow],
) -> Result<Vec<Accepted>, sqlx::Error> {
    let mut sp = conn.begin().await?;
    match insert_rows(&mut sp, rows).await {
        Ok(v) => {
            sp.commit().await?;
            Ok(v)
        }
        Err(e) => {
            let _ = sp.rollback().await;
            Err(e)
        }
    }
}

/// Checkpoints the WAL from its own connection, so the writer never copies pages while
/// callers wait. PASSIVE only: it never takes the write lock, so it never makes the
/// writer wait. When the WAL has grown past [`WAL_RESTART_PAGES`], it checkpoints again
/// and again until it has caught up with the writer to within [`WAL_RESTART_LAG`] pages,
/// then asks the writer to start the WAL over (see the module docs) and stays out of its
/// way until it has. Stops when the store is gone.
pub(super) async fn checkpoint_loop(
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

pub(super) struct ClaimedRow {
    pub(super) id: String,
    pub(super) event: String,
    pub(super) action: Option<String>,
    pub(super) queue_key: String,
    pub(super) body: Vec<u8>,
    pub(super) body_len: i64,
    pub(super) attempts: i64,
    pub(super) received_at: i64,
}

/// The head of a queue key is its oldest delivery that is pending or running. A
/// delivery is claimable when it is pending, due, and the head of its key with nothing
/// of that key running, so one key's deliveries run one at a time and in arrival order
/// (a delivery waiting for a retry holds back the later ones of its key).
///
/// Both `NOT EXISTS` are index lookups (`deliveries_active_by_key`, `deliveries_running`);
/// the outer scan walks pending deliveries in arrival order and stops at the first
/// claimable one.
pub(super) const CLAIM: &str = "UPDATE deliveries SET state = 'running', attempts = attempts + 1 \
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

pub(super) async fn claim(
    conn: &mut SqliteConnection,
    now: i64,
) -> Result<Option<ClaimedRow>, StoreError> {
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
