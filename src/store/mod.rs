//! The database behind a trait. SQLite ([`sqlite::SqliteStore`]) is the embedded default;
//! PostgreSQL comes later behind the same trait, so nothing above this module knows which
//! one it talks to.

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
pub trait Store: Send + Sync + 'static {
    /// Makes a verified delivery durable (fsync'd) before returning. A delivery id seen
    /// before gives [`Accepted::Duplicate`] and changes nothing.
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError>;

    /// Claims the oldest pending delivery that is due and whose queue key has no delivery
    /// running, marking it running and counting the attempt.
    async fn claim_delivery(&self) -> Result<Option<Delivery>, StoreError>;

    async fn finish_delivery(&self, id: &DeliveryId, outcome: Outcome) -> Result<(), StoreError>;

    /// At start-up: deliveries left running by a crash go back to pending.
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
