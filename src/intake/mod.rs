//! The webhook receiver: `POST /webhooks/github`.
//!
//! In this order, and nothing else happens to a delivery that fails a step:
//! 1. a request without an `X-Hub-Signature-256` header is refused (401) before a byte of
//!    its body is read; one without a `Content-Length`, or declaring more than
//!    [`MAX_BODY_BYTES`], likewise (411, 413);
//! 2. the body waits for room in the in-flight budget (`intake.max_body_bytes_in_flight`),
//!    so many large bodies at once cannot exhaust memory, then is read as raw bytes;
//! 3. the signature is verified over those exact bytes against every configured secret
//!    (bad: 401) — nothing parses the body before this;
//! 4. `X-GitHub-Event` and `X-GitHub-Delivery` are required (missing or invalid: 400);
//! 5. [`classify`] decides whether Paved handles it (no: 200, not stored; body not JSON
//!    or lacking what its queue key is made of: 400, not stored); a delivery for a
//!    repository outside `github.repositories` is answered 200 and ignored (counted as
//!    `ignored_repository`, never stored or processed);
//! 6. the delivery is made durable ([`Store::accept_delivery`]) and only then
//!    acknowledged: 202 when new, 200 when it was a redelivery, 503 when the store
//!    failed (GitHub's redelivery, or a human, can try again).
//!
//! The server around it (`api::server`) closes connections whose request header
//! does not arrive within `intake.header_timeout`, and answers 408 to a request not done
//! within `intake.request_timeout`.

pub mod signature;

pub use crate::event::{classify, Classified, ClassifyError, COMMAND_PREFIX};
pub use signature::{sign, verify, SignatureError, WebhookSecret, SIGNATURE_HEADER};

use crate::config::IntakeConfig;
use crate::config::RepoFilter;
use crate::ids::DeliveryId;
use crate::metrics::Metrics;
use crate::store::{Accepted, NewDelivery, Store};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// GitHub caps webhook payloads at 25 MB; anything larger is refused with 413.
pub use crate::config::MAX_BODY_BYTES;

/// The path GitHub delivers to.
pub const WEBHOOK_PATH: &str = "/webhooks/github";

pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// What the webhook handler needs. Cheap to clone.
#[derive(Clone)]
pub struct IntakeState {
    pub store: Arc<dyn Store>,
    /// Every secret currently accepted (more than one while rotating).
    pub secrets: Arc<Vec<WebhookSecret>>,
    /// Notified (`notify_one`) after each newly stored delivery, to wake a worker.
    pub wake: Arc<Notify>,
    /// `paved_webhooks_total{result}`.
    pub metrics: Arc<Metrics>,
    /// The repositories Paved serves.
    pub repositories: Arc<RepoFilter>,
    /// Room for webhook bodies in memory, in KiB: a body holds its size's worth of permits
    /// while it is read and checked.
    pub body_budget: Arc<Semaphore>,
    /// How long a body may wait for room in the budget before the request is answered 503.
    pub budget_wait: Duration,
}

impl IntakeState {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Vec<WebhookSecret>,
        wake: Arc<Notify>,
        repositories: RepoFilter,
    ) -> Self {
        let limits = IntakeConfig::default();
        IntakeState {
            store,
            secrets: Arc::new(secrets),
            wake,
            metrics: Arc::new(Metrics::new()),
            repositories: Arc::new(repositories),
            body_budget: Arc::new(Semaphore::new(kib(limits.max_body_bytes_in_flight) as usize)),
            budget_wait: limits.request_timeout,
        }
    }

    /// The same state with the in-flight budget and waits of `limits`.
    pub fn with_limits(mut self, limits: &IntakeConfig) -> Self {
        self.body_budget = Arc::new(Semaphore::new(kib(limits.max_body_bytes_in_flight) as usize));
        self.budget_wait = limits.request_timeout;
        self
    }

    /// The same state counting into `metrics` (the service's, served at `/metrics`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }
}

/// `POST /webhooks/github`, with its body limit.
pub fn router(state: IntakeState) -> Router {
    documented(state).split_for_parts().0
}

/// [`router`] with its part of the API's OpenAPI document.
pub fn documented<S: Clone + Send + Sync + 'static>(state: IntakeState) -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// What GitHub is answered (it keeps the answer in the delivery's log).
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct WebhookAnswer {
    /// Stored, or nothing to store.
    pub ok: bool,
    /// The delivery id, when it was stored now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// It was stored before (a redelivery).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// Not an event Paved acts on, or not for a repository it serves.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn answer(status: StatusCode, body: WebhookAnswer) -> Response {
    (status, Json(body)).into_response()
}

fn ok() -> WebhookAnswer {
    WebhookAnswer {
        ok: true,
        ..WebhookAnswer::default()
    }
}

/// A refusal, as problem details (the same shape as the API's).
fn error(status: StatusCode, message: &str) -> Response {
    crate::problem::Problem::new(status, message).into_response()
}

