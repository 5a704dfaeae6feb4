//! `POST /api/v1/repos/{owner}/{repo}/environments/{name}/reconcile` (SPEC 11): asks the
//! scheduler to run `deploy` again with the environment's last parameters, under its lock,
//! as operation `reconcile`. For a member of the environment's team or the platform team.

use super::answers::{ApiError, ReconcileQueued};
use super::routes::missing;
use super::ApiState;
use crate::identity::Caller;
use crate::ids::RepoName;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(reconcile))
}

/// Queues a reconcile: the scheduler runs it at once (202), and its operation shows in the
/// environment's operations.
#[utoipa::path(post, path = "/api/v1/repos/{owner}/{repo}/environments/{name}/reconcile",
    tag = "lifecycle",
    params(("owner" = String, Path), ("repo" = String, Path), ("name" = String, Path)),
    responses(
        (status = 202, description = "Queued: the scheduler runs `deploy` again with the last parameters", body = ReconcileQueued),
        (status = 400, description = "Not a repository name", body = ApiError),
        (status = 403, description = "A service token, a caller with no team here, or one who may only read", body = ApiError),
        (status = 404, description = "No such environment, or not one the caller may see", body = ApiError),
        (status = 409, description = "The environment is deleted", body = ApiError),
    ))]
async fn reconcile(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((owner, repo, name)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<ReconcileQueued>), ApiError> {
    let forbidden = |why: &str| ApiError::new(StatusCode::FORBIDDEN, why);
    let repo = RepoName::new(&owner, &repo)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "not a repository name"))?;
    // Who may ask is settled before anything is read.
    let login = caller
        .login()
        .ok_or_else(|| forbidden("a service token only reads; reconcile as a person"))?;
    let access = s.access(&caller, &repo).await;
    if !access.any() {
        return Err(forbidden(
            "you are in no team of this repository's platform.yaml",
        ));
    }
    let env = match s.store.environment(&repo, &name).await? {
        Some(e) if access.sees_team(&e.team) => e,
        _ => return Err(missing("environment")),
    };
    if !access.acts_for(&env.team) {
        return Err(forbidden(&format!(
            "only a member of {} or the platform team may reconcile it",
            env.team
        )));
    }
    if !env.state.is_live() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the environment is deleted: request it again instead",
        ));
    }
    let now = s.clock.now();
    crate::timers::ask_reconcile(s.store.as_ref(), &repo, &name, login, now).await?;
    s.lifecycle_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(ReconcileQueued {
            repository: repo.to_string(),
            environment: name.clone(),
            asked_by: login.to_string(),
            environment_url: format!("{}/api/v1/repos/{repo}/environments/{name}", s.public_url),
        }),
    ))
}
