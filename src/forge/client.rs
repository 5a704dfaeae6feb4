//! A thin GitHub client: only the calls Paved makes, each retried with backoff on the
//! failures GitHub documents as transient (5xx, 429, secondary rate limits, timeouts).
//! Built on octocrab's raw request methods so status codes and `Retry-After` stay visible.

use super::app::{AppTokens, Minted};
use crate::config::{GithubAuth, Secret};
use crate::ids::{
    CommentId, CommitSha, DeploymentId, InstallationId, OperationId, PrNumber, RepoName,
};
use crate::metrics::Metrics;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Worth trying again later (the worker re-queues the delivery).
    #[error("GitHub is unavailable for now: {0}")]
    Transient(String),
    /// GitHub refused the request; trying again will not help.
    #[error("GitHub refused {what}: {status} {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("GitHub client setup: {0}")]
    Setup(String),
    /// A request that creates something reached GitHub, or may have, but its answer was
    /// lost (a timeout, a broken connection). It is not repeated blindly: the caller looks
    /// for what it may have created first.
    #[error("GitHub's answer to {0} was lost; it may have been done")]
    AnswerLost(String),
    /// A primary rate limit: nothing is worth sending before `until` (from
    /// `x-ratelimit-reset`), which is further away than the client waits by itself.
    #[error("GitHub rate limit reached by {what}; it resets in {after:?}")]
    RateLimited {
        what: String,
        after: std::time::Duration,
    },
}

impl ForgeError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ForgeError::Transient(_) | ForgeError::AnswerLost(_) | ForgeError::RateLimited { .. }
        )
    }
}

/// Whether a request may be sent again when its answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads, and writes whose repetition changes nothing (a status, a comment edit).
    Safe,
    /// Writes that create something: a lost answer is reported, not repeated.
    Create,
}

/// The state of a commit status, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewStatus {
    pub state: StatusState,
    pub context: String,
    /// GitHub keeps at most 140 characters; longer ones are cut here rather than refused.
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: CommentId,
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub user: Option<Login>,
}

/// A GitHub account, as answers name it.
#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub login: String,
}

impl Comment {
    /// Whether `login` wrote it.
    pub fn by(&self, login: &str) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.login.eq_ignore_ascii_case(login))
    }
}

/// Retry behaviour; tests shorten the delays.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// How the base client authenticates (see [`build_octocrab`]).
pub(super) enum Auth<'a> {
    None,
    Token(&'a str),
    App(u64, octocrab::EncodingKey),
}

/// An octocrab client for `api_url` without octocrab's own retries (this client retries,
/// seeing status codes and `Retry-After`), with connect and read timeouts.
pub(super) fn build_octocrab(api_url: &str, auth: Auth<'_>) -> Result<Octocrab, ForgeError> {
    let setup = |e: &dyn std::fmt::Display| ForgeError::Setup(e.to_string());
    let mut b = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| setup(&e))?
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(Duration::from_secs(30)));
    match auth {
        Auth::None => {}
        Auth::Token(t) => b = b.personal_token(t.to_string()),
        Auth::App(id, key) => b = b.app(id.into(), key),
    }
    b.build().map_err(|e| setup(&e))
}

/// Builds clients for the configured authentication.
#[derive(Clone)]
pub struct Forge {
    /// With the configured token (or none); unused by a GitHub App but for its tokens.
    base: Octocrab,
    app: Option<Arc<AppTokens>>,
    token: Option<Secret>,
    pub(super) retry: RetryPolicy,
    pub(super) metrics: Arc<Metrics>,
    pub(super) api_url: String,
    /// The login GitHub shows for what Paved writes (its bot, or its token's user), learnt
    /// from the answer to the first comment it creates.
    own_login: Arc<std::sync::Mutex<Option<String>>>,
}

