//! Operations: one row per (merge commit, environment, deploy/delete, attempt), with its
//! state, GitHub deployment, script pid, log, outputs, and which reports were made. Their
//! start and result are written fenced by the environment lock's holder and epoch.

use super::StoreError;
use crate::ids::{
    CommitSha, DeliveryId, DeploymentId, EnvName, Login, OperationId, PrNumber, RepoName, TeamName,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Deploy,
    Delete,
    /// `delete` run because `expiresAt` passed (SPEC 11).
    Expire,
    /// A schedule's `stop.sh`.
    Stop,
    /// A schedule's `start.sh`.
    Start,
    /// `deploy` run again with the last parameters, to undo drift.
    Reconcile,
    /// An environment brought from another tool (SPEC 15, `paved import ade`) entered the
    /// inventory as it is there: no script runs.
    Adopt,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Deploy => "deploy",
            OpKind::Delete => "delete",
            OpKind::Expire => "expire",
            OpKind::Stop => "stop",
            OpKind::Start => "start",
            OpKind::Reconcile => "reconcile",
            OpKind::Adopt => "adopt",
        }
    }
    pub fn parse(s: &str) -> Option<OpKind> {
        Some(match s {
            "deploy" => OpKind::Deploy,
            "delete" => OpKind::Delete,
            "expire" => OpKind::Expire,
            "stop" => OpKind::Stop,
            "start" => OpKind::Start,
            "reconcile" => OpKind::Reconcile,
            "adopt" => OpKind::Adopt,
            _ => return None,
        })
    }
    /// It takes the environment down (its inventory row ends `deleted`).
    pub fn removes(self) -> bool {
        matches!(self, OpKind::Delete | OpKind::Expire)
    }
    /// It (re)makes the environment with its parameters (`deploy.sh`; an adoption takes
    /// it as it is, with the same effect on the inventory).
    pub fn deploys(self) -> bool {
        matches!(self, OpKind::Deploy | OpKind::Reconcile | OpKind::Adopt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Recorded, not started.
    Planned,
    Running,
    Succeeded,
    Failed,
    /// The process running it died (crash, SIGKILL, restart) before it finished.
    Interrupted,
    /// Not run: its checks were not all green at merge time.
    Refused,
}

impl OpState {
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Planned => "planned",
            OpState::Running => "running",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
            OpState::Interrupted => "interrupted",
            OpState::Refused => "refused",
        }
    }
    pub fn parse(s: &str) -> Option<OpState> {
        Some(match s {
            "planned" => OpState::Planned,
            "running" => OpState::Running,
            "succeeded" => OpState::Succeeded,
            "failed" => OpState::Failed,
            "interrupted" => OpState::Interrupted,
            "refused" => OpState::Refused,
            _ => return None,
        })
    }
    /// Nothing more will run for it.
    pub fn is_final(self) -> bool {
        !matches!(self, OpState::Planned | OpState::Running)
    }
}

/// An operation to record for a merge. `(repo, merge_sha, env_name, kind, attempt)` is
/// unique: recording the same one twice returns the first one's id (that is what makes a
/// redelivered merge a no-op).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperation {
    pub repo: RepoName,
    pub env_name: EnvName,
    pub kind: OpKind,
    pub merge_sha: CommitSha,
    /// The pull request that asked for it; `None` for one the scheduler started with no
    /// pull request behind it (kept as 0 in the database).
    pub pr: Option<PrNumber>,
    /// 1 for the first try; an interrupted operation is retried as attempt + 1.
    pub attempt: u32,
    /// The webhook delivery it was planned from; `None` for the scheduler's and previews'
    /// (kept as an empty string in the database).
    pub delivery_id: Option<DeliveryId>,
    /// What set off an operation no merge asked for (`expire@2026-12-31T00:00:00Z`,
    /// `stop@2026-12-03`, `reconcile@<time>`); empty for a merge's. Part of its identity, so
    /// the stop of each day is its own operation even when the commit is the same.
    pub cause: String,
    pub team: TeamName,
    pub owner: Login,
    pub env_type: String,
    pub definition: String,
    /// `environments/<team>/<name>.yaml`.
    pub manifest_path: String,
    pub parameters: serde_json::Value,
    /// The PR author (`paved` for what the scheduler started on its own).
    pub requester: Login,
    /// Who merged, from the event; `None` for an operation no merge started (kept as an
    /// empty string in the database).
    pub merger: Option<Login>,
    pub approvers: Vec<Login>,
    /// The commit governance was read at (the merge commit's first parent).
    pub governance_sha: String,
    /// `[{"context": "paved/schema", "verdict": "pass", "description": "..."}]`.
    pub checks: serde_json::Value,
    /// `Planned`, or `Refused` for an operation recorded only to say it will not run.
    /// (The API shows it as `planned_state`, beside the operation's own `state`.)
    pub state: OpState,
    /// Why it was refused (for `Refused`).
    pub error: Option<String>,
}

