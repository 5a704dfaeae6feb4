//! The PostgreSQL store: several replicas of Paved sharing one database.
//!
//! Same records and semantics as [`super::sqlite::SqliteStore`] (the trait docs are the
//! contract), with what sharing the database between replicas needs:
//!
//! - **Durability.** Every write is one autocommit statement (or one transaction); the
//!   connections force `synchronous_commit = on`, so a delivery has reached the WAL on disk
//!   when [`DeliveryStore::accept_delivery`](super::DeliveryStore::accept_delivery) returns, whatever the server's default.
//!   Deliveries arriving together share a transaction (group commit, `intake.rs`).
//! - **One clock.** Timestamps are Unix milliseconds from the database's clock
//!   (`paved_now_ms()`, see `migrations/postgres/0001_initial.sql`), never a replica's:
//!   leases and retry delays mean the same on every replica, however their clocks drift.
//! - **Claims.** [`DeliveryStore::claim_delivery`](super::DeliveryStore::claim_delivery) is one `UPDATE` whose candidate is chosen
//!   `FOR UPDATE SKIP LOCKED`, so replicas claiming at once never wait for nor take the same
//!   delivery. Per queue key, deliveries still run one at a time in arrival order; inserts
//!   of one key are serialised by an advisory lock, so that arrival (`seq`) order is also
//!   commit order for a key and no claim can see a later delivery of a key without the
//!   earlier ones (see `ACCEPT`).
//! - **Delivery leases.** A claimed delivery is leased to this store instance
//!   (`lease_owner`, a random id made in [`PgStore::open`]) until `lease_until` (now +
//!   [`DEFAULT_LEASE`], see [`PgStore::with_lease`]). The processing replica renews it
//!   ([`DeliveryStore::renew_delivery_lease`](super::DeliveryStore::renew_delivery_lease)); a running delivery whose lease ran out belonged to
//!   a replica that died or stalled, and another replica claims it again (counting an
//!   attempt). [`DeliveryStore::finish_delivery`](super::DeliveryStore::finish_delivery) commits only while the lease is still this
//!   instance's: a replica that lost its lease does not commit a stale result. A replica
//!   never re-claims its *own* expired lease: the task processing it is still in this
//!   process (it will finish it, or the process dies and the lease passes to the others,
//!   or to its successor, whose instance id is new). So there is no start-up re-queueing
//!   ([`Recovery::requeue_interrupted`](super::Recovery::requeue_interrupted) returns 0): a restarted replica's deliveries are
//!   claimed again when their leases run out, and a live replica's are never touched.
//! - **Environment locks** are leases too (holder + `expires_at`): start-up frees only
//!   expired ones and interrupts only operations whose environment lock ran out or is
//!   gone, never what a live replica is running.

mod deliveries;
mod intake;

use super::StoreError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long a claimed delivery stays leased without being renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Connections per store (per replica).
const MAX_CONNECTIONS: u32 = 10;

/// How long a caller waits for a free connection before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Durations are clamped to this many milliseconds (over 35 000 years), so `now + d`
/// never overflows a BIGINT.
const MAX_MS: i64 = 1 << 50;

/// First key of the advisory locks Paved takes (`'Pave'`); the second is a hash of the
/// queue key. Two-key advisory locks do not collide with one-key ones other software
/// on the same database may take.
const ADVISORY_CLASS: i32 = 0x5061_7665;

/// PostgreSQL implementation of [`Store`]. Cheap to clone (clones are the same instance:
/// same lease owner).
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// To the group committers of webhook acceptances (see `intake.rs`).
    accepts: tokio::sync::mpsc::Sender<intake::PendingAccept>,
    instance: Arc<str>,
    lease: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("instance", &self.instance)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Connection options for a `postgres://` or `postgresql://` URL.
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("paved")
        // A commit is on disk before it returns, whatever the server or database default.
        .options([
            ("synchronous_commit", "on"),
            ("client_min_messages", "warning"),
        ]))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(MAX_MS).min(MAX_MS)
}

/// `"name"`, quoted as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Creates the database `opts` names if it does not exist (as SQLite creates its file),
/// from the server's `postgres` (or `template1`) database. Needs the CREATEDB privilege
/// only when the database is missing.
async fn ensure_database(opts: &PgConnectOptions) -> Result<(), StoreError> {
    let missing = match opts.connect().await {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            sqlx::Error::Database(e)
        }
        Err(e) => return Err(e.into()),
    };
    let Some(name) = opts.get_database().map(str::to_owned) else {
        return Err(missing.into());
    };
    let mut last = missing;
    for maintenance in ["postgres", "template1"] {
        if maintenance == name {
            continue;
        }
        let mut conn = match opts.clone().database(maintenance).connect().await {
            Ok(c) => c,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let created = sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
        return match created {
            Ok(_) => {
                tracing::info!(database = %name, "created the PostgreSQL database");
                Ok(())
            }
            // Another replica created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    Err(last.into())
}

/// Applies the migrations in `migrations/postgres` to the database at `url` (created if
/// missing). Safe to run from several replicas at once: sqlx holds an advisory lock while
/// it migrates.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let opts = connect_options(url)?;
    ensure_database(&opts).await?;
    let mut conn = opts.connect().await?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` or `postgresql://` URL; the
    /// database is created if missing), applies the migrations and returns a store with
    /// a new random instance id (its lease owner name).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let opts = connect_options(url)?;
        ensure_database(&opts).await?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let instance = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Ok(PgStore {
            accepts: intake::start(pool.clone()),
            pool,
            instance: instance.into(),
            lease: DEFAULT_LEASE,
        })
    }

    /// Applies the migrations without opening a store (same as [`migrate`]).
    pub async fn migrate(url: &str) -> Result<(), StoreError> {
        migrate(url).await
    }

    /// The same store with claimed deliveries leased for `lease` (default
    /// [`DEFAULT_LEASE`]); tests use short leases.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// This store's lease owner name (unique per [`PgStore::open`]).
    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Closes the connections. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `f` on a connection of the pool (the shape the SQLite store's writer has, so
    /// the shared queries are written once).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let mut conn = self.pool.acquire().await?;
        f(&mut conn).await
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

super::evaluations::impl_evaluation_store!(PgStore, super::sql::postgres);
super::inventory::impl_inventory_store!(PgStore, super::sql::postgres);
super::operations::impl_operation_store!(PgStore, super::sql::postgres);
super::locks::impl_lock_store!(PgStore, super::sql::postgres);
super::merges::impl_merge_store!(PgStore, super::sql::postgres);
super::notes::impl_note_store!(PgStore, super::sql::postgres);
super::keys::impl_key_store!(PgStore, super::sql::postgres);
super::previews::impl_preview_store!(PgStore, super::sql::postgres);
super::imports::impl_import_store!(PgStore, super::sql::postgres);
super::repositories::impl_repository_store!(PgStore, super::sql::postgres);
super::requests::impl_request_store!(PgStore, super::sql::postgres);
super::retention::impl_retention_store!(PgStore, super::sql::postgres);
super::lifecycle::impl_lifecycle_store!(PgStore, super::sql::postgres);