impl Forge {
    pub fn new(
        api_url: &str,
        auth: Option<&GithubAuth>,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<Forge, ForgeError> {
        let mut token = None;
        let mut app = None;
        let base = match auth {
            Some(GithubAuth::Token(t)) => {
                token = Some(t.clone());
                build_octocrab(api_url, Auth::Token(t.expose()))?
            }
            Some(GithubAuth::App {
                app_id,
                private_key_path,
            }) => {
                let pem = std::fs::read(private_key_path).map_err(|e| {
                    ForgeError::Setup(format!("{}: {e}", private_key_path.display()))
                })?;
                let key = octocrab::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                    ForgeError::Setup(format!("{}: {e}", private_key_path.display()))
                })?;
                let as_app = build_octocrab(api_url, Auth::App(*app_id, key))?;
                app = Some(Arc::new(AppTokens::new(
                    GitHub::fixed(as_app, retry.clone(), metrics.clone()),
                    api_url,
                )));
                build_octocrab(api_url, Auth::None)?
            }
            None => build_octocrab(api_url, Auth::None)?,
        };
        Ok(Forge {
            base,
            app,
            token,
            retry,
            metrics,
            api_url: api_url.to_string(),
            own_login: Arc::default(),
        })
    }

    /// Whether Paved runs as a GitHub App (the Checks API is only open to apps).
    pub fn is_app(&self) -> bool {
        self.app.is_some()
    }

    /// A client acting for one installation (GitHub App) or with the configured token.
    pub fn client(&self, installation: Option<InstallationId>) -> Result<GitHub, ForgeError> {
        let identity = match (&self.app, installation) {
            (Some(tokens), Some(id)) => Identity::Installation {
                tokens: tokens.clone(),
                id,
            },
            (Some(_), None) => {
                return Err(ForgeError::Refused {
                    what: "an event without an installation".into(),
                    status: 0,
                    message: "Paved runs as a GitHub App; the webhook must come from the app"
                        .into(),
                })
            }
            (None, _) => Identity::Fixed(self.base.clone()),
        };
        Ok(GitHub {
            identity,
            retry: self.retry.clone(),
            metrics: self.metrics.clone(),
            own_login: self.own_login.clone(),
        })
    }

    /// The token Git uses over HTTPS: the configured token, or the installation's current
    /// token (the one the REST API uses, renewed the same way).
    pub async fn git_token(
        &self,
        installation: Option<InstallationId>,
    ) -> Result<Option<Secret>, ForgeError> {
        match (&self.app, installation) {
            (Some(tokens), Some(id)) => Ok(Some(tokens.current(id).await?.1)),
            _ => Ok(self.token.clone()),
        }
    }
}

#[async_trait::async_trait]
impl crate::repo::GitCredentials for Forge {
    async fn git_token(
        &self,
        installation: Option<InstallationId>,
    ) -> Result<Option<Secret>, String> {
        Forge::git_token(self, installation)
            .await
            .map_err(|e| e.to_string())
    }

    async fn failed(&self, installation: Option<InstallationId>) {
        if let (Some(tokens), Some(id)) = (&self.app, installation) {
            tokens.forget_any(id).await;
        }
    }
}

/// Who a [`GitHub`] client acts as.
#[derive(Clone)]
enum Identity {
    /// The configured token, or the app itself (minting installation tokens).
    Fixed(Octocrab),
    /// A GitHub App installation, with its current token.
    Installation {
        tokens: Arc<AppTokens>,
        id: InstallationId,
    },
}

/// A GitHub client bound to one identity.
#[derive(Clone)]
pub struct GitHub {
    identity: Identity,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    own_login: Arc<std::sync::Mutex<Option<String>>>,
}

pub(super) enum Method {
    Get,
    Post,
    Patch,
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Bytes,
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

impl GitHub {
    pub(super) fn fixed(octo: Octocrab, retry: RetryPolicy, metrics: Arc<Metrics>) -> GitHub {
        GitHub {
            identity: Identity::Fixed(octo),
            retry,
            metrics,
            own_login: Arc::default(),
        }
    }

