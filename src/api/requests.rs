//! `POST /api/v1/requests` and `GET /api/v1/requests/{id}`: the Orchestrator's door.

use super::answers::{ApiError, RequestAnswer, RequestLinks, RequestOpened};
use super::ApiState;
use crate::identity::Caller;
use crate::ids::RepoName;
use crate::orchestrator::{PullRequestLink, RequestBody, RequestError};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(show))
}

/// The one mapping of the Orchestrator's refusals to answers (an unavailable GitHub or
/// database is logged with its cause, which the answer does not show).
fn problem_of(e: RequestError) -> ApiError {
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
    body
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
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<RequestOpened>,
    ),
    ApiError,
> {
    let bad = |why: &str| ApiError::new(StatusCode::BAD_REQUEST, why);
    let Json(body) = body.map_err(|e| bad(&e.body_text()))?;
    let repo =
        RepoName::parse(&body.repository).map_err(|_| bad("repository: write owner/name"))?;
    let access = s.access(&caller, &repo).await;
    let o = s
        .orchestrator
        .open(&caller, &access, body)
        .await
        .map_err(problem_of)?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/requests/{}", o.id))],
        Json(RequestOpened {
            id: o.id,
            url: format!("{}/api/v1/requests/{}", s.public_url, o.id),
            branch: o.branch,
            pull_request: PullRequestLink {
                number: o.pull_request,
                url: o.pull_request_url,
            },
        }),
    ))
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
) -> Result<Json<RequestAnswer>, ApiError> {
    let missing = || super::routes::missing("request");
    let id = id.parse::<i64>().map_err(|_| missing())?;
    let req = s.store.request(id).await?.ok_or_else(missing)?;
    if !sees_request(&s, &caller, &req.repo, &req).await {
        return Err(missing());
    }
    let status = s.orchestrator.status(&req).await.map_err(problem_of)?;
    Ok(Json(RequestAnswer {
        status,
        links: RequestLinks {
            this: format!("{}/api/v1/requests/{id}", s.public_url),
            pull_request: req.pr_url.clone(),
            environment: format!(
                "{}/api/v1/repos/{}/environments/{}",
                s.public_url, req.repo, req.env_name
            ),
        },
    }))
}
