//! The shapes of the API's answers. Store records are not wire types: each handler
//! converts what it read into one of these at the edge (where sensitive outputs are left
//! behind), and the OpenAPI document (`/api/v1/openapi.json`) is generated from them, so
//! the two cannot drift apart. The Graph's entities and the Orchestrator's request status
//! are answers of their own rooms.

use crate::graph::{Entity, Relation};
use crate::ids::{CommitSha, DeploymentId, EnvName, Login, OperationId, RepoName, TeamName};
use crate::orchestrator::{PullRequestLink, RequestStatus};
use crate::store::{
    public_outputs, Drift, EnvState, EnvironmentRecord, OpKind, OpState, OperationRecord,
};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::problem::FieldError;
/// Every refusal: problem details (RFC 9457), `application/problem+json`.
pub use crate::problem::Problem as ApiError;

/// A pre-flight problem as the API shows it.
impl From<crate::orchestrator::Problem> for FieldError {
    fn from(p: crate::orchestrator::Problem) -> FieldError {
        FieldError {
            file: Some(p.file),
            field: p.field,
            line: p.line,
            message: p.message,
            check: Some(p.check),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    /// A GitHub user, by a GitHub token.
    User,
    /// A service token from `[[api.tokens]]`.
    Service,
}

/// `GET /api/v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub kind: CallerKind,
    /// The GitHub login (`null` for a service token).
    pub login: Option<String>,
    /// The login, or the service token's name.
    pub name: String,
    /// The caller's roles (`member:<team>`, `admin`, `auditor`, `reader`) by repository.
    pub repositories: BTreeMap<String, Vec<String>>,
}

/// An environment in the inventory, as the API shows it: public outputs only.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Environment {
    /// `owner/repo`.
    pub repo: RepoName,
    pub name: EnvName,
    pub team: TeamName,
    pub owner: Login,
    pub env_type: String,
    pub definition: String,
    pub state: EnvState,
    /// The parameters of the last deploy (JSON object).
    pub parameters: serde_json::Value,
    /// The public outputs of the last successful deploy, in ADE's shape
    /// (`{"name": {"type": ..., "value": ...}}`); sensitive ones never leave the database.
    pub outputs: serde_json::Value,
    /// Id of the last operation on this environment.
    pub last_operation: Option<OperationId>,
    /// RFC 3339: when the inventory last changed it.
    pub updated_at: String,
    /// The last drift check (SPEC 11); `null` until one ran.
    pub drift: Option<Drift>,
    /// Which life of the name this is (SPEC 12): 1, then one more for each deploy after a
    /// successful delete.
    pub generation: i64,
}

impl From<&EnvironmentRecord> for Environment {
    fn from(e: &EnvironmentRecord) -> Environment {
        Environment {
            repo: e.repo.clone(),
            name: e.name.clone(),
            team: e.team.clone(),
            owner: e.owner.clone(),
            env_type: e.env_type.clone(),
            definition: e.definition.clone(),
            state: e.state,
            parameters: e.parameters.clone(),
            outputs: public_outputs(&e.outputs),
            last_operation: e.last_operation,
            updated_at: e.updated_at.clone(),
            drift: e.drift.clone(),
            generation: e.generation,
        }
    }
}

/// One operation on an environment (SPEC 5): who asked, which checks passed, how it ended,
/// its log (capped, redacted) and its public outputs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operation {
    pub id: OperationId,
    pub repo: RepoName,
    pub env_name: EnvName,
    pub kind: OpKind,
    /// The merge commit that asked for it (or the governed commit a scheduled one ran).
    pub merge_sha: CommitSha,
    /// The pull request (0: none, for an operation the scheduler started).
    pub pr: u64,
    /// 1 for the first try; an interrupted operation is retried as attempt + 1.
    pub attempt: u32,
    /// The webhook delivery that asked for it (empty: none).
    pub delivery_id: String,
    /// What set off an operation no merge asked for (`expire@…`, `stop@…`,
    /// `reconcile@…`); empty for a merge's.
    pub cause: String,
    pub team: TeamName,
    pub owner: Login,
    pub env_type: String,
    pub definition: String,
    /// `environments/<team>/<name>.yaml`.
    pub manifest_path: String,
    pub parameters: serde_json::Value,
    /// The pull request's author (`paved` for what the scheduler started on its own).
    pub requester: Login,
    /// Who merged.
    pub merger: String,
    pub approvers: Vec<Login>,
    /// The commit governance was read at.
    pub governance_sha: String,
    /// `[{"context": "paved/schema", "verdict": "pass", "description": "..."}]`.
    pub checks: serde_json::Value,
    /// `planned`, or `refused` for an operation recorded only to say it will not run.
    pub planned_state: OpState,
    /// Why it was refused.
    pub refusal: Option<String>,
    pub state: OpState,
    /// The GitHub deployment made for it.
    pub deployment_id: Option<DeploymentId>,
    /// Process id of the script while it runs.
    pub pid: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// Capped, secret-redacted output of the run.
    pub log: String,
    /// Its public outputs, in ADE's shape; sensitive ones never leave the database.
    pub outputs: serde_json::Value,
    /// Which of its reports were made (bits: deployment status, note, …).
    pub reported: u32,
    pub created_at: String,
    /// Its audit note is queued and not on the origin yet (the notes outbox pushes it;
    /// `paved audit` shows it once it lands).
    pub note_pending: bool,
}