    /// The login GitHub shows for what Paved writes, once Paved has created a status or a
    /// comment: only comments by it are Paved's (a marker alone proves nothing: anyone can
    /// write one). `None` until then.
    pub fn own_login(&self) -> Option<String> {
        self.own_login
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn learn_login(&self, login: String) {
        *self.own_login.lock().unwrap_or_else(|p| p.into_inner()) = Some(login);
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn send_once<B: Serialize + ?Sized + Sync>(
        octo: &Octocrab,
        method: &Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, octocrab::Error> {
        let resp = match method {
            Method::Get => octo._get(path).await?,
            Method::Post => octo._post(path, body).await?,
            Method::Patch => octo._patch(path, body).await?,
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// The client to send with now, and the installation token it carries (to drop it if
    /// GitHub refuses it).
    async fn octo(&self) -> Result<(Octocrab, Option<Secret>), ForgeError> {
        match &self.identity {
            Identity::Fixed(o) => Ok((o.clone(), None)),
            Identity::Installation { tokens, id } => {
                let (o, t) = tokens.current(*id).await?;
                Ok((o, Some(t)))
            }
        }
    }

    /// Sends with retries. Transient answers are retried with exponential backoff, honouring
    /// `Retry-After`; anything else that is not 2xx is returned as [`ForgeError::Refused`].
    pub(super) async fn send<B: Serialize + ?Sized + Sync>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Answer, ForgeError> {
        self.send_as(what, method, path, body, Repeat::Safe).await
    }

    /// Sends a write that creates something: a lost answer is reported
    /// ([`ForgeError::AnswerLost`]), not repeated.
    pub(super) async fn send_create<B: Serialize + ?Sized + Sync>(
        &self,
        what: &str,
        path: &str,
        body: &B,
    ) -> Result<Answer, ForgeError> {
        self.send_as(what, Method::Post, path, Some(body), Repeat::Create)
            .await
    }

    async fn send_as<B: Serialize + ?Sized + Sync>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&B>,
        repeat: Repeat,
    ) -> Result<Answer, ForgeError> {
        let operation = operation_of(&method, path);
        let mut last = String::new();
        let mut renewed = false;
        for attempt in 0..self.retry.attempts {
            if attempt > 0 {
                tracing::debug!(what, attempt, "retrying GitHub request");
                self.metrics.github_retry(operation);
            }
            let mut wait = backoff(&self.retry, attempt);
            let (octo, token) = self.octo().await?;
            let sent = Self::send_once(&octo, &method, path, body).await;
            self.metrics
                .github_request(operation, sent.as_ref().map_or(0, |a| a.status.as_u16()));
            match sent {
                Ok(a) if a.status.is_success() => return Ok(a),
                Ok(a) if a.status == StatusCode::UNAUTHORIZED && token.is_some() && !renewed => {
                    // An installation token GitHub no longer takes (expired early, or
                    // revoked): drop it and send once more with a fresh one.
                    if let (Identity::Installation { tokens, id }, Some(t)) =
                        (&self.identity, &token)
                    {
                        tracing::info!(what, installation = %id.0,
                            "GitHub refused the installation token; minting another");
                        tokens.forget(*id, t).await;
                    }
                    renewed = true;
                    continue;
                }
                Ok(a) => {
                    let message = String::from_utf8_lossy(&a.body).into_owned();
                    let secondary = a.status == StatusCode::FORBIDDEN
                        && (message.to_ascii_lowercase().contains("rate limit")
                            || a.headers.get("retry-after").is_some()
                            || a.headers
                                .get("x-ratelimit-remaining")
                                .is_some_and(|v| v == "0"));
                    let transient = a.status.is_server_error()
                        || a.status == StatusCode::TOO_MANY_REQUESTS
                        || secondary;
                    if !transient {
                        return Err(ForgeError::Refused {
                            what: what.to_string(),
                            status: a.status.as_u16(),
                            message: cut(&message, 300),
                        });
                    }
                    if let Some(after) = retry_after(&a.headers) {
                        if after > self.retry.max_delay {
                            // A primary rate limit resetting later than worth waiting here:
                            // the delivery is retried when it resets, not hammered before.
                            return Err(ForgeError::RateLimited {
                                what: what.to_string(),
                                after,
                            });
                        }
                        wait = after;
                    }
                    last = format!("{} {}", a.status, cut(&message, 200));
                }
                Err(e) if repeat == Repeat::Create => {
                    // Maybe nothing reached GitHub, maybe only the answer was lost: sending
                    // it again could create a second one. The caller looks first.
                    tracing::warn!(what, error = %e, "GitHub's answer was lost");
                    return Err(ForgeError::AnswerLost(what.to_string()));
                }
                Err(e) => {
                    // Transport errors and timeouts on reads and on writes that are
                    // idempotent in effect (statuses, comment edits): safe to repeat.
                    last = e.to_string();
                }
            }
            if attempt + 1 < self.retry.attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(ForgeError::Transient(format!("{what}: {last}")))
    }

    /// `POST /app/installations/{id}/access_tokens`, sent as the app (a JWT).
    pub(super) async fn create_installation_token(
        &self,
        installation: InstallationId,
    ) -> Result<Minted, ForgeError> {
        #[derive(Deserialize)]
        struct T {
            token: String,
            expires_at: chrono::DateTime<chrono::Utc>,
        }
        let path = format!("/app/installations/{}/access_tokens", installation.0);
        let a = self
            .send("installation token", Method::Post, &path, None::<&()>)
            .await?;
        let t: T = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("installation token: bad JSON: {e}")))?;
        Ok(Minted {
            token: Secret::new(t.token),
            expires_at: t.expires_at,
        })
    }

    /// `GET /repos/{owner}/{repo}/pulls/{number}`, as JSON.
    pub async fn get_pull(
        &self,
        repo: &RepoName,
        number: PrNumber,
    ) -> Result<serde_json::Value, ForgeError> {
        let path = format!("/repos/{}/{}/pulls/{number}", repo.owner(), repo.name());
        let a = self
            .send("get pull request", Method::Get, &path, None::<&()>)
            .await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("get pull request: bad JSON: {e}")))
    }

    pub async fn create_status(
        &self,
        repo: &RepoName,
        sha: &CommitSha,
        status: &NewStatus,
    ) -> Result<(), ForgeError> {
        let mut s = status.clone();
        s.description = cut(&s.description, 140);
        let path = format!("/repos/{}/{}/statuses/{}", repo.owner(), repo.name(), sha);
        let a = self
            .send(
                &format!("status {}", s.context),
                Method::Post,
                &path,
                Some(&s),
            )
            .await?;
        /// Only the creator matters here: it is Paved's own login, learnt from the first
        /// status (which comes before any comment), so a comment whose answer was lost can
        /// still be told apart from someone else's.
        #[derive(Deserialize)]
        struct Created {
            #[serde(default)]
            creator: Option<Login>,
        }
        if let Ok(Created { creator: Some(u) }) = serde_json::from_slice::<Created>(&a.body) {
            self.learn_login(u.login);
        }
        Ok(())
    }

    /// All comments on an issue or pull request, following pagination.
    pub async fn list_comments(
        &self,
        repo: &RepoName,
        issue: PrNumber,
    ) -> Result<Vec<Comment>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=50u32 {
            let path = format!(
                "/repos/{}/{}/issues/{}/comments?per_page=100&page={page}",
                repo.owner(),
                repo.name(),
                issue
            );
            let a = self
                .send("list comments", Method::Get, &path, None::<&()>)
                .await?;
            let batch: Vec<Comment> = serde_json::from_slice(&a.body)
                .map_err(|e| ForgeError::Transient(format!("list comments: bad JSON: {e}")))?;
            let n = batch.len();
            out.extend(batch);
            let has_next = a
                .headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|l| l.contains("rel=\"next\""));
            if !has_next || n == 0 {
                break;
            }
        }
        Ok(out)
    }

