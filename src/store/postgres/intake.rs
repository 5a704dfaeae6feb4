//! Group commit for PostgreSQL intake: deliveries accepted at the same time are written in
//! one transaction (one WAL flush) instead of one each, as the SQLite writer does.
//!
//! [`COMMITTERS`] tasks share one queue: each takes every acceptance waiting (up to
//! [`MAX_BATCH`]), writes them with one `INSERT … SELECT FROM unnest(…)`, commits, and only
//! then answers each caller. Per queue key, arrival order must stay commit order (see
//! `ACCEPT` in `deliveries.rs`): a batch first takes the advisory lock of each of its keys,
//! in hash order (so two batches never wait on each other in a circle), then inserts its
//! rows in arrival order; the locks are held until commit.

use super::ADVISORY_CLASS;
use crate::store::{Accepted, StoreError};
use sqlx::postgres::PgPool;
use sqlx::Connection;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Batches being committed at once per store: enough to keep the disk busy while the next
/// batch gathers.
pub(super) const COMMITTERS: usize = 4;
/// Deliveries per batch at most.
pub(super) const MAX_BATCH: usize = 256;

/// A delivery ready for the INSERT, body compressed, and who to answer.
pub(super) struct PendingAccept {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub queue_key: String,
    pub body: Vec<u8>,
    pub body_len: i64,
    pub reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

const LOCK_KEYS: &str = "SELECT count(pg_advisory_xact_lock($1, h)) FROM ( \
       SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k ORDER BY h) AS keys";

const INSERT: &str = "INSERT INTO deliveries (id, event, action, queue_key, body, body_len, \
       state, attempts, next_attempt_at, received_at) \
     SELECT id, event, action, queue_key, body, body_len, 'pending', 0, \
       paved_now_ms(), paved_now_ms() \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bigint[]) \
       WITH ORDINALITY AS t(id, event, action, queue_key, body, body_len, ord) \
     ORDER BY ord \
     ON CONFLICT (id) DO NOTHING RETURNING id";

/// Starts the committers; they stop when every sender is dropped.
pub(super) fn start(pool: PgPool) -> mpsc::Sender<PendingAccept> {
    let (tx, rx) = mpsc::channel(MAX_BATCH * COMMITTERS * 4);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..COMMITTERS {
        tokio::spawn(committer(pool.clone(), rx.clone()));
    }
    tx
}

async fn committer(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<PendingAccept>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        match write(&pool, &batch).await {
            Ok(new) => answer(batch, new),
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(),
                    "storing a batch of deliveries failed; storing them one by one");
                one_by_one(&pool, batch).await;
            }
        }
    }
}

/// Writes `batch` in one transaction; the ids that were new.
async fn write(pool: &PgPool, batch: &[PendingAccept]) -> Result<HashSet<String>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    let keys: Vec<&str> = batch.iter().map(|p| p.queue_key.as_str()).collect();
    sqlx::query(LOCK_KEYS)
        .bind(ADVISORY_CLASS)
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    let ids: Vec<&str> = batch.iter().map(|p| p.id.as_str()).collect();
    let events: Vec<&str> = batch.iter().map(|p| p.event.as_str()).collect();
    let actions: Vec<Option<&str>> = batch.iter().map(|p| p.action.as_deref()).collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|p| p.body.as_slice()).collect();
    let lens: Vec<i64> = batch.iter().map(|p| p.body_len).collect();
    let new: Vec<String> = sqlx::query_scalar(INSERT)
        .bind(&ids)
        .bind(&events)
        .bind(&actions)
        .bind(&keys)
        .bind(&bodies)
        .bind(&lens)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(new.into_iter().collect())
}

/// Answers each caller: the first row of a new id is new, every other one a duplicate.
fn answer(batch: Vec<PendingAccept>, mut new: HashSet<String>) {
    for p in batch {
        let r = if new.remove(&p.id) {
            Accepted::New
        } else {
            Accepted::Duplicate
        };
        let _ = p.reply.send(Ok(r));
    }
}

/// Stores each delivery of a batch that failed on its own (`ACCEPT`), so each caller gets
/// its own answer.
async fn one_by_one(pool: &PgPool, batch: Vec<PendingAccept>) {
    for p in batch {
        let r: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(super::deliveries::ACCEPT)
            .bind(&p.id)
            .bind(&p.event)
            .bind(&p.action)
            .bind(&p.queue_key)
            .bind(&p.body)
            .bind(p.body_len)
            .bind(ADVISORY_CLASS)
            .fetch_optional(pool)
            .await;
        let _ = p.reply.send(match r {
            Ok(Some(_)) => Ok(Accepted::New),
            Ok(None) => Ok(Accepted::Duplicate),
            Err(e) => Err(e.into()),
        });
    }
}
