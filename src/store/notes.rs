//! The notes outbox (issue 20): audit notes waiting to be pushed to the origin.
//!
//! An operation's outcome (its row, the inventory, the deployment status, `paved/provision`)
//! never waits on Git: the note is queued here in the same transaction that marks its
//! operations' records as written, and [`crate::audit::outbox`] pushes it later, retried
//! with backoff until it lands. A queued note is claimed for a lease, so two replicas do not
//! push the same one at once; pushing it twice is harmless anyway (a note already holding
//! the same text counts as landed).

use super::StoreError;
use crate::ids::{CommitSha, InstallationId, OperationId, RepoName};
use async_trait::async_trait;
use std::time::Duration;

/// A note to queue: `text` for the note of `commit` in `repo`.
#[derive(Debug, Clone)]
pub struct NewNote {
    pub repo: RepoName,
    pub clone_url: String,
    pub installation: Option<InstallationId>,
    pub commit: CommitSha,
    pub text: String,
}

/// A queued note, as claimed.
#[derive(Debug, Clone)]
pub struct QueuedNote {
    pub id: i64,
    pub note: NewNote,
    /// Pushes tried so far, this one included.
    pub attempts: u32,
}

/// How the outbox stands: notes not landed yet, and the age of the oldest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxDepth {
    pub pending: u64,
    pub oldest_ms: Option<i64>,
}

#[async_trait]
pub trait NoteStore: Send + Sync + 'static {
    /// Queues `note` and marks `operations` as having their note written (the
    /// `reported::NOTE` bit), in one transaction: a crash leaves both or neither. The
    /// outbox leaves it alone for `grace` (the one who queued it pushes it at once with
    /// [`NoteStore::claim_note`]; after a crash, the outbox does).
    async fn queue_note(
        &self,
        note: NewNote,
        operations: &[OperationId],
        grace: Duration,
    ) -> Result<i64, StoreError>;
    /// Claims note `id` for `lease`, due or not, unless it landed or another holds it.
    async fn claim_note(
        &self,
        id: i64,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<QueuedNote>, StoreError>;
    /// Claims up to `limit` notes that are due and not claimed by a live holder, for
    /// `lease`.
    async fn claim_notes(
        &self,
        holder: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<QueuedNote>, StoreError>;
    async fn note_landed(&self, id: i64) -> Result<(), StoreError>;
    /// The push failed: try again after `retry_in`.
    async fn note_failed(&self, id: i64, error: &str, retry_in: Duration)
        -> Result<(), StoreError>;
    /// Notes not landed, and when the oldest was queued (ms since the epoch, the
    /// database's clock).
    async fn outbox_depth(&self) -> Result<OutboxDepth, StoreError>;
    /// Every note not landed yet, oldest first (what `paved audit --database` shows).
    async fn pending_notes(&self) -> Result<Vec<QueuedNote>, StoreError>;
    /// Whether `operation`'s note is queued and not landed yet.
    async fn note_pending(&self, operation: OperationId) -> Result<bool, StoreError>;
}

pub(super) const QUEUE: &str = "INSERT INTO note_outbox \
     (repo, clone_url, installation, commit_sha, body, created_at, next_at) \
     VALUES ($1, $2, $3, $4, $5, paved_now_ms(), paved_now_ms() + $6) RETURNING id";
pub(super) const LINK: &str =
    "INSERT INTO note_outbox_operations (note_id, operation_id) VALUES ($1, $2)";
pub(super) const MARK_NOTED: &str = "UPDATE operations SET reported = reported | $2 WHERE id = $1";
/// The conditions are repeated outside the subquery: PostgreSQL checks them again on a
/// row another replica claimed meanwhile, so a note has one holder at a time.
pub(super) const CLAIM: &str = "UPDATE note_outbox SET claimed_by = $1, \
     claimed_until = paved_now_ms() + $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM note_outbox WHERE landed_at IS NULL \
         AND next_at <= paved_now_ms() \
         AND (claimed_until IS NULL OR claimed_until < paved_now_ms()) \
         ORDER BY id LIMIT $3) \
     AND landed_at IS NULL AND (claimed_until IS NULL OR claimed_until < paved_now_ms()) \
     RETURNING id, repo, clone_url, installation, commit_sha, body, attempts";
pub(super) const CLAIM_ONE: &str = "UPDATE note_outbox SET claimed_by = $2, \
     claimed_until = paved_now_ms() + $3, attempts = attempts + 1 \
     WHERE id = $1 AND landed_at IS NULL \
     AND (claimed_until IS NULL OR claimed_until < paved_now_ms()) \
     RETURNING id, repo, clone_url, installation, commit_sha, body, attempts";
pub(super) const LANDED: &str = "UPDATE note_outbox SET landed_at = paved_now_ms(), \
     claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = $1";
pub(super) const FAILED: &str = "UPDATE note_outbox SET claimed_by = NULL, \
     claimed_until = NULL, last_error = $2, next_at = paved_now_ms() + $3 WHERE id = $1";
pub(super) const DEPTH: &str =
    "SELECT COUNT(*), MIN(created_at) FROM note_outbox WHERE landed_at IS NULL";
pub(super) const PENDING: &str = "SELECT id, repo, clone_url, installation, commit_sha, \
     body, attempts FROM note_outbox WHERE landed_at IS NULL ORDER BY id";
pub(super) const PENDING_FOR: &str = "SELECT COUNT(*) FROM note_outbox_operations l \
     JOIN note_outbox n ON n.id = l.note_id \
     WHERE l.operation_id = $1 AND n.landed_at IS NULL";

/// The next try after `attempts` failed pushes: 5 s, 10 s, 20 s, … up to 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(5u64 << attempts.saturating_sub(1).min(6)).min(Duration::from_secs(300))
}