/// Bits of [`OperationRecord::reported`]: which reports of a finished operation have been
/// made, so a retried delivery makes only the missing ones.
pub mod reported {
    /// The final deployment status was posted.
    pub const DEPLOYMENT: u32 = 1;
    /// The git note was written and pushed.
    pub const NOTE: u32 = 2;
    /// Creating the GitHub deployment was asked for (its id may not have been recorded:
    /// look for it before creating another).
    pub const DEPLOYMENT_REQUESTED: u32 = 4;
}

/// An operation as the store keeps it (the API answers with `api::answers::Operation`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    pub id: OperationId,
    pub op: NewOperation,
    pub state: OpState,
    /// The GitHub deployment made for it.
    pub deployment_id: Option<DeploymentId>,
    /// Process id (and process group id) of the running script.
    pub pid: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// Capped, secret-redacted output of the script.
    pub log: String,
    /// Outputs the run wrote, in ADE's shape. The store keeps the sensitive ones too; the
    /// API answers with the public ones only ([`public_outputs`]).
    pub outputs: serde_json::Value,
    pub reported: u32,
    pub created_at: String,
}

/// Who holds an environment's lock, and since when: the lock's epoch goes up each time it
/// changes hands. Writes of an operation's results carry it, and are made only while the
/// lock is still held by that holder at that epoch ("fencing"): a replica that lost its lock
/// while a script ran can never overwrite what the new holder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: i64,
}

/// How an operation ended, written with [`ProvisionStore::finish_operation`].
#[derive(Debug, Clone)]
pub struct Finish {
    /// `Succeeded` or `Failed`.
    pub state: OpState,
    pub error: Option<String>,
    pub log: String,
    pub outputs: serde_json::Value,
}

/// A change to an operation.
#[derive(Debug, Clone)]
pub enum OperationUpdate {
    /// The script's process id, once it is known (only while the operation runs).
    Pid(i64),
    DeploymentCreated(DeploymentId),
    /// A running operation → `Succeeded`, `Failed` or `Interrupted`, without a fence: for
    /// the replica that took over a dead one's lock (it marks the run it found
    /// `Interrupted`). A run's own result goes through [`ProvisionStore::finish_operation`].
    Finished {
        state: OpState,
        error: Option<String>,
        log: String,
        outputs: serde_json::Value,
    },
    /// OR these [`reported`] bits into `reported`.
    Reported(u32),
}

