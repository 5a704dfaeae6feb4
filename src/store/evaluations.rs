//! Evaluations (what each status's `target_url` shows; the table is still `runs`, and the API
//! serves one at `/api/v1/runs/{id}`) and the summary comment Paved keeps
//! on each pull request.

use super::StoreError;
use crate::ids::{CommentId, CommitSha, DeliveryId, EvaluationId, PrNumber, RepoName};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One evaluation of a pull request's head: what `target_url` of each status points at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEvaluation {
    pub repo: RepoName,
    pub pr: PrNumber,
    pub head_sha: CommitSha,
    pub base_sha: CommitSha,
    pub delivery_id: DeliveryId,
    /// The check report, as JSON (what the summary comment shows).
    pub report: serde_json::Value,
}

/// What the store keeps of an evaluation (the API answers with `api::answers::Evaluation`).
#[derive(Debug, Clone)]
pub struct EvaluationRecord {
    pub id: EvaluationId,
    pub repo: String,
    pub pr: u64,
    pub head_sha: String,
    pub base_sha: String,
    pub delivery_id: String,
    pub report: serde_json::Value,
    pub created_at: String,
}

#[async_trait]
pub trait EvaluationStore: Send + Sync + 'static {
    /// The id of the summary comment Paved keeps on a pull request, if it made one.
    async fn pr_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
    ) -> Result<Option<CommentId>, StoreError>;
    async fn set_pr_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment_id: CommentId,
    ) -> Result<(), StoreError>;
    async fn insert_evaluation(&self, run: NewEvaluation) -> Result<EvaluationId, StoreError>;
    /// Replaces a run's report (its previews came after the other checks, SPEC 14).
    async fn update_evaluation_report(
        &self,
        id: EvaluationId,
        report: serde_json::Value,
    ) -> Result<(), StoreError>;
    async fn evaluation(&self, id: EvaluationId) -> Result<Option<EvaluationRecord>, StoreError>;
}

pub(super) const PR_COMMENT: &str =
    "SELECT comment_id FROM pr_comments WHERE repo = $1 AND pr = $2";
pub(super) const SET_PR_COMMENT: &str =
    "INSERT INTO pr_comments (repo, pr, comment_id) VALUES ($1, $2, $3) \
     ON CONFLICT (repo, pr) DO UPDATE SET comment_id = excluded.comment_id";
pub(super) const INSERT_RUN: &str =
    "INSERT INTO runs (repo, pr, head_sha, base_sha, delivery_id, report, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, paved_now_ms()) RETURNING id";
pub(super) const UPDATE_REPORT: &str = "UPDATE runs SET report = $1 WHERE id = $2";
pub(super) const RUN: &str =
    "SELECT id, repo, pr, head_sha, base_sha, delivery_id, report, created_at \
     FROM runs WHERE id = $1";

/// [`EvaluationStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_evaluation_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::EvaluationStore for $store {
            async fn pr_comment(
                &self,
                repo: &$crate::ids::RepoName,
                pr: $crate::ids::PrNumber,
            ) -> Result<Option<$crate::ids::CommentId>, $crate::store::StoreError> {
                use $crate::store::rows::{to_i64, to_u64};
                let q = $sql($crate::store::evaluations::PR_COMMENT);
                let row: Option<i64> = sqlx::query_scalar(&q)
                    .bind(repo.to_string())
                    .bind(to_i64(pr.0, "pull request number")?)
                    .fetch_optional(self.reader())
                    .await?;
                row.map(|c| to_u64(c, "comment id").map($crate::ids::CommentId))
                    .transpose()
            }

            async fn set_pr_comment(
                &self,
                repo: &$crate::ids::RepoName,
                pr: $crate::ids::PrNumber,
                comment_id: $crate::ids::CommentId,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::rows::to_i64;
                let repo = repo.to_string();
                let pr = to_i64(pr.0, "pull request number")?;
                let comment_id = to_i64(comment_id.0, "comment id")?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::evaluations::SET_PR_COMMENT);
                        sqlx::query(&q)
                            .bind(&repo)
                            .bind(pr)
                            .bind(comment_id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_evaluation(
                &self,
                run: $crate::store::NewEvaluation,
            ) -> Result<$crate::ids::EvaluationId, $crate::store::StoreError> {
                use $crate::store::rows::{to_i64, to_json};
                let pr = to_i64(run.pr.0, "pull request number")?;
                let report = to_json(&run.report, "report")?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::evaluations::INSERT_RUN);
                        let id: i64 = sqlx::query_scalar(&q)
                            .bind(run.repo.to_string())
                            .bind(pr)
                            .bind(run.head_sha.as_str())
                            .bind(run.base_sha.as_str())
                            .bind(run.delivery_id.as_str())
                            .bind(report)
                            .fetch_one(&mut *conn)
                            .await?;
                        Ok($crate::ids::EvaluationId(id))
                    })
                })
                .await
            }

            async fn update_evaluation_report(
                &self,
                id: $crate::ids::EvaluationId,
                report: serde_json::Value,
            ) -> Result<(), $crate::store::StoreError> {
                let report = $crate::store::rows::to_json(&report, "report")?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::evaluations::UPDATE_REPORT);
                        sqlx::query(&q)
                            .bind(report)
                            .bind(id.0)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn evaluation(
                &self,
                id: $crate::ids::EvaluationId,
            ) -> Result<Option<$crate::store::EvaluationRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::evaluations::RUN);
                let row = sqlx::query(&q)
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref()
                    .map($crate::store::rows::run_from_row)
                    .transpose()
            }
        }
    };
}
pub(super) use impl_evaluation_store;
