//! The repositories Paved serves, as the last delivery for each described them: the API
//! and the orchestrator act on a repository without a webhook in hand, and need its default
//! branch, clone URL and GitHub App installation.

use super::StoreError;
use crate::ids::{InstallationId, RepoName};
use async_trait::async_trait;

/// A repository as its last handled delivery described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRepository {
    pub repo: RepoName,
    pub default_branch: String,
    pub clone_url: String,
    pub installation: Option<InstallationId>,
}

#[async_trait]
pub trait RepositoryStore: Send + Sync + 'static {
    /// Records (or updates) what a delivery said of its repository.
    async fn note_repository(&self, known: &KnownRepository) -> Result<(), StoreError>;
    async fn repository(&self, repo: &RepoName) -> Result<Option<KnownRepository>, StoreError>;
    /// Every known repository, by name.
    async fn repositories(&self) -> Result<Vec<KnownRepository>, StoreError>;
}

pub(super) const NOTE: &str =
    "INSERT INTO repositories (repo, default_branch, clone_url, installation_id, updated_at) \
     VALUES ($1, $2, $3, $4, paved_now_ms()) \
     ON CONFLICT (repo) DO UPDATE SET default_branch = excluded.default_branch, \
     clone_url = excluded.clone_url, installation_id = excluded.installation_id, \
     updated_at = excluded.updated_at";
pub(super) const ONE: &str = "SELECT repo, default_branch, clone_url, installation_id \
     FROM repositories WHERE repo = $1";
pub(super) const ALL: &str = "SELECT repo, default_branch, clone_url, installation_id \
     FROM repositories ORDER BY repo COLLATE \"C\"";

pub(super) type Row = (String, String, String, Option<i64>);

pub(super) fn from_row(
    (repo, default_branch, clone_url, inst): Row,
) -> Result<KnownRepository, StoreError> {
    Ok(KnownRepository {
        repo: RepoName::parse(&repo)
            .map_err(|e| StoreError::Corrupt(format!("repository name {repo:?}: {e}")))?,
        default_branch,
        clone_url,
        installation: inst
            .map(|i| super::rows::to_u64(i, "installation id").map(InstallationId))
            .transpose()?,
    })
}

/// [`RepositoryStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_repository_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::RepositoryStore for $store {
            async fn note_repository(
                &self,
                known: &$crate::store::KnownRepository,
            ) -> Result<(), $crate::store::StoreError> {
                let repo = known.repo.to_string();
                let branch = known.default_branch.clone();
                let url = known.clone_url.clone();
                let inst = known
                    .installation
                    .map(|i| $crate::store::rows::to_i64(i.0, "installation id"))
                    .transpose()?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::repositories::NOTE);
                        sqlx::query(&q)
                            .bind(&repo)
                            .bind(&branch)
                            .bind(&url)
                            .bind(inst)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn repository(
                &self,
                repo: &$crate::ids::RepoName,
            ) -> Result<Option<$crate::store::KnownRepository>, $crate::store::StoreError> {
                let q = $sql($crate::store::repositories::ONE);
                let row: Option<$crate::store::repositories::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .fetch_optional(self.reader())
                    .await?;
                row.map($crate::store::repositories::from_row).transpose()
            }

            async fn repositories(
                &self,
            ) -> Result<Vec<$crate::store::KnownRepository>, $crate::store::StoreError> {
                let q = $sql($crate::store::repositories::ALL);
                let rows: Vec<$crate::store::repositories::Row> =
                    sqlx::query_as(&q).fetch_all(self.reader()).await?;
                rows.into_iter()
                    .map($crate::store::repositories::from_row)
                    .collect()
            }
        }
    };
}
pub(super) use impl_repository_store;
