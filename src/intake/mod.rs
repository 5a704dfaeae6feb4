//! The webhook receiver: `POST /webhooks/github`.
//!
//! In this order, and nothing else happens to a delivery that fails a step:
//! 1. the body is read as raw bytes, at most [`MAX_BODY_BYTES`] (larger: 413);
//! 2. `X-Hub-Signature-256` is verified over those exact bytes against every configured
//!    secret (bad or missing: 401) — nothing parses the body before this;
//! 3. `X-GitHub-Event` and `X-GitHub-Delivery` are required (missing or invalid: 400);
//! 4. [`classify`] decides whether Paved handles it (no: 200, not stored; body not JSON
//!    or lacking what its queue key is made of: 400, not stored);
//! 5. the delivery is made durable ([`Store::accept_delivery`]) and only then
//!    acknowledged: 202 when new, 200 when it was a redelivery, 503 when the store
//!    failed (GitHub's redelivery, or a human, can try again).

mod events;
pub mod signature;

pub use events::{classify, Classified, ClassifyError, COMMAND_PREFIX};
pub use signature::{sign, verify, SignatureError, WebhookSecret, SIGNATURE_HEADER};

use crate::ids::DeliveryId;
use crate::store::{Accepted, NewDelivery, Store};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// GitHub caps webhook payloads at 25 MB; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// The path GitHub delivers to.
pub const WEBHOOK_PATH: &str = "/webhooks/github";

pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct IntakeMetrics {
    /// Stored and acknowledged with 202.
    pub accepted: AtomicU64,
    /// Redeliveries of a stored delivery id.
    pub duplicate: AtomicU64,
    /// Missing or wrong signature (401).
    pub rejected_signature: AtomicU64,
    /// Validly signed, but not something Paved handles (not stored).
    pub ignored: AtomicU64,
    /// Validly signed but missing headers or unusable body (400).
    pub bad_request: AtomicU64,
    /// The store failed (503).
    pub store_errors: AtomicU64,
}

/// What the webhook handler needs. Cheap to clone.
#[derive(Clone)]
pub struct IntakeState {
    pub store: Arc<dyn Store>,
    /// Every secret currently accepted (more than one while rotating).
    pub secrets: Arc<Vec<WebhookSecret>>,
    /// Notified (`notify_one`) after each newly stored delivery, to wake a worker.
    pub wake: Arc<Notify>,
    pub metrics: Arc<IntakeMetrics>,
}

impl IntakeState {
    pub fn new(store: Arc<dyn Store>, secrets: Vec<WebhookSecret>, wake: Arc<Notify>) -> Self {
        IntakeState {
            store,
            secrets: Arc::new(secrets),
            wake,
            metrics: Arc::new(IntakeMetrics::default()),
        }
    }

    /// The counters as `(result, count)` pairs, for `/metrics`.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        self.metrics.snapshot()
    }
}

impl IntakeMetrics {
    /// `(result, count)` pairs: accepted, duplicate, rejected_signature, ignored,
    /// bad_request, store_error.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("accepted", &self.accepted),
            ("duplicate", &self.duplicate),
            ("rejected_signature", &self.rejected_signature),
            ("ignored", &self.ignored),
            ("bad_request", &self.bad_request),
            ("store_error", &self.store_errors),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.load(Ordering::Relaxed)))
        .collect()
    }
}

/// `POST /webhooks/github`, with its body limit.
pub fn router(state: IntakeState) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    answer(status, json!({ "ok": false, "error": message }))
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

async fn receive(State(state): State<IntakeState>, headers: HeaderMap, body: Bytes) -> Response {
    let m = &state.metrics;

    // 2. Signature first; the body is opaque bytes until it passes.
    let sig = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = verify(&state.secrets, &body, sig) {
        count(&m.rejected_signature);
        tracing::warn!(reason = %e, bytes = body.len(), "webhook rejected: signature");
        return error(StatusCode::UNAUTHORIZED, "invalid or missing signature");
    }

    // 3. Headers.
    let Some(event) = headers.get(EVENT_HEADER).and_then(|v| v.to_str().ok()) else {
        count(&m.bad_request);
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
            count(&m.bad_request);
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

    // 4. Is it ours?
    let classified = match classify(event, &body) {
        Ok(Some(c)) => c,
        Ok(None) => {
            count(&m.ignored);
            tracing::debug!(delivery = %id, event, "webhook ignored");
            return answer(StatusCode::OK, json!({ "ok": true, "ignored": true }));
        }
        Err(e) => {
            count(&m.bad_request);
            tracing::warn!(delivery = %id, event, reason = %e, "webhook rejected: payload");
            return error(StatusCode::BAD_REQUEST, "payload unusable for this event");
        }
    };

    // 5. Durable, then acknowledged.
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
            count(&m.accepted);
            state.wake.notify_one();
            tracing::info!(delivery = %id, event, action = action.as_deref(), "webhook accepted");
            answer(
                StatusCode::ACCEPTED,
                json!({ "ok": true, "delivery": id.as_str() }),
            )
        }
        Ok(Accepted::Duplicate) => {
            count(&m.duplicate);
            tracing::info!(delivery = %id, event, "webhook redelivered; already stored");
            answer(StatusCode::OK, json!({ "ok": true, "duplicate": true }))
        }
        Err(e) => {
            count(&m.store_errors);
            tracing::error!(delivery = %id, event, error = %e, "webhook not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store the delivery; retry later",
            )
        }
    }
}