#[async_trait]
pub trait OperationStore: Send + Sync + 'static {
    /// Records an operation, or returns the id of the identical one recorded before.
    /// The bool is true when this call created it.
    async fn plan_operation(&self, op: NewOperation) -> Result<(OperationId, bool), StoreError>;
    async fn operation(&self, id: OperationId) -> Result<Option<OperationRecord>, StoreError>;
    /// Every operation recorded for a merge commit, by id.
    async fn operations_for_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    /// An environment's operations, newest first, at most `limit`.
    /// The last operation of each of `repo`'s environments, with its log left out (for
    /// the graph: who requested, approved and merged what is live).
    async fn latest_operations(&self, repo: &RepoName) -> Result<Vec<OperationRecord>, StoreError>;
    /// `repo`'s operations that have not finished (planned or running), oldest first,
    /// without their logs: what an operator looks at for stuck work.
    async fn unfinished_operations(
        &self,
        repo: &RepoName,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    /// One operation with its log left out.
    async fn operation_without_log(
        &self,
        id: OperationId,
    ) -> Result<Option<OperationRecord>, StoreError>;
    async fn operations_for_environment(
        &self,
        repo: &RepoName,
        env_name: &str,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    async fn update_operation(
        &self,
        id: OperationId,
        update: OperationUpdate,
    ) -> Result<(), StoreError>;
    /// `Planned` → `Running` under `fence` (recorded on the operation), with the inventory
    /// row `env`, in one transaction, only while `fence` still holds the environment's lock.
    /// `false`: the lock changed hands, or the operation is no longer planned; nothing was
    /// written.
    async fn start_operation(
        &self,
        id: OperationId,
        fence: &Fence,
        env: super::EnvironmentUpdate,
    ) -> Result<bool, StoreError>;
    /// A running operation's result, its inventory row and (when given) its `ADE_STORAGE`,
    /// in one transaction, only while the operation is running under `fence` and `fence`
    /// still holds the environment's lock. `false`: fenced off; nothing was written.
    async fn finish_operation(
        &self,
        id: OperationId,
        fence: &Fence,
        finish: Finish,
        env: super::EnvironmentUpdate,
        storage: Option<Vec<u8>>,
    ) -> Result<bool, StoreError>;
}

pub(super) const PLAN: &str =
    "INSERT INTO operations (repo, env_name, kind, merge_sha, pr, attempt, \
     delivery_id, team, owner, env_type, definition, manifest_path, parameters, \
     requester, merger, approvers, governance_sha, checks, state, error, \
     started_at, finished_at, created_at, cause) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
     $16, $17, $18, $19, $20, \
     CASE WHEN $21 THEN paved_now_ms() END, CASE WHEN $21 THEN paved_now_ms() END, \
     paved_now_ms(), $22) \
     ON CONFLICT (repo, merge_sha, env_name, kind, cause, attempt) DO NOTHING \
     RETURNING id";
/// Every column [`super::rows::operation_from_row`] reads, the log read as empty: for
/// lists where logs (up to `runner.output_limit` each) are not shown.
macro_rules! columns_without_log {
    () => {
        "id, repo, env_name, kind, merge_sha, pr, attempt, delivery_id, team, owner, \
         env_type, definition, manifest_path, parameters, requester, merger, approvers, \
         governance_sha, checks, state, deployment_id, pid, started_at, finished_at, error, \
         '' AS log, outputs, reported, created_at, cause"
    };
}
/// The last operation of each of a repository's environments, logs left out.
pub(super) const LATEST: &str = concat!(
    "SELECT ",
    columns_without_log!(),
    " FROM operations \
     WHERE id IN (SELECT last_operation FROM environments WHERE repo = $1) ORDER BY id"
);
/// A repository's operations not finished (planned or running), oldest first, logs left out.
pub(super) const UNFINISHED: &str = concat!(
    "SELECT ",
    columns_without_log!(),
    " FROM operations WHERE repo = $1 AND state IN ('planned', 'running') ORDER BY id"
);
/// One operation, its log left out.
pub(super) const ONE_WITHOUT_LOG: &str = concat!(
    "SELECT ",
    columns_without_log!(),
    " FROM operations WHERE id = $1"
);
pub(super) const PLANNED_ID: &str = "SELECT id FROM operations WHERE repo = $1 AND merge_sha = $2 \
     AND env_name = $3 AND kind = $4 AND attempt = $5 AND cause = $6";
pub(super) const SET_PID: &str =
    "UPDATE operations SET pid = $2 WHERE id = $1 AND state = 'running'";
pub(super) const SET_DEPLOYMENT: &str = "UPDATE operations SET deployment_id = $2 WHERE id = $1";
pub(super) const FINISH_UNFENCED: &str =
    "UPDATE operations SET state = $2, error = $3, log = $4, outputs = $5, \
     finished_at = paved_now_ms() WHERE id = $1 AND state = 'running'";
pub(super) const SET_REPORTED: &str =
    "UPDATE operations SET reported = reported | $2 WHERE id = $1";
