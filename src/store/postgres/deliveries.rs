//! Deliveries on PostgreSQL: one statement accepts (with a per-key advisory lock keeping
//! arrival order), claims are leased with `FOR UPDATE SKIP LOCKED`, and a replica whose
//! lease was taken over commits nothing; and what a start does after a crash.

use super::{ms, PgStore};
use crate::ids::DeliveryId;
use crate::store::rows::{counts_by_state, delivery_from_row, operation_from_row, OP_COLUMNS};
use crate::store::sqlite::{compress_body, decompress_body, BLOCKING_CODEC_BYTES};
use crate::store::{
    Accepted, Delivery, DeliveryRecord, DeliveryState, DeliveryStore, NewDelivery, OperationRecord,
    Outcome, Recovery, StoreError,
};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------

/// Stores a delivery unless its id is known (`RETURNING` gives no row then).
///
/// The advisory lock on (Paved, hash of the queue key) is taken before the row gets its
/// `seq` (the CTE is materialised and scanned before the row, and its defaults, are made)
/// and held until commit, so inserts of one key commit in `seq` order. Without it, a
/// delivery could commit after a later one of its key was already claimed, and two
/// deliveries of one key could then run at once.
pub(super) const ACCEPT: &str = "WITH key_lock AS MATERIALIZED ( \
       SELECT pg_advisory_xact_lock($7, hashtext($4))) \
     INSERT INTO deliveries (id, event, action, queue_key, body, body_len, state, attempts, \
       next_attempt_at, received_at) \
     SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, paved_now_ms(), paved_now_ms() \
     FROM key_lock \
     ON CONFLICT (id) DO NOTHING RETURNING seq";

/// The head of a queue key is its oldest delivery that is pending or running. A
/// delivery is claimable when it is the head of its key with nothing else of that key
/// running, and either pending and due, or running on a lease that ran out and is not
/// this instance's ($1). `SKIP LOCKED`: a delivery another replica is claiming right now
/// is passed over, not waited for; if it changed before the lock was taken, PostgreSQL
/// checks the conditions again on the new row.
/// `was` tells a takeover (the row was `running` on a lease that ran out) from a claim.
const CLAIM: &str = "WITH picked AS ( \
       SELECT d.seq, d.state AS was FROM deliveries d \
       WHERE d.state IN ('pending', 'running') \
         AND CASE WHEN d.state = 'pending' THEN d.next_attempt_at <= paved_now_ms() \
             ELSE d.lease_until <= paved_now_ms() AND d.lease_owner IS DISTINCT FROM $1 END \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries r \
           WHERE r.queue_key = d.queue_key AND r.state = 'running' AND r.seq <> d.seq) \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries o \
           WHERE o.queue_key = d.queue_key AND o.state IN ('pending', 'running') \
             AND o.seq < d.seq) \
       ORDER BY d.seq LIMIT 1 \
       FOR UPDATE OF d SKIP LOCKED) \
     UPDATE deliveries SET state = 'running', attempts = attempts + 1, \
       lease_owner = $1, lease_until = paved_now_ms() + $2 \
     FROM picked WHERE deliveries.seq = picked.seq \
     RETURNING id, event, action, queue_key, body, body_len, attempts, received_at, picked.was";

