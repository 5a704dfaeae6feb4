//! Merges Paved handled: a push of one of these commits to the default branch is governed,
//! not a bypass.

use super::StoreError;
use crate::ids::{CommitSha, PrNumber, RepoName};
use async_trait::async_trait;

#[async_trait]
pub trait MergeStore: Send + Sync + 'static {
    /// Remembers that Paved handled the merge of `pr` as commit `merge_sha` (what makes the
    /// matching `push` governed).
    async fn record_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
        pr: PrNumber,
    ) -> Result<(), StoreError>;
    async fn merge_of(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Option<PrNumber>, StoreError>;
}

pub(super) const RECORD: &str = "INSERT INTO merges (repo, merge_sha, pr, recorded_at) \
     VALUES ($1, $2, $3, paved_now_ms()) ON CONFLICT (repo, merge_sha) DO NOTHING";
pub(super) const MERGE_OF: &str = "SELECT pr FROM merges WHERE repo = $1 AND merge_sha = $2";

/// [`MergeStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_merge_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::MergeStore for $store {
            async fn record_merge(
                &self,
                repo: &$crate::ids::RepoName,
                merge_sha: &$crate::ids::CommitSha,
                pr: $crate::ids::PrNumber,
            ) -> Result<(), $crate::store::StoreError> {
                let repo = repo.to_string();
                let merge_sha = merge_sha.to_string();
                let pr = $crate::store::rows::to_i64(pr.0, "pull request number")?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::merges::RECORD);
                        sqlx::query(&q)
                            .bind(&repo)
                            .bind(&merge_sha)
                            .bind(pr)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn merge_of(
                &self,
                repo: &$crate::ids::RepoName,
                merge_sha: &$crate::ids::CommitSha,
            ) -> Result<Option<$crate::ids::PrNumber>, $crate::store::StoreError> {
                let q = $sql($crate::store::merges::MERGE_OF);
                let pr: Option<i64> = sqlx::query_scalar(&q)
                    .bind(repo.to_string())
                    .bind(merge_sha.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                pr.map(|p| {
                    $crate::store::rows::to_u64(p, "pull request number").map($crate::ids::PrNumber)
                })
                .transpose()
            }
        }
    };
}
pub(super) use impl_merge_store;
