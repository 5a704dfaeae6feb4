//! A strict, stateful fake of GitHub's REST API, served on loopback.
//!
//! Integration tests and `paved demo` point Paved's GitHub client at [`EmulatorHandle::url`]
//! (it plays the role of `https://api.github.com`: paths are `/repos/...` directly under it).
//!
//! **What it serves.** The 15 operations of `tests/fixtures/github/openapi-subset.json`
//! (embedded at compile time): commit statuses and the combined status, check runs, issue
//! comments, deployments and deployment statuses, pulls (with files and reviews), contents,
//! repositories and installation access tokens.
//!
//! **Strictness.** A request is answered like GitHub would answer a bad request, nothing in
//! the state changes, and the request is recorded as [`Outcome::Rejected`] with the reason:
//! - no operation of the subset matches method + path → 404 `Not Found`;
//! - no `User-Agent` header → 403 (as GitHub does);
//! - no `Authorization` header → 401 `Requires authentication`; a header that is not
//!   `token X` / `Bearer X` → 401 `Bad credentials`; the installation-token endpoint needs a
//!   `Bearer` JWT whose claims GitHub would accept (`iat`, `exp` at most 10 minutes ahead
//!   and not past, `iss`); with [`EmulatorConfig::require_issued_token`], other endpoints need an
//!   unexpired token the emulator issued (or one of [`EmulatorConfig::static_tokens`]);
//! - a path or query parameter that does not validate against its schema (integers must
//!   parse as integers), a repeated query parameter, and (in the default pedantic mode, see
//!   [`EmulatorConfig::deny_unlisted_properties`]) a query parameter the operation does not have
//!   → 400;
//! - a required body that is missing, a body that is not JSON (`Problems parsing JSON`), or
//!   one that does not validate against the operation's request schema → 400 (GitHub itself
//!   answers 422 for most schema failures; this emulator answers 400 as Paved's tests expect);
//! - an `Accept` media type the emulator does not implement for the operation → 415;
//! - GitHub's own semantic validations, answered with GitHub's 422 `Validation Failed` body:
//!   a status or deployment-status `description` over 140 characters, a comment body over
//!   65536 characters, a status/check-run `sha` that is not a full commit SHA, more than
//!   1000 statuses for one SHA and context, a check run `completed` without a `conclusion`,
//!   a deployment `ref` that is neither a SHA nor a ref registered with
//!   [`EmulatorHandle::set_ref`].
//!
//! Valid requests for things that do not exist (an unknown comment id, a pull request the
//! test did not set) get 404 [`Outcome::NotFound`]; a deployment whose required contexts are
//! not all `success` gets GitHub's 409 [`Outcome::Conflict`].
//!
//! **Responses** are built from the schema's own examples, with ids, states, bodies, URLs
//! (under the emulator's base URL) and timestamps overwritten, and every JSON 2xx body is
//! validated against the operation's response schema before it is sent; violations are
//! recorded in [`RequestRecord::response_schema_errors`] (and the integration tests assert
//! there are none).
//!
//! **Faults** ([`EmulatorHandle::fail_next`], [`EmulatorHandle::inject`]) answer the next
//! requests with an error status without touching the state, for retry tests.
//!
//! **Starting**: [`Emulator::start`] (or the free [`start`]) with the defaults,
//! [`Emulator::start_with`] with an [`EmulatorConfig`]; the [`EmulatorHandle`] is cheap to
//! clone and the server stops when the last clone is dropped.
//!
//! **Inspection**: statuses, comments, deployments, check runs, tokens and every request
//! are readable from the handle, and [`EmulatorHandle::wait_until`] waits for a condition
//! without polling (it wakes on every state change).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

pub mod schema;

const SUBSET_JSON: &str = include_str!("../../../tests/fixtures/github/openapi-subset.json");
const DOCS_ROOT: &str = "https://docs.github.com/rest";
const SECONDARY_RATE_LIMIT_DOCS: &str =
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const MAX_STATUS_DESCRIPTION: usize = 140;
const MAX_COMMENT_BODY: usize = 65536;
const MAX_STATUSES_PER_CONTEXT: usize = 1000;

// ---------------------------------------------------------------------------------------
// The embedded OpenAPI subset
// ---------------------------------------------------------------------------------------

/// One operation of the embedded OpenAPI subset.
#[derive(Debug)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template, e.g. `/repos/{owner}/{repo}/statuses/{sha}`.
    pub path: String,
    /// GitHub's operationId, e.g. `repos/create-commit-status`.
    pub operation_id: String,
    /// The documentation page of the operation.
    pub docs_url: String,
    segments: Vec<Segment>,
    raw: Value,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param { name: String, multi: bool },
}

