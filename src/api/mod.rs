//! The HTTP surface: the webhook receiver (from [`crate::intake`]), health and readiness,
//! Prometheus metrics, and the API under `/api/v1`.
//!
//! Only the webhook, `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json` and the
//! OpenID Connect issuer's `/.well-known/openid-configuration` and `/.well-known/jwks.json`
//! answer without an identity (SPEC 8, 13): every other route goes through [`require_identity`],
//! which answers 401
//! without a token Paved accepts and hands the [`Caller`] to the handler. What a caller
//! may see is decided per repository by [`Directory`]; a thing the caller may not see is
//! answered exactly as a thing that does not exist.
//!
//! Handlers return `Result<_, ApiError>`: a refusal is a problem (RFC 9457) built once per
//! request and turned into the answer by axum, so its size (a few strings) is no cost worth
//! boxing it for.
#![allow(clippy::result_large_err)]

use crate::identity::{Access, AuthError, Caller, Directory, Identities};
use crate::ids::RepoName;
use crate::intake::IntakeState;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) mod answers;
mod backstage;
pub(crate) mod graph;
mod oidc;
pub mod openapi;
pub(crate) mod params;
mod reconcile;
pub(crate) mod requests;
pub(crate) mod routes;
pub mod server;

/// What the API needs, passed in explicitly.
pub struct ApiDeps {
    pub store: Arc<dyn Store>,
    /// Paved's public URL (links in answers).
    pub public_url: String,
    pub identities: Arc<Identities>,
    pub directory: Arc<Directory>,
    pub orchestrator: Arc<crate::orchestrator::Orchestrator>,
    /// Wakes this replica's scheduler (a reconcile was asked for).
    pub lifecycle_wake: Arc<tokio::sync::Notify>,
    /// The lifecycle's clock.
    pub clock: crate::clock::Clock,
    /// `runner.sandbox = "none"`: `/readyz` says so in its detail.
    pub unsandboxed: bool,
    /// Paved's OpenID Connect issuer (its discovery document and keys are open).
    pub issuer: Arc<crate::oidc::Issuer>,
}

/// What every handler reads from; the portal ([`crate::portal`]) reads through it too, so
/// a page shows exactly what the API would answer.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) public_url: String,
    metrics: Arc<Metrics>,
    pub(crate) identities: Arc<Identities>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) orchestrator: Arc<crate::orchestrator::Orchestrator>,
    pub(crate) lifecycle_wake: Arc<tokio::sync::Notify>,
    pub(crate) clock: crate::clock::Clock,
    unsandboxed: bool,
    issuer: Arc<crate::oidc::Issuer>,
}

impl ApiState {
    /// What `caller` may do in `repo`.
    pub(crate) async fn access(&self, caller: &Caller, repo: &RepoName) -> Access {
        match caller {
            Caller::Service(_) => Access {
                reader: true,
                ..Access::default()
            },
            Caller::User(_) => self
                .directory
                .roles(repo)
                .await
                .map(|r| r.access(caller))
                .unwrap_or_default(),
        }
    }
}

/// The router, and the state its handlers read (the portal reads through it too).
pub fn app(intake: IntakeState, deps: ApiDeps) -> (Router, ApiState) {
    let state = ApiState {
        store: deps.store,
        public_url: deps.public_url,
        metrics: intake.metrics.clone(),
        identities: deps.identities,
        directory: deps.directory,
        orchestrator: deps.orchestrator,
        lifecycle_wake: deps.lifecycle_wake,
        clock: deps.clock,
        unsandboxed: deps.unsandboxed,
        issuer: deps.issuer,
    };
    let open = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(oidc::openid_configuration))
        .routes(routes!(oidc::jwks))
        .with_state(state.clone());
    let identified = routes::routes()
        .merge(graph::routes())
        .merge(requests::routes())
        .merge(backstage::routes())
        .merge(reconcile::routes())
        .routes(routes!(schema))
        .layer(middleware::from_fn(params::validate))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_identity,
        ))
        .with_state(state.clone());
    let published = openapi::Published::default();
    let (app, document) = OpenApiRouter::with_openapi(openapi::document())
        .merge(crate::intake::documented(intake))
        .merge(openapi::routes(published.clone()))
        .merge(open)
        .merge(identified)
        .split_for_parts();
    openapi::publish(&published, document);
    (app, state)
}

