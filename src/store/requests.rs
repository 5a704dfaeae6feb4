//! Self-service requests (SPEC 9): what was asked, by whom, and the branch and pull request
//! Paved opened for it. At most one open request per environment.

use super::StoreError;
use crate::ids::{EnvName, Login, RepoName, TeamName};
use async_trait::async_trait;

/// A request about to be opened.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub repo: RepoName,
    /// `create`, `update`, `extend` or `delete`.
    pub action: String,
    pub env_name: EnvName,
    pub team: TeamName,
    /// The GitHub login that asked (the pull request's author for the checks).
    pub requester: Login,
    pub branch: String,
    pub manifest_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub id: i64,
    pub repo: RepoName,
    pub action: String,
    pub env_name: EnvName,
    pub team: TeamName,
    pub requester: Login,
    pub branch: String,
    pub manifest_path: String,
    pub pr_number: Option<u64>,
    pub pr_url: Option<String>,
    /// Its pull request may still change things (not merged, not closed, not failed).
    pub open: bool,
    pub created_at_ms: i64,
    /// The commit Paved made on its branch (`None` until pushed).
    pub head_sha: Option<String>,
}

impl RequestRecord {
    /// The branch Paved pushed (rows from before branch names were recorded:
    /// `paved/requests/<name>-<id>`).
    pub fn branch_name(&self) -> String {
        if self.branch.is_empty() {
            format!("paved/requests/{}-{}", self.env_name, self.id)
        } else {
            self.branch.clone()
        }
    }
}

#[async_trait]
pub trait RequestStore: Send + Sync + 'static {
    /// Records a new open request; `None` when the environment already has one open.
    async fn open_request(&self, new: &NewRequest) -> Result<Option<i64>, StoreError>;
    async fn set_request_pr(&self, id: i64, number: u64, url: &str) -> Result<(), StoreError>;
    /// The commit Paved pushed as the request's branch.
    async fn set_request_head(&self, id: i64, sha: &str) -> Result<(), StoreError>;
    /// The request no longer holds its environment (its PR closed, or opening it failed).
    async fn close_request(&self, id: i64) -> Result<(), StoreError>;
    async fn request(&self, id: i64) -> Result<Option<RequestRecord>, StoreError>;
    async fn open_request_for(
        &self,
        repo: &RepoName,
        env_name: &str,
    ) -> Result<Option<RequestRecord>, StoreError>;
    async fn request_for_pr(
        &self,
        repo: &RepoName,
        pr: u64,
    ) -> Result<Option<RequestRecord>, StoreError>;
    /// The open request whose branch Paved pushed as `head` and whose pull request is not
    /// recorded yet: GitHub's `opened` event can come before Paved has written down the
    /// number `create_pull` answered.
    async fn request_awaiting_pr(
        &self,
        repo: &RepoName,
        head: &str,
    ) -> Result<Option<RequestRecord>, StoreError>;
}

pub(super) const OPEN: &str = "INSERT INTO requests (repo, action, env_name, team, requester, \
     branch, manifest_path, open, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, \
     paved_now_ms()) ON CONFLICT DO NOTHING RETURNING id";
pub(super) const SET_PR: &str = "UPDATE requests SET pr_number = $2, pr_url = $3 WHERE id = $1";
pub(super) const CLOSE: &str = "UPDATE requests SET open = FALSE WHERE id = $1";
pub(super) const SET_HEAD: &str = "UPDATE requests SET head_sha = $2 WHERE id = $1";
macro_rules! request_columns {
    () => {
        "id, repo, action, env_name, team, requester, branch, manifest_path, pr_number, \
         pr_url, open, created_at, head_sha"
    };
}
pub(super) const BY_ID: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE id = $1"
);
pub(super) const OPEN_FOR: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE repo = $1 AND env_name = $2 AND open"
);
pub(super) const FOR_PR: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE repo = $1 AND pr_number = $2 ORDER BY id DESC LIMIT 1"
);