async fn decode_body(data: Vec<u8>, len: i64) -> Result<Vec<u8>, StoreError> {
    if usize::try_from(len).unwrap_or(usize::MAX) >= BLOCKING_CODEC_BYTES {
        tokio::task::spawn_blocking(move || decompress_body(&data, len))
            .await
            .map_err(|e| StoreError::Corrupt(format!("decompression task: {e}")))?
    } else {
        decompress_body(&data, len)
    }
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError> {
        let NewDelivery {
            id,
            event,
            action,
            queue_key,
            body,
        } = delivery;
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
        // Written by the group committers (`intake.rs`), with whatever else arrives now.
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.accepts
            .send(super::intake::PendingAccept {
                id: id.as_str().to_string(),
                event,
                action,
                queue_key,
                body: compressed,
                body_len,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn claim_delivery(&self) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(CLAIM)
            .bind(&*self.instance)
            .bind(ms(self.lease))
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let id: String = r.try_get("id")?;
        let attempts: i64 = r.try_get("attempts")?;
        Ok(Some(Delivery {
            id: DeliveryId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            queue_key: r.try_get("queue_key")?,
            body: decode_body(r.try_get("body")?, r.try_get("body_len")?).await?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            received_at_ms: r.try_get("received_at")?,
            taken_over: r.try_get::<String, _>("was")? == "running",
        }))
    }

    /// Commits the outcome only if the delivery is running and still leased to this
    /// instance (an expired lease nobody took over yet still counts as ours). Otherwise
    /// another replica took it over after this one's lease ran out, and will commit its
    /// own result: this one is dropped with a warning, and `Ok` is returned.
    async fn finish_delivery(&self, id: &DeliveryId, outcome: Outcome) -> Result<(), StoreError> {
        let (state, error, after) = match outcome {
            Outcome::Done => (DeliveryState::Done, None, None),
            Outcome::Failed { error } => (DeliveryState::Failed, Some(error), None),
            Outcome::Retry { error, after } => {
                (DeliveryState::Pending, Some(error), Some(ms(after)))
            }
        };
        let done = sqlx::query(
            "UPDATE deliveries SET state = $3, last_error = $4, \
             next_attempt_at = COALESCE(paved_now_ms() + $5, next_attempt_at), \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(&*self.instance)
        .bind(state.as_str())
        .bind(error)
        .bind(after)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            let now: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT state, lease_owner FROM deliveries WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            match now {
                Some((s, Some(owner))) if s == "running" => tracing::warn!(
                    delivery = %id,
                    owner = %owner,
                    "finish_delivery: the lease ran out and another replica took the \
                     delivery over; this result is not committed"
                ),
                Some((s, _)) => tracing::warn!(
                    delivery = %id,
                    state = %s,
                    "finish_delivery: delivery was not running on this replica; this result \
                     is not committed"
                ),
                None => tracing::warn!(delivery = %id, "finish_delivery: no such delivery"),
            }
        }
        Ok(())
    }

    async fn renew_delivery_lease(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_until = paved_now_ms() + $3 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(&*self.instance)
        .bind(ms(self.lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, event, action, queue_key, state, attempts, last_error, received_at \
             FROM deliveries WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn troubled_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event, action, queue_key, state, attempts, last_error, received_at \
             FROM deliveries WHERE state = 'failed' OR attempts > 1 OR last_error IS NOT NULL \
             ORDER BY received_at DESC, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        counts_by_state(rows)
    }

    async fn oldest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        let (oldest,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(received_at) FROM deliveries WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        Ok(oldest)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Recovery for PgStore {
    async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
        // Nothing to do, on purpose. Several replicas share these deliveries: a running
        // one may be a live replica's work, and at start-up nothing tells it from a dead
        // one's but its lease. A dead replica's deliveries become claimable when their
        // leases run out (claim_delivery takes them again, counting an attempt), which
        // includes this process's previous life: its instance id was another one.
        Ok(0)
    }

    /// Interrupts the running operations that no live replica is running: those whose
    /// environment lock ran out or is gone (a replica takes the lock before it starts an
    /// operation and renews it until the operation has finished). Returns them as they
    /// were. One statement: the rows are locked, and one a replica finishes meanwhile is
    /// checked again (no longer running: left alone).
    async fn interrupt_running_operations(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "WITH before AS ( \
               SELECT {OP_COLUMNS} FROM operations o \
               WHERE o.state = 'running' AND NOT EXISTS ( \
                 SELECT 1 FROM env_locks l \
                 WHERE l.repo = o.repo AND l.name = o.env_name \
                   AND l.expires_at > paved_now_ms()) \
               FOR UPDATE), \
             interrupted AS ( \
               UPDATE operations SET state = 'interrupted', finished_at = paved_now_ms(), \
                 error = 'interrupted: the server stopped while it ran' \
               WHERE id IN (SELECT id FROM before)) \
             SELECT * FROM before ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    /// Drops only the locks whose lease ran out: the others belong to live replicas.
    async fn release_all_locks(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE env_locks SET holder = '', expires_at = 0 \
             WHERE holder <> '' AND expires_at <= paved_now_ms()",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
