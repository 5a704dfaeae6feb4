//! Who people are on GitHub: the login a user token belongs to (`GET /user`), the
//! members of an organisation team (`GET /orgs/{org}/teams/{team_slug}/members`), and
//! which pull request a pushed commit came from (`GET .../commits/{sha}/pulls`).

use super::client::{build_octocrab, Auth, ForgeError, GitHub, Method};
use super::Forge;
use crate::config::Secret;
use serde::Deserialize;

/// Team listings are read at most this many pages (100 members each).
const MAX_TEAM_PAGES: u32 = 50;

#[derive(Deserialize)]
struct Login {
    login: String,
}

impl Forge {
    /// The login `token` belongs to, asking GitHub as that user; `None` when GitHub refuses
    /// the token (401: unknown, expired or revoked). The token is never logged.
    pub async fn user_login(&self, token: &Secret) -> Result<Option<String>, ForgeError> {
        let octo = build_octocrab(&self.api_url, Auth::Token(token.expose()))?;
        let gh = GitHub::fixed(octo, self.retry.clone(), self.metrics.clone());
        match gh
            .send("the caller's identity", Method::Get, "/user", None::<&()>)
            .await
        {
            Ok(a) => {
                let u: Login = serde_json::from_slice(&a.body)
                    .map_err(|e| ForgeError::Transient(format!("GET /user: bad JSON: {e}")))?;
                Ok(Some(u.login))
            }
            Err(ForgeError::Refused { status: 401, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A pull request as `GET /repos/{owner}/{repo}/commits/{sha}/pulls` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct CommitPull {
    pub number: u64,
    #[serde(default)]
    pub merged_at: Option<String>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
}

impl GitHub {
    /// The pull requests GitHub associates with `sha` (merged as it, or with it as head).
    pub async fn pulls_for_commit(
        &self,
        repo: &crate::ids::RepoName,
        sha: &crate::ids::CommitSha,
    ) -> Result<Vec<CommitPull>, ForgeError> {
        let path = format!("/repos/{repo}/commits/{sha}/pulls?per_page=100");
        let a = self
            .send("pull requests of a commit", Method::Get, &path, None::<&()>)
            .await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("pull requests of a commit: bad JSON: {e}")))
    }

    /// The logins of the members of `org/slug` (every page).
    pub async fn team_members(&self, org: &str, slug: &str) -> Result<Vec<String>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=MAX_TEAM_PAGES {
            let path = format!("/orgs/{org}/teams/{slug}/members?per_page=100&page={page}");
            let a = self
                .send("team members", Method::Get, &path, None::<&()>)
                .await?;
            let logins: Vec<Login> = serde_json::from_slice(&a.body)
                .map_err(|e| ForgeError::Transient(format!("team members: bad JSON: {e}")))?;
            let n = logins.len();
            out.extend(logins.into_iter().map(|l| l.login));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}

/// A pull request Paved opened.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenedPull {
    pub number: u64,
    pub html_url: String,
}

/// One commit status, as the combined status lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
pub struct CommitStatus {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Deserialize)]
struct Combined {
    statuses: Vec<CommitStatus>,
}

impl GitHub {
    /// `POST /repos/{owner}/{repo}/pulls`: opens a pull request from `head` into `base`.
    /// Not repeated when its answer is lost (a second would fail anyway: one PR per head).
    pub async fn create_pull(
        &self,
        repo: &crate::ids::RepoName,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<OpenedPull, ForgeError> {
        let path = format!("/repos/{repo}/pulls");
        let payload =
            serde_json::json!({ "title": title, "head": head, "base": base, "body": body });
        let a = self
            .send_create("open pull request", &path, &payload)
            .await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("open pull request: bad JSON: {e}")))
    }

    /// The latest status of each context on `sha` (`GET .../commits/{sha}/status`).
    pub async fn commit_statuses(
        &self,
        repo: &crate::ids::RepoName,
        sha: &str,
    ) -> Result<Vec<CommitStatus>, ForgeError> {
        let path = format!("/repos/{repo}/commits/{sha}/status?per_page=100");
        let a = self
            .send("commit statuses", Method::Get, &path, None::<&()>)
            .await?;
        let c: Combined = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("commit statuses: bad JSON: {e}")))?;
        Ok(c.statuses)
    }
}

/// What `GET /repos/{owner}/{repo}` says Paved needs.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoFacts {
    pub default_branch: String,
    pub clone_url: String,
}

impl GitHub {
    /// `GET /repos/{owner}/{repo}`: its default branch and clone URL.
    pub async fn repository(&self, repo: &crate::ids::RepoName) -> Result<RepoFacts, ForgeError> {
        let path = format!("/repos/{repo}");
        let a = self
            .send("repository", Method::Get, &path, None::<&()>)
            .await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("repository: bad JSON: {e}")))
    }
}
