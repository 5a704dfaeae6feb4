//! Environment locks: leases in the database, with an epoch that goes up each time a lock
//! changes hands (the fence [`super::Fence`] carries it). A released lock keeps its row, so
//! the epoch only ever goes up.

use super::StoreError;
use crate::ids::RepoName;
use async_trait::async_trait;

#[async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Takes the environment's lock for `holder` until `ttl` from now, if nobody else holds
    /// it or their lease ran out, and returns its epoch. Taking it again as the same holder
    /// renews it (same epoch); a new holder gets a higher one. `None`: held by another.
    async fn try_lock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError>;
    /// Releases the lock if `holder` holds it.
    async fn unlock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError>;
}

/// One statement: ON CONFLICT locks the existing row and checks the WHERE on its latest
/// version, so two replicas racing for a free or expired lock get one winner. A lease whose
/// `expires_at` is now or past is free. The epoch stays for a renewal and goes up when the
/// lock changes hands.
pub(super) const TRY_LOCK: &str = "INSERT INTO env_locks (repo, name, holder, expires_at, epoch) \
     VALUES ($1, $2, $3, paved_now_ms() + $4, 1) \
     ON CONFLICT (repo, name) DO UPDATE SET \
     epoch = CASE WHEN env_locks.holder = excluded.holder \
             THEN env_locks.epoch ELSE env_locks.epoch + 1 END, \
     holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE env_locks.holder = excluded.holder OR env_locks.expires_at <= paved_now_ms() \
     RETURNING epoch";
pub(super) const UNLOCK: &str = "UPDATE env_locks SET holder = '', expires_at = 0 \
     WHERE repo = $1 AND name = $2 AND holder = $3";

/// [`LockStore`] for a store with `write()`, in the dialect `$sql`.
macro_rules! impl_lock_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::LockStore for $store {
            async fn try_lock_environment(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
                holder: &str,
                ttl: std::time::Duration,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                let (repo, name, holder) = (repo.to_string(), name.to_owned(), holder.to_owned());
                let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
                self.write(move |conn| {
                    Box::pin(async move {
                        // The clock is read when the statement runs, so time spent queued
                        // does not shorten the lease.
                        let q = $sql($crate::store::locks::TRY_LOCK);
                        let epoch: Option<i64> = sqlx::query_scalar(&q)
                            .bind(&repo)
                            .bind(&name)
                            .bind(&holder)
                            .bind(ttl)
                            .fetch_optional(&mut *conn)
                            .await?;
                        Ok(epoch)
                    })
                })
                .await
            }

            async fn unlock_environment(
                &self,
                repo: &$crate::ids::RepoName,
                name: &str,
                holder: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let (repo, name, holder) = (repo.to_string(), name.to_owned(), holder.to_owned());
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::locks::UNLOCK);
                        sqlx::query(&q)
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
        }
    };
}
pub(super) use impl_lock_store;