    pub async fn create_comment(
        &self,
        repo: &RepoName,
        issue: PrNumber,
        body: &str,
    ) -> Result<CommentId, ForgeError> {
        #[derive(Serialize)]
        struct B<'a> {
            body: &'a str,
        }
        let path = format!(
            "/repos/{}/{}/issues/{}/comments",
            repo.owner(),
            repo.name(),
            issue
        );
        let a = self
            .send_as(
                "create comment",
                Method::Post,
                &path,
                Some(&B { body }),
                Repeat::Create,
            )
            .await?;
        let c: Comment = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("create comment: bad JSON: {e}")))?;
        if let Some(u) = &c.user {
            self.learn_login(u.login.clone());
        }
        Ok(c.id)
    }

    pub async fn update_comment(
        &self,
        repo: &RepoName,
        comment_id: CommentId,
        body: &str,
    ) -> Result<(), ForgeError> {
        #[derive(Serialize)]
        struct B<'a> {
            body: &'a str,
        }
        let path = format!(
            "/repos/{}/{}/issues/comments/{comment_id}",
            repo.owner(),
            repo.name()
        );
        self.send("update comment", Method::Patch, &path, Some(&B { body }))
            .await?;
        Ok(())
    }
}

/// A deployment to create (`POST /repos/{owner}/{repo}/deployments`).
#[derive(Debug, Clone, Serialize)]
pub struct NewDeployment {
    /// The merge commit's SHA: a deployment of exactly what was merged.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `deploy` or `delete`.
    pub task: String,
    pub environment: String,
    pub description: String,
    /// Paved's own record (environment, operation, run id).
    pub payload: serde_json::Value,
    /// Always empty: Paved already decided on the checks, and GitHub's default (every
    /// status on the ref must be green) would see Paved's own pending `paved/provision`.
    pub required_contexts: Vec<String>,
    /// Never merge the default branch into the ref: the ref is a commit.
    pub auto_merge: bool,
    pub transient_environment: bool,
    pub production_environment: bool,
}

