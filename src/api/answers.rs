//! The shapes of the API's answers that are the API's own (the rest are the store's,
//! the Graph's and the Orchestrator's records). Handlers answer with these types and the
//! OpenAPI document (`/api/v1/openapi.json`) is generated from them, so the two cannot
//! drift apart.

use crate::graph::{Entity, Relation};
use crate::orchestrator::{PullRequestLink, RequestStatus};
use crate::store::{EnvironmentRecord, OperationRecord};
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

/// One environment with its last operations.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentDetail {
    pub environment: EnvironmentRecord,
    /// The deploy identity its type's runs get (SPEC 13), by name (never a secret), as the
    /// default branch's `platform.yaml` names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    pub operations: Vec<OperationRecord>,
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