/// Size in KiB (rounded up) of `bytes`, the unit of the in-flight budget.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// GitHub's webhook: the signature is verified before the body is parsed, and the
/// delivery is stored durably before it is acknowledged.
#[utoipa::path(post, path = "/webhooks/github", tag = "webhook", security(()),
    request_body(content = serde_json::Value, description = "A GitHub event payload, signed with the webhook secret"),
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` and the HMAC of the body"),
        ("X-GitHub-Event" = String, Header),
        ("X-GitHub-Delivery" = String, Header),
    ),
    responses(
        (status = 202, description = "Stored; it will be processed", body = WebhookAnswer),
        (status = 200, description = "A redelivery, or an event Paved ignores", body = WebhookAnswer),
        (status = 400, description = "Headers or payload unusable", body = crate::problem::Problem),
        (status = 401, description = "Invalid or missing signature", body = crate::problem::Problem),
        (status = 411, description = "No Content-Length", body = crate::problem::Problem),
        (status = 413, description = "Body over 25 MiB", body = crate::problem::Problem),
        (status = 503, description = "Not stored, or too many bodies in flight; GitHub should retry", body = crate::problem::Problem),
    ))]
async fn receive(State(state): State<IntakeState>, request: Request) -> Response {
    let m = &state.metrics;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;

    // 1. No signature header: refused before a byte of the body is read.
    let Some(sig) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        m.webhook("rejected_signature");
        tracing::warn!("webhook rejected: no signature header; body not read");
        return error(StatusCode::UNAUTHORIZED, "invalid or missing signature");
    };
    let sig = sig.to_owned();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let Some(declared) = declared else {
        m.webhook("refused_size");
        return error(
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required",
        );
    };
    if declared > MAX_BODY_BYTES {
        m.webhook("refused_size");
        tracing::warn!(
            bytes = declared,
            "webhook rejected: body over the cap; not read"
        );
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body over 25 MiB");
    }

    // 2. Room in the budget, then the body.
    let permits = kib(declared).max(1);
    let permit = match tokio::time::timeout(
        state.budget_wait,
        state.body_budget.clone().acquire_many_owned(permits),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            m.webhook("busy");
            tracing::warn!(
                bytes = declared,
                "webhook refused: too many bodies in flight"
            );
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many webhook bodies in flight; redeliver later",
            );
        }
    };
    let body = match read_body(body, declared).await {
        Ok(b) => b,
        Err(status) => {
            m.webhook("bad_request");
            return error(status, "the body could not be read");
        }
    };

    // 3. Signature first; the body is opaque bytes until it passes.
    let verified = verify(&state.secrets, &body, Some(&sig));
    if let Err(e) = verified {
        m.webhook("rejected_signature");
        tracing::warn!(reason = %e, bytes = body.len(), "webhook rejected: signature");
        return error(StatusCode::UNAUTHORIZED, "invalid or missing signature");
    }
    let response = accept(&state, &headers, body).await;
    drop(permit);
    response
}

/// Reads exactly the declared number of bytes (hyper enforces the framing; more than
/// declared is a protocol error, less is a body that never ends, cut by the request
/// timeout).
async fn read_body(body: Body, declared: usize) -> Result<Bytes, StatusCode> {
    match axum::body::to_bytes(body, declared).await {
        Ok(b) => Ok(b),
        Err(e) => {
            tracing::warn!(error = %e, "webhook body could not be read");
            Err(StatusCode::BAD_REQUEST)
        }
    }
}

/// Steps 4 to 6, for a body whose signature was verified.
async fn accept(state: &IntakeState, headers: &axum::http::HeaderMap, body: Bytes) -> Response {
    let m = &state.metrics;
    // 4. Headers.
    let Some(event) = headers.get(EVENT_HEADER).and_then(|v| v.to_str().ok()) else {
        m.webhook("bad_request");
        tracing::warn!("webhook rejected: missing X-GitHub-Event");
        return error(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header");
    };
    let delivery = headers
        .get(DELIVERY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(DeliveryId::parse);
    let id = match delivery {
        Some(Ok(id)) => id,
        Some(Err(_)) | None => {
            m.webhook("bad_request");
            tracing::warn!(
                event,
                "webhook rejected: missing or invalid X-GitHub-Delivery"
            );
            return error(
                StatusCode::BAD_REQUEST,
                "missing or invalid X-GitHub-Delivery header",
            );
        }
    };

    // 5. Is it ours?
    let classified = match classify(event, &body) {
        Ok(Some(c)) if !state.repositories.allows(&c.repo) => {
            m.webhook("ignored_repository");
            tracing::warn!(delivery = %id, event, repo = %c.repo,
                "webhook ignored: repository not in github.repositories");
            return answer(
                StatusCode::OK,
                WebhookAnswer {
                    ignored: true,
                    reason: Some("repository not served".into()),
                    ..ok()
                },
            );
        }
        Ok(Some(c)) => c,
        Ok(None) => {
            m.webhook("ignored");
            tracing::debug!(delivery = %id, event, "webhook ignored");
            return answer(
                StatusCode::OK,
                WebhookAnswer {
                    ignored: true,
                    ..ok()
                },
            );
        }
        Err(e) => {
            m.webhook("bad_request");
            tracing::warn!(delivery = %id, event, reason = %e, "webhook rejected: payload");
            return error(StatusCode::BAD_REQUEST, "payload unusable for this event");
        }
    };

    // 6. Durable, then acknowledged.
    let action = classified.action.clone();
    let new = NewDelivery {
        id: id.clone(),
        event: event.to_owned(),
        action: classified.action,
        queue_key: classified.queue_key,
        body,
    };
    match state.store.accept_delivery(new).await {
        Ok(Accepted::New) => {
            m.webhook("accepted");
            state.wake.notify_one();
            tracing::info!(delivery = %id, event, action = action.as_deref(), "webhook accepted");
            answer(
                StatusCode::ACCEPTED,
                WebhookAnswer {
                    delivery: Some(id.as_str().to_string()),
                    ..ok()
                },
            )
        }
        Ok(Accepted::Duplicate) => {
            m.webhook("duplicate");
            tracing::info!(delivery = %id, event, "webhook redelivered; already stored");
            answer(
                StatusCode::OK,
                WebhookAnswer {
                    duplicate: true,
                    ..ok()
                },
            )
        }
        Err(e) => {
            m.webhook("store_error");
            tracing::error!(delivery = %id, event, error = %e, "webhook not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the delivery; retry later",
            )
        }
    }
}
