//! Row conversions and small helpers shared by the SQLite and PostgreSQL stores: both keep
//! the same columns (Unix-ms integers, JSON as text), so a record reads the same from either.

use super::{
    DeliveryRecord, DeliveryState, EnvState, EnvironmentRecord, EvaluationRecord, NewOperation,
    OpKind, OpState, OperationRecord, StoreError,
};
use crate::ids::{
    CommitSha, DeliveryId, DeploymentId, EnvName, EvaluationId, OperationId, PrNumber, RepoName,
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::collections::BTreeMap;

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is negative")))
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_state(s: &str) -> Result<DeliveryState, StoreError> {
    Ok(match s {
        "pending" => DeliveryState::Pending,
        "running" => DeliveryState::Running,
        "done" => DeliveryState::Done,
        "failed" => DeliveryState::Failed,
        other => return Err(StoreError::Corrupt(format!("delivery state {other:?}"))),
    })
}

/// The columns [`operation_from_row`] reads, in `SELECT` order (a literal, for `concat!`).
macro_rules! op_columns {
    () => {
        "id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id, team, \
         owner, env_type, definition, manifest_path, parameters, requester, merger, approvers, \
         governance_sha, checks, state, deployment_id, pid, started_at, finished_at, error, log, \
         outputs, reported, created_at, cause"
    };
}
pub(super) use op_columns;
pub(super) const OP_COLUMNS: &str = op_columns!();

/// The columns [`environment_from_row`] reads (not `storage`: it can be large).
macro_rules! env_columns {
    () => {
        "repo, name, team, owner, env_type, definition, state, parameters, \
         outputs, last_operation, updated_at, drift, drift_summary, drift_checked_at, \
         drift_issue, governed_sha, code_sha, generation, generation_since"
    };
}
pub(super) use env_columns;

/// What the store was asked to do cannot be done (there is no better-fitting variant).
/// A name kept as text ([`EnvName`], [`TeamName`], [`Login`]), checked on the way out as
/// on the way in: a row that breaks the rule is corrupt.
pub(super) fn name_of<T: std::str::FromStr<Err = crate::ids::NameError>>(
    s: String,
) -> Result<T, StoreError> {
    s.parse()
        .map_err(|e: crate::ids::NameError| StoreError::Corrupt(e.to_string()))
}

/// A name kept as text, empty for none.
fn optional_name<T: std::str::FromStr<Err = crate::ids::NameError>>(
    s: String,
) -> Result<Option<T>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    name_of(s).map(Some)
}

/// A delivery id kept as text, empty for none.
fn optional_delivery(s: String) -> Result<Option<DeliveryId>, StoreError> {
    if s.is_empty() {
        return Ok(None);
    }
    DeliveryId::parse(&s)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn invalid(msg: String) -> StoreError {
    StoreError::Corrupt(msg)
}

pub(super) fn to_json(v: &impl serde::Serialize, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(
    s: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn op_state(s: &str) -> Result<OpState, StoreError> {
    OpState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("operation state {s:?}")))
}

pub(super) fn operation_from_row<'r, R>(r: &'r R) -> Result<OperationRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: i64 = r.try_get("id")?;
    let what = |field: &str| format!("operation {id} {field}");
    let kind: String = r.try_get("kind")?;
    let state = op_state(r.try_get::<&str, _>("state")?)?;
    let error: Option<String> = r.try_get("error")?;
    let attempt: i64 = r.try_get("attempt")?;
    let deployment_id: Option<i64> = r.try_get("deployment_id")?;
    let reported: i64 = r.try_get("reported")?;
    let started_at: Option<i64> = r.try_get("started_at")?;
    let finished_at: Option<i64> = r.try_get("finished_at")?;
    // Only the current state and error are stored; what was planned follows from them
    // (plan_operation accepts only `Planned`, or `Refused` with its reason).
    let (planned_state, planned_error) = if state == OpState::Refused {
        (OpState::Refused, error.clone())
    } else {
        (OpState::Planned, None)
    };
    let repo: String = r.try_get("repo")?;
    let merge_sha: String = r.try_get("merge_sha")?;
    Ok(OperationRecord {
        id: OperationId(id),
        op: NewOperation {
            repo: RepoName::parse(&repo).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            env_name: name_of(r.try_get("env_name")?)?,
            kind: OpKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("{} {kind:?}", what("kind"))))?,
            merge_sha: CommitSha::parse(&merge_sha)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            pr: Some(to_u64(r.try_get("pr")?, "pull request number")?)
                .filter(|&n| n > 0)
                .map(PrNumber),
            attempt: u32::try_from(attempt)
                .map_err(|_| StoreError::Corrupt(format!("{} {attempt}", what("attempt"))))?,
            delivery_id: optional_delivery(r.try_get("delivery_id")?)?,
            cause: r.try_get("cause")?,
            team: name_of(r.try_get("team")?)?,
            owner: name_of(r.try_get("owner")?)?,
            env_type: r.try_get("env_type")?,
            definition: r.try_get("definition")?,
            manifest_path: r.try_get("manifest_path")?,
            parameters: from_json(r.try_get("parameters")?, &what("parameters"))?,
            requester: name_of(r.try_get("requester")?)?,
            merger: optional_name(r.try_get("merger")?)?,
            approvers: from_json(r.try_get("approvers")?, &what("approvers"))?,
            governance_sha: r.try_get("governance_sha")?,
            checks: from_json(r.try_get("checks")?, &what("checks"))?,
            state: planned_state,
            error: planned_error,
        },
        state,
        deployment_id: deployment_id
            .map(|d| to_u64(d, "deployment id").map(DeploymentId))
            .transpose()?,
        pid: r.try_get("pid")?,
        started_at: started_at.map(format_ms),
        finished_at: finished_at.map(format_ms),
        error,
        log: r.try_get("log")?,
        outputs: from_json(r.try_get("outputs")?, &what("outputs"))?,
        reported: u32::try_from(reported)
            .map_err(|_| StoreError::Corrupt(format!("{} {reported}", what("reported"))))?,
        created_at: format_ms(r.try_get("created_at")?),
    })
}