pub(super) fn queued_from_row<'r, R>(r: &'r R) -> Result<QueuedNote, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let repo: String = r.try_get(1)?;
    let commit: String = r.try_get(4)?;
    let installation: Option<i64> = r.try_get(3)?;
    let attempts: i32 = r.try_get(6)?;
    Ok(QueuedNote {
        id: r.try_get(0)?,
        note: NewNote {
            repo: RepoName::parse(&repo)
                .map_err(|e| StoreError::Corrupt(format!("note_outbox.repo: {e}")))?,
            clone_url: r.try_get(2)?,
            installation: installation
                .map(|i| super::rows::to_u64(i, "installation").map(InstallationId))
                .transpose()?,
            commit: CommitSha::parse(&commit)
                .map_err(|e| StoreError::Corrupt(format!("note_outbox.commit_sha: {e}")))?,
            text: r.try_get(5)?,
        },
        attempts: u32::try_from(attempts).unwrap_or(0),
    })
}

/// [`NoteStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_note_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::NoteStore for $store {
            async fn queue_note(
                &self,
                note: $crate::store::NewNote,
                operations: &[$crate::ids::OperationId],
                grace: std::time::Duration,
            ) -> Result<i64, $crate::store::StoreError> {
                use sqlx::Connection as _;
                use $crate::store::notes as n;
                let installation = note
                    .installation
                    .map(|i| $crate::store::rows::to_i64(i.0, "installation"))
                    .transpose()?;
                let ops: Vec<i64> = operations.iter().map(|o| o.0).collect();
                let noted = i64::from($crate::store::reported::NOTE);
                let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
                self.write(move |conn| {
                    Box::pin(async move {
                        let mut tx = conn.begin().await?;
                        let q = $sql(n::QUEUE);
                        let id: i64 = sqlx::query_scalar(&q)
                            .bind(note.repo.to_string())
                            .bind(&note.clone_url)
                            .bind(installation)
                            .bind(note.commit.as_str())
                            .bind(&note.text)
                            .bind(grace)
                            .fetch_one(&mut *tx)
                            .await?;
                        for op in ops {
                            let q = $sql(n::LINK);
                            sqlx::query(&q).bind(id).bind(op).execute(&mut *tx).await?;
                            let q = $sql(n::MARK_NOTED);
                            sqlx::query(&q)
                                .bind(op)
                                .bind(noted)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                        Ok(id)
                    })
                })
                .await
            }

            async fn claim_notes(
                &self,
                holder: &str,
                lease: std::time::Duration,
                limit: u32,
            ) -> Result<Vec<$crate::store::QueuedNote>, $crate::store::StoreError> {
                let holder = holder.to_owned();
                let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::notes::CLAIM);
                        let rows = sqlx::query(&q)
                            .bind(&holder)
                            .bind(lease)
                            .bind(i64::from(limit))
                            .fetch_all(&mut *conn)
                            .await?;
                        rows.iter()
                            .map(|r| $crate::store::notes::queued_from_row(r))
                            .collect()
                    })
                })
                .await
            }

            async fn claim_note(
                &self,
                id: i64,
                holder: &str,
                lease: std::time::Duration,
            ) -> Result<Option<$crate::store::QueuedNote>, $crate::store::StoreError> {
                let holder = holder.to_owned();
                let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::notes::CLAIM_ONE);
                        let row = sqlx::query(&q)
                            .bind(id)
                            .bind(&holder)
                            .bind(lease)
                            .fetch_optional(&mut *conn)
                            .await?;
                        row.as_ref()
                            .map(|r| $crate::store::notes::queued_from_row(r))
                            .transpose()
                    })
                })
                .await
            }

            async fn note_landed(&self, id: i64) -> Result<(), $crate::store::StoreError> {
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::notes::LANDED);
                        sqlx::query(&q).bind(id).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn note_failed(
                &self,
                id: i64,
                error: &str,
                retry_in: std::time::Duration,
            ) -> Result<(), $crate::store::StoreError> {
                let error = error.to_owned();
                let retry_in = i64::try_from(retry_in.as_millis()).unwrap_or(i64::MAX / 2);
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::notes::FAILED);
                        sqlx::query(&q)
                            .bind(id)
                            .bind(&error)
                            .bind(retry_in)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn outbox_depth(
                &self,
            ) -> Result<$crate::store::OutboxDepth, $crate::store::StoreError> {
                let q = $sql($crate::store::notes::DEPTH);
                let (pending, oldest): (i64, Option<i64>) =
                    sqlx::query_as(&q).fetch_one(self.reader()).await?;
                Ok($crate::store::OutboxDepth {
                    pending: u64::try_from(pending).unwrap_or(0),
                    oldest_ms: oldest,
                })
            }

            async fn pending_notes(
                &self,
            ) -> Result<Vec<$crate::store::QueuedNote>, $crate::store::StoreError> {
                let q = $sql($crate::store::notes::PENDING);
                let rows = sqlx::query(&q).fetch_all(self.reader()).await?;
                rows.iter()
                    .map(|r| $crate::store::notes::queued_from_row(r))
                    .collect()
            }

            async fn note_pending(
                &self,
                operation: $crate::ids::OperationId,
            ) -> Result<bool, $crate::store::StoreError> {
                let q = $sql($crate::store::notes::PENDING_FOR);
                let n: i64 = sqlx::query_scalar(&q)
                    .bind(operation.0)
                    .fetch_one(self.reader())
                    .await?;
                Ok(n > 0)
            }
        }
    };
}
pub(super) use impl_note_store;
