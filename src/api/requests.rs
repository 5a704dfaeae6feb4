//! `POST /api/v1/requests` and `GET /api/v1/requests/{id}`: the Orchestrator's door.

use super::answers::{ApiError, RequestAnswer, RequestLinks, RequestOpened};
use super::{error, ApiState};
use crate::identity::Caller;
use crate::ids::RepoName;
use crate::orchestrator::{PullRequestLink, RequestBody, RequestError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(show))
}

fn refusal(e: RequestError) -> Response {
    let detail = e.to_string();
    let mut pull = None;
    let mut errors = None;
    let status = match e {
        RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
        RequestError::Unusable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        RequestError::Forbidden(_) => StatusCode::FORBIDDEN,
        RequestError::NotFound(_) => StatusCode::NOT_FOUND,
        RequestError::Conflict { pull_request, .. } => {
            pull = pull_request;
            StatusCode::CONFLICT
        }
        RequestError::Unprocessable(problems) => {
            errors = Some(problems.into_iter().map(Into::into).collect());
            StatusCode::UNPROCESSABLE_ENTITY
        }
        RequestError::Unavailable(ref cause) => {
            tracing::warn!(%cause, "a request could not be opened");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    let mut body = ApiError::new(status, detail);
    body.pull_request = pull;
    body.errors = errors;
    body.into_response()
}

/// Opens a request: pre-flight with the checks a pull request gets, then a branch, a
/// commit and a pull request. 201 with its id and pull request, or the refusal (then
/// nothing was pushed and no pull request opened).
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests",
    request_body = RequestBody,
    responses(
        (status = 201, description = "The pull request is open", body = RequestOpened,
            headers(("Location" = String, description = "The request's own address"))),
        (status = 400, description = "The body is not a request", body = ApiError),
        (status = 403, description = "The caller may not act for that team", body = ApiError),
        (status = 404, description = "No such repository or environment, or not one the caller may see", body = ApiError),
        (status = 409, description = "An open request already asks for that environment", body = ApiError),
        (status = 422, description = "It fails the checks (every error, with file and field), or the action needs a field the body lacks or cannot take one it has", body = ApiError),
        (status = 503, description = "GitHub or the database did not answer", body = ApiError),
    ))]
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
                Json(RequestOpened {
                    id: o.id,
                    url,
                    branch: o.branch,
                    pull_request: PullRequestLink {
                        number: o.pull_request,
                        url: o.pull_request_url,
                    },
                }),
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

/// Who sees a request: its requester, and whoever sees its team's environments (the API
/// and the portal both ask this).
pub(crate) async fn sees_request(
    s: &ApiState,
    caller: &Caller,
    repo: &RepoName,
    req: &crate::store::RequestRecord,
) -> bool {
    let own = caller
        .login()
        .is_some_and(|l| l.eq_ignore_ascii_case(&req.requester));
    own || s.access(caller, repo).await.sees_team(&req.team)
}

/// A request's lifecycle, for its requester and whoever sees its team's environments.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Where the request stands", body = RequestAnswer),
        (status = 404, description = "No such request, or not one the caller may see", body = ApiError),
        (status = 503, description = "GitHub or the database did not answer", body = ApiError),
    ))]
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
    if !sees_request(&s, &caller, &repo, &req).await {
        return missing();
    }
    match s.orchestrator.status(&req).await {
        Ok(status) => Json(RequestAnswer {
            status,
            links: RequestLinks {
                this: format!("{}/api/v1/requests/{id}", s.public_url),
                pull_request: req.pr_url.clone(),
                environment: format!(
                    "{}/api/v1/repos/{}/environments/{}",
                    s.public_url, req.repo, req.env_name
                ),
            },
        })
        .into_response(),
        Err(e) => refusal(e),
    }
}
