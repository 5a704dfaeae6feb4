//! What a start does after a crash: the work a dead process left running is found and
//! handed back. Each backend decides what "dead" means: on a single node (SQLite) everything
//! the previous process held; with replicas (PostgreSQL) only what no live replica renews.

use super::{OperationRecord, StoreError};
use async_trait::async_trait;

#[async_trait]
pub trait Recovery: Send + Sync + 'static {
    /// At start-up: deliveries left running by a crash go back to pending. (A store shared
    /// by replicas cannot tell a dead replica's deliveries from a live one's here; there
    /// they are claimed again when their lease runs out, and this returns 0.)
    async fn requeue_interrupted(&self) -> Result<u64, StoreError>;

    /// At start-up of a single node: every `Running` operation becomes `Interrupted` (its
    /// process died with the previous server). Returns them as they were (with `pid`).
    /// A store shared by replicas interrupts only the running operations whose
    /// environment lock ran out or is gone (no live replica is running them).
    async fn interrupt_running_operations(&self) -> Result<Vec<OperationRecord>, StoreError>;

    /// At start-up of a single node: drop every lock (their holders died). A store shared
    /// by replicas drops only the locks whose lease ran out, never a live replica's.
    async fn release_all_locks(&self) -> Result<u64, StoreError>;
}
