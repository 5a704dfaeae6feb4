//! The database behind a trait. SQLite ([`sqlite::SqliteStore`]) is the embedded default;
//! PostgreSQL ([`postgres::PgStore`]) lets several replicas share one database, behind the
//! same trait, so nothing above this module knows which one it talks to.

pub mod postgres;
mod rows;
pub mod sqlite;

use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the store is shutting down")]
    Closed,
}

/// A webhook delivery whose signature has been verified, ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: DeliveryId,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: Option<String>,
    /// Deliveries with the same key are processed one at a time, in arrival order
    /// (e.g. `owner/repo#12` for everything about one pull request).
    pub queue_key: String,
    /// The exact bytes GitHub sent.
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored now; the worker will process it.
    New,
    /// This delivery id was stored before; nothing was changed.
    Duplicate,
}

/// A delivery claimed by a worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event: String,
    pub action: Option<String>,
    pub queue_key: String,
    pub body: Vec<u8>,
    /// How many times processing was started before, this one included.
    pub attempts: u32,
    /// When it was accepted (Unix milliseconds).
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Running,
    Done,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Running => "running",
            DeliveryState::Done => "done",
            DeliveryState::Failed => "failed",
        }
    }
}

/// How processing of a claimed delivery ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done,
    /// Permanent failure: kept with its error, not retried.
    Failed {
        error: String,
    },
    /// Transient failure: back to pending, not before `after`.
    Retry {
        error: String,
        after: std::time::Duration,
    },
}

/// What the API and tests can see of a delivery.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub queue_key: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub received_at: String,
}

/// One evaluation of a pull request's head: what `target_url` of each status points at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRun {
    pub repo: RepoName,
    pub pr: PrNumber,
    pub head_sha: CommitSha,
    pub base_sha: CommitSha,
    pub delivery_id: DeliveryId,
    /// The check report, as JSON (what the summary comment shows).
    pub report: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub repo: String,
    pub pr: u64,
    pub head_sha: String,
    pub base_sha: String,
    pub delivery_id: String,
    pub report: serde_json::Value,
    pub created_at: String,
}

#[async_trait]
pub trait Store: ProvisionStore {
    /// Makes a verified delivery durable (fsync'd) before returning. A delivery id seen
    /// before gives [`Accepted::Duplicate`] and changes nothing.
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError>;

    /// Claims the oldest pending delivery that is due and whose queue key has no delivery
    /// running, marking it running and counting the attempt. (A store shared by replicas
    /// leases it to this store, and also claims a delivery whose lease another replica
    /// let run out: see [`Store::renew_delivery_lease`].)
    async fn claim_delivery(&self) -> Result<Option<Delivery>, StoreError>;

    /// Records how processing of a claimed delivery ended. A store shared by replicas
    /// (PostgreSQL) commits it only while the delivery is still leased to this store: a
    /// replica whose lease ran out and was taken over changes nothing (logged, `Ok`).
    async fn finish_delivery(&self, id: &DeliveryId, outcome: Outcome) -> Result<(), StoreError>;

    /// Extends the lease on a delivery this store claimed and has not finished, so other
    /// replicas do not take it over while it is still being processed (call it well
    /// within the lease, e.g. every third of it). `false`: the lease was lost (it ran out
    /// and another replica claimed the delivery, or it is not running): stop working on
    /// it, its result will not be committed. A single-node store has no leases: `true`.
    async fn renew_delivery_lease(&self, _id: &DeliveryId) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// At start-up: deliveries left running by a crash go back to pending. (A store shared
    /// by replicas cannot tell a dead replica's deliveries from a live one's here; there
    /// they are claimed again when their lease runs out, and this returns 0.)
    async fn requeue_interrupted(&self) -> Result<u64, StoreError>;

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Number of deliveries in each state (for `/metrics` and tests).
    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;

    /// The id of the summary comment Paved keeps on a pull request, if it made one.
    async fn pr_comment(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<u64>, StoreError>;
    async fn set_pr_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment_id: u64,
    ) -> Result<(), StoreError>;

    async fn insert_run(&self, run: NewRun) -> Result<i64, StoreError>;
    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError>;