pub(super) const AWAITING_PR: &str = concat!(
    "SELECT ",
    request_columns!(),
    " FROM requests WHERE repo = $1 AND head_sha = $2 AND open AND pr_number IS NULL \
     ORDER BY id DESC LIMIT 1"
);

pub(super) type Row = (
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    bool,
    i64,
    Option<String>,
);

pub(super) fn from_row(r: Row) -> Result<RequestRecord, StoreError> {
    use super::rows::name_of;
    Ok(RequestRecord {
        id: r.0,
        repo: RepoName::parse(&r.1).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        action: r.2,
        env_name: name_of(r.3)?,
        team: name_of(r.4)?,
        requester: name_of(r.5)?,
        branch: r.6,
        manifest_path: r.7,
        pr_number: r
            .8
            .map(|n| super::rows::to_u64(n, "pull request number"))
            .transpose()?,
        pr_url: r.9,
        open: r.10,
        created_at_ms: r.11,
        head_sha: r.12,
    })
}

/// [`RequestStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_request_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::RequestStore for $store {
            async fn open_request(
                &self,
                new: &$crate::store::NewRequest,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                let n = new.clone();
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::requests::OPEN);
                        let id: Option<i64> = sqlx::query_scalar(&q)
                            .bind(n.repo.to_string())
                            .bind(&n.action)
                            .bind(n.env_name.as_str())
                            .bind(n.team.as_str())
                            .bind(n.requester.as_str())
                            .bind(&n.branch)
                            .bind(&n.manifest_path)
                            .fetch_optional(&mut *conn)
                            .await?;
                        Ok(id)
                    })
                })
                .await
            }

            async fn set_request_pr(
                &self,
                id: i64,
                number: u64,
                url: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let number = $crate::store::rows::to_i64(number, "pull request number")?;
                let url = url.to_string();
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::requests::SET_PR);
                        sqlx::query(&q)
                            .bind(id)
                            .bind(number)
                            .bind(&url)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn set_request_head(
                &self,
                id: i64,
                sha: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let sha = sha.to_string();
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::requests::SET_HEAD);
                        sqlx::query(&q)
                            .bind(id)
                            .bind(&sha)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn close_request(&self, id: i64) -> Result<(), $crate::store::StoreError> {
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql($crate::store::requests::CLOSE);
                        sqlx::query(&q).bind(id).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn request(
                &self,
                id: i64,
            ) -> Result<Option<$crate::store::RequestRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::requests::BY_ID);
                let row: Option<$crate::store::requests::Row> = sqlx::query_as(&q)
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                row.map($crate::store::requests::from_row).transpose()
            }

            async fn open_request_for(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
            ) -> Result<Option<$crate::store::RequestRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::requests::OPEN_FOR);
                let row: Option<$crate::store::requests::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(env_name)
                    .fetch_optional(self.reader())
                    .await?;
                row.map($crate::store::requests::from_row).transpose()
            }

            async fn request_for_pr(
                &self,
                repo: &$crate::ids::RepoName,
                pr: u64,
            ) -> Result<Option<$crate::store::RequestRecord>, $crate::store::StoreError> {
                let pr = $crate::store::rows::to_i64(pr, "pull request number")?;
                let q = $sql($crate::store::requests::FOR_PR);
                let row: Option<$crate::store::requests::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(pr)
                    .fetch_optional(self.reader())
                    .await?;
                row.map($crate::store::requests::from_row).transpose()
            }

            async fn request_awaiting_pr(
                &self,
                repo: &$crate::ids::RepoName,
                head: &str,
            ) -> Result<Option<$crate::store::RequestRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::requests::AWAITING_PR);
                let row: Option<$crate::store::requests::Row> = sqlx::query_as(&q)
                    .bind(repo.to_string())
                    .bind(head)
                    .fetch_optional(self.reader())
                    .await?;
                row.map($crate::store::requests::from_row).transpose()
            }
        }
    };
}
pub(super) use impl_request_store;
