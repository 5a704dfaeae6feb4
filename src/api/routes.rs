//! The `/api/v1` routes over what Paved keeps, each scoped to what the caller may see
//! (see [`crate::identity::roles`]). A thing the caller may not see gets the very answer a
//! missing one gets.

use super::answers::{
    ApiError, CallerKind, Delivery, Environment, EnvironmentDetail, Evaluation, Me, Operation,
    Upcoming,
};
use super::ApiState;
use crate::identity::{Access, Caller};
use crate::ids::{CommitSha, DeliveryId, EvaluationId, OperationId, RepoName};
use crate::store::{
    public_outputs, EnvironmentRecord, OperationRecord, StoreError, Timer, TimerKind,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(evaluation))
        .routes(routes!(delivery))
        .routes(routes!(environments))
        .routes(routes!(repo_environments))
        .routes(routes!(environment))
        .routes(routes!(merge))
        .routes(routes!(operation))
}

/// The one answer to a store that failed: 503, with what it hides in the log (every arm
/// that answers 503 goes through here, or through `?` on a [`StoreError`]).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "reading the store");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    }
}

/// What a thing that is not there, or not the caller's to see, gets.
pub(super) fn missing(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no such {what}"))
}

fn bad(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

/// What the API shows of operations: sensitive outputs never leave the database.
/// `note_pending` of each finished operation: whether its audit note still waits in the
/// outbox. Unknown (the store failed) reads as not pending: the note's own record is Git.
async fn answer_operations(s: &ApiState, ops: &[&OperationRecord]) -> Vec<Operation> {
    let mut out = Vec::new();
    for op in ops {
        let pending = op.reported & crate::store::reported::NOTE != 0
            && s.store.note_pending(op.id).await.unwrap_or(false);
        out.push(Operation::new(op, pending));
    }
    out
}

/// An operation with its sensitive outputs left out, for the portal's pages.
pub(crate) fn public_operation(mut op: OperationRecord) -> OperationRecord {
    op.outputs = public_outputs(&op.outputs);
    op
}

/// An environment's timers still to fall due, soonest first, as the API shows them (the
/// portal shows the same, by kind).
pub(crate) fn upcoming_of(mut timers: Vec<Timer>) -> Vec<(TimerKind, Upcoming)> {
    timers.retain(|t| t.due_at.is_some());
    timers.sort_by_key(|t| t.due_at);
    timers
        .into_iter()
        .filter_map(|t| {
            let due = chrono::DateTime::from_timestamp_millis(t.due_at?)?;
            Some((
                t.kind,
                Upcoming {
                    kind: t.kind.as_str().to_string(),
                    due_at: due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    cause: t.cause,
                },
            ))
        })
        .collect()
}

/// The repository of a stored name (`owner/repo`), or of a queue key (`owner/repo#7`,
/// `owner/repo@push`).
pub(crate) fn repo_of(s: &str) -> Option<RepoName> {
    let end = s.find(['#', '@']).unwrap_or(s.len());
    RepoName::parse(&s[..end]).ok()
}

/// Who the caller is, and their roles in each repository Paved serves.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity",
    responses((status = 200, description = "The caller", body = Me)))]
async fn me(State(s): State<ApiState>, Extension(caller): Extension<Caller>) -> Json<Me> {
    let mut roles = BTreeMap::new();
    for repo in s.directory.served().await {
        let access = s.access(&caller, &repo).await;
        if access.any() {
            roles.insert(repo.to_string(), access.role_names());
        }
    }
    let (kind, name) = match &caller {
        Caller::User(l) => (CallerKind::User, l.clone()),
        Caller::Service(n) => (CallerKind::Service, n.clone()),
    };
    Json(Me {
        kind,
        login: caller.login().map(str::to_string),
        name,
        repositories: roles,
    })
}

/// Whether `access` sees a check run's report: it reads everything, or it is a member of
/// the team of one of the environments the report judges.
fn sees_run(access: &Access, report: &serde_json::Value) -> bool {
    access.reads_all()
        || report["environments"].as_array().is_some_and(|envs| {
            envs.iter()
                .filter_map(|e| e["team"].as_str())
                .any(|t| access.teams.contains(t))
        })
}

/// An evaluation's report (what the PR statuses link to; the path says `runs` as it did
/// when it was published): for whoever reads the whole repository, or a member of a team
/// whose environment it judges.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "audit",
    params(("id" = i64, Path, description = "The evaluation id a status links to")),
    responses(
        (status = 200, description = "The evaluation's report", body = Evaluation),
        (status = 400, description = "Not an evaluation id", body = ApiError),
        (status = 404, description = "No such evaluation, or not one the caller may see", body = ApiError),
    ))]
async fn evaluation(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Evaluation>, ApiError> {
    let id = id.parse::<i64>().map_err(|_| bad("run ids are numbers"))?;
    let r = s
        .store
        .evaluation(EvaluationId(id))
        .await?
        .ok_or_else(|| missing("run"))?;
    match repo_of(&r.repo) {
        Some(repo) if sees_run(&s.access(&caller, &repo).await, &r.report) => {
            Ok(Json(Evaluation::from(r)))
        }
        _ => Err(missing("run")),
    }
}

/// A delivery's processing record: for platform admins, auditors and service tokens.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "audit",
    params(("id" = String, Path, description = "GitHub's `X-GitHub-Delivery`")),
    responses(
        (status = 200, description = "How the delivery was processed", body = Delivery),
        (status = 400, description = "Not a delivery id", body = ApiError),
        (status = 404, description = "No such delivery, or not one the caller may see", body = ApiError),
    ))]