    /// Cheap liveness query for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

// ---- provisioning: environments, operations, locks, merges ----

/// Where an environment is in its life, as the inventory shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvState {
    /// A deploy is running (first or update).
    Provisioning,
    /// The last deploy succeeded.
    Ready,
    /// The last operation failed or was interrupted; the environment may be half made.
    Failed,
    /// A delete is running.
    Deleting,
    /// The last delete succeeded. The row stays, so the inventory keeps the history.
    Deleted,
}

impl EnvState {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Provisioning => "provisioning",
            EnvState::Ready => "ready",
            EnvState::Failed => "failed",
            EnvState::Deleting => "deleting",
            EnvState::Deleted => "deleted",
        }
    }
    pub fn parse(s: &str) -> Option<EnvState> {
        Some(match s {
            "provisioning" => EnvState::Provisioning,
            "ready" => EnvState::Ready,
            "failed" => EnvState::Failed,
            "deleting" => EnvState::Deleting,
            "deleted" => EnvState::Deleted,
            _ => return None,
        })
    }
    /// Counts against the team's quota: everything but `deleted`.
    pub fn is_live(self) -> bool {
        self != EnvState::Deleted
    }
}

/// One environment in the inventory, keyed by (repo, name): names are unique per repo.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvironmentRecord {
    pub repo: String,
    pub name: String,
    pub team: String,
    pub owner: String,
    pub env_type: String,
    pub definition: String,
    pub state: EnvState,
    /// The parameters of the last deploy (JSON object).
    pub parameters: serde_json::Value,
    /// Outputs of the last successful deploy, in ADE's shape
    /// (`{"name": {"type": ..., "value": ..., "sensitive": bool}}`), sensitive ones
    /// included: use [`EnvironmentRecord::public`] before showing it to anyone.
    pub outputs: serde_json::Value,
    /// Id of the last operation on this environment.
    pub last_operation: Option<i64>,
    /// RFC 3339, set by the store on every write.
    pub updated_at: String,
}

impl EnvironmentRecord {
    /// The record with sensitive outputs removed (what the API and Git may show).
    pub fn public(&self) -> EnvironmentRecord {
        let mut r = self.clone();
        r.outputs = public_outputs(&self.outputs);
        r
    }
}