impl Operation {
    /// The operation as it appears in the subset file.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The path and query parameters (resolved OpenAPI parameter objects).
    pub fn parameters(&self) -> &[Value] {
        self.raw["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether the operation has a request body and requires it.
    pub fn request_body_required(&self) -> bool {
        self.raw["requestBody"]["required"].as_bool() == Some(true)
    }

    /// The JSON schema of the request body, if the operation has one.
    pub fn request_schema(&self) -> Option<&Value> {
        self.raw["requestBody"]["content"]["application/json"].get("schema")
    }

    /// The JSON schema of the 2xx response `status` in media type `media`.
    pub fn response_schema(&self, status: u16, media: &str) -> Option<&Value> {
        self.raw["responses_2xx"][status.to_string()]["content"][media].get("schema")
    }

    /// An example of the 2xx response `status` in `media`: the one called `name`, or the
    /// first one.
    pub fn response_example(&self, status: u16, media: &str, name: Option<&str>) -> Option<&Value> {
        let examples = self.raw["responses_2xx"][status.to_string()]["content"][media]
            .get("examples")?
            .as_object()?;
        match name {
            Some(name) => examples.get(name),
            None => examples.values().next(),
        }
    }

    fn param_def(&self, name: &str, location: &str) -> Option<&Value> {
        self.parameters()
            .iter()
            .find(|p| p["name"].as_str() == Some(name) && p["in"].as_str() == Some(location))
    }

    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

static SUBSET: OnceLock<Result<Vec<Operation>, String>> = OnceLock::new();

fn parse_subset() -> Result<Vec<Operation>, String> {
    let doc: Value = serde_json::from_str(SUBSET_JSON)
        .map_err(|e| format!("openapi-subset.json is not JSON: {e}"))?;
    let ops = doc["operations"]
        .as_array()
        .ok_or("openapi-subset.json has no `operations` array")?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let field = |name: &str| -> Result<String, String> {
            op[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("an operation in openapi-subset.json has no `{name}`"))
        };
        let method = field("method")?.to_ascii_uppercase();
        let path = field("path")?;
        let operation_id = field("operationId")?;
        let docs_url = op["docs_url"].as_str().unwrap_or(DOCS_ROOT).to_string();
        let params = op["parameters"].as_array();
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        let multi = params.into_iter().flatten().any(|p| {
                            p["name"].as_str() == Some(name) && p["x-multi-segment"] == json!(true)
                        });
                        Segment::Param {
                            name: name.to_string(),
                            multi,
                        }
                    }
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        out.push(Operation {
            method,
            path,
            operation_id,
            docs_url,
            segments,
            raw: op.clone(),
        });
    }
    Ok(out)
}

/// The operations of the embedded subset (parsed once).
pub fn operations() -> anyhow::Result<&'static [Operation]> {
    match SUBSET.get_or_init(parse_subset) {
        Ok(ops) => Ok(ops.as_slice()),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The operation with this operationId, e.g. `issues/create-comment`.
pub fn operation(operation_id: &str) -> Option<&'static Operation> {
    operations()
        .ok()?
        .iter()
        .find(|op| op.operation_id == operation_id)
}

/// The JSON schema of an operation's 2xx response, for tests validating what they received.
pub fn response_schema(operation_id: &str, status: u16, media: &str) -> Option<&'static Value> {
    operation(operation_id)?.response_schema(status, media)
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn match_segments(template: &[Segment], parts: &[String], out: &mut Vec<(String, String)>) -> bool {
    let Some((first, rest)) = template.split_first() else {
        return parts.is_empty();
    };
    match first {
        Segment::Literal(lit) => {
            parts.first().is_some_and(|p| p == lit) && match_segments(rest, &parts[1..], out)
        }
        Segment::Param { name, multi } => {
            let max = if *multi {
                parts.len()
            } else {
                parts.len().min(1)
            };
            for take in (1..=max).rev() {
                if parts[..take].iter().any(String::is_empty) {
                    continue;
                }
                out.push((name.clone(), parts[..take].join("/")));
                if match_segments(rest, &parts[take..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

type Route = (&'static Operation, Vec<(String, String)>);

fn match_route(ops: &'static [Operation], method: &str, path: &str) -> Option<Route> {
    let parts: Option<Vec<String>> = path
        .strip_prefix('/')?
        .split('/')
        .map(percent_decode)
        .collect();
    let parts = parts?;
    let mut best: Option<Route> = None;
    for op in ops.iter().filter(|op| op.method == method) {
        let mut params = Vec::new();
        if match_segments(&op.segments, &parts, &mut params)
            && best
                .as_ref()
                .is_none_or(|(b, _)| op.literal_count() > b.literal_count())
        {
            best = Some((op, params));
        }
    }
    best
}

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

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct World {
    next_id: u64,
    repos: BTreeMap<String, RepoState>,
    requests: Vec<RequestRecord>,
    faults: VecDeque<(usize, Fault)>,
    tokens: Vec<InstallationToken>,
}

struct RepoState {
    owner: String,
    name: String,
    id: u64,
    meta: Value,
    refs: BTreeMap<String, String>,
    statuses: BTreeMap<String, Vec<Status>>,
    comments: Vec<Comment>,
    check_runs: Vec<CheckRun>,
    deployments: Vec<Deployment>,
    pulls: BTreeMap<u64, Value>,
    pull_files: BTreeMap<u64, Vec<Value>>,
    reviews: BTreeMap<u64, Vec<Value>>,
    contents: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn repo_key(owner: &str, name: &str) -> String {
    format!("{}/{}", owner.to_lowercase(), name.to_lowercase())
}

/// `split_repo` for the test-setup helpers, which panic on misuse.
fn setup_repo(full: &str) -> (&str, &str) {
    split_repo(full).unwrap_or_else(|e| panic!("{e:#}"))
}

fn split_repo(full: &str) -> anyhow::Result<(&str, &str)> {
    match full.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok((o, n)),
        _ => Err(anyhow!("repository must be \"owner/name\", got {full:?}")),
    }
}

impl World {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo(&self, full: &str) -> Option<&RepoState> {
        let (o, n) = split_repo(full).ok()?;
        self.repos.get(&repo_key(o, n))
    }

    fn repo_mut(&mut self, owner: &str, name: &str) -> &mut RepoState {
        let World { repos, next_id, .. } = self;
        repos.entry(repo_key(owner, name)).or_insert_with(|| {
            *next_id += 1;
            RepoState {
                owner: owner.to_string(),
                name: name.to_string(),
                id: *next_id + 1_296_000,
                meta: json!({}),
                refs: BTreeMap::new(),
                statuses: BTreeMap::new(),
                comments: Vec::new(),
                check_runs: Vec::new(),
                deployments: Vec::new(),
                pulls: BTreeMap::new(),
                pull_files: BTreeMap::new(),
                reviews: BTreeMap::new(),
                contents: BTreeMap::new(),
            }
        })
    }

    fn take_fault(&mut self, operation_id: Option<&str>) -> Option<Fault> {
        let idx = self
            .faults
            .iter()
            .position(|(_, f)| match &f.operation_id {
                Some(id) => Some(id.as_str()) == operation_id,
                None => true,
            })?;
        let (remaining, fault) = self.faults.get_mut(idx)?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.remove(idx);
        }
        Some(fault)
    }
}

fn latest_by_context(statuses: &[Status]) -> BTreeMap<String, Status> {
    // Contexts are case-insensitive on GitHub; the key is the latest status's spelling.
    let mut latest: BTreeMap<String, &Status> = BTreeMap::new();
    for s in statuses {
        latest.insert(s.context.to_lowercase(), s);
    }
    latest
        .into_values()
        .map(|s| (s.context.clone(), s.clone()))
        .collect()
}

/// GitHub's combined state: `failure` if any latest status is `error` or `failure`,
/// `pending` if there are none or any is `pending`, else `success`.
pub fn combined_state<'a>(latest: impl IntoIterator<Item = &'a Status>) -> &'static str {
    let mut any = false;
    let mut pending = false;
    for s in latest {
        any = true;
        match s.state.as_str() {
            "error" | "failure" => return "failure",
            "pending" => pending = true,
            _ => {}
        }
    }
    if !any || pending {
        "pending"
    } else {
        "success"
    }
}

// ---------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------

struct Shared {
    config: EmulatorConfig,
    base: String,
    ops: &'static [Operation],
    world: Mutex<World>,
    changes: watch::Sender<u64>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let stop = self
            .stop
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
    }
}

/// A running emulator. Clones share it; it stops when the last clone is dropped or on
/// [`EmulatorHandle::shutdown`].
#[derive(Clone)]
pub struct EmulatorHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("url", &self.inner.shared.base)
            .finish()
    }
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves an emulator with the default configuration in a
    /// spawned task.
    pub async fn start() -> anyhow::Result<EmulatorHandle> {
        Emulator::start_with(EmulatorConfig::default()).await
    }

    /// Binds `127.0.0.1:0` and serves an emulator with `config` in a spawned task.
    pub async fn start_with(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
        let ops = operations()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the GitHub emulator to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the GitHub emulator's address")?;
        let (changes, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            config,
            base: format!("http://{addr}"),
            ops,
            world: Mutex::new(World {
                next_id: 1000,
                ..World::default()
            }),
            changes,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(shared.clone())
            .layer(DefaultBodyLimit::max(32 * 1024 * 1024));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "GitHub emulator stopped");
            }
        });
        Ok(EmulatorHandle {
            inner: Arc::new(Inner {
                shared,
                addr,
                stop: Mutex::new(Some(stop_tx)),
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmulatorHandle {
    /// The base URL, `http://127.0.0.1:PORT` (use it as the GitHub API base URL).
    pub fn url(&self) -> String {
        self.inner.shared.base.clone()
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.shared.config
    }

    /// Stops serving (idle connections are closed, requests in flight finish).
    pub async fn shutdown(&self) {
        if let Some(tx) = lock(&self.inner.stop).take() {
            let _ = tx.send(());
        }
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.inner.shared.world()
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let out = f(&mut self.world());
        self.inner.shared.changed();
        out
    }

    // ----- faults -----

    /// The next `n` requests (any route) answer `status` and change nothing. 403 and 429
    /// carry GitHub's "secondary rate limit" message.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inject(n, Fault::status(status));
    }

    /// Like [`fail_next`](Self::fail_next), with a `Retry-After` header when given.
    pub fn fail_next_with(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        self.inject(
            n,
            Fault {
                status,
                retry_after_secs,
                ..Fault::default()
            },
        );
    }

    /// Queues a fault for the next `n` matching requests (faults apply in queue order).
    pub fn inject(&self, n: usize, fault: Fault) {
        if n > 0 {
            self.mutate(|w| w.faults.push_back((n, fault)));
        }
    }

    /// How many injected failures are still queued.
    pub fn pending_faults(&self) -> usize {
        self.world().faults.iter().map(|(n, _)| n).sum()
    }

    // ----- test setup -----

    /// Sets (or patches) the repository object served by `GET /repos/{owner}/{repo}`;
    /// `patch` is deep-merged over the emulator's default.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or the result does not match GitHub's schema (a
    /// broken test setup); [`try_set_repo`](Self::try_set_repo) returns the error instead.
    pub fn set_repo(&self, repo: &str, patch: Value) {
        if let Err(e) = self.try_set_repo(repo, patch) {
            panic!("set_repo({repo}): {e:#}");
        }
    }

    /// [`set_repo`](Self::set_repo), returning problems as errors.
    pub fn try_set_repo(&self, repo: &str, patch: Value) -> anyhow::Result<()> {
        let (owner, name) = split_repo(repo)?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let r = w.repo_mut(owner, name);
        let mut meta = r.meta.clone();
        deep_merge(&mut meta, patch);
        let candidate = shared.repo_json(r, &meta);
        check_against("repos/get", 200, &candidate)?;
        r.meta = meta;
        drop(w);
        shared.changed();
        Ok(())
    }

    /// Registers a branch or tag name resolving to `sha` (for deployments and the combined
    /// status). `refs/heads/x`, `heads/x` and `x` are the same ref.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `sha` is not a full commit SHA.
    pub fn set_ref(&self, repo: &str, git_ref: &str, sha: &str) {
        let (owner, name) = setup_repo(repo);
        assert!(
            is_full_sha(sha),
            "set_ref: {sha:?} is not a full commit SHA"
        );
        self.mutate(|w| {
            w.repo_mut(owner, name)
                .refs
                .insert(normalize_ref(git_ref).to_string(), sha.to_lowercase());
        });
    }

    /// Sets the pull request served by `GET .../pulls/{number}`: `patch` is deep-merged
    /// over GitHub's example pull request (with this repo, number and default branch filled
    /// in), so a test gives only what matters, e.g.
    /// `json!({"head": {"sha": "...", "ref": "feature"}, "merged": true})`; a webhook's
    /// `pull_request` object works too. Setting it again patches the stored one. Returns the
    /// stored pull request.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or the result does not match GitHub's schema (a
    /// broken test setup); [`try_set_pull`](Self::try_set_pull) returns the error instead.
    pub fn set_pull(&self, repo: &str, number: u64, patch: Value) -> Value {
        self.try_set_pull(repo, number, patch)
            .unwrap_or_else(|e| panic!("set_pull({repo}, {number}): {e:#}"))
    }

    /// [`set_pull`](Self::set_pull), returning problems as errors.
    pub fn try_set_pull(&self, repo: &str, number: u64, patch: Value) -> anyhow::Result<Value> {
        let (owner, name) = split_repo(repo)?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let r = w.repo_mut(owner, name);
        let mut pull = match r.pulls.get(&number) {
            Some(existing) => existing.clone(),
            None => shared.pull_template(r, number)?,
        };
        deep_merge(&mut pull, patch);
        check_against("pulls/get", 200, &pull)?;
        r.pulls.insert(number, pull.clone());
        drop(w);
        shared.changed();
        Ok(pull)
    }

    /// Sets the files of a pull request (`GET .../pulls/{number}/files`). Each entry is
    /// deep-merged over GitHub's example file, e.g.
    /// `json!({"filename": "environments/a/b.yaml", "status": "added"})`.
    ///
    /// # Panics
    /// Like [`set_pull`](Self::set_pull); [`try_set_pull_files`](Self::try_set_pull_files)
    /// returns the error instead.
    pub fn set_pull_files(&self, repo: &str, number: u64, files: Vec<Value>) {
        if let Err(e) = self.try_set_pull_files(repo, number, files) {
            panic!("set_pull_files({repo}, {number}): {e:#}");
        }
    }

    /// [`set_pull_files`](Self::set_pull_files), returning problems as errors.
    pub fn try_set_pull_files(
        &self,
        repo: &str,
        number: u64,
        files: Vec<Value>,
    ) -> anyhow::Result<()> {
        self.set_list(repo, number, files, "pulls/list-files", |r| {
            &mut r.pull_files
        })
    }

    /// Sets the reviews of a pull request (`GET .../pulls/{number}/reviews`). Each entry is
    /// deep-merged over GitHub's example review, e.g.
    /// `json!({"user": {"login": "alice"}, "state": "APPROVED"})`; ids are filled in.
    ///
    /// # Panics
    /// Like [`set_pull`](Self::set_pull);
    /// [`try_set_pull_reviews`](Self::try_set_pull_reviews) returns the error instead.
    pub fn set_pull_reviews(&self, repo: &str, number: u64, reviews: Vec<Value>) {
        if let Err(e) = self.try_set_pull_reviews(repo, number, reviews) {
            panic!("set_pull_reviews({repo}, {number}): {e:#}");
        }
    }

    /// [`set_pull_reviews`](Self::set_pull_reviews), returning problems as errors.
    pub fn try_set_pull_reviews(
        &self,
        repo: &str,
        number: u64,
        reviews: Vec<Value>,
    ) -> anyhow::Result<()> {
        self.set_list(repo, number, reviews, "pulls/list-reviews", |r| {
            &mut r.reviews
        })
    }

    fn set_list(
        &self,
        repo: &str,
        number: u64,
        entries: Vec<Value>,
        operation_id: &str,
        slot: impl FnOnce(&mut RepoState) -> &mut BTreeMap<u64, Vec<Value>>,
    ) -> anyhow::Result<()> {
        let (owner, name) = split_repo(repo)?;
        let op = operation(operation_id).ok_or_else(|| anyhow!("{operation_id} missing"))?;
        let template = op
            .response_example(200, "application/json", None)
            .and_then(|v| v.as_array()?.first().cloned())
            .ok_or_else(|| anyhow!("no example for {operation_id}"))?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let mut list = Vec::with_capacity(entries.len());
        for patch in entries {
            let mut item = template.clone();
            rebase_urls(&mut item, &shared.base, None);
            if operation_id == "pulls/list-reviews" {
                let id = w.new_id();
                item["id"] = json!(id);
                item["node_id"] = json!(node_id("PullRequestReview", id));
                item["user"] = shared.user_json("octocat", 1, "User");
            }
            deep_merge(&mut item, patch);
            list.push(item);
        }
        check_against(operation_id, 200, &Value::Array(list.clone()))?;
        let r = w.repo_mut(owner, name);
        slot(r).insert(number, list);
        drop(w);
        shared.changed();
        Ok(())
    }

    /// Stores a file served by `GET .../contents/{path}?ref=...` (`git_ref` empty means the
    /// default branch).
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `path` is empty.
    pub fn set_content(&self, repo: &str, git_ref: &str, path: &str, content: &[u8]) {
        let (owner, name) = setup_repo(repo);
        let path = path.trim_matches('/').to_string();
        assert!(!path.is_empty(), "set_content: empty path");
        let default = self.inner.shared.config.default_branch.clone();
        self.mutate(|w| {
            let r = w.repo_mut(owner, name);
            let key = if git_ref.is_empty() {
                default
            } else {
                normalize_ref(git_ref).to_string()
            };
            r.contents
                .entry(key)
                .or_default()
                .insert(path, content.to_vec());
        });
    }

    /// Adds a commit status as another integration would (not through HTTP, not recorded as
    /// a request).
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `sha` is not a full commit SHA.
    pub fn add_status(
        &self,
        repo: &str,
        sha: &str,
        state: &str,
        context: &str,
        creator: &str,
    ) -> Status {
        let (owner, name) = setup_repo(repo);
        assert!(
            is_full_sha(sha),
            "add_status: {sha:?} is not a full commit SHA"
        );
        self.mutate(|w| {
            let id = w.new_id();
            let status = Status {
                id,
                sha: sha.to_lowercase(),
                state: state.to_string(),
                context: context.to_string(),
                description: None,
                target_url: None,
                creator: creator.to_string(),
                created_at: Utc::now(),
            };
            w.repo_mut(owner, name)
                .statuses
                .entry(sha.to_lowercase())
                .or_default()
                .push(status.clone());
            status
        })
    }

    /// Adds a comment as another user would (not through HTTP, not recorded as a request).
    ///
    /// # Panics
    /// When `repo` is not `owner/name`.
    pub fn add_comment(&self, repo: &str, issue_number: u64, user: &str, body: &str) -> Comment {
        let (owner, name) = setup_repo(repo);
        let base = self.inner.shared.base.clone();
        self.mutate(|w| {
            let id = w.new_id();
            let r = w.repo_mut(owner, name);
            let comment = new_comment(&base, r, id, issue_number, user, body, Utc::now());
            r.comments.push(comment.clone());
            comment
        })
    }

    /// Expires every token issued so far (with `require_issued_token`, requests using them
    /// get 401 `Bad credentials`).
    pub fn expire_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        self.mutate(|w| {
            for t in &mut w.tokens {
                t.expires_at = past;
            }
        });
    }

    // ----- inspection -----

    /// All statuses posted for `sha` in `repo` ("owner/name"), in creation order.
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<Status> {
        self.world()
            .repo(repo)
            .and_then(|r| r.statuses.get(&sha.to_lowercase()).cloned())
            .unwrap_or_default()
    }

    /// The latest status of each context for `sha` (context spelled as in that status).
    pub fn latest_statuses(&self, repo: &str, sha: &str) -> BTreeMap<String, Status> {
        latest_by_context(&self.statuses(repo, sha))
    }

    /// The combined state GitHub would show for `sha`.
    pub fn combined_state(&self, repo: &str, sha: &str) -> String {
        combined_state(self.latest_statuses(repo, sha).values()).to_string()
    }

    /// How many statuses were created through the API (all repositories).
    pub fn status_posts_count(&self) -> usize {
        self.served_count("repos/create-commit-status")
    }

    /// How many requests for `operation_id` were answered 2xx.
    pub fn served_count(&self, operation_id: &str) -> usize {
        self.world()
            .requests
            .iter()
            .filter(|r| {
                r.outcome == Outcome::Served && r.operation_id.as_deref() == Some(operation_id)
            })
            .count()
    }

    /// The comments of an issue or pull request, in creation order.
    pub fn comments(&self, repo: &str, issue_number: u64) -> Vec<Comment> {
        self.world()
            .repo(repo)
            .map(|r| {
                r.comments
                    .iter()
                    .filter(|c| c.issue_number == issue_number)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The check runs of a repository, in creation order.
    pub fn check_runs(&self, repo: &str) -> Vec<CheckRun> {
        self.world()
            .repo(repo)
            .map(|r| r.check_runs.clone())
            .unwrap_or_default()
    }

    /// The deployments of a repository (with their statuses), in creation order.
    pub fn deployments(&self, repo: &str) -> Vec<Deployment> {
        self.world()
            .repo(repo)
            .map(|r| r.deployments.clone())
            .unwrap_or_default()
    }

    /// The installation tokens issued, in order.
    pub fn tokens(&self) -> Vec<InstallationToken> {
        self.world().tokens.clone()
    }

    /// Every request answered, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.world().requests.clone()
    }

    /// The requests rejected for being wrong (not the injected faults, not 404s for
    /// missing things, not 409s).
    pub fn rejected(&self) -> Vec<RequestRecord> {
        self.requests_with(Outcome::Rejected)
    }

    /// The requests answered with `outcome`.
    pub fn requests_with(&self, outcome: Outcome) -> Vec<RequestRecord> {
        self.world()
            .requests
            .iter()
            .filter(|r| r.outcome == outcome)
            .cloned()
            .collect()
    }

    /// Requests whose 2xx answer did not match the response schema (emulator bugs).
    pub fn response_schema_violations(&self) -> Vec<RequestRecord> {
        self.world()
            .requests
            .iter()
            .filter(|r| !r.response_schema_errors.is_empty())
            .cloned()
            .collect()
    }

    /// Waits until `f(self)` holds, re-checking on every state change or request (no
    /// polling). Errors after `timeout` with `what` and a summary of the recent requests.
    pub async fn wait_until<F>(&self, timeout: Duration, what: &str, f: F) -> anyhow::Result<()>
    where
        F: Fn(&EmulatorHandle) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.shared.changes.subscribe();
        loop {
            rx.borrow_and_update();
            if f(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    if f(self) {
                        return Ok(());
                    }
                    return Err(anyhow!(
                        "timed out after {timeout:?} waiting for {what}; {}",
                        self.summary()
                    ));
                }
            }
        }
    }

    /// A short text summary of what the emulator saw (for failure messages).
    pub fn summary(&self) -> String {
        let w = self.world();
        let n = w.requests.len();
        let rejected = w
            .requests
            .iter()
            .filter(|r| r.outcome == Outcome::Rejected)
            .count();
        let recent: Vec<String> = w
            .requests
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|r| {
                format!(
                    "#{} {} {} -> {}{}",
                    r.seq,
                    r.method,
                    r.path,
                    r.status,
                    r.reason
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "the emulator answered {n} requests ({rejected} rejected); last: [{}]",
            recent.join("; ")
        )
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn check_against(operation_id: &str, status: u16, value: &Value) -> anyhow::Result<()> {
    let schema = response_schema(operation_id, status, "application/json")
        .ok_or_else(|| anyhow!("no response schema for {operation_id} {status}"))?;
    schema::validate(schema, value).map_err(|errors| {
        anyhow!(
            "the value does not match GitHub's {operation_id} response schema: {}",
            errors.join("; ")
        )
    })
}

/// Deep-merges `patch` into `target`: objects merge key by key, anything else replaces.
pub fn deep_merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, p) => *t = p,
    }
}

fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn normalize_ref(r: &str) -> &str {
    let r = r.strip_prefix("refs/").unwrap_or(r);
    r.strip_prefix("heads/")
        .or_else(|| r.strip_prefix("tags/"))
        .unwrap_or(r)
}

fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn node_id(kind: &str, id: u64) -> String {
    base64_encode(format!("{kind}{id}").as_bytes())
}

fn url_escape_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// Rewrites `https://api.github.com` and `https://github.com` URLs in every string of
/// `value` to live under `base`, and `octocat/Hello-World` to `full_name` when given.
fn rebase_urls(value: &mut Value, base: &str, full_name: Option<&str>) {
    match value {
        Value::String(s) if s.contains("github.com") => {
            let mut t = s
                .replace("https://api.github.com", base)
                .replace("https://github.com", &format!("{base}/_web"));
            if let Some(full) = full_name {
                t = t.replace("octocat/Hello-World", full);
            }
            *s = t;
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rebase_urls(v, base, full_name)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| rebase_urls(v, base, full_name)),
        _ => {}
    }
}

fn set_fields(target: &mut Value, fields: Value) {
    if let (Value::Object(t), Value::Object(f)) = (target, fields) {
        for (k, v) in f {
            t.insert(k, v);
        }
    }
}

fn template(operation_id: &str, status: u16, media: &str, name: Option<&str>) -> Value {
    operation(operation_id)
        .and_then(|op| op.response_example(status, media, name))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

fn new_comment(
    base: &str,
    r: &RepoState,
    id: u64,
    issue_number: u64,
    user: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Comment {
    Comment {
        id,
        issue_number,
        body: body.to_string(),
        user: user.to_string(),
        created_at: now,
        updated_at: now,
        url: format!("{base}/repos/{}/{}/issues/comments/{id}", r.owner, r.name),
        html_url: format!(
            "{base}/_web/{}/{}/issues/{issue_number}#issuecomment-{id}",
            r.owner, r.name
        ),
        edits: 0,
    }
}

// ---------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------

enum Payload {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

struct Answer {
    status: u16,
    payload: Payload,
    headers: Vec<(&'static str, String)>,
    outcome: Outcome,
    reason: Option<String>,
    media: &'static str,
}

impl Answer {
    fn ok(status: u16, body: Value) -> Answer {
        Answer {
            status,
            payload: Payload::Json(body),
            headers: Vec::new(),
            outcome: Outcome::Served,
            reason: None,
            media: "application/json",
        }
    }

    fn header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }

    fn error(status: u16, outcome: Outcome, message: &str, docs: &str, reason: String) -> Answer {
        Answer {
            status,
            payload: Payload::Json(json!({
                "message": message,
                "documentation_url": docs,
                "status": status.to_string(),
            })),
            headers: Vec::new(),
            outcome,
            reason: Some(reason),
            media: "application/json",
        }
    }

    fn reject(status: u16, message: &str, docs: &str, reason: String) -> Answer {
        Answer::error(status, Outcome::Rejected, message, docs, reason)
    }

    fn not_found(docs: &str, reason: String) -> Answer {
        Answer::error(404, Outcome::NotFound, "Not Found", docs, reason)
    }

    /// GitHub's 422 with an `errors` entry.
    fn validation_failed(docs: &str, resource: &str, field: &str, message: String) -> Answer {
        Answer {
            status: 422,
            payload: Payload::Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": resource, "code": "custom", "field": field, "message": message}],
                "documentation_url": docs,
                "status": "422",
            })),
            headers: Vec::new(),
            outcome: Outcome::Rejected,
            reason: Some(format!("{resource}.{field}: {message}")),
            media: "application/json",
        }
    }

    /// GitHub's 422 with a plain message (e.g. "No commit found for SHA: x").
    fn unprocessable(docs: &str, message: String) -> Answer {
        Answer::reject(422, &message, docs, message.clone())
    }
}

fn fault_answer(fault: &Fault, seq_hint: u64) -> Answer {
    let status = if StatusCode::from_u16(fault.status).is_ok() {
        fault.status
    } else {
        500
    };
    let (message, docs) = match status {
        403 | 429 if fault.rate_limit_reset_secs.is_some() => (
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.".to_string(),
            "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api".to_string(),
        ),
        403 | 429 => (
            format!("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID EMU-{seq_hint}."),
            SECONDARY_RATE_LIMIT_DOCS.to_string(),
        ),
        500 => ("Server Error".to_string(), DOCS_ROOT.to_string()),
        502 => ("Bad Gateway".to_string(), DOCS_ROOT.to_string()),
        503 => ("Service Unavailable".to_string(), DOCS_ROOT.to_string()),
        _ => ("Injected fault".to_string(), DOCS_ROOT.to_string()),
    };
    let message = fault.message.clone().unwrap_or(message);
    let mut answer = Answer::error(
        status,
        Outcome::Injected,
        &message,
        &docs,
        format!("injected fault {status}"),
    );
    if let Some(secs) = fault.retry_after_secs {
        answer = answer.header("retry-after", secs.to_string());
    }
    if let Some(secs) = fault.rate_limit_reset_secs {
        let reset = Utc::now().timestamp() + i64::try_from(secs).unwrap_or(i64::MAX / 2);
        answer = answer
            .header("x-ratelimit-remaining", "0".to_string())
            .header("x-ratelimit-reset", reset.to_string());
    }
    answer
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let route = match_route(shared.ops, method.as_str(), &path);
    let operation_id = route.as_ref().map(|(op, _)| op.operation_id.clone());
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let user_agent = header_str(header::USER_AGENT);
    let token = header_str(header::AUTHORIZATION)
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_string()));
    let json_body = serde_json::from_slice::<Value>(&body).ok();

    let mut fault = shared.world().take_fault(operation_id.as_deref());
    let lose_answer = fault.as_ref().is_some_and(|f| f.lose_answer);
    if lose_answer {
        fault = None;
    }
    if let Some(delay) = fault.as_ref().and_then(|f| f.delay) {
        // Simulates a slow GitHub (client timeouts); not a synchronisation device.
        tokio::time::sleep(delay).await;
    }
    let mut w = shared.world();
    let answer = match fault {
        Some(fault) => fault_answer(&fault, w.requests.len() as u64 + 1),
        None => process(
            &shared,
            &mut w,
            &method,
            &path,
            query.as_deref(),
            &headers,
            &body,
            route,
        ),
    };

    let mut response_schema_errors = Vec::new();
    if let (Payload::Json(value), Some(op_id)) = (&answer.payload, &operation_id) {
        if (200..300).contains(&answer.status) {
            match response_schema(op_id, answer.status, answer.media) {
                Some(schema) => {
                    if let Err(errors) = schema::validate(schema, value) {
                        response_schema_errors = errors;
                    }
                }
                None => response_schema_errors.push(format!(
                    "no response schema for {op_id} {} {}",
                    answer.status, answer.media
                )),
            }
        }
    }
    if !response_schema_errors.is_empty() {
        tracing::error!(
            operation = operation_id.as_deref().unwrap_or("?"),
            errors = ?response_schema_errors,
            "GitHub emulator produced a response that does not match GitHub's schema"
        );
    }

    let seq = w.requests.len() as u64 + 1;
    w.requests.push(RequestRecord {
        seq,
        method: method.to_string(),
        path,
        query,
        operation_id,
        status: answer.status,
        outcome: answer.outcome,
        reason: answer.reason.clone(),
        body: json_body,
        user_agent,
        token,
        response_schema_errors,
        at: Utc::now(),
    });
    drop(w);
    shared.changed();
    if let Some(reason) = &answer.reason {
        tracing::debug!(seq, status = answer.status, reason = %reason, "GitHub emulator answered an error");
    }
    if lose_answer {
        // The effect happened; the answer breaks off mid-body.
        let broken = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("answer lost (injected)"))
        });
        let mut response = Response::new(Body::from_stream(broken));
        *response.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return response;
    }
    into_response(answer, seq)
}

