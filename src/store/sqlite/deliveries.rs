//! Deliveries on SQLite: acceptance through the writer's group commit, claims in order per
//! queue key; and what a start does after a crash.

use super::{
    compress_body, now_ms, DeliveryRow, Op, PendingAccept, SqliteStore, BLOCKING_CODEC_BYTES,
};
use crate::ids::DeliveryId;
use crate::store::rows::{counts_by_state, delivery_from_row, operation_from_row, OP_COLUMNS};
use crate::store::{
    Accepted, Delivery, DeliveryRecord, DeliveryState, DeliveryStore, NewDelivery, OperationRecord,
    Outcome, Recovery, StoreError,
};
use async_trait::async_trait;
use sqlx::Connection;
use std::collections::BTreeMap;
use tokio::sync::oneshot;

#[async_trait]
impl DeliveryStore for SqliteStore {
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

    async fn troubled_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event, action, queue_key, state, attempts, last_error, received_at \
             FROM deliveries WHERE state = 'failed' OR attempts > 1 OR last_error IS NOT NULL \
             ORDER BY received_at DESC, id LIMIT ?1",
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
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Recovery for SqliteStore {
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
}
