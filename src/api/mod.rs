//! The HTTP surface: the webhook receiver (from [`crate::intake`]), health and readiness,
//! Prometheus metrics, and the read-only API under `/api/v1` that statuses link to.

use crate::ids::{CommitSha, DeliveryId, RepoName};
use crate::intake::IntakeState;
use crate::metrics::Metrics;
use crate::store::{public_outputs, OperationRecord, Store, StoreError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

pub mod server;

#[derive(Clone)]
struct ApiState {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

pub fn router(intake: IntakeState, store: Arc<dyn Store>) -> Router {
    let state = ApiState {
        store,
        metrics: intake.metrics.clone(),
    };
    let api = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs/{id}", get(run))
        .route("/api/v1/deliveries/{id}", get(delivery))
        .route("/api/v1/environments", get(environments))
        .route(
            "/api/v1/repos/{owner}/{repo}/environments",
            get(repo_environments),
        )
        .route(
            "/api/v1/repos/{owner}/{repo}/environments/{name}",
            get(environment),
        )
        .route("/api/v1/repos/{owner}/{repo}/merges/{sha}", get(merge))
        .route("/api/v1/operations/{id}", get(operation))
        .route("/schemas/{file}", get(schema))
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
    match s.store.run(crate::ids::RunId(id)).await {
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

fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "reading the store");
    error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
}

/// What the API shows of an operation: sensitive outputs never leave the database.
fn public_operation(mut op: OperationRecord) -> OperationRecord {
    op.outputs = public_outputs(&op.outputs);
    op
}

/// The inventory of every repository.
async fn environments(State(s): State<ApiState>) -> Response {
    match s.store.environments(None).await {
        Ok(list) => Json(list.iter().map(|e| e.public()).collect::<Vec<_>>()).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn repo_environments(
    State(s): State<ApiState>,
    Path((owner, repo)): Path<(String, String)>,
) -> Response {
    let Ok(repo) = RepoName::new(&owner, &repo) else {
        return error(StatusCode::BAD_REQUEST, "not a repository name");
    };
    match s.store.environments(Some(&repo)).await {
        Ok(list) => Json(list.iter().map(|e| e.public()).collect::<Vec<_>>()).into_response(),
        Err(e) => unavailable(e),
    }
}

/// One environment with its last 20 operations.
async fn environment(
    State(s): State<ApiState>,
    Path((owner, repo, name)): Path<(String, String, String)>,
) -> Response {
    let Ok(repo) = RepoName::new(&owner, &repo) else {
        return error(StatusCode::BAD_REQUEST, "not a repository name");
    };
    let env = match s.store.environment(&repo, &name).await {
        Ok(Some(e)) => e.public(),
        Ok(None) => return error(StatusCode::NOT_FOUND, "no such environment"),
        Err(e) => return unavailable(e),
    };
    match s.store.operations_for_environment(&repo, &name, 20).await {
        Ok(ops) => Json(serde_json::json!({
            "environment": env,
            "operations": ops.into_iter().map(public_operation).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// The operations of one merge commit (what `paved/provision` links to).
async fn merge(
    State(s): State<ApiState>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Response {
    let (Ok(repo), Ok(sha)) = (RepoName::new(&owner, &repo), CommitSha::parse(&sha)) else {
        return error(StatusCode::BAD_REQUEST, "not a repository name and commit");
    };
    match s.store.operations_for_merge(&repo, &sha).await {
        Ok(ops) => Json(ops.into_iter().map(public_operation).collect::<Vec<_>>()).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn operation(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::BAD_REQUEST, "operation ids are numbers");
    };
    match s.store.operation(crate::ids::OperationId(id)).await {
        Ok(Some(op)) => Json(public_operation(op)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such operation"),
        Err(e) => unavailable(e),
    }
}

/// `/schemas/environment.json`, `/schemas/platform.json`: the JSON Schemas of the files
/// people write (nothing of any repository is in them).
async fn schema(Path(file): Path<String>) -> Response {
    let found = crate::manifest::schema::SCHEMAS
        .iter()
        .find(|(_, _, path)| path.strip_prefix("/schemas/") == Some(file.as_str()))
        .and_then(|(name, _, _)| crate::manifest::schema::by_name(name));
    match found {
        Some(s) => ([(header::CONTENT_TYPE, "application/schema+json")], Json(s)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such schema"),
    }
}

/// Every series of [`Metrics`], with the queue's gauges read from the store now.
async fn metrics(State(s): State<ApiState>) -> Response {
    match (
        s.store.delivery_counts().await,
        s.store.oldest_pending_ms().await,
    ) {
        (Ok(counts), Ok(oldest)) => {
            let counts: Vec<(String, u64)> = counts.into_iter().collect();
            let now = chrono::Utc::now().timestamp_millis();
            let age = oldest
                .map(|ms| std::time::Duration::from_millis(u64::try_from(now - ms).unwrap_or(0)));
            s.metrics.set_queue(&counts, age);
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: the queue could not be read");
        }
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
