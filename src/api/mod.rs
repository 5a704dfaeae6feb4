//! The HTTP surface: the webhook receiver (from [`crate::intake`]), health and readiness,
//! Prometheus metrics, and the read-only API under `/api/v1` that statuses link to.

use crate::ids::DeliveryId;
use crate::intake::IntakeState;
use crate::store::Store;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::fmt::Write;
use std::sync::Arc;

#[derive(Clone)]
struct ApiState {
    store: Arc<dyn Store>,
    intake: IntakeState,
}

pub fn router(intake: IntakeState, store: Arc<dyn Store>) -> Router {
    let state = ApiState {
        store,
        intake: intake.clone(),
    };
    let api = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs/{id}", get(run))
        .route("/api/v1/deliveries/{id}", get(delivery))
        .with_state(state);
    crate::intake::router(intake).merge(api)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Ready when the database answers: a replica that cannot store deliveries must not get them.
async fn readyz(State(s): State<ApiState>) -> Response {
    match s.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

async fn run(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "run ids are numbers");
    };
    match s.store.run(id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such run"),
        Err(e) => {
            tracing::error!(error = %e, "reading a run");
            error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

async fn delivery(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = DeliveryId::parse(&id) else {
        return error(StatusCode::BAD_REQUEST, "not a delivery id");
    };
    match s.store.delivery(&id).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such delivery"),
        Err(e) => {
            tracing::error!(error = %e, "reading a delivery");
            error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

/// Prometheus text format: intake counters and deliveries by state.
async fn metrics(State(s): State<ApiState>) -> Response {
    let mut out = String::new();
    let m = s.intake.metrics();
    let _ = writeln!(
        out,
        "# HELP paved_webhooks_total Webhook requests by result."
    );
    let _ = writeln!(out, "# TYPE paved_webhooks_total counter");
    for (result, n) in m {
        let _ = writeln!(out, "paved_webhooks_total{{result=\"{result}\"}} {n}");
    }
    if let Ok(counts) = s.store.delivery_counts().await {
        let _ = writeln!(out, "# HELP paved_deliveries Stored deliveries by state.");
        let _ = writeln!(out, "# TYPE paved_deliveries gauge");
        for (state, n) in counts {
            let _ = writeln!(out, "paved_deliveries{{state=\"{state}\"}} {n}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