fn into_response(answer: Answer, seq: u64) -> Response {
    let (bytes, content_type) = match answer.payload {
        Payload::Json(v) => (
            serde_json::to_vec(&v).unwrap_or_default(),
            "application/json; charset=utf-8",
        ),
        Payload::Raw(bytes, ct) => (bytes, ct),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-github-request-id", HeaderValue::from(seq));
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    let reset = Utc::now().timestamp() + 3600;
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-used", HeaderValue::from_static("1"));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

/// What the client asked for in `Accept`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Media {
    Json,
    Object,
    Raw,
}

fn negotiate(op: &Operation, headers: &HeaderMap) -> Result<Media, String> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Media::Json);
    };
    let accept = accept
        .to_str()
        .map_err(|_| "the Accept header is not ASCII".to_string())?;
    let mut chosen = Media::Json;
    for item in accept.split(',') {
        let media = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some(rest) = media.strip_prefix("application/vnd.github") else {
            continue; // */*, application/json, anything else: GitHub answers JSON.
        };
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let rest = rest.strip_prefix("v3").unwrap_or(rest);
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let kind = rest.strip_suffix("+json").unwrap_or(rest);
        let kind = kind.strip_prefix('+').unwrap_or(kind);
        match kind {
            "" | "json" => {}
            k if k.ends_with("-preview") => {}
            "object" if op.operation_id == "repos/get-content" => chosen = Media::Object,
            "raw" if op.operation_id == "repos/get-content" => chosen = Media::Raw,
            other => {
                return Err(format!(
                    "the emulator does not implement the media type {media:?} (`{other}`) for {}",
                    op.operation_id
                ))
            }
        }
    }
    Ok(chosen)
}

