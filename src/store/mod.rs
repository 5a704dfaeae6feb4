//! The database behind traits, one per aggregate, so nothing above this module knows which
//! database it talks to. SQLite ([`sqlite::SqliteStore`]) is the embedded default;
//! PostgreSQL ([`postgres::PgStore`]) lets several replicas share one database.
//!
//! The rooms: [`deliveries`] (webhook deliveries: each backend its own, SQLite with group
//! commit, PostgreSQL with leased claims), [`runs`] (check runs and PR comments),
//! [`operations`] (provisioning operations, fenced), [`locks`] (environment locks),
//! [`merges`], [`notes`] (the outbox of audit notes), [`inventory`] (environments and their storage), [`recovery`] (what a start
//! does after a crash) and [`retention`] (what is pruned after `store.retention`). Queries shared by both backends are written once ([`sql`] adapts
//! them to SQLite), with their binding, in the aggregate's file; a new table is a new file:
//! its trait, its queries, its `impl_*!` macro, and one line per backend.

pub mod deliveries;
pub mod evaluations;
pub mod imports;
pub mod inventory;
pub mod keys;
pub mod lifecycle;
pub mod locks;
pub mod merges;
pub mod notes;
pub mod operations;
pub mod postgres;
pub mod previews;
pub mod recovery;
pub mod repositories;
pub mod requests;
pub mod retention;
mod rows;
mod sql;
pub mod sqlite;

pub use deliveries::*;
pub use evaluations::{EvaluationRecord, EvaluationStore, NewEvaluation};
pub use imports::{ImportRecord, ImportStore, ImportedEnv, NewImport};
pub use inventory::{
    public_outputs, Drift, DriftState, EnvState, EnvironmentFilter, EnvironmentRecord,
    EnvironmentUpdate, InventoryStore,
};
pub use keys::{KeyStore, SigningKeyRow};
pub use lifecycle::{LifecycleStore, Timer, TimerKind};
pub use locks::LockStore;
pub use merges::MergeStore;
pub use notes::{NewNote, NoteStore, OutboxDepth, QueuedNote};
pub use operations::{
    reported, Fence, Finish, NewOperation, OpKind, OpState, OperationRecord, OperationStore,
    OperationUpdate,
};
pub use previews::{NewPreview, PreviewRecord, PreviewStore};
pub use recovery::Recovery;
pub use repositories::{KnownRepository, RepositoryStore};
pub use requests::{NewRequest, RequestRecord, RequestStore};
pub use retention::{Prunable, RetentionStore};

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
    /// The transaction a write was part of failed to commit: nothing of it was kept.
    #[error("the commit failed: {0}")]
    CommitFailed(String),
}

/// Everything Paved keeps, whichever database keeps it. Implemented by every type that
/// implements each aggregate's trait.
pub trait Store:
    DeliveryStore
    + EvaluationStore
    + OperationStore
    + LockStore
    + MergeStore
    + NoteStore
    + KeyStore
    + PreviewStore
    + ImportStore
    + RepositoryStore
    + RequestStore
    + InventoryStore
    + Recovery
    + RetentionStore
    + LifecycleStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: DeliveryStore
        + EvaluationStore
        + OperationStore
        + LockStore
        + MergeStore
        + NoteStore
        + KeyStore
        + PreviewStore
        + ImportStore
        + RepositoryStore
        + RequestStore
        + InventoryStore
        + Recovery
        + RetentionStore
        + LifecycleStore
        + Send
        + Sync
        + 'static
{
}

/// The traits of every aggregate, to call a store's methods through `dyn Store`:
/// `use crate::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        DeliveryStore, EvaluationStore, ImportStore, InventoryStore, KeyStore, LifecycleStore,
        LockStore, MergeStore, NoteStore, OperationStore, PreviewStore, Recovery, RepositoryStore,
        RequestStore, RetentionStore, Store,
    };
}
