//! Configuration and the records tests inspect (statuses, comments, deployments, requests, faults).

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Configuration and public records
// ---------------------------------------------------------------------------------------

/// Starts emulators: [`Emulator::start`] with the defaults, [`Emulator::start_with`] with a
/// configuration.
#[derive(Debug, Clone, Copy)]
pub struct Emulator;

/// Emulator configuration (see [`Emulator::start_with`]).
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Login of the identity the tokens belong to (authors of statuses, comments, ...).
    pub bot_login: String,
    /// Numeric id of that identity.
    pub bot_id: u64,
    /// The GitHub App's id (shown in check runs).
    pub app_id: u64,
    /// The GitHub App's slug (shown in check runs).
    pub app_slug: String,
    /// Default branch of every repository (unless [`EmulatorHandle::set_repo`] says otherwise).
    pub default_branch: String,
    /// Pedantic mode (default on): reject request-body properties and query parameters the
    /// schema does not list, even where the schema leaves `additionalProperties` open.
    /// GitHub ignores such fields silently, which hides misspelt field names; none of the
    /// subset's request bodies says `additionalProperties: false`.
    pub deny_unlisted_properties: bool,
    /// Require, on every endpoint but the installation-token one, a token this emulator
    /// issued and that has not expired (or one of `static_tokens`). Default off: any
    /// `token X` / `Bearer X` is accepted.
    pub require_issued_token: bool,
    /// Tokens accepted when `require_issued_token` is on (e.g. a personal access token).
    pub static_tokens: Vec<String>,
    /// Serve the bare repositories under this folder (`<owner>/<repo>.git`) over Git's
    /// smart HTTP at `/git/...` (see the `git` module). Default: not served.
    pub git_root: Option<std::path::PathBuf>,
    /// The RSA private key (PEM) the App manifest flow gives the Apps it makes, as GitHub
    /// generates one for each. Unset: the conversion answers 501.
    pub manifest_app_key: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bot_login: "paved[bot]".to_string(),
            bot_id: 41_000_001,
            app_id: 1,
            app_slug: "paved".to_string(),
            default_branch: "main".to_string(),
            deny_unlisted_properties: true,
            require_issued_token: false,
            static_tokens: Vec::new(),
            git_root: None,
            manifest_app_key: None,
        }
    }
}

/// Starts an emulator with the default configuration on `127.0.0.1:0`
/// (same as [`Emulator::start`]).
pub async fn start() -> anyhow::Result<EmulatorHandle> {
    Emulator::start().await
}

/// A commit status as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub id: u64,
    pub sha: String,
    pub state: String,
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
}

/// An issue (or pull request) comment as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub issue_number: u64,
    pub body: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub url: String,
    pub html_url: String,
    /// How many times it was edited through the API.
    pub edits: u32,
}

/// A check run as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub output: Option<Value>,
    pub created_at: DateTime<Utc>,
    /// How many times it was updated through the API.
    pub updates: u32,
    /// Every annotation sent, in order: each request's `output.annotations` (at most 50,
    /// as the schema says) is appended, as GitHub does.
    pub annotations: Vec<Value>,
}

/// A deployment as stored, with its statuses in creation order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deployment {
    pub id: u64,
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub task: String,
    pub environment: String,
    pub description: Option<String>,
    pub payload: Value,
    pub transient_environment: bool,
    pub production_environment: bool,
    pub required_contexts: Option<Vec<String>>,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    pub statuses: Vec<DeploymentStatus>,
}

/// A deployment status as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeploymentStatus {
    pub id: u64,
    pub deployment_id: u64,
    pub state: String,
    pub description: String,
    pub environment: String,
    pub environment_url: String,
    pub log_url: String,
    pub target_url: String,
    pub creator: String,
    pub created_at: DateTime<Utc>,
    /// Added by GitHub's `auto_inactive` rule, not by a request for this deployment.
    pub automatic: bool,
}

/// An installation access token the emulator issued.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InstallationToken {
    pub token: String,
    pub installation_id: u64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub permissions: Value,
    pub repositories: Option<Vec<String>>,
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx.
    Served,
    /// The request itself was wrong (strictness, see the module docs).
    Rejected,
    /// A valid request for something that does not exist (404).
    NotFound,
    /// A valid request GitHub refuses in the current state (409).
    Conflict,
    /// Answered by an injected fault.
    Injected,
}

/// One request the emulator answered.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// 1-based arrival order.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub operation_id: Option<String>,
    pub status: u16,
    pub outcome: Outcome,
    /// Why it was rejected, not found, refused or failed.
    pub reason: Option<String>,
    /// The request body, when it was JSON.
    pub body: Option<Value>,
    pub user_agent: Option<String>,
    /// The bare token of the `Authorization` header.
    pub token: Option<String>,
    /// Where the emulator's own 2xx response did not match the response schema (a bug in
    /// the emulator; tests assert this stays empty).
    pub response_schema_errors: Vec<String>,
    pub at: DateTime<Utc>,
}

/// A fault to inject (see [`EmulatorHandle::inject`]).
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// HTTP status to answer (invalid codes become 500).
    pub status: u16,
    /// Send `Retry-After` with this many seconds.
    pub retry_after_secs: Option<u64>,
    /// Make it a primary rate limit: `x-ratelimit-remaining: 0` and `x-ratelimit-reset`
    /// this many seconds ahead.
    pub rate_limit_reset_secs: Option<u64>,
    /// Wait this long before answering (for client timeouts).
    pub delay: Option<Duration>,
    /// Only requests for this operationId take the fault (others pass).
    pub operation_id: Option<String>,
    /// Override the `message` of the body.
    pub message: Option<String>,
    /// Do what the request asks (its effect happens, as at GitHub), then break the
    /// connection instead of answering: the client never learns the outcome, as after a
    /// timeout on a request GitHub did perform. `status` is ignored.
    pub lose_answer: bool,
}

impl Fault {
    /// A fault answering `status`.
    pub fn status(status: u16) -> Self {
        Fault {
            status,
            ..Fault::default()
        }
    }
}
