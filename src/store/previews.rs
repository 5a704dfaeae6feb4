//! Previews on the pull request (SPEC 14): the latest preview set of each pull request,
//! its Terraform plan files, and the digest each approval was given on.

use super::StoreError;
use crate::ids::{CommitSha, RepoName};
use async_trait::async_trait;

/// A preview set to keep: it replaces the pull request's earlier ones.
#[derive(Debug, Clone)]
pub struct NewPreview {
    pub repo: RepoName,
    pub pr: u64,
    pub head_sha: CommitSha,
    pub digest: String,
    /// The previews (JSON of `preview::PreviewSet`).
    pub previews: serde_json::Value,
    /// Terraform plan files by manifest path.
    pub plans: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// A kept preview set.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewRecord {
    pub id: i64,
    pub head_sha: CommitSha,
    pub digest: String,
    pub previews: serde_json::Value,
    pub created_at: i64,
}

#[async_trait]
pub trait PreviewStore: Send + Sync + 'static {
    /// Keeps a pull request's previews (and their plan files), dropping its earlier ones.
    async fn save_preview(&self, p: NewPreview) -> Result<i64, StoreError>;
    /// The pull request's latest previews.
    async fn latest_preview(
        &self,
        repo: &RepoName,
        pr: u64,
    ) -> Result<Option<PreviewRecord>, StoreError>;
    /// The plan file a preview kept for a manifest.
    async fn preview_plan(&self, id: i64, path: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Binds reviews to the digest shown now; a review bound before keeps its digest.
    async fn bind_reviews(
        &self,
        repo: &RepoName,
        pr: u64,
        reviews: &[u64],
        digest: &str,
    ) -> Result<(), StoreError>;
    /// The digest each of a pull request's reviews was given on: (review id, digest).
    async fn review_digests(
        &self,
        repo: &RepoName,
        pr: u64,
    ) -> Result<Vec<(u64, String)>, StoreError>;
}

pub(super) const DROP_EARLIER: &str = "DELETE FROM previews WHERE repo = $1 AND pr = $2";
pub(super) const INSERT: &str = "INSERT INTO previews \
     (repo, pr, head_sha, digest, previews, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
     RETURNING id";
pub(super) const INSERT_PLAN: &str =
    "INSERT INTO preview_plans (preview_id, path, plan) VALUES ($1, $2, $3)";
pub(super) const LATEST: &str = "SELECT id, head_sha, digest, previews, created_at \
     FROM previews WHERE repo = $1 AND pr = $2 ORDER BY id DESC LIMIT 1";
pub(super) const PLAN: &str = "SELECT plan FROM preview_plans WHERE preview_id = $1 AND path = $2";
pub(super) const BIND: &str = "INSERT INTO review_previews (repo, review_id, pr, digest) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
pub(super) const DIGESTS: &str =
    "SELECT review_id, digest FROM review_previews WHERE repo = $1 AND pr = $2";

/// [`PreviewStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_preview_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::PreviewStore for $store {
            async fn save_preview(
                &self,
                p: $crate::store::NewPreview,
            ) -> Result<i64, $crate::store::StoreError> {
                use $crate::store::previews as q;
                self.write(move |conn| {
                    Box::pin(async move {
                        let repo = p.repo.to_string();
                        let pr = p.pr as i64;
                        sqlx::query(&$sql(q::DROP_EARLIER))
                            .bind(&repo)
                            .bind(pr)
                            .execute(&mut *conn)
                            .await?;
                        let (id,): (i64,) = sqlx::query_as(&$sql(q::INSERT))
                            .bind(&repo)
                            .bind(pr)
                            .bind(p.head_sha.as_str())
                            .bind(&p.digest)
                            .bind(p.previews.to_string())
                            .bind(p.created_at)
                            .fetch_one(&mut *conn)
                            .await?;
                        for (path, plan) in &p.plans {
                            sqlx::query(&$sql(q::INSERT_PLAN))
                                .bind(id)
                                .bind(path)
                                .bind(plan)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(id)
                    })
                })
                .await
            }

            async fn latest_preview(
                &self,
                repo: &$crate::ids::RepoName,
                pr: u64,
            ) -> Result<Option<$crate::store::PreviewRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::previews::LATEST);
                let row: Option<(i64, String, String, String, i64)> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(pr as i64)
                    .fetch_optional(self.reader())
                    .await?;
                let Some((id, head, digest, previews, created_at)) = row else {
                    return Ok(None);
                };
                let head_sha = $crate::ids::CommitSha::parse(&head)
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                let previews = serde_json::from_str(&previews)
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                Ok(Some($crate::store::PreviewRecord {
                    id,
                    head_sha,
                    digest,
                    previews,
                    created_at,
                }))
            }

            async fn preview_plan(
                &self,
                id: i64,
                path: &str,
            ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                let q = $sql($crate::store::previews::PLAN);
                let row: Option<(Vec<u8>,)> = sqlx::query_as(&q)
                    .bind(id)
                    .bind(path)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|(p,)| p))
            }

            async fn bind_reviews(
                &self,
                repo: &$crate::ids::RepoName,
                pr: u64,
                reviews: &[u64],
                digest: &str,
            ) -> Result<(), $crate::store::StoreError> {
                if reviews.is_empty() {
                    return Ok(());
                }
                let (repo, reviews, digest) =
                    (repo.to_string(), reviews.to_vec(), digest.to_string());
                self.write(move |conn| {
                    Box::pin(async move {
                        for id in reviews {
                            sqlx::query(&$sql($crate::store::previews::BIND))
                                .bind(&repo)
                                .bind(id as i64)
                                .bind(pr as i64)
                                .bind(&digest)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn review_digests(
                &self,
                repo: &$crate::ids::RepoName,
                pr: u64,
            ) -> Result<Vec<(u64, String)>, $crate::store::StoreError> {
                let q = $sql($crate::store::previews::DIGESTS);
                let rows: Vec<(i64, String)> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(pr as i64)
                    .fetch_all(self.reader())
                    .await?;
                Ok(rows.into_iter().map(|(id, d)| (id as u64, d)).collect())
            }
        }
    };
}
pub(super) use impl_preview_store;