fn typed_param(raw: &str, schema: &Value) -> Result<Value, String> {
    let ty = schema["type"].as_str().unwrap_or("string");
    match ty {
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        "boolean" => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{raw:?} is not a boolean")),
        },
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[allow(clippy::too_many_arguments)]
fn process(
    shared: &Shared,
    w: &mut World,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    route: Option<Route>,
) -> Answer {
    let Some((op, path_params)) = route else {
        return Answer::reject(
            404,
            "Not Found",
            DOCS_ROOT,
            format!("no operation of the GitHub subset matches {method} {path}"),
        );
    };
    let docs = op.docs_url.as_str();

    // User-Agent.
    let ua_ok = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !ua_ok {
        return Answer::reject(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
            docs,
            "no User-Agent header".to_string(),
        );
    }

    // Authorization.
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Answer::reject(
            401,
            "Requires authentication",
            docs,
            "no Authorization header".to_string(),
        );
    };
    let auth = auth.to_str().unwrap_or("");
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    let scheme = scheme.to_ascii_lowercase();
    let token = token.trim();
    if !(scheme == "token" || scheme == "bearer") || token.is_empty() || token.contains(' ') {
        return Answer::reject(
            401,
            "Bad credentials",
            docs,
            "the Authorization header is not `token X` or `Bearer X`".to_string(),
        );
    }
    let now = Utc::now();
    if op.operation_id == "apps/create-installation-access-token" {
        if scheme != "bearer" {
            return Answer::reject(
                401,
                "A JSON web token could not be decoded",
                docs,
                "the installation-token endpoint needs `Authorization: Bearer <app JWT>`"
                    .to_string(),
            );
        }
        if let Err(why) = check_app_jwt(token, now.timestamp()) {
            return Answer::reject(401, &why, docs, format!("app JWT refused: {why}"));
        }
    } else if shared.config.require_issued_token {
        let issued = w
            .tokens
            .iter()
            .any(|t| t.token == token && t.expires_at > now);
        if !issued && !shared.config.static_tokens.iter().any(|t| t == token) {
            return Answer::reject(
                401,
                "Bad credentials",
                docs,
                "the token is not an unexpired installation token issued by the emulator"
                    .to_string(),
            );
        }
    }

    // Accept.
    let media = match negotiate(op, headers) {
        Ok(m) => m,
        Err(why) => return Answer::reject(415, "Unsupported 'Accept' header", docs, why),
    };

    // Parameters.
    let mut params: BTreeMap<String, Value> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, raw) in &path_params {
        let schema = op
            .param_def(name, "path")
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| json!({"type": "string"}));
        match typed_param(raw, &schema) {
            Ok(v) => match schema::validate(&schema, &v) {
                Ok(()) => {
                    params.insert(name.clone(), v);
                }
                Err(errs) => problems.push(format!("path parameter `{name}`: {}", errs.join("; "))),
            },
            Err(e) => problems.push(format!("path parameter `{name}`: {e}")),
        }
    }
    let mut query_pairs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, raw) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (name, raw) = (name.into_owned(), raw.into_owned());
        let Some(def) = op.param_def(&name, "query") else {
            if shared.config.deny_unlisted_properties {
                let known: Vec<&str> = op
                    .parameters()
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                problems.push(format!(
                    "unknown query parameter `{name}` (the operation accepts: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            continue;
        };
        if !seen.insert(name.clone()) {
            problems.push(format!("query parameter `{name}` is given more than once"));
            continue;
        }
        let schema = &def["schema"];
        match typed_param(&raw, schema) {
            Ok(v) => match schema::validate(schema, &v) {
                Ok(()) => {
                    params.insert(name.clone(), v);
                    query_pairs.push((name, raw));
                }
                Err(errs) => {
                    problems.push(format!("query parameter `{name}`: {}", errs.join("; ")))
                }
            },
            Err(e) => problems.push(format!("query parameter `{name}`: {e}")),
        }
    }
    for def in op.parameters() {
        if def["in"] == "query" && def["required"] == json!(true) {
            if let Some(name) = def["name"].as_str() {
                if !params.contains_key(name) {
                    problems.push(format!("query parameter `{name}` is required"));
                }
            }
        }
    }
    if !problems.is_empty() {
        let detail = problems.join("\n");
        return Answer::reject(400, &format!("Invalid request.\n\n{detail}"), docs, detail);
    }

    // Body.
    let mut body_value = Value::Null;
    if let Some(schema) = op.request_schema() {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        if blank {
            if op.request_body_required() {
                return Answer::reject(
                    400,
                    "Invalid request.\n\nA JSON request body is required.",
                    docs,
                    format!("{} requires a JSON body and none was sent", op.operation_id),
                );
            }
        } else {
            match serde_json::from_slice::<Value>(body) {
                Err(e) => {
                    return Answer::reject(
                        400,
                        "Problems parsing JSON",
                        docs,
                        format!("the body is not JSON: {e}"),
                    )
                }
                Ok(v) => {
                    let opts = schema::Options {
                        deny_unlisted_properties: shared.config.deny_unlisted_properties,
                    };
                    if let Err(errs) = schema::validate_with(schema, &v, opts) {
                        let detail = errs.join("\n");
                        return Answer::reject(
                            400,
                            &format!("Invalid request.\n\n{detail}"),
                            docs,
                            format!(
                                "the body does not match the {} schema: {}",
                                op.operation_id,
                                errs.join("; ")
                            ),
                        );
                    }
                    body_value = v;
                }
            }
        }
    }

    let ctx = Ctx {
        shared,
        op,
        docs,
        params,
        query_pairs,
        body: body_value,
        media,
        now,
        path,
    };
    dispatch(&ctx, w)
}

fn check_app_jwt(token: &str, now: i64) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err("A JSON web token could not be decoded".to_string());
    }
    let claims = base64url_decode(parts[1])
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or("A JSON web token could not be decoded")?;
    let iat = claims["iat"]
        .as_i64()
        .ok_or("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")?;
    let exp = claims["exp"]
        .as_i64()
        .ok_or("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")?;
    if claims.get("iss").is_none_or(Value::is_null) {
        return Err("'Issuer' claim ('iss') must be an Integer".to_string());
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string());
    }
    // GitHub: at most 10 minutes ahead (a little clock drift tolerated).
    if exp > now + 600 + 30 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    if iat > now + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".to_string());
    }
    Ok(())
}