/// A deployment status (`POST …/deployments/{id}/statuses`).
#[derive(Debug, Clone, Serialize)]
pub struct NewDeploymentStatus {
    /// `in_progress`, `success`, `failure`, `error` or `inactive`.
    pub state: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    /// Keep earlier deployments of the environment as they are; Paved marks them itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_inactive: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    /// GitHub's id of the review (an approval is bound to the preview shown when it was
    /// first seen, by this id).
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub user: Option<ReviewUser>,
    pub state: String,
    #[serde(default)]
    pub commit_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReviewUser {
    pub login: String,
}

impl GitHub {
    /// Creates a deployment and returns its id.
    pub async fn create_deployment(
        &self,
        repo: &RepoName,
        deployment: &NewDeployment,
    ) -> Result<DeploymentId, ForgeError> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let mut d = deployment.clone();
        d.description = cut(&d.description, 140);
        let path = format!("/repos/{}/{}/deployments", repo.owner(), repo.name());
        let a = self
            .send_as(
                "create deployment",
                Method::Post,
                &path,
                Some(&d),
                Repeat::Create,
            )
            .await?;
        let c: Created = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("create deployment: bad JSON: {e}")))?;
        Ok(DeploymentId(c.id))
    }

    pub async fn create_deployment_status(
        &self,
        repo: &RepoName,
        deployment_id: DeploymentId,
        status: &NewDeploymentStatus,
    ) -> Result<(), ForgeError> {
        let mut s = status.clone();
        s.description = cut(&s.description, 140);
        let path = format!(
            "/repos/{}/{}/deployments/{deployment_id}/statuses",
            repo.owner(),
            repo.name()
        );
        self.send(
            &format!("deployment status {}", s.state),
            Method::Post,
            &path,
            Some(&s),
        )
        .await?;
        Ok(())
    }

    /// The deployment Paved made for run `run_id` (its payload says `paved.run`), among the
    /// deployments of `environment` at `sha`: how a deployment whose creation answer was
    /// lost, or whose id a crash kept from being recorded, is found instead of made twice.
    pub async fn find_deployment(
        &self,
        repo: &RepoName,
        sha: &str,
        environment: &str,
        run_id: OperationId,
    ) -> Result<Option<DeploymentId>, ForgeError> {
        #[derive(Deserialize)]
        struct Listed {
            id: u64,
            #[serde(default)]
            payload: serde_json::Value,
        }
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sha", sha)
            .append_pair("environment", environment)
            .append_pair("per_page", "100")
            .finish();
        let path = format!(
            "/repos/{}/{}/deployments?{query}",
            repo.owner(),
            repo.name()
        );
        let a = self
            .send("list deployments", Method::Get, &path, None::<&()>)
            .await?;
        let listed: Vec<Listed> = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("list deployments: bad JSON: {e}")))?;
        Ok(listed
            .into_iter()
            .find(|d| d.payload["paved"]["run"].as_i64() == Some(run_id.0))
            .map(|d| DeploymentId(d.id)))
    }

    /// All reviews of a pull request, oldest first, following pagination.
    pub async fn list_reviews(
        &self,
        repo: &RepoName,
        pr: PrNumber,
    ) -> Result<Vec<Review>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=30u32 {
            let path = format!(
                "/repos/{}/{}/pulls/{pr}/reviews?per_page=100&page={page}",
                repo.owner(),
                repo.name(),
            );
            let a = self
                .send("list reviews", Method::Get, &path, None::<&()>)
                .await?;
            let batch: Vec<Review> = serde_json::from_slice(&a.body)
                .map_err(|e| ForgeError::Transient(format!("list reviews: bad JSON: {e}")))?;
            let n = batch.len();
            out.extend(batch);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}

