//! Retention: what is kept for a while (webhook deliveries once finished, check-run
//! reports, provisioning scripts' logs, audit notes once they landed in Git) and pruned
//! after `store.retention`, in small
//! batches so the pruning never holds the database for long. What is never pruned: the
//! inventory, each operation's record and outcome (only its log goes), and the audit trail
//! (Git notes, outside the database).

use super::StoreError;
use async_trait::async_trait;

/// What retention prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prunable {
    /// Deliveries done or failed (pending and running ones are never touched).
    Deliveries,
    /// Check-run reports (what a status's `target_url` showed).
    Runs,
    /// The logs of finished operations (the operation and its outcome stay).
    OperationLogs,
    /// Which operations a landed audit note held (pruned before the notes themselves).
    NoteLinks,
    /// Audit notes of the outbox that landed (their text is in Git).
    LandedNotes,
}

impl Prunable {
    pub const ALL: [Prunable; 5] = [
        Prunable::Deliveries,
        Prunable::Runs,
        Prunable::OperationLogs,
        Prunable::NoteLinks,
        Prunable::LandedNotes,
    ];

    /// The name the metrics and logs use.
    pub fn name(self) -> &'static str {
        match self {
            Prunable::Deliveries => "deliveries",
            Prunable::Runs => "runs",
            Prunable::OperationLogs => "operation_logs",
            Prunable::NoteLinks => "note_links",
            Prunable::LandedNotes => "landed_notes",
        }
    }
}

#[async_trait]
pub trait RetentionStore: Send + Sync + 'static {
    /// Prunes at most `limit` rows of `what` older than `before_ms` (Unix milliseconds) in
    /// one short transaction; returns how many. Call again until it returns less than
    /// `limit`.
    async fn prune(&self, what: Prunable, before_ms: i64, limit: u32) -> Result<u64, StoreError>;
}

pub(super) const PRUNE_DELIVERIES: &str = "DELETE FROM deliveries WHERE seq IN ( \
       SELECT seq FROM deliveries WHERE state IN ('done', 'failed') AND received_at < $1 \
       ORDER BY seq LIMIT $2)";
pub(super) const PRUNE_RUNS: &str = "DELETE FROM runs WHERE id IN ( \
       SELECT id FROM runs WHERE created_at < $1 ORDER BY id LIMIT $2)";
/// The partial index `operations_with_log` keeps this from scanning every operation ever
/// made (they are kept forever; their logs are not).
pub(super) const PRUNE_OPERATION_LOGS: &str = "UPDATE operations SET log = '' WHERE id IN ( \
       SELECT id FROM operations WHERE log <> '' AND finished_at < $1 \
         AND state IN ('succeeded', 'failed', 'interrupted', 'refused') \
       ORDER BY id LIMIT $2)";

/// The links of landed notes that still have some (so each batch finds new ones).
pub(super) const PRUNE_NOTE_LINKS: &str = "DELETE FROM note_outbox_operations WHERE note_id IN ( \
       SELECT id FROM note_outbox WHERE landed_at IS NOT NULL AND landed_at < $1 \
         AND EXISTS (SELECT 1 FROM note_outbox_operations l WHERE l.note_id = note_outbox.id) \
       ORDER BY id LIMIT $2)";
pub(super) const PRUNE_LANDED_NOTES: &str = "DELETE FROM note_outbox WHERE id IN ( \
       SELECT id FROM note_outbox WHERE landed_at IS NOT NULL AND landed_at < $1 \
       ORDER BY id LIMIT $2)";

/// [`RetentionStore`] for a store with `write()`, in the dialect `$sql`.
macro_rules! impl_retention_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::RetentionStore for $store {
            async fn prune(
                &self,
                what: $crate::store::Prunable,
                before_ms: i64,
                limit: u32,
            ) -> Result<u64, $crate::store::StoreError> {
                use $crate::store::retention as r;
                let query = match what {
                    $crate::store::Prunable::Deliveries => r::PRUNE_DELIVERIES,
                    $crate::store::Prunable::Runs => r::PRUNE_RUNS,
                    $crate::store::Prunable::OperationLogs => r::PRUNE_OPERATION_LOGS,
                    $crate::store::Prunable::NoteLinks => r::PRUNE_NOTE_LINKS,
                    $crate::store::Prunable::LandedNotes => r::PRUNE_LANDED_NOTES,
                };
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql(query);
                        let done = sqlx::query(&q)
                            .bind(before_ms)
                            .bind(i64::from(limit))
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected())
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_retention_store;