struct Ctx<'a> {
    shared: &'a Shared,
    op: &'static Operation,
    docs: &'a str,
    params: BTreeMap<String, Value>,
    query_pairs: Vec<(String, String)>,
    body: Value,
    media: Media,
    now: DateTime<Utc>,
    path: &'a str,
}

impl Ctx<'_> {
    fn s(&self, name: &str) -> &str {
        self.params.get(name).and_then(Value::as_str).unwrap_or("")
    }

    fn int(&self, name: &str) -> i64 {
        self.params.get(name).and_then(Value::as_i64).unwrap_or(0)
    }

    fn page(&self) -> (usize, usize) {
        let per_page = self
            .params
            .get("per_page")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        let per_page = if per_page < 1 { 30 } else { per_page.min(100) };
        let page = self
            .params
            .get("page")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(1);
        (
            usize::try_from(per_page).unwrap_or(30),
            usize::try_from(page).unwrap_or(1),
        )
    }

    fn body_str(&self, name: &str) -> Option<String> {
        self.body
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn repo_api(&self) -> String {
        format!(
            "{}/repos/{}/{}",
            self.shared.base,
            self.s("owner"),
            self.s("repo")
        )
    }

    fn not_found(&self, what: String) -> Answer {
        Answer::not_found(self.docs, what)
    }

    /// Paginates `items` like GitHub (`Link` with prev/next/last/first).
    fn paginate(&self, items: Vec<Value>) -> (Vec<Value>, Option<String>) {
        let (per_page, page) = self.page();
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let start = (page - 1).saturating_mul(per_page);
        let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
        if last <= 1 {
            return (slice, None);
        }
        let mut keep: Vec<(String, String)> = self
            .query_pairs
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .cloned()
            .collect();
        keep.push(("per_page".to_string(), per_page.to_string()));
        let link_to = |p: usize| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &keep {
                ser.append_pair(k, v);
            }
            ser.append_pair("page", &p.to_string());
            format!("<{}{}?{}>", self.shared.base, self.path, ser.finish())
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", link_to((page - 1).min(last))));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
            links.push(format!("{}; rel=\"last\"", link_to(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", link_to(1)));
        }
        (slice, Some(links.join(", ")))
    }
}

fn with_link(answer: Answer, link: Option<String>) -> Answer {
    match link {
        Some(l) => answer.header("link", l),
        None => answer,
    }
}

fn dispatch(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    match ctx.op.operation_id.as_str() {
        "repos/create-commit-status" => create_status(ctx, w),
        "repos/get-combined-status-for-ref" => combined_status(ctx, w),
        "checks/create" => create_check_run(ctx, w),
        "checks/update" => update_check_run(ctx, w),
        "issues/create-comment" => create_comment(ctx, w),
        "issues/update-comment" => update_comment(ctx, w),
        "issues/list-comments" => list_comments(ctx, w),
        "repos/create-deployment" => create_deployment(ctx, w),
        "repos/create-deployment-status" => create_deployment_status(ctx, w),
        "repos/list-deployments" => list_deployments(ctx, w),
        "pulls/get" => get_pull(ctx, w),
        "pulls/list-files" => list_pull_items(ctx, w, true),
        "pulls/list-reviews" => list_pull_items(ctx, w, false),
        "repos/get-content" => get_content(ctx, w),
        "apps/create-installation-access-token" => create_token(ctx, w),
        "repos/get" => get_repo(ctx, w),
        other => Answer::reject(
            501,
            "Not Implemented",
            ctx.docs,
            format!("the emulator has no implementation for {other}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// JSON builders
// ---------------------------------------------------------------------------------------

impl Shared {
    fn user_json(&self, login: &str, id: u64, kind: &str) -> Value {
        let mut user = template("repos/create-commit-status", 201, "application/json", None)
            .get("creator")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let api = format!("{}/users/{}", self.base, url_escape_login(login));
        set_fields(
            &mut user,
            json!({
                "login": login,
                "id": id,
                "node_id": node_id(if kind == "Bot" { "Bot" } else { "User" }, id),
                "avatar_url": format!("{}/_avatars/{id}", self.base),
                "gravatar_id": "",
                "url": api,
                "html_url": format!("{}/_web/{}", self.base, url_escape_login(login)),
                "followers_url": format!("{api}/followers"),
                "following_url": format!("{api}/following{{/other_user}}"),
                "gists_url": format!("{api}/gists{{/gist_id}}"),
                "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
                "subscriptions_url": format!("{api}/subscriptions"),
                "organizations_url": format!("{api}/orgs"),
                "repos_url": format!("{api}/repos"),
                "events_url": format!("{api}/events{{/privacy}}"),
                "received_events_url": format!("{api}/received_events"),
                "type": kind,
                "site_admin": false,
            }),
        );
        user
    }

    /// A user object for a login the emulator knows: the bot, or an ordinary user.
    fn login_json(&self, login: &str) -> Value {
        if login == self.config.bot_login {
            self.user_json(login, self.config.bot_id, "Bot")
        } else {
            let id = login
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 10_000_000
                + 100;
            self.user_json(login, id, "User")
        }
    }

    fn repo_json(&self, r: &RepoState, meta: &Value) -> Value {
        let mut repo = template("repos/get", 200, "application/json", None);
        if let Value::Object(map) = &mut repo {
            for optional in ["parent", "source", "template_repository", "organization"] {
                map.remove(optional);
            }
        }
        let full = format!("{}/{}", r.owner, r.name);
        rebase_urls(&mut repo, &self.base, Some(&full));
        set_fields(
            &mut repo,
            json!({
                "id": r.id,
                "node_id": node_id("Repository", r.id),
                "name": r.name,
                "full_name": full,
                "owner": self.login_json(&r.owner),
                "default_branch": self.config.default_branch,
                // GitHub's example predates `language` being required.
                "language": null,
            }),
        );
        deep_merge(&mut repo, meta.clone());
        repo
    }

    fn pull_template(&self, r: &RepoState, number: u64) -> anyhow::Result<Value> {
        let mut pull = template("pulls/get", 200, "application/json", None);
        let full = format!("{}/{}", r.owner, r.name);
        rebase_urls(&mut pull, &self.base, Some(&full));
        let api = format!("{}/repos/{full}", self.base);
        let web = format!("{}/_web/{full}", self.base);
        set_fields(
            &mut pull,
            json!({
                "number": number,
                "url": format!("{api}/pulls/{number}"),
                "html_url": format!("{web}/pull/{number}"),
                "diff_url": format!("{web}/pull/{number}.diff"),
                "patch_url": format!("{web}/pull/{number}.patch"),
                "issue_url": format!("{api}/issues/{number}"),
                "commits_url": format!("{api}/pulls/{number}/commits"),
                "review_comments_url": format!("{api}/pulls/{number}/comments"),
                "comments_url": format!("{api}/issues/{number}/comments"),
                // GitHub's example predates the team `type` field.
                "requested_teams": [],
            }),
        );
        let owner_json = self.login_json(&r.owner);
        for side in ["base", "head"] {
            if let Some(repo) = pull.get_mut(side).and_then(|s| s.get_mut("repo")) {
                set_fields(
                    repo,
                    json!({
                        "id": r.id,
                        "node_id": node_id("Repository", r.id),
                        "name": r.name,
                        "full_name": full,
                        "owner": owner_json.clone(),
                        "default_branch": self.config.default_branch,
                    }),
                );
            }
        }
        if let Some(base) = pull.get_mut("base") {
            set_fields(base, json!({"ref": self.config.default_branch}));
        }
        Ok(pull)
    }

    fn status_json(&self, owner: &str, repo: &str, s: &Status) -> Value {
        let mut v = template("repos/create-commit-status", 201, "application/json", None);
        set_fields(
            &mut v,
            json!({
                "url": format!("{}/repos/{owner}/{repo}/statuses/{}", self.base, s.sha),
                "avatar_url": format!("{}/_avatars/{}", self.base, self.config.bot_id),
                "id": s.id,
                "node_id": node_id("StatusContext", s.id),
                "state": s.state,
                "description": s.description,
                "target_url": s.target_url,
                "context": s.context,
                "created_at": timestamp(&s.created_at),
                "updated_at": timestamp(&s.created_at),
                "creator": self.login_json(&s.creator),
            }),
        );
        v
    }

    fn comment_json(&self, owner: &str, repo: &str, c: &Comment) -> Value {
        let mut v = template("issues/create-comment", 201, "application/json", None);
        set_fields(
            &mut v,
            json!({
                "id": c.id,
                "node_id": node_id("IssueComment", c.id),
                "url": c.url,
                "html_url": c.html_url,
                "body": c.body,
                "user": self.login_json(&c.user),
                "created_at": timestamp(&c.created_at),
                "updated_at": timestamp(&c.updated_at),
                "issue_url": format!("{}/repos/{owner}/{repo}/issues/{}", self.base, c.issue_number),
                "author_association": "NONE",
            }),
        );
        v
    }

    fn check_run_json(&self, owner: &str, repo: &str, c: &CheckRun) -> Value {
        let mut v = template(
            "checks/create",
            201,
            "application/json",
            Some("example-of-in-progress-conclusion"),
        );
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        let output = c.output.clone().unwrap_or_else(|| json!({}));
        let annotations = output["annotations"].as_array().map_or(0, Vec::len);
        let mut app = v.get("app").cloned().unwrap_or(Value::Null);
        rebase_urls(&mut app, &self.base, None);
        if app.is_object() {
            set_fields(
                &mut app,
                json!({"id": self.config.app_id, "slug": self.config.app_slug, "name": self.config.app_slug}),
            );
        }
        if let Value::Object(map) = &mut v {
            map.remove("deployment");
        }
        set_fields(
            &mut v,
            json!({
                "id": c.id,
                "head_sha": c.head_sha,
                "node_id": node_id("CheckRun", c.id),
                "external_id": c.external_id.clone().unwrap_or_default(),
                "url": format!("{api}/check-runs/{}", c.id),
                "html_url": format!("{}/_web/{owner}/{repo}/runs/{}", self.base, c.id),
                "details_url": c.details_url,
                "status": c.status,
                "conclusion": c.conclusion,
                "started_at": c.started_at,
                "completed_at": c.completed_at,
                "output": {
                    "title": output.get("title").cloned().unwrap_or(Value::Null),
                    "summary": output.get("summary").cloned().unwrap_or(Value::Null),
                    "text": output.get("text").cloned().unwrap_or(Value::Null),
                    "annotations_count": annotations,
                    "annotations_url": format!("{api}/check-runs/{}/annotations", c.id),
                },
                "name": c.name,
                "check_suite": {"id": 5},
                "app": app,
                "pull_requests": [],
            }),
        );
        v
    }

    fn deployment_json(&self, owner: &str, repo: &str, d: &Deployment) -> Value {
        let mut v = template("repos/create-deployment", 201, "application/json", None);
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        set_fields(
            &mut v,
            json!({
                "url": format!("{api}/deployments/{}", d.id),
                "id": d.id,
                "node_id": node_id("Deployment", d.id),
                "sha": d.sha,
                "ref": d.git_ref,
                "task": d.task,
                "payload": d.payload,
                "original_environment": d.environment,
                "environment": d.environment,
                "description": d.description,
                "creator": self.login_json(&d.creator),
                "created_at": timestamp(&d.created_at),
                "updated_at": timestamp(&d.created_at),
                "statuses_url": format!("{api}/deployments/{}/statuses", d.id),
                "repository_url": api,
                "transient_environment": d.transient_environment,
                "production_environment": d.production_environment,
            }),
        );
        v
    }

    fn deployment_status_json(&self, owner: &str, repo: &str, s: &DeploymentStatus) -> Value {
        let mut v = template(
            "repos/create-deployment-status",
            201,
            "application/json",
            None,
        );
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        set_fields(
            &mut v,
            json!({
                "url": format!("{api}/deployments/{}/statuses/{}", s.deployment_id, s.id),
                "id": s.id,
                "node_id": node_id("DeploymentStatus", s.id),
                "state": s.state,
                "creator": self.login_json(&s.creator),
                "description": s.description,
                "environment": s.environment,
                "target_url": s.target_url,
                "created_at": timestamp(&s.created_at),
                "updated_at": timestamp(&s.created_at),
                "deployment_url": format!("{api}/deployments/{}", s.deployment_id),
                "repository_url": api,
                "environment_url": s.environment_url,
                "log_url": s.log_url,
            }),
        );
        v
    }
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

fn create_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let sha = ctx.s("sha");
    if !is_full_sha(sha) {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {sha}"));
    }
    let sha = sha.to_lowercase();
    let description = ctx.body_str("description");
    if let Some(d) = &description {
        if d.chars().count() > MAX_STATUS_DESCRIPTION {
            return Answer::validation_failed(
                ctx.docs,
                "Status",
                "description",
                format!("description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)"),
            );
        }
    }
    let context = ctx
        .body_str("context")
        .unwrap_or_else(|| "default".to_string());
    let existing = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| r.statuses.get(&sha))
        .map_or(0, |list| {
            list.iter()
                .filter(|s| s.context.to_lowercase() == context.to_lowercase())
                .count()
        });
    if existing >= MAX_STATUSES_PER_CONTEXT {
        return Answer::validation_failed(
            ctx.docs,
            "Status",
            "context",
            "This SHA and context has reached the maximum number of statuses.".to_string(),
        );
    }
    let id = w.new_id();
    let status = Status {
        id,
        sha: sha.clone(),
        state: ctx.body_str("state").unwrap_or_default(),
        context,
        description,
        target_url: ctx.body_str("target_url"),
        creator: ctx.shared.config.bot_login.clone(),
        created_at: ctx.now,
    };
    let body = ctx.shared.status_json(owner, repo, &status);
    w.repo_mut(owner, repo)
        .statuses
        .entry(sha.clone())
        .or_default()
        .push(status);
    let location = format!("{}/statuses/{sha}", ctx.repo_api());
    Answer::ok(201, body).header("location", location)
}

fn resolve_ref(r: Option<&RepoState>, git_ref: &str) -> Option<String> {
    if is_full_sha(git_ref) {
        return Some(git_ref.to_lowercase());
    }
    r.and_then(|r| r.refs.get(normalize_ref(git_ref)).cloned())
}

fn combined_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let full = format!("{owner}/{repo}");
    let git_ref = ctx.s("ref");
    let r = w.repo(&full);
    let Some(sha) = resolve_ref(r, git_ref) else {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {git_ref}"));
    };
    let statuses = r
        .and_then(|r| r.statuses.get(&sha).cloned())
        .unwrap_or_default();
    let latest = latest_by_context(&statuses);
    let state = combined_state(latest.values());
    let mut ordered: Vec<&Status> = latest.values().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.id));
    let total = ordered.len();
    let mut item_template = template(
        "repos/get-combined-status-for-ref",
        200,
        "application/json",
        None,
    )["statuses"][0]
        .clone();
    rebase_urls(&mut item_template, &ctx.shared.base, None);
    let items: Vec<Value> = ordered
        .iter()
        .map(|s| {
            let mut v = item_template.clone();
            set_fields(
                &mut v,
                json!({
                    "url": format!("{}/statuses/{}", ctx.repo_api(), s.sha),
                    "avatar_url": format!("{}/_avatars/{}", ctx.shared.base, ctx.shared.config.bot_id),
                    "id": s.id,
                    "node_id": node_id("StatusContext", s.id),
                    "state": s.state,
                    "description": s.description,
                    "target_url": s.target_url,
                    "context": s.context,
                    "created_at": timestamp(&s.created_at),
                    "updated_at": timestamp(&s.created_at),
                }),
            );
            v
        })
        .collect();
    let (page, link) = ctx.paginate(items);
    let mut body = template(
        "repos/get-combined-status-for-ref",
        200,
        "application/json",
        None,
    );
    let mut repository = body["repository"].clone();
    rebase_urls(&mut repository, &ctx.shared.base, Some(&full));
    let repo_id = r.map_or(0, |r| r.id);
    set_fields(
        &mut repository,
        json!({
            "id": repo_id,
            "node_id": node_id("Repository", repo_id),
            "name": repo,
            "full_name": full,
            "owner": ctx.shared.login_json(owner),
        }),
    );
    set_fields(
        &mut body,
        json!({
            "state": state,
            "statuses": page,
            "sha": sha,
            "total_count": total,
            "repository": repository,
            "commit_url": format!("{}/commits/{sha}", ctx.repo_api()),
            "url": format!("{}/commits/{sha}/status", ctx.repo_api()),
        }),
    );
    with_link(Answer::ok(200, body), link)
}

fn check_run_fields(ctx: &Ctx<'_>, run: &mut CheckRun) -> Result<(), Answer> {
    if let Some(v) = ctx.body_str("name") {
        run.name = v;
    }
    if let Some(v) = ctx.body_str("details_url") {
        run.details_url = Some(v);
    }
    if let Some(v) = ctx.body_str("external_id") {
        run.external_id = Some(v);
    }
    if let Some(v) = ctx.body_str("started_at") {
        run.started_at = Some(v);
    }
    if let Some(v) = ctx.body_str("completed_at") {
        run.completed_at = Some(v);
    }
    if let Some(v) = ctx.body.get("output") {
        run.output = Some(v.clone());
    }
    if let Some(v) = ctx.body_str("status") {
        run.status = v;
    }
    if let Some(v) = ctx.body_str("conclusion") {
        // "Providing conclusion will automatically set the status parameter to completed."
        run.conclusion = Some(v);
        run.status = "completed".to_string();
    }
    if run.status == "completed" && run.conclusion.is_none() {
        return Err(Answer::validation_failed(
            ctx.docs,
            "CheckRun",
            "conclusion",
            "conclusion is required when status is completed".to_string(),
        ));
    }
    if run.completed_at.is_some() && run.conclusion.is_none() {
        return Err(Answer::validation_failed(
            ctx.docs,
            "CheckRun",
            "conclusion",
            "conclusion is required when completed_at is provided".to_string(),
        ));
    }
    if run.status == "completed" && run.completed_at.is_none() {
        run.completed_at = Some(timestamp(&ctx.now));
    }
    if run.started_at.is_none() {
        run.started_at = Some(timestamp(&ctx.now));
    }
    Ok(())
}

fn create_check_run(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let head_sha = ctx.body_str("head_sha").unwrap_or_default();
    if !is_full_sha(&head_sha) {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {head_sha}"));
    }
    let mut run = CheckRun {
        id: 0,
        name: String::new(),
        head_sha: head_sha.to_lowercase(),
        status: "queued".to_string(),
        conclusion: None,
        details_url: None,
        external_id: None,
        started_at: None,
        completed_at: None,
        output: None,
        created_at: ctx.now,
        updates: 0,
    };
    if let Err(answer) = check_run_fields(ctx, &mut run) {
        return answer;
    }
    run.id = w.new_id();
    let body = ctx.shared.check_run_json(owner, repo, &run);
    w.repo_mut(owner, repo).check_runs.push(run);
    Answer::ok(201, body)
}

fn update_check_run(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let id = ctx.int("check_run_id");
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.check_runs
            .iter()
            .position(|c| i64::try_from(c.id).ok() == Some(id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no check run {id} in {owner}/{repo}"));
    };
    let r = w.repo_mut(owner, repo);
    let mut run = r.check_runs[idx].clone();
    if let Err(answer) = check_run_fields(ctx, &mut run) {
        return answer;
    }
    run.updates += 1;
    let body = ctx.shared.check_run_json(owner, repo, &run);
    r.check_runs[idx] = run;
    Answer::ok(200, body)
}

fn check_comment_body(ctx: &Ctx<'_>, body: &str) -> Result<(), Answer> {
    if body.chars().count() > MAX_COMMENT_BODY {
        return Err(Answer::validation_failed(
            ctx.docs,
            "IssueComment",
            "data",
            format!("Body is too long (maximum is {MAX_COMMENT_BODY} characters)"),
        ));
    }
    Ok(())
}

fn create_comment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let number = ctx.int("issue_number");
    let Ok(number) = u64::try_from(number) else {
        return ctx.not_found(format!("no issue {number}"));
    };
    if number == 0 {
        return ctx.not_found("no issue 0".to_string());
    }
    let text = ctx.body_str("body").unwrap_or_default();
    if let Err(answer) = check_comment_body(ctx, &text) {
        return answer;
    }
    let id = w.new_id();
    let bot = ctx.shared.config.bot_login.clone();
    let r = w.repo_mut(owner, repo);
    let comment = new_comment(&ctx.shared.base, r, id, number, &bot, &text, ctx.now);
    let body = ctx.shared.comment_json(owner, repo, &comment);
    let location = comment.url.clone();
    r.comments.push(comment);
    Answer::ok(201, body).header("location", location)
}

fn update_comment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let id = ctx.int("comment_id");
    let text = ctx.body_str("body").unwrap_or_default();
    if let Err(answer) = check_comment_body(ctx, &text) {
        return answer;
    }
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.comments
            .iter()
            .position(|c| i64::try_from(c.id).ok() == Some(id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no comment {id} in {owner}/{repo}"));
    };
    let r = w.repo_mut(owner, repo);
    let comment = &mut r.comments[idx];
    comment.body = text;
    comment.updated_at = ctx.now;
    comment.edits += 1;
    let comment = comment.clone();
    Answer::ok(200, ctx.shared.comment_json(owner, repo, &comment))
}

fn list_comments(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let number = ctx.int("issue_number");
    let since = ctx
        .params
        .get("since")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc).timestamp());
    let comments: Vec<Comment> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.comments
                .iter()
                .filter(|c| i64::try_from(c.issue_number).ok() == Some(number))
                .filter(|c| since.is_none_or(|s| c.updated_at.timestamp() >= s))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let items = comments
        .iter()
        .map(|c| ctx.shared.comment_json(owner, repo, c))
        .collect();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

/// `GET /repos/{owner}/{repo}/deployments`, newest first, filtered by `sha`, `ref`, `task`
/// and `environment` as GitHub does.
fn list_deployments(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let filter = |name: &str| {
        ctx.params
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| *v != "none")
            .map(str::to_string)
    };
    let (sha, git_ref, task, environment) = (
        filter("sha"),
        filter("ref"),
        filter("task"),
        filter("environment"),
    );
    let items: Vec<Value> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.deployments
                .iter()
                .rev()
                .filter(|d| sha.as_ref().is_none_or(|s| *s == d.sha))
                .filter(|d| git_ref.as_ref().is_none_or(|s| *s == d.git_ref))
                .filter(|d| task.as_ref().is_none_or(|s| *s == d.task))
                .filter(|d| environment.as_ref().is_none_or(|s| *s == d.environment))
                .map(|d| ctx.shared.deployment_json(&r.owner, &r.name, d))
                .collect()
        })
        .unwrap_or_default();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