pub(super) const STATE_OF: &str = "SELECT state FROM operations WHERE id = $1";
/// The lock row is locked (FOR SHARE) so it cannot change hands before the commit.
pub(super) const START: &str =
    "UPDATE operations SET state = 'running', started_at = paved_now_ms(), \
     holder = $2, lease_epoch = $3 WHERE id = $1 AND state = 'planned' AND EXISTS ( \
       SELECT 1 FROM env_locks WHERE repo = $4 AND name = $5 \
       AND holder = $2 AND epoch = $3 FOR SHARE)";
pub(super) const FINISH: &str =
    "UPDATE operations SET state = $2, error = $3, log = $4, outputs = $5, \
     finished_at = paved_now_ms() WHERE id = $1 AND state = 'running' \
     AND holder = $6 AND lease_epoch = $7 AND EXISTS ( \
       SELECT 1 FROM env_locks WHERE repo = $8 AND name = $9 \
       AND holder = $6 AND epoch = $7 FOR SHARE)";

/// An [`OperationUpdate`] as a statement: (SQL, what the row must be for it to apply,
/// arguments after `$1 = id`).
pub(super) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

pub(super) fn update_statement(
    id: OperationId,
    update: OperationUpdate,
) -> Result<(&'static str, &'static str, Vec<Arg>), StoreError> {
    use super::rows::{invalid, to_i64, to_json};
    Ok(match update {
        OperationUpdate::Pid(pid) => (
            SET_PID,
            "only a running operation has a script",
            vec![Arg::Int(Some(pid))],
        ),
        OperationUpdate::DeploymentCreated(d) => (
            SET_DEPLOYMENT,
            "",
            vec![Arg::Int(Some(to_i64(d.0, "deployment id")?))],
        ),
        OperationUpdate::Finished {
            state,
            error,
            log,
            outputs,
        } => {
            if !matches!(
                state,
                OpState::Succeeded | OpState::Failed | OpState::Interrupted
            ) {
                return Err(invalid(format!(
                    "operation {id} cannot finish as {}",
                    state.as_str()
                )));
            }
            (
                FINISH_UNFENCED,
                "only a running operation can finish",
                vec![
                    Arg::Text(Some(state.as_str().to_owned())),
                    Arg::Text(error),
                    Arg::Text(Some(log)),
                    Arg::Text(Some(to_json(&outputs, "outputs")?)),
                ],
            )
        }
        OperationUpdate::Reported(bits) => {
            (SET_REPORTED, "", vec![Arg::Int(Some(i64::from(bits)))])
        }
    })
}

/// Why an update changed nothing: the id is unknown, or its state forbids it.
pub(super) fn unchanged(id: OperationId, state: Option<String>, wanted: &str) -> StoreError {
    use super::rows::invalid;
    match state {
        None => invalid(format!("operation {id} does not exist")),
        Some(s) if wanted.is_empty() => invalid(format!("operation {id} ({s}) was not changed")),
        Some(s) => invalid(format!("operation {id} is {s}; {wanted}")),
    }
}

/// The columns a [`NewOperation`] is planned with, encoded.
pub(super) struct OpRow {
    pub pr: i64,
    pub parameters: String,
    pub approvers: String,
    pub checks: String,
}

impl OpRow {
    pub(super) fn of(op: &NewOperation) -> Result<OpRow, StoreError> {
        use super::rows::{invalid, to_i64, to_json};
        if !matches!(op.state, OpState::Planned | OpState::Refused) {
            return Err(invalid(format!(
                "an operation is planned as planned or refused, not {}",
                op.state.as_str()
            )));
        }
        Ok(OpRow {
            pr: to_i64(op.pr.map_or(0, |p| p.0), "pull request number")?,
            parameters: to_json(&op.parameters, "parameters")?,
            approvers: to_json(&op.approvers, "approvers")?,
            checks: to_json(&op.checks, "checks")?,
        })
    }
}