pub(super) fn environment_from_row<'r, R>(r: &'r R) -> Result<EnvironmentRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
{
    let repo = RepoName::parse(&r.try_get::<String, _>("repo")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let name: EnvName = name_of(r.try_get("name")?)?;
    let what = |field: &str| format!("environment {repo}/{name} {field}");
    let state: String = r.try_get("state")?;
    Ok(EnvironmentRecord {
        team: name_of(r.try_get("team")?)?,
        owner: name_of(r.try_get("owner")?)?,
        env_type: r.try_get("env_type")?,
        definition: r.try_get("definition")?,
        state: EnvState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("{} {state:?}", what("state"))))?,
        parameters: from_json(r.try_get("parameters")?, &what("parameters"))?,
        outputs: from_json(r.try_get("outputs")?, &what("outputs"))?,
        last_operation: r
            .try_get::<Option<i64>, _>("last_operation")?
            .map(OperationId),
        updated_at: format_ms(r.try_get("updated_at")?),
        governed_sha: r.try_get("governed_sha")?,
        code_sha: r.try_get("code_sha")?,
        generation: r.try_get("generation")?,
        generation_since: r
            .try_get::<Option<i64>, _>("generation_since")?
            .map(OperationId),
        drift: match r.try_get::<Option<String>, _>("drift")? {
            None => None,
            Some(d) => Some(crate::store::Drift {
                state: crate::store::DriftState::parse(&d)
                    .ok_or_else(|| StoreError::Corrupt(format!("{} {d:?}", what("drift"))))?,
                summary: r.try_get("drift_summary")?,
                checked_at: format_ms(
                    r.try_get::<Option<i64>, _>("drift_checked_at")?
                        .unwrap_or(0),
                ),
                issue: r
                    .try_get::<Option<i64>, _>("drift_issue")?
                    .map(|i| to_u64(i, "drift issue"))
                    .transpose()?,
            }),
        },
        repo,
        name,
    })
}

/// A delivery as the API shows it (columns: id, event, action, queue_key, state, attempts,
/// last_error, received_at).
pub(super) fn delivery_from_row<'r, R>(r: &'r R) -> Result<DeliveryRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let state: String = r.try_get("state")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(DeliveryRecord {
        id: r.try_get("id")?,
        event: r.try_get("event")?,
        action: r.try_get("action")?,
        queue_key: r.try_get("queue_key")?,
        state: parse_state(&state)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        last_error: r.try_get("last_error")?,
        received_at: format_ms(r.try_get("received_at")?),
    })
}

/// A check run (columns: id, repo, pr, head_sha, base_sha, delivery_id, report, created_at).
pub(super) fn run_from_row<'r, R>(r: &'r R) -> Result<EvaluationRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: i64 = r.try_get("id")?;
    let report: String = r.try_get("report")?;
    Ok(EvaluationRecord {
        id: EvaluationId(id),
        repo: r.try_get("repo")?,
        pr: to_u64(r.try_get("pr")?, "pull request number")?,
        head_sha: r.try_get("head_sha")?,
        base_sha: r.try_get("base_sha")?,
        delivery_id: r.try_get("delivery_id")?,
        report: serde_json::from_str(&report)
            .map_err(|e| StoreError::Corrupt(format!("run {id} report: {e}")))?,
        created_at: format_ms(r.try_get("created_at")?),
    })
}

/// Deliveries per state, every state present (zero when there are none).
pub(super) fn counts_by_state(
    rows: Vec<(String, i64)>,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out: BTreeMap<String, u64> = [
        DeliveryState::Pending,
        DeliveryState::Running,
        DeliveryState::Done,
        DeliveryState::Failed,
    ]
    .into_iter()
    .map(|s| (s.as_str().to_owned(), 0))
    .collect();
    for (state, n) in rows {
        out.insert(state, to_u64(n, "count")?);
    }
    Ok(out)
}