fn create_deployment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let full = format!("{owner}/{repo}");
    let git_ref = ctx.body_str("ref").unwrap_or_default();
    let r = w.repo(&full);
    let Some(sha) = resolve_ref(r, &git_ref) else {
        return Answer::unprocessable(
            ctx.docs,
            format!("No ref found for: {git_ref} (emulator: register branch names with set_ref)"),
        );
    };
    let latest = latest_by_context(
        &r.and_then(|r| r.statuses.get(&sha).cloned())
            .unwrap_or_default(),
    );
    let required: Option<Vec<String>> = ctx.body.get("required_contexts").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    });
    // GitHub: without required_contexts, every context must be `success`.
    let failing: Vec<Value> = match &required {
        None => latest
            .values()
            .filter(|s| s.state != "success")
            .map(|s| json!({"context": s.context, "state": s.state}))
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|c| {
                let s = latest
                    .values()
                    .find(|s| s.context.to_lowercase() == c.to_lowercase());
                match s {
                    Some(s) if s.state == "success" => None,
                    Some(s) => Some(json!({"context": s.context, "state": s.state})),
                    None => Some(json!({"context": c, "state": "missing"})),
                }
            })
            .collect(),
    };
    if !failing.is_empty() {
        let message = format!("Conflict: Commit status checks failed for {git_ref}.");
        let mut answer = Answer::error(
            409,
            Outcome::Conflict,
            &message,
            ctx.docs,
            format!("{message} {}", Value::Array(failing.clone())),
        );
        answer.payload = Payload::Json(json!({
            "message": message,
            "errors": [{"contexts": failing, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
            "documentation_url": ctx.docs,
            "status": "409",
        }));
        return answer;
    }
    let environment = ctx
        .body_str("environment")
        .unwrap_or_else(|| "production".to_string());
    let production = ctx
        .body
        .get("production_environment")
        .and_then(Value::as_bool)
        .unwrap_or(environment == "production");
    let id = w.new_id();
    let deployment = Deployment {
        id,
        sha,
        git_ref,
        task: ctx.body_str("task").unwrap_or_else(|| "deploy".to_string()),
        environment,
        description: ctx.body_str("description"),
        payload: ctx
            .body
            .get("payload")
            .cloned()
            .unwrap_or_else(|| json!({})),
        transient_environment: ctx
            .body
            .get("transient_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        production_environment: production,
        required_contexts: required,
        creator: ctx.shared.config.bot_login.clone(),
        created_at: ctx.now,
        statuses: Vec::new(),
    };
    let body = ctx.shared.deployment_json(owner, repo, &deployment);
    w.repo_mut(owner, repo).deployments.push(deployment);
    Answer::ok(201, body)
}

fn create_deployment_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let deployment_id = ctx.int("deployment_id");
    let description = ctx.body_str("description").unwrap_or_default();
    if description.chars().count() > MAX_STATUS_DESCRIPTION {
        return Answer::validation_failed(
            ctx.docs,
            "DeploymentStatus",
            "description",
            format!("description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)"),
        );
    }
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.deployments
            .iter()
            .position(|d| i64::try_from(d.id).ok() == Some(deployment_id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no deployment {deployment_id} in {owner}/{repo}"));
    };
    let state = ctx.body_str("state").unwrap_or_default();
    let auto_inactive = ctx
        .body
        .get("auto_inactive")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let id = w.new_id();
    let bot = ctx.shared.config.bot_login.clone();
    let r = w.repo_mut(owner, repo);
    let environment = ctx
        .body_str("environment")
        .unwrap_or_else(|| r.deployments[idx].environment.clone());
    let target_url = ctx.body_str("target_url").unwrap_or_default();
    let status = DeploymentStatus {
        id,
        deployment_id: r.deployments[idx].id,
        state: state.clone(),
        description,
        environment: environment.clone(),
        environment_url: ctx.body_str("environment_url").unwrap_or_default(),
        log_url: ctx
            .body_str("log_url")
            .unwrap_or_else(|| target_url.clone()),
        target_url,
        creator: bot.clone(),
        created_at: ctx.now,
        automatic: false,
    };
    let body = ctx.shared.deployment_status_json(owner, repo, &status);
    r.deployments[idx].environment = environment.clone();
    r.deployments[idx].statuses.push(status);
    // GitHub's auto_inactive: a success marks earlier non-transient, non-production
    // deployments of the same environment inactive.
    if state == "success" && auto_inactive {
        let this = r.deployments[idx].id;
        let mut extra = Vec::new();
        for d in r.deployments.iter().filter(|d| {
            d.id != this
                && d.environment == environment
                && !d.transient_environment
                && !d.production_environment
                && d.statuses.last().is_some_and(|s| s.state != "inactive")
        }) {
            extra.push(d.id);
        }
        for did in extra {
            let sid = w.new_id();
            let r = w.repo_mut(owner, repo);
            if let Some(d) = r.deployments.iter_mut().find(|d| d.id == did) {
                let env = d.environment.clone();
                d.statuses.push(DeploymentStatus {
                    id: sid,
                    deployment_id: did,
                    state: "inactive".to_string(),
                    description: String::new(),
                    environment: env,
                    environment_url: String::new(),
                    log_url: String::new(),
                    target_url: String::new(),
                    creator: bot.clone(),
                    created_at: ctx.now,
                    automatic: true,
                });
            }
        }
    }
    let location = format!(
        "{}/deployments/{deployment_id}/statuses/{id}",
        ctx.repo_api()
    );
    Answer::ok(201, body).header("location", location)
}

fn pull_number(ctx: &Ctx<'_>) -> Option<u64> {
    u64::try_from(ctx.int("pull_number")).ok()
}

fn get_pull(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let pull = pull_number(ctx).and_then(|n| {
        w.repo(&format!("{owner}/{repo}"))
            .and_then(|r| r.pulls.get(&n).cloned())
    });
    match pull {
        Some(p) => Answer::ok(200, p),
        None => ctx.not_found(format!(
            "pull request {} of {owner}/{repo} was not set (set_pull)",
            ctx.int("pull_number")
        )),
    }
}

fn list_pull_items(ctx: &Ctx<'_>, w: &mut World, files: bool) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let r = w.repo(&format!("{owner}/{repo}"));
    let items = pull_number(ctx).and_then(|n| {
        let r = r?;
        let list = if files { &r.pull_files } else { &r.reviews };
        match list.get(&n) {
            Some(items) => Some(items.clone()),
            None if r.pulls.contains_key(&n) => Some(Vec::new()),
            None => None,
        }
    });
    match items {
        Some(items) => {
            let (page, link) = ctx.paginate(items);
            with_link(Answer::ok(200, Value::Array(page)), link)
        }
        None => ctx.not_found(format!(
            "pull request {} of {owner}/{repo} was not set (set_pull / set_pull_{})",
            ctx.int("pull_number"),
            if files { "files" } else { "reviews" }
        )),
    }
}

/// A stable 40-hex "blob SHA" for served contents. It is not Git's SHA-1 of the blob (the
/// crate has no SHA-1); nothing in Paved compares it with Git.
fn content_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())[..40].to_string()
}