/// Outputs without the ones marked `"sensitive": true`.
pub fn public_outputs(outputs: &serde_json::Value) -> serde_json::Value {
    match outputs {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(_, v)| v.get("sensitive").and_then(|s| s.as_bool()) != Some(true))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => serde_json::Value::Object(Default::default()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Deploy,
    Delete,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Deploy => "deploy",
            OpKind::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<OpKind> {
        match s {
            "deploy" => Some(OpKind::Deploy),
            "delete" => Some(OpKind::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NewOperation {
    pub repo: String,
    pub env_name: String,
    pub kind: OpKind,
    pub merge_sha: String,
    pub pr: u64,
    /// 1 for the first try; an interrupted operation is retried as attempt + 1.
    pub attempt: u32,
    pub delivery_id: String,
    pub team: String,
    pub owner: String,
    pub env_type: String,
    pub definition: String,
    /// `environments/<team>/<name>.yaml`.
    pub manifest_path: String,
    pub parameters: serde_json::Value,
    /// The PR author.
    pub requester: String,
    /// Who merged, from the event.
    pub merger: String,
    pub approvers: Vec<String>,
    /// The commit governance was read at (the merge commit's first parent).
    pub governance_sha: String,
    /// `[{"context": "paved/schema", "verdict": "pass", "description": "..."}]`.
    pub checks: serde_json::Value,
    /// `Planned`, or `Refused` for an operation recorded only to say it will not run.
    /// (Named apart from [`OperationRecord::state`], which is flattened beside it.)
    #[serde(rename = "planned_state")]
    pub state: OpState,
    /// Why it was refused (for `Refused`).
    #[serde(rename = "refusal")]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperationRecord {
    pub id: i64,
    #[serde(flatten)]
    pub op: NewOperation,
    pub state: OpState,
    /// The GitHub deployment made for it.
    pub deployment_id: Option<u64>,
    /// Process id (and process group id) of the running script.
    pub pid: Option<i64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<String>,
    /// Capped, secret-redacted output of the script.
    pub log: String,
    /// Outputs the run wrote, sensitive ones included (see [`public_outputs`]).
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
    DeploymentCreated(u64),
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

/// The inventory change made together with an operation's state change.
#[derive(Debug, Clone)]
pub struct EnvironmentUpdate {
    pub repo: String,
    pub name: String,
    pub team: String,
    pub owner: String,
    pub env_type: String,
    pub definition: String,
    pub state: EnvState,
    /// `None` keeps the stored value.
    pub parameters: Option<serde_json::Value>,
    /// `None` keeps the stored value.
    pub outputs: Option<serde_json::Value>,
    pub last_operation: Option<i64>,
}

impl EnvironmentUpdate {
    /// The inventory row of `op`'s environment in `state`, with `last_operation` set and
    /// parameters and outputs kept as stored.
    pub fn of(op: &NewOperation, state: EnvState, last_operation: i64) -> EnvironmentUpdate {
        EnvironmentUpdate {
            repo: op.repo.clone(),
            name: op.env_name.clone(),
            team: op.team.clone(),
            owner: op.owner.clone(),
            env_type: op.env_type.clone(),
            definition: op.definition.clone(),
            state,
            parameters: None,
            outputs: None,
            last_operation: Some(last_operation),
        }
    }
}

#[async_trait]
pub trait ProvisionStore: Send + Sync + 'static {
    /// Records an operation, or returns the id of the identical one recorded before.
    /// The bool is true when this call created it.
    async fn plan_operation(&self, op: NewOperation) -> Result<(i64, bool), StoreError>;
    async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError>;
    /// Every operation recorded for a merge commit, by id.
    async fn operations_for_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    /// An environment's operations, newest first, at most `limit`.
    async fn operations_for_environment(
        &self,
        repo: &RepoName,
        env_name: &str,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError>;
    async fn update_operation(&self, id: i64, update: OperationUpdate) -> Result<(), StoreError>;
    /// `Planned` → `Running` under `fence` (recorded on the operation), with the inventory
    /// row `env`, in one transaction, only while `fence` still holds the environment's lock.
    /// `false`: the lock changed hands, or the operation is no longer planned; nothing was
    /// written.
    async fn start_operation(
        &self,
        id: i64,
        fence: &Fence,
        env: EnvironmentUpdate,
    ) -> Result<bool, StoreError>;
    /// A running operation's result, its inventory row and (when given) its `ADE_STORAGE`,
    /// in one transaction, only while the operation is running under `fence` and `fence`
    /// still holds the environment's lock. `false`: fenced off; nothing was written.
    async fn finish_operation(
        &self,
        id: i64,
        fence: &Fence,
        finish: Finish,
        env: EnvironmentUpdate,
        storage: Option<Vec<u8>>,
    ) -> Result<bool, StoreError>;
    /// At start-up of a single node: every `Running` operation becomes `Interrupted` (its
    /// process died with the previous server). Returns them as they were (with `pid`).
    /// A store shared by replicas interrupts only the running operations whose
    /// environment lock ran out or is gone (no live replica is running them).
    async fn interrupt_running_operations(&self) -> Result<Vec<OperationRecord>, StoreError>;

    async fn environment(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError>;
    /// All environments, of one repository or of all, ordered by repo then name.
    async fn environments(
        &self,
        repo: Option<&RepoName>,
    ) -> Result<Vec<EnvironmentRecord>, StoreError>;
    /// Insert or update the inventory row.
    async fn upsert_environment(&self, env: EnvironmentUpdate) -> Result<(), StoreError>;
    /// The `ADE_STORAGE` archive kept for an environment (a tar), if any.
    async fn environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set_environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
        archive: Vec<u8>,
    ) -> Result<(), StoreError>;

    /// Takes the environment's lock for `holder` until `ttl` from now, if nobody else holds
    /// it or their lease ran out, and returns its epoch. Taking it again as the same holder
    /// renews it (same epoch); a new holder gets a higher one. `None`: held by another.
    async fn try_lock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<i64>, StoreError>;
    /// Releases the lock if `holder` holds it.
    async fn unlock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError>;
    /// At start-up of a single node: drop every lock (their holders died). A store shared
    /// by replicas drops only the locks whose lease ran out, never a live replica's.
    async fn release_all_locks(&self) -> Result<u64, StoreError>;

    /// Remembers that Paved handled the merge of `pr` as commit `merge_sha` (what makes the
    /// matching `push` governed).
    async fn record_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
        pr: PrNumber,
    ) -> Result<(), StoreError>;
    async fn merge_of(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Option<PrNumber>, StoreError>;
}