/// [`OperationStore`] for a store with `reader()` and `write()`, in the dialect `$sql`.
macro_rules! impl_operation_store {
    ($store:ty, $sql:path) => {
        #[async_trait::async_trait]
        impl $crate::store::OperationStore for $store {
            async fn plan_operation(
                &self,
                op: $crate::store::NewOperation,
            ) -> Result<($crate::ids::OperationId, bool), $crate::store::StoreError> {
                use $crate::store::operations as o;
                let row = o::OpRow::of(&op)?;
                self.write(move |conn| {
                    Box::pin(async move {
                        // A refused operation is final at once ($21).
                        let q = $sql(o::PLAN);
                        let new: Option<i64> = sqlx::query_scalar(&q)
                            .bind(op.repo.to_string())
                            .bind(op.env_name.as_str())
                            .bind(op.kind.as_str())
                            .bind(op.merge_sha.as_str())
                            .bind(row.pr)
                            .bind(i64::from(op.attempt))
                            .bind(op.delivery_id.as_ref().map_or("", |d| d.as_str()))
                            .bind(op.team.as_str())
                            .bind(op.owner.as_str())
                            .bind(&op.env_type)
                            .bind(&op.definition)
                            .bind(&op.manifest_path)
                            .bind(&row.parameters)
                            .bind(op.requester.as_str())
                            .bind(op.merger.as_ref().map_or("", |m| m.as_str()))
                            .bind(&row.approvers)
                            .bind(&op.governance_sha)
                            .bind(&row.checks)
                            .bind(op.state.as_str())
                            .bind(&op.error)
                            .bind(op.state == $crate::store::OpState::Refused)
                            .bind(&op.cause)
                            .fetch_optional(&mut *conn)
                            .await?;
                        if let Some(id) = new {
                            return Ok(($crate::ids::OperationId(id), true));
                        }
                        // A statement of its own: under READ COMMITTED it sees the row a
                        // concurrent replica committed (the INSERT above waited for that
                        // commit to find the conflict).
                        let q = $sql(o::PLANNED_ID);
                        let id: i64 = sqlx::query_scalar(&q)
                            .bind(op.repo.to_string())
                            .bind(op.merge_sha.as_str())
                            .bind(op.env_name.as_str())
                            .bind(op.kind.as_str())
                            .bind(i64::from(op.attempt))
                            .bind(&op.cause)
                            .fetch_one(&mut *conn)
                            .await?;
                        Ok(($crate::ids::OperationId(id), false))
                    })
                })
                .await
            }

            async fn operation(
                &self,
                id: $crate::ids::OperationId,
            ) -> Result<Option<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql(concat!(
                    "SELECT ",
                    $crate::store::rows::op_columns!(),
                    " FROM operations WHERE id = $1"
                ));
                let row = sqlx::query(&q)
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref()
                    .map($crate::store::rows::operation_from_row)
                    .transpose()
            }

            async fn operations_for_merge(
                &self,
                repo: &$crate::ids::RepoName,
                merge_sha: &$crate::ids::CommitSha,
            ) -> Result<Vec<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql(concat!(
                    "SELECT ",
                    $crate::store::rows::op_columns!(),
                    " FROM operations WHERE repo = $1 AND merge_sha = $2 ORDER BY id"
                ));
                let rows = sqlx::query(&q)
                    .bind(repo.to_string())
                    .bind(merge_sha.as_str())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map($crate::store::rows::operation_from_row)
                    .collect()
            }

            async fn latest_operations(
                &self,
                repo: &$crate::ids::RepoName,
            ) -> Result<Vec<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::operations::LATEST);
                let rows = sqlx::query(&q)
                    .bind(repo.to_string())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map($crate::store::rows::operation_from_row)
                    .collect()
            }

            async fn unfinished_operations(
                &self,
                repo: &$crate::ids::RepoName,
            ) -> Result<Vec<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::operations::UNFINISHED);
                let rows = sqlx::query(&q)
                    .bind(repo.to_string())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map($crate::store::rows::operation_from_row)
                    .collect()
            }

            async fn operation_without_log(
                &self,
                id: $crate::ids::OperationId,
            ) -> Result<Option<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql($crate::store::operations::ONE_WITHOUT_LOG);
                let row = sqlx::query(&q)
                    .bind(id.0)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref()
                    .map($crate::store::rows::operation_from_row)
                    .transpose()
            }

            async fn operations_for_environment(
                &self,
                repo: &$crate::ids::RepoName,
                env_name: &str,
                limit: u32,
            ) -> Result<Vec<$crate::store::OperationRecord>, $crate::store::StoreError> {
                let q = $sql(concat!(
                    "SELECT ",
                    $crate::store::rows::op_columns!(),
                    " FROM operations WHERE repo = $1 AND env_name = $2 \
                     ORDER BY id DESC LIMIT $3"
                ));
                let rows = sqlx::query(&q)
                    .bind(repo.to_string())
                    .bind(env_name)
                    .bind(i64::from(limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map($crate::store::rows::operation_from_row)
                    .collect()
            }

            async fn update_operation(
                &self,
                id: $crate::ids::OperationId,
                update: $crate::store::OperationUpdate,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::operations as o;
                let (sql, wanted, args) = o::update_statement(id, update)?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let q = $sql(sql);
                        let mut query = sqlx::query(&q).bind(id.0);
                        for a in args {
                            query = match a {
                                o::Arg::Int(v) => query.bind(v),
                                o::Arg::Text(v) => query.bind(v),
                            };
                        }
                        if query.execute(&mut *conn).await?.rows_affected() == 0 {
                            let q = $sql(o::STATE_OF);
                            let state: Option<String> = sqlx::query_scalar(&q)
                                .bind(id.0)
                                .fetch_optional(&mut *conn)
                                .await?;
                            return Err(o::unchanged(id, state, wanted));
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn start_operation(
                &self,
                id: $crate::ids::OperationId,
                fence: &$crate::store::Fence,
                env: $crate::store::EnvironmentUpdate,
            ) -> Result<bool, $crate::store::StoreError> {
                use sqlx::Connection as _;
                use $crate::store::{inventory, operations as o};
                let fence = fence.clone();
                let env = inventory::EnvRow::of(&env)?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let mut tx = conn.begin().await?;
                        let q = $sql(o::START);
                        let started = sqlx::query(&q)
                            .bind(id.0)
                            .bind(&fence.holder)
                            .bind(fence.epoch)
                            .bind(&env.repo)
                            .bind(env.name.as_str())
                            .execute(&mut *tx)
                            .await?;
                        if started.rows_affected() == 0 {
                            return Ok(false);
                        }
                        let q = $sql(inventory::UPSERT_ENV);
                        inventory::bind_env!(sqlx::query(&q), env)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok(true)
                    })
                })
                .await
            }

            async fn finish_operation(
                &self,
                id: $crate::ids::OperationId,
                fence: &$crate::store::Fence,
                finish: $crate::store::Finish,
                env: $crate::store::EnvironmentUpdate,
                storage: Option<Vec<u8>>,
            ) -> Result<bool, $crate::store::StoreError> {
                use sqlx::Connection as _;
                use $crate::store::{inventory, operations as o, OpState};
                if !matches!(finish.state, OpState::Succeeded | OpState::Failed) {
                    return Err($crate::store::rows::invalid(format!(
                        "operation {id} cannot finish as {}",
                        finish.state.as_str()
                    )));
                }
                let fence = fence.clone();
                let env = inventory::EnvRow::of(&env)?;
                let outputs = $crate::store::rows::to_json(&finish.outputs, "outputs")?;
                self.write(move |conn| {
                    Box::pin(async move {
                        let mut tx = conn.begin().await?;
                        let q = $sql(o::FINISH);
                        let done = sqlx::query(&q)
                            .bind(id.0)
                            .bind(finish.state.as_str())
                            .bind(&finish.error)
                            .bind(&finish.log)
                            .bind(&outputs)
                            .bind(&fence.holder)
                            .bind(fence.epoch)
                            .bind(&env.repo)
                            .bind(env.name.as_str())
                            .execute(&mut *tx)
                            .await?;
                        if done.rows_affected() == 0 {
                            return Ok(false);
                        }
                        let q = $sql(inventory::UPSERT_ENV);
                        inventory::bind_env!(sqlx::query(&q), env)
                            .execute(&mut *tx)
                            .await?;
                        if let Some(archive) = storage {
                            let q = $sql(inventory::SET_STORAGE);
                            sqlx::query(&q)
                                .bind(&env.repo)
                                .bind(env.name.as_str())
                                .bind(archive)
                                .execute(&mut *tx)
                                .await?;
                        }
                        tx.commit().await?;
                        Ok(true)
                    })
                })
                .await
            }
        }
    };
}
pub(super) use impl_operation_store;