fn get_content(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let path = ctx.s("path").trim_matches('/').to_string();
    let git_ref = ctx
        .params
        .get("ref")
        .and_then(Value::as_str)
        .map(|r| normalize_ref(r).to_string())
        .unwrap_or_else(|| ctx.shared.config.default_branch.clone());
    let Some(files) = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| r.contents.get(&git_ref))
    else {
        return ctx.not_found(format!(
            "no content at ref {git_ref:?} of {owner}/{repo} (set_content)"
        ));
    };
    let base = &ctx.shared.base;
    let api = ctx.repo_api();
    let web = format!("{base}/_web/{owner}/{repo}");
    let entry = |p: &str, kind: &str, bytes: Option<&Vec<u8>>| -> Value {
        let sha = content_sha(bytes.map_or(p.as_bytes(), |b| b.as_slice()));
        let name = p.rsplit('/').next().unwrap_or(p);
        let self_url = format!("{api}/contents/{p}?ref={git_ref}");
        let git_url = format!(
            "{api}/git/{}/{sha}",
            if kind == "file" { "blobs" } else { "trees" }
        );
        let html_url = format!(
            "{web}/{}/{git_ref}/{p}",
            if kind == "file" { "blob" } else { "tree" }
        );
        let download = if kind == "file" {
            json!(format!("{base}/_raw/{owner}/{repo}/{git_ref}/{p}"))
        } else {
            Value::Null
        };
        json!({
            "type": kind,
            "size": bytes.map_or(0, Vec::len),
            "name": name,
            "path": p,
            "sha": sha,
            "url": self_url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": download,
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        })
    };
    if let Some(bytes) = files.get(&path) {
        if ctx.media == Media::Raw {
            let mut answer = Answer::ok(200, Value::Null);
            answer.payload = Payload::Raw(bytes.clone(), "application/vnd.github.raw");
            return answer;
        }
        let mut v = entry(&path, "file", Some(bytes));
        let encoded = base64_encode(bytes);
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        set_fields(
            &mut v,
            json!({"encoding": "base64", "content": format!("{}\n", wrapped.join("\n"))}),
        );
        let mut answer = Answer::ok(200, v);
        if ctx.media == Media::Object {
            answer.media = "application/vnd.github.object";
        }
        return answer;
    }
    // A directory: the direct children of `path`.
    let prefix = format!("{path}/");
    let mut children: BTreeMap<String, Value> = BTreeMap::new();
    for (p, bytes) in files {
        let Some(rest) = p.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            None => {
                children.insert(p.clone(), entry(p, "file", Some(bytes)));
            }
            Some((dir, _)) => {
                let d = format!("{path}/{dir}");
                let e = entry(&d, "dir", None);
                children.entry(d).or_insert(e);
            }
        }
    }
    if children.is_empty() {
        return ctx.not_found(format!(
            "no file or directory {path:?} at {git_ref} in {owner}/{repo}"
        ));
    }
    let entries: Vec<Value> = children.into_values().collect();
    if ctx.media == Media::Object {
        let mut v = entry(&path, "dir", None);
        set_fields(&mut v, json!({"entries": entries}));
        let mut answer = Answer::ok(200, v);
        answer.media = "application/vnd.github.object";
        answer
    } else {
        Answer::ok(200, Value::Array(entries))
    }
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..36)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ghs_{tail}")
}

