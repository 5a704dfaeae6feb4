//! Webhook deliveries: made durable before they are acknowledged, claimed one at a time
//! per queue key, leased to a replica while it works, retried with backoff. Each backend
//! implements these itself: SQLite with group commit from one writer, PostgreSQL with
//! leased claims (`FOR UPDATE SKIP LOCKED`).

use super::StoreError;
use crate::ids::DeliveryId;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Claimed from another replica whose lease on it ran out (a shared store only).
    pub taken_over: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What the store keeps of a delivery's processing (the API answers with
/// `api::answers::Delivery`).
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

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Makes a verified delivery durable (fsync'd) before returning. A delivery id seen
    /// before gives [`Accepted::Duplicate`] and changes nothing.
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError>;

    /// Claims the oldest pending delivery that is due and whose queue key has no delivery
    /// running, marking it running and counting the attempt. (A store shared by replicas
    /// leases it to this store, and also claims a delivery whose lease another replica
    /// let run out: see [`DeliveryStore::renew_delivery_lease`].)
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

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError>;

    /// Number of deliveries in each state (for `/metrics` and tests).
    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The newest `limit` deliveries that failed, or were tried more than once, or carry
    /// an error: what an operator looks at first.
    async fn troubled_deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// When the oldest pending delivery was accepted (Unix milliseconds), if any is.
    async fn oldest_pending_ms(&self) -> Result<Option<i64>, StoreError>;

    /// Cheap liveness query for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}
