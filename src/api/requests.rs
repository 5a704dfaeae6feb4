//! `POST /api/v1/requests` and `GET /api/v1/requests/{id}`: the Orchestrator's door.

use super::{error, ApiState};
use crate::identity::Caller;
use crate::ids::RepoName;
use crate::orchestrator::{RequestBody, RequestError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/requests", post(open))
        .route("/api/v1/requests/{id}", get(show))
}

fn refusal(e: RequestError) -> Response {
    let (status, extra) = match &e {
        RequestError::BadRequest(_) => (StatusCode::BAD_REQUEST, serde_json::json!({})),
        RequestError::Forbidden(_) => (StatusCode::FORBIDDEN, serde_json::json!({})),
        RequestError::NotFound(_) => (StatusCode::NOT_FOUND, serde_json::json!({})),
        RequestError::Conflict { pull_request, .. } => (
            StatusCode::CONFLICT,
            serde_json::json!({ "pullRequest": pull_request }),
        ),
        RequestError::Unprocessable(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "errors": problems }),
        ),
        RequestError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({})),
    };
    let mut body = serde_json::json!({ "error": e.to_string() });
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(x.clone());
    }
    (status, Json(body)).into_response()
}

/// Opens a request: 201 with its id and pull request, or the refusal (nothing written).
async fn open(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<RequestBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let access = match RepoName::parse(&body.repository) {
        Ok(repo) => s.access(&caller, &repo).await,
        Err(_) => return error(StatusCode::BAD_REQUEST, "repository: write owner/name"),
    };
    match s.orchestrator.open(&caller, &access, body).await {
        Ok(o) => {
            let url = format!("{}/api/v1/requests/{}", s.public_url, o.id);
            let mut r = (
                StatusCode::CREATED,
                Json(serde_json::json!({
                    "id": o.id,
                    "url": url,
                    "branch": o.branch,
                    "pullRequest": { "number": o.pull_request, "url": o.pull_request_url },
                })),
            )
                .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/requests/{}", o.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Err(e) => refusal(e),
    }
}

/// A request's lifecycle, for its requester and whoever sees its team's environments.
async fn show(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let missing = || error(StatusCode::NOT_FOUND, "no such request");
    let Ok(id) = id.parse::<i64>() else {
        return missing();
    };
    let req = match s.store.request(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return missing(),
        Err(e) => return super::routes::unavailable(e),
    };
    let Ok(repo) = RepoName::parse(&req.repo) else {
        return missing();
    };
    let own = caller
        .login()
        .is_some_and(|l| l.eq_ignore_ascii_case(&req.requester));
    if !own && !s.access(&caller, &repo).await.sees_team(&req.team) {
        return missing();
    }
    match s.orchestrator.status(&req).await {
        Ok(mut v) => {
            v["links"] = serde_json::json!({
                "self": format!("{}/api/v1/requests/{id}", s.public_url),
                "pullRequest": req.pr_url,
                "environment": format!("{}/api/v1/repos/{}/environments/{}", s.public_url, req.repo, req.env_name),
            });
            Json(v).into_response()
        }
        Err(e) => refusal(e),
    }
}