/// Whether `path` is the API's (or the webhook's, health's, metrics' or the issuer's) rather
/// than the portal's: a missing one is answered with problem details, not a page.
pub fn is_api_path(path: &str) -> bool {
    ["/api/", "/webhooks/", "/schemas/", "/.well-known/"]
        .iter()
        .any(|p| path.starts_with(p))
        || ["/healthz", "/readyz", "/metrics", "/api", "/webhooks"].contains(&path)
}

/// The Content-Security-Policy of every answer: scripts and styles only from Paved's own
/// files (no inline script: the portal has none), never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Adds the security headers to every answer, pages and API alike: a page that a script
/// output or a crafted link got into must still not run script, be framed (clickjacking),
/// be sniffed into another type, or leak its URL to other sites.
pub fn with_security_headers(app: Router) -> Router {
    app.layer(middleware::from_fn(security_headers))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    r
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Answers 401 unless the request carries a token Paved accepts; otherwise hands the
/// [`Caller`] on to the handler (as a request extension).
async fn require_identity(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match s.identities.authenticate(header, client).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(AuthError::TooMany { retry_after }) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                &AuthError::TooMany { retry_after }.to_string(),
            );
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.as_secs().max(1).to_string())
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => {
            let status = match e {
                AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let mut r = error(status, &e.to_string());
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"paved\""),
                );
            }
            r
        }
    }
}

/// A refusal, as problem details.
fn error(status: StatusCode, message: &str) -> Response {
    answers::ApiError::new(status, message).into_response()
}

/// Ready when the database answers: a replica that cannot store deliveries must not get them.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The database answers", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer", body = answers::ApiError),
    ))]
async fn readyz(State(s): State<ApiState>) -> Result<&'static str, answers::ApiError> {
    s.store.ping().await?;
    Ok(if s.unsandboxed {
        "ready (warning: runner.sandbox = \"none\": scripts run unsandboxed, as Paved's own user)"
    } else {
        "ready"
    })
}

/// `/schemas/environment.json`, `/schemas/platform.json`: the JSON Schemas of the files
/// people write (nothing of any repository is in them).
#[utoipa::path(get, path = "/schemas/{file}", tag = "files",
    params(("file" = String, Path, description = "`environment.json` or `platform.json`")),
    responses(
        (status = 200, description = "A JSON Schema", body = serde_json::Value, content_type = "application/schema+json"),
        (status = 404, description = "No such schema", body = answers::ApiError),
    ))]
async fn schema(Path(file): Path<String>) -> Result<Response, answers::ApiError> {
    let found = crate::manifest::schema::SCHEMAS
        .iter()
        .find(|(_, _, path)| path.strip_prefix("/schemas/") == Some(file.as_str()))
        .and_then(|(name, _, _)| crate::manifest::schema::by_name(name));
    let s = found.ok_or_else(|| routes::missing("schema"))?;
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], Json(s)).into_response())
}

/// Every series of [`Metrics`], with the queue's gauges read from the store now.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics(State(s): State<ApiState>) -> Response {
    match (
        s.store.delivery_counts().await,
        s.store.oldest_pending_ms().await,
    ) {
        (Ok(counts), Ok(oldest)) => {
            let counts: Vec<(String, u64)> = counts.into_iter().collect();
            // Against the store's own timestamps: the machine's time.
            let now = crate::clock::wall().timestamp_millis();
            let age = oldest
                .map(|ms| std::time::Duration::from_millis(u64::try_from(now - ms).unwrap_or(0)));
            s.metrics.set_queue(&counts, age);
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: the queue could not be read");
        }
    }
    match s.store.environment_counts().await {
        Ok(counts) => s.metrics.set_environments(&counts),
        Err(e) => tracing::warn!(error = %e, "metrics: the inventory could not be read"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