async fn delivery(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    let id = DeliveryId::parse(&id).map_err(|_| bad("not a delivery id"))?;
    let d = s
        .store
        .delivery(&id)
        .await?
        .ok_or_else(|| missing("delivery"))?;
    match repo_of(&d.queue_key) {
        Some(repo) if s.access(&caller, &repo).await.reads_all() => Ok(Json(Delivery::from(d))),
        _ => Err(missing("delivery")),
    }
}

/// Keeps the environments `caller` may see, with public outputs only.
pub(crate) async fn visible(
    s: &ApiState,
    caller: &Caller,
    list: Vec<EnvironmentRecord>,
) -> Vec<Environment> {
    let mut access: BTreeMap<RepoName, Access> = BTreeMap::new();
    let mut out = Vec::new();
    for e in list {
        if !access.contains_key(&e.repo) {
            let a = s.access(caller, &e.repo).await;
            access.insert(e.repo.clone(), a);
        }
        if access.get(&e.repo).is_some_and(|a| a.sees_team(&e.team)) {
            out.push(Environment::from(&e));
        }
    }
    out
}

/// The inventory of every repository, as far as the caller may see it.
#[utoipa::path(get, path = "/api/v1/environments", tag = "inventory",
    responses((status = 200, description = "Environments, public outputs only", body = Vec<Environment>)))]
async fn environments(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Environment>>, ApiError> {
    let list = s.store.environments(None).await?;
    Ok(Json(visible(&s, &caller, list).await))
}

/// The inventory of one repository, as far as the caller may see it.
#[utoipa::path(get, path = "/api/v1/repos/{owner}/{repo}/environments", tag = "inventory",
    params(("owner" = String, Path), ("repo" = String, Path)),
    responses(
        (status = 200, description = "Environments, public outputs only", body = Vec<Environment>),
        (status = 400, description = "Not a repository name", body = ApiError),
    ))]
async fn repo_environments(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((owner, repo)): Path<(String, String)>,
) -> Result<Json<Vec<Environment>>, ApiError> {
    let repo = RepoName::new(&owner, &repo).map_err(|_| bad("not a repository name"))?;
    let list = s.store.environments(Some(&repo)).await?;
    Ok(Json(visible(&s, &caller, list).await))
}

/// One environment with its last 20 operations.
#[utoipa::path(get, path = "/api/v1/repos/{owner}/{repo}/environments/{name}", tag = "inventory",
    params(("owner" = String, Path), ("repo" = String, Path), ("name" = String, Path)),
    responses(
        (status = 200, description = "The environment and its operations", body = EnvironmentDetail),
        (status = 400, description = "Not a repository name", body = ApiError),
        (status = 404, description = "No such environment, or not one the caller may see", body = ApiError),
    ))]
async fn environment(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((owner, repo, name)): Path<(String, String, String)>,
) -> Result<Json<EnvironmentDetail>, ApiError> {
    let repo = RepoName::new(&owner, &repo).map_err(|_| bad("not a repository name"))?;
    let env = match s.store.environment(&repo, &name).await? {
        Some(e) if s.access(&caller, &repo).await.sees_team(&e.team) => e,
        _ => return Err(missing("environment")),
    };
    let ops = s.store.operations_for_environment(&repo, &name, 20).await?;
    let timers = s.store.timers_of(&repo, &name).await?;
    let identity = identity_of_type(&s, &repo, &env.env_type).await;
    Ok(Json(EnvironmentDetail {
        identity,
        environment: Environment::from(&env),
        operations: answer_operations(&s, &ops.iter().filter(|o| env.owns(o)).collect::<Vec<_>>())
            .await,
        upcoming: upcoming_of(timers).into_iter().map(|(_, u)| u).collect(),
    }))
}

/// The operations of one merge commit (what `paved/provision` links to) the caller may see.
#[utoipa::path(get, path = "/api/v1/repos/{owner}/{repo}/merges/{sha}", tag = "audit",
    params(("owner" = String, Path), ("repo" = String, Path),
        ("sha" = String, Path, description = "The merge commit")),
    responses(
        (status = 200, description = "Its operations", body = Vec<Operation>),
        (status = 400, description = "Not a repository name and commit", body = ApiError),
    ))]
async fn merge(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
) -> Result<Json<Vec<Operation>>, ApiError> {
    let (Ok(repo), Ok(sha)) = (RepoName::new(&owner, &repo), CommitSha::parse(&sha)) else {
        return Err(bad("not a repository name and commit"));
    };
    let ops = s.store.operations_for_merge(&repo, &sha).await?;
    let access = s.access(&caller, &repo).await;
    let seen: Vec<&OperationRecord> = ops
        .iter()
        .filter(|op| access.sees_team(&op.op.team))
        .collect();
    Ok(Json(answer_operations(&s, &seen).await))
}

/// One operation: its checks, approvals, state and log.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "audit",
    params(("id" = i64, Path)),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 400, description = "Not an operation id", body = ApiError),
        (status = 404, description = "No such operation, or not one the caller may see", body = ApiError),
    ))]
async fn operation(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Operation>, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| bad("operation ids are numbers"))?;
    match s.store.operation(OperationId(id)).await? {
        Some(op) if s.access(&caller, &op.op.repo).await.sees_team(&op.op.team) => {
            let mut answer = answer_operations(&s, &[&op]).await;
            answer.pop().map(Json).ok_or_else(|| missing("operation"))
        }
        _ => Err(missing("operation")),
    }
}

/// The deploy identity environment type `env_type` names in `repo`'s default branch
/// (SPEC 13): a name, never a secret.
pub(crate) async fn identity_of_type(
    s: &ApiState,
    repo: &RepoName,
    env_type: &str,
) -> Option<String> {
    let (_, g) = s.directory.governance(repo).await?;
    g.platform()?
        .environment_types
        .get(env_type)?
        .identity
        .clone()
}