fn create_token(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let Ok(installation_id) = u64::try_from(ctx.int("installation_id")) else {
        return ctx.not_found(format!("no installation {}", ctx.int("installation_id")));
    };
    let permissions = ctx.body.get("permissions").cloned().unwrap_or_else(|| {
        json!({
            "checks": "write", "contents": "read", "deployments": "write", "issues": "write",
            "metadata": "read", "pull_requests": "write", "statuses": "write"
        })
    });
    let repositories: Option<Vec<String>> = ctx.body.get("repositories").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    });
    let selected = repositories.is_some() || ctx.body.get("repository_ids").is_some();
    let token = InstallationToken {
        token: random_token(),
        installation_id,
        created_at: ctx.now,
        expires_at: ctx.now + chrono::Duration::hours(1),
        permissions: permissions.clone(),
        repositories,
    };
    let body = json!({
        "token": token.token,
        "expires_at": timestamp(&token.expires_at),
        "permissions": permissions,
        "repository_selection": if selected { "selected" } else { "all" },
    });
    w.tokens.push(token);
    Answer::ok(201, body)
}

fn get_repo(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let r = w.repo_mut(owner, repo);
    let meta = r.meta.clone();
    Answer::ok(200, ctx.shared.repo_json(r, &meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_parses_with_its_sixteen_operations() {
        // GitHub's 15 extracted operations, plus `repos/list-deployments` added here
        // (marked `x-made-here` in the fixture).
        let ops = operations().expect("subset");
        assert_eq!(ops.len(), 16);
    }

    fn route(method: &str, path: &str) -> Option<(String, Vec<(String, String)>)> {
        let ops = operations().expect("subset");
        match_route(ops, method, path).map(|(op, p)| (op.operation_id.clone(), p))
    }

    #[test]
    fn routing_distinguishes_similar_paths() {
        let (id, p) = route("PATCH", "/repos/o/r/issues/comments/5").expect("route");
        assert_eq!(id, "issues/update-comment");
        assert_eq!(p[2], ("comment_id".to_string(), "5".to_string()));
        let (id, p) = route("GET", "/repos/o/r/issues/7/comments").expect("route");
        assert_eq!(id, "issues/list-comments");
        assert_eq!(p[2], ("issue_number".to_string(), "7".to_string()));
        let (id, _) = route("POST", "/repos/o/r/issues/7/comments").expect("route");
        assert_eq!(id, "issues/create-comment");
        assert!(route("GET", "/repos/o/r/issues/comments/5").is_none());
        assert!(route("DELETE", "/repos/o/r").is_none());
        let (id, p) = route("GET", "/repos/o/r/contents/environments/a/b.yaml").expect("route");
        assert_eq!(id, "repos/get-content");
        assert_eq!(p[2].1, "environments/a/b.yaml");
        let (id, p) = route("GET", "/repos/o/r/commits/heads/main/status").expect("route");
        assert_eq!(id, "repos/get-combined-status-for-ref");
        assert_eq!(p[2].1, "heads/main");
        let (id, _) = route("GET", "/repos/o/r/pulls/3").expect("route");
        assert_eq!(id, "pulls/get");
        let (id, _) = route("GET", "/repos/o/r/pulls/3/files").expect("route");
        assert_eq!(id, "pulls/list-files");
        let (id, _) = route("GET", "/repos/o/r").expect("route");
        assert_eq!(id, "repos/get");
        assert!(route("GET", "/repos/o/r/").is_none());
        let (_, p) = route("GET", "/repos/o%2Dx/r").expect("route");
        assert_eq!(p[0].1, "o-x");
    }

    #[test]
    fn combined_state_follows_github() {
        let s = |state: &str| Status {
            id: 1,
            sha: String::new(),
            state: state.to_string(),
            context: "c".to_string(),
            description: None,
            target_url: None,
            creator: String::new(),
            created_at: Utc::now(),
        };
        assert_eq!(combined_state([]), "pending");
        assert_eq!(combined_state([&s("success"), &s("pending")]), "pending");
        assert_eq!(combined_state([&s("success"), &s("error")]), "failure");
        assert_eq!(combined_state([&s("pending"), &s("failure")]), "failure");
        assert_eq!(combined_state([&s("success")]), "success");
    }

    #[test]
    fn latest_status_per_context_is_case_insensitive() {
        let mk = |id: u64, ctx: &str, state: &str| Status {
            id,
            sha: String::new(),
            state: state.to_string(),
            context: ctx.to_string(),
            description: None,
            target_url: None,
            creator: String::new(),
            created_at: Utc::now(),
        };
        let latest = latest_by_context(&[
            mk(1, "paved/schema", "pending"),
            mk(2, "paved/policy", "failure"),
            mk(3, "Paved/Schema", "success"),
        ]);
        assert_eq!(latest.len(), 2);
        assert_eq!(latest["Paved/Schema"].id, 3);
    }

    #[test]
    fn base64_round_trip() {
        for input in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let enc = base64_encode(input.as_bytes());
            assert_eq!(base64url_decode(&enc).as_deref(), Some(input.as_bytes()));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn app_jwt_claims_are_checked() {
        let now = 1_700_000_000;
        let jwt = |claims: Value| {
            format!(
                "e30.{}.c2ln",
                base64_encode(claims.to_string().as_bytes())
                    .trim_end_matches('=')
                    .replace('+', "-")
                    .replace('/', "_")
            )
        };
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 60, "exp": now + 540, "iss": 1})),
            now
        )
        .is_ok());
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 60, "exp": now + 3600, "iss": 1})),
            now
        )
        .is_err());
        assert!(check_app_jwt(
            &jwt(json!({"iat": now - 600, "exp": now - 1, "iss": 1})),
            now
        )
        .is_err());
        assert!(check_app_jwt(&jwt(json!({"iat": now, "exp": now + 60})), now).is_err());
        assert!(check_app_jwt("ghs_notajwt", now).is_err());
    }

    #[test]
    fn refs_normalise() {
        assert_eq!(normalize_ref("refs/heads/main"), "main");
        assert_eq!(normalize_ref("heads/main"), "main");
        assert_eq!(normalize_ref("main"), "main");
        assert_eq!(normalize_ref("refs/tags/v1"), "v1");
        assert_eq!(normalize_ref("tags/v1"), "v1");
        assert_eq!(normalize_ref("feature/x"), "feature/x");
    }
}