impl Operation {
    /// The operation as the API shows it; `note_pending` as the outbox says.
    pub fn new(r: &OperationRecord, note_pending: bool) -> Operation {
        let op = &r.op;
        Operation {
            id: r.id,
            repo: op.repo.clone(),
            env_name: op.env_name.clone(),
            kind: op.kind,
            merge_sha: op.merge_sha.clone(),
            pr: op.pr.map_or(0, |p| p.0),
            attempt: op.attempt,
            delivery_id: op
                .delivery_id
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            cause: op.cause.clone(),
            team: op.team.clone(),
            owner: op.owner.clone(),
            env_type: op.env_type.clone(),
            definition: op.definition.clone(),
            manifest_path: op.manifest_path.clone(),
            parameters: op.parameters.clone(),
            requester: op.requester.clone(),
            merger: op
                .merger
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            approvers: op.approvers.clone(),
            governance_sha: op.governance_sha.clone(),
            checks: op.checks.clone(),
            planned_state: op.state,
            refusal: op.error.clone(),
            state: r.state,
            deployment_id: r.deployment_id,
            pid: r.pid,
            started_at: r.started_at.clone(),
            finished_at: r.finished_at.clone(),
            error: r.error.clone(),
            log: r.log.clone(),
            outputs: public_outputs(&r.outputs),
            reported: r.reported,
            created_at: r.created_at.clone(),
            note_pending,
        }
    }
}

/// One environment with its last operations.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentDetail {
    pub environment: Environment,
    /// The deploy identity its type's runs get (SPEC 13), by name (never a secret), as the
    /// default branch's `platform.yaml` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub operations: Vec<Operation>,
    /// What the scheduler will do next for it, soonest first (SPEC 11).
    pub upcoming: Vec<Upcoming>,
}

/// One thing due for an environment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upcoming {
    /// `warn`, `expire`, `stop`, `start`, `drift` (the next check) or `reconcile`.
    pub kind: String,
    /// RFC 3339, by the scheduler's clock.
    pub due_at: String,
    /// What it is for: the `expiresAt` of an expiry and its warning, the local day of a
    /// stop or start.
    pub cause: String,
}

/// A reconcile queued for the scheduler.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileQueued {
    pub repository: String,
    pub environment: String,
    pub asked_by: String,
    /// Where its operation will show.
    pub environment_url: String,
}

/// A catalog definition on a default branch, as a form is made from it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// `template:owner/repo/name`.
    pub id: String,
    pub repository: String,
    pub name: String,
    pub title: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// `script` or `terraform`.
    pub runner: String,
    /// The parameters as a JSON Schema (draft 2020-12).
    pub parameters: serde_json::Value,
    /// The environment types that allow it.
    pub environment_types: Vec<String>,
}

/// One entity with the relations that point at it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityDetail {
    pub entity: Entity,
    /// Relations of other entities to this one (`target` is the other entity).
    pub incoming: Vec<Relation>,
}

/// A node of `GET /api/v1/graph`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub team: Option<String>,
}

/// An edge of `GET /api/v1/graph`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Edge {
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
}

/// `GET /api/v1/graph`.
#[derive(Debug, Serialize, ToSchema)]
pub struct GraphAnswer {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// `201` of `POST /api/v1/requests`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOpened {
    pub id: i64,
    /// Where it can be followed (`GET /api/v1/requests/{id}`).
    pub url: String,
    pub branch: String,
    pub pull_request: PullRequestLink,
}

/// Where a request's parts are.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestLinks {
    #[serde(rename = "self")]
    pub this: String,
    pub pull_request: Option<String>,
    pub environment: String,
}

/// `GET /api/v1/requests/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestAnswer {
    #[serde(flatten)]
    pub status: RequestStatus,
    pub links: RequestLinks,
}

/// `GET /api/v1/runs/{id}`: one evaluation and its report (the store's record, as the API
/// shows it).
#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluation {
    pub id: crate::ids::EvaluationId,
    pub repo: String,
    pub pr: u64,
    pub head_sha: String,
    pub base_sha: String,
    pub delivery_id: String,
    pub report: serde_json::Value,
    pub created_at: String,
}

impl From<crate::store::EvaluationRecord> for Evaluation {
    fn from(r: crate::store::EvaluationRecord) -> Evaluation {
        Evaluation {
            id: r.id,
            repo: r.repo,
            pr: r.pr,
            head_sha: r.head_sha,
            base_sha: r.base_sha,
            delivery_id: r.delivery_id,
            report: r.report,
            created_at: r.created_at,
        }
    }
}

/// `GET /api/v1/deliveries/{id}`: how a delivery was processed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub queue_key: String,
    pub state: crate::store::DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub received_at: String,
}

impl From<crate::store::DeliveryRecord> for Delivery {
    fn from(d: crate::store::DeliveryRecord) -> Delivery {
        Delivery {
            id: d.id,
            event: d.event,
            action: d.action,
            queue_key: d.queue_key,
            state: d.state,
            attempts: d.attempts,
            last_error: d.last_error,
            received_at: d.received_at,
        }
    }
}
