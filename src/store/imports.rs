//! Imports from other tools (SPEC 15): the pull request an import opened, at most one open
//! per repository and source, and the environments its merge adopts, each once.

use super::StoreError;
use crate::ids::RepoName;
use async_trait::async_trait;

/// An environment an import brings, as it will be adopted.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedEnv {
    pub env_name: String,
    pub manifest_path: String,
    /// Where it lives in the source (ADE's address of the environment).
    pub source_uri: String,
    /// Name → `{type, value, sensitive}` as the source reported them.
    pub outputs: serde_json::Value,
}

/// An import about to push its branch.
#[derive(Debug, Clone)]
pub struct NewImport {
    pub repo: RepoName,
    /// What is imported, e.g. `ade:<endpoint>/projects/<project>`.
    pub source: String,
    pub branch: String,
    pub environments: Vec<ImportedEnv>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    pub id: i64,
    pub repo: String,
    pub source: String,
    pub branch: String,
    /// The commit Paved pushed as the branch's head.
    pub head_sha: Option<String>,
    pub pr_number: Option<u64>,
    pub pr_url: Option<String>,
    pub open: bool,
}

#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    /// Records an open import with its environments; `Err(open)`: the repository already has
    /// an open import of the same source (nothing recorded).
    async fn open_import(&self, new: NewImport) -> Result<Result<i64, ImportRecord>, StoreError>;
    async fn set_import_pr(
        &self,
        id: i64,
        head_sha: &str,
        number: u64,
        url: &str,
    ) -> Result<(), StoreError>;
    /// Its pull request was merged or closed, or it failed before opening one.
    async fn close_import(&self, id: i64) -> Result<(), StoreError>;
    async fn import_for_pr(
        &self,
        repo: &RepoName,
        pr: u64,
    ) -> Result<Option<ImportRecord>, StoreError>;
    async fn imported_environment(
        &self,
        import_id: i64,
        env_name: &str,
    ) -> Result<Option<ImportedEnv>, StoreError>;
    /// Marks the environment adopted; `false` when it already was (adopt nothing twice).
    async fn mark_adopted(&self, import_id: i64, env_name: &str) -> Result<bool, StoreError>;
}

pub(super) const INSERT: &str = "INSERT INTO imports (repo, source, branch, created_at) \
     VALUES ($1, $2, $3, paved_now_ms()) ON CONFLICT DO NOTHING RETURNING id";
pub(super) const INSERT_ENV: &str = "INSERT INTO import_environments \
     (import_id, env_name, manifest_path, source_uri, outputs) VALUES ($1, $2, $3, $4, $5)";
const COLUMNS: &str = "id, repo, source, branch, head_sha, pr_number, pr_url, open";
pub(super) const OPEN_FOR: &str = concat!(
    "SELECT id, repo, source, branch, head_sha, pr_number, pr_url, open",
    " FROM imports WHERE repo = $1 AND source = $2 AND open = 1"
);
pub(super) const SET_PR: &str =
    "UPDATE imports SET head_sha = $2, pr_number = $3, pr_url = $4 WHERE id = $1";
pub(super) const CLOSE: &str = "UPDATE imports SET open = 0 WHERE id = $1";
pub(super) const FOR_PR: &str = concat!(
    "SELECT id, repo, source, branch, head_sha, pr_number, pr_url, open",
    " FROM imports WHERE repo = $1 AND pr_number = $2 ORDER BY id DESC LIMIT 1"
);
pub(super) const ENV: &str = "SELECT env_name, manifest_path, source_uri, outputs \
     FROM import_environments WHERE import_id = $1 AND env_name = $2";
pub(super) const ADOPT: &str = "UPDATE import_environments SET adopted_at = paved_now_ms() \
     WHERE import_id = $1 AND env_name = $2 AND adopted_at IS NULL";

/// A row of [`COLUMNS`].
pub(super) type Row = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
);

pub(super) fn record(r: Row) -> ImportRecord {
    let _ = COLUMNS;
    ImportRecord {
        id: r.0,
        repo: r.1,
        source: r.2,
        branch: r.3,
        head_sha: r.4,
        pr_number: r.5.map(|n| n as u64),
        pr_url: r.6,
        open: r.7 != 0,
    }
}

/// [`ImportStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_import_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::ImportStore for $store {
            async fn open_import(
                &self,
                new: $crate::store::NewImport,
            ) -> Result<Result<i64, $crate::store::ImportRecord>, $crate::store::StoreError> {
                use $crate::store::imports as q;
                self.write(move |conn| {
                    Box::pin(async move {
                        let repo = new.repo.to_string();
                        let id: Option<(i64,)> = sqlx::query_as(&$sql(q::INSERT))
                            .bind(&repo)
                            .bind(&new.source)
                            .bind(&new.branch)
                            .fetch_optional(&mut *conn)
                            .await?;
                        let Some((id,)) = id else {
                            let open: q::Row = sqlx::query_as(&$sql(q::OPEN_FOR))
                                .bind(&repo)
                                .bind(&new.source)
                                .fetch_one(&mut *conn)
                                .await?;
                            return Ok(Err(q::record(open)));
                        };
                        for e in &new.environments {
                            sqlx::query(&$sql(q::INSERT_ENV))
                                .bind(id)
                                .bind(e.env_name.as_str())
                                .bind(&e.manifest_path)
                                .bind(&e.source_uri)
                                .bind(e.outputs.to_string())
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(Ok(id))
                    })
                })
                .await
            }

            async fn set_import_pr(
                &self,
                id: i64,
                head_sha: &str,
                number: u64,
                url: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let (head, url) = (head_sha.to_string(), url.to_string());
                self.write(move |conn| {
                    Box::pin(async move {
                        sqlx::query(&$sql($crate::store::imports::SET_PR))
                            .bind(id)
                            .bind(&head)
                            .bind(number as i64)
                            .bind(&url)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn close_import(&self, id: i64) -> Result<(), $crate::store::StoreError> {
                self.write(move |conn| {
                    Box::pin(async move {
                        sqlx::query(&$sql($crate::store::imports::CLOSE))
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn import_for_pr(
                &self,
                repo: &$crate::ids::RepoName,
                pr: u64,
            ) -> Result<Option<$crate::store::ImportRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::imports::FOR_PR);
                let row: Option<$crate::store::imports::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(pr as i64)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map($crate::store::imports::record))
            }

            async fn imported_environment(
                &self,
                import_id: i64,
                env_name: &str,
            ) -> Result<Option<$crate::store::ImportedEnv>, $crate::store::StoreError> {
                let q = $sql($crate::store::imports::ENV);
                let row: Option<(String, String, String, String)> = sqlx::query_as(&q)
                    .bind(import_id)
                    .bind(env_name)
                    .fetch_optional(self.reader())
                    .await?;
                row.map(|(env_name, manifest_path, source_uri, outputs)| {
                    Ok($crate::store::ImportedEnv {
                        env_name,
                        manifest_path,
                        source_uri,
                        outputs: serde_json::from_str(&outputs)
                            .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?,
                    })
                })
                .transpose()
            }

            async fn mark_adopted(
                &self,
                import_id: i64,
                env_name: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                let env_name = env_name.to_string();
                self.write(move |conn| {
                    Box::pin(async move {
                        let done = sqlx::query(&$sql($crate::store::imports::ADOPT))
                            .bind(import_id)
                            .bind(&env_name)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_import_store;