fn backoff(p: &RetryPolicy, attempt: u32) -> Duration {
    let exp = p.base_delay.saturating_mul(1u32 << attempt.min(16));
    let capped = exp.min(p.max_delay);
    // Up to 25% jitter so many workers retrying together do not stampede.
    let jitter = capped.mul_f64(rand::random::<f64>() * 0.25);
    capped + jitter
}

fn retry_after(h: &http::HeaderMap) -> Option<Duration> {
    if let Some(v) = h.get("retry-after").and_then(|v| v.to_str().ok()) {
        if let Ok(secs) = v.trim().parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
    }
    let remaining = h.get("x-ratelimit-remaining")?.to_str().ok()?;
    if remaining != "0" {
        return None;
    }
    let reset: u64 = h.get("x-ratelimit-reset")?.to_str().ok()?.parse().ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// The GitHub operation a request is, by its method and path: the `operation` label of
/// `paved_github_requests_total` (bounded, unlike paths).
fn operation_of(method: &Method, path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Post, ["app", "installations", _, "access_tokens"]) => {
            "apps/create-installation-access-token"
        }
        (Method::Get, ["repos", _, _]) => "repos/get",
        (Method::Get, ["user"]) => "users/get-authenticated",
        (Method::Get, ["orgs", _, "teams", _, "members"]) => "teams/list-members-in-org",
        (Method::Post, ["repos", _, _, "statuses", _]) => "repos/create-commit-status",
        (Method::Post, ["repos", _, _, "check-runs"]) => "checks/create",
        (Method::Patch, ["repos", _, _, "check-runs", _]) => "checks/update",
        (Method::Get, ["repos", _, _, "issues", _, "comments"]) => "issues/list-comments",
        (Method::Post, ["repos", _, _, "issues", _, "comments"]) => "issues/create-comment",
        (Method::Patch, ["repos", _, _, "issues", "comments", _]) => "issues/update-comment",
        (Method::Get, ["repos", _, _, "pulls", _]) => "pulls/get",
        (Method::Post, ["repos", _, _, "pulls"]) => "pulls/create",
        (Method::Post, ["repos", _, _, "issues"]) => "issues/create",
        (Method::Patch, ["repos", _, _, "issues", _]) => "issues/update",
        (Method::Get, ["repos", _, _, "commits", _, "status"]) => {
            "repos/get-combined-status-for-ref"
        }
        (Method::Get, ["repos", _, _, "commits", _, "pulls"]) => {
            "repos/list-pull-requests-associated-with-commit"
        }
        (Method::Get, ["repos", _, _, "pulls", _, "reviews"]) => "pulls/list-reviews",
        (Method::Get, ["repos", _, _, "deployments"]) => "repos/list-deployments",
        (Method::Post, ["repos", _, _, "deployments"]) => "repos/create-deployment",
        (Method::Post, ["repos", _, _, "deployments", _, "statuses"]) => {
            "repos/create-deployment-status"
        }
        _ => "other",
    }
}
