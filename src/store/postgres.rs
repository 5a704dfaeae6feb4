//! The PostgreSQL store: several replicas of Paved sharing one database.
//!
//! Same records and semantics as [`super::sqlite::SqliteStore`] (the trait docs are the
//! contract), with what sharing the database between replicas needs:
//!
//! - **Durability.** Every write is one autocommit statement (or one transaction); the
//!   connections force `synchronous_commit = on`, so a delivery has reached the WAL on disk
//!   when [`Store::accept_delivery`] returns, whatever the server's default.
//! - **One clock.** Timestamps are Unix milliseconds from the database's clock
//!   (`paved_now_ms()`, see `migrations/postgres/0001_initial.sql`), never a replica's:
//!   leases and retry delays mean the same on every replica, however their clocks drift.
//! - **Claims.** [`Store::claim_delivery`] is one `UPDATE` whose candidate is chosen
//!   `FOR UPDATE SKIP LOCKED`, so replicas claiming at once never wait for nor take the same
//!   delivery. Per queue key, deliveries still run one at a time in arrival order; inserts
//!   of one key are serialised by an advisory lock, so that arrival (`seq`) order is also
//!   commit order for a key and no claim can see a later delivery of a key without the
//!   earlier ones (see `ACCEPT`).
//! - **Delivery leases.** A claimed delivery is leased to this store instance
//!   (`lease_owner`, a random id made in [`PgStore::open`]) until `lease_until` (now +
//!   [`DEFAULT_LEASE`], see [`PgStore::with_lease`]). The processing replica renews it
//!   ([`Store::renew_delivery_lease`]); a running delivery whose lease ran out belonged to
//!   a replica that died or stalled, and another replica claims it again (counting an
//!   attempt). [`Store::finish_delivery`] commits only while the lease is still this
//!   instance's: a replica that lost its lease does not commit a stale result. A replica
//!   never re-claims its *own* expired lease: the task processing it is still in this
//!   process (it will finish it, or the process dies and the lease passes to the others,
//!   or to its successor, whose instance id is new). So there is no start-up re-queueing
//!   ([`Store::requeue_interrupted`] returns 0): a restarted replica's deliveries are
//!   claimed again when their leases run out, and a live replica's are never touched.
//! - **Environment locks** are leases too (holder + `expires_at`): start-up frees only
//!   expired ones and interrupts only operations whose environment lock ran out or is
//!   gone, never what a live replica is running.

use super::rows::{
    counts_by_state, delivery_from_row, environment_from_row, invalid, operation_from_row,
    run_from_row, to_i64, to_json, to_u64, ENV_COLUMNS, OP_COLUMNS,
};
use super::sqlite::{compress_body, decompress_body, BLOCKING_CODEC_BYTES};
use super::{
    Accepted, Delivery, DeliveryRecord, DeliveryState, EnvironmentRecord, EnvironmentUpdate, Fence,
    Finish, NewDelivery, NewOperation, NewRun, OpState, OperationRecord, OperationUpdate, Outcome,
    ProvisionStore, RunRecord, Store, StoreError,
};
use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::BTreeMap;
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
}

// ---------------------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------------------

/// Stores a delivery unless its id is known (`RETURNING` gives no row then).
///
/// The advisory lock on (Paved, hash of the queue key) is taken before the row gets its
/// `seq` (the CTE is materialised and scanned before the row, and its defaults, are made)
/// and held until commit, so inserts of one key commit in `seq` order. Without it, a
/// delivery could commit after a later one of its key was already claimed, and two
/// deliveries of one key could then run at once.
const ACCEPT: &str = "WITH key_lock AS MATERIALIZED ( \
       SELECT pg_advisory_xact_lock($7, hashtext($4))) \
     INSERT INTO deliveries (id, event, action, queue_key, body, body_len, state, attempts, \
       next_attempt_at, received_at) \
     SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, paved_now_ms(), paved_now_ms() \
     FROM key_lock \
     ON CONFLICT (id) DO NOTHING RETURNING seq";

/// The head of a queue key is its oldest delivery that is pending or running. A
/// delivery is claimable when it is the head of its key with nothing else of that key
/// running, and either pending and due, or running on a lease that ran out and is not
/// this instance's ($1). `SKIP LOCKED`: a delivery another replica is claiming right now
/// is passed over, not waited for; if it changed before the lock was taken, PostgreSQL
/// checks the conditions again on the new row.
const CLAIM: &str = "UPDATE deliveries SET state = 'running', attempts = attempts + 1, \
       lease_owner = $1, lease_until = paved_now_ms() + $2 \
     WHERE seq = ( \
       SELECT d.seq FROM deliveries d \
       WHERE d.state IN ('pending', 'running') \
         AND CASE WHEN d.state = 'pending' THEN d.next_attempt_at <= paved_now_ms() \
             ELSE d.lease_until <= paved_now_ms() AND d.lease_owner IS DISTINCT FROM $1 END \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries r \
           WHERE r.queue_key = d.queue_key AND r.state = 'running' AND r.seq <> d.seq) \
         AND NOT EXISTS ( \
           SELECT 1 FROM deliveries o \
           WHERE o.queue_key = d.queue_key AND o.state IN ('pending', 'running') \
             AND o.seq < d.seq) \
       ORDER BY d.seq LIMIT 1 \
       FOR UPDATE OF d SKIP LOCKED) \
     RETURNING id, event, action, queue_key, body, body_len, attempts, received_at";

async fn decode_body(data: Vec<u8>, len: i64) -> Result<Vec<u8>, StoreError> {
    if usize::try_from(len).unwrap_or(usize::MAX) >= BLOCKING_CODEC_BYTES {
        tokio::task::spawn_blocking(move || decompress_body(&data, len))
            .await
            .map_err(|e| StoreError::Corrupt(format!("decompression task: {e}")))?
    } else {
        decompress_body(&data, len)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn accept_delivery(&self, delivery: NewDelivery) -> Result<Accepted, StoreError> {
        let NewDelivery {
            id,
            event,
            action,
            queue_key,
            body,
        } = delivery;
        let compressed = if body.len() >= BLOCKING_CODEC_BYTES {
            let body = body.clone();
            tokio::task::spawn_blocking(move || compress_body(&body))
                .await
                .map_err(|e| StoreError::Corrupt(format!("compression task: {e}")))??
        } else {
            compress_body(&body)?
        };
        let body_len =
            i64::try_from(body.len()).map_err(|_| StoreError::Corrupt("body too large".into()))?;
        let new: Option<i64> = sqlx::query_scalar(ACCEPT)
            .bind(id.as_str())
            .bind(&event)
            .bind(&action)
            .bind(&queue_key)
            .bind(&compressed)
            .bind(body_len)
            .bind(ADVISORY_CLASS)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if new.is_some() {
            Accepted::New
        } else {
            Accepted::Duplicate
        })
    }

    async fn claim_delivery(&self) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(CLAIM)
            .bind(&*self.instance)
            .bind(ms(self.lease))
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let id: String = r.try_get("id")?;
        let attempts: i64 = r.try_get("attempts")?;
        Ok(Some(Delivery {
            id: DeliveryId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            queue_key: r.try_get("queue_key")?,
            body: decode_body(r.try_get("body")?, r.try_get("body_len")?).await?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            received_at_ms: r.try_get("received_at")?,
        }))
    }

    /// Commits the outcome only if the delivery is running and still leased to this
    /// instance (an expired lease nobody took over yet still counts as ours). Otherwise
    /// another replica took it over after this one's lease ran out, and will commit its
    /// own result: this one is dropped with a warning, and `Ok` is returned.
    async fn finish_delivery(&self, id: &DeliveryId, outcome: Outcome) -> Result<(), StoreError> {
        let (state, error, after) = match outcome {
            Outcome::Done => (DeliveryState::Done, None, None),
            Outcome::Failed { error } => (DeliveryState::Failed, Some(error), None),
            Outcome::Retry { error, after } => {
                (DeliveryState::Pending, Some(error), Some(ms(after)))
            }
        };
        let done = sqlx::query(
            "UPDATE deliveries SET state = $3, last_error = $4, \
             next_attempt_at = COALESCE(paved_now_ms() + $5, next_attempt_at), \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(&*self.instance)
        .bind(state.as_str())
        .bind(error)
        .bind(after)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            let now: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT state, lease_owner FROM deliveries WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            match now {
                Some((s, Some(owner))) if s == "running" => tracing::warn!(
                    delivery = %id,
                    owner = %owner,
                    "finish_delivery: the lease ran out and another replica took the \
                     delivery over; this result is not committed"
                ),
                Some((s, _)) => tracing::warn!(
                    delivery = %id,
                    state = %s,
                    "finish_delivery: delivery was not running on this replica; this result \
                     is not committed"
                ),
                None => tracing::warn!(delivery = %id, "finish_delivery: no such delivery"),
            }
        }
        Ok(())
    }

    async fn renew_delivery_lease(&self, id: &DeliveryId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET lease_until = paved_now_ms() + $3 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id.as_str())
        .bind(&*self.instance)
        .bind(ms(self.lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
        // Nothing to do, on purpose. Several replicas share these deliveries: a running
        // one may be a live replica's work, and at start-up nothing tells it from a dead
        // one's but its lease. A dead replica's deliveries become claimable when their
        // leases run out (claim_delivery takes them again, counting an attempt), which
        // includes this process's previous life: its instance id was another one.
        Ok(0)
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, event, action, queue_key, state, attempts, last_error, received_at \
             FROM deliveries WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn delivery_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM deliveries GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        counts_by_state(rows)
    }

    async fn pr_comment(&self, repo: &RepoName, pr: PrNumber) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT comment_id FROM pr_comments WHERE repo = $1 AND pr = $2")
                .bind(repo.to_string())
                .bind(to_i64(pr.0, "pull request number")?)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(c,)| to_u64(c, "comment id")).transpose()
    }

    async fn set_pr_comment(
        &self,
        repo: &RepoName,
        pr: PrNumber,
        comment_id: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pr_comments (repo, pr, comment_id) VALUES ($1, $2, $3) \
             ON CONFLICT (repo, pr) DO UPDATE SET comment_id = excluded.comment_id",
        )
        .bind(repo.to_string())
        .bind(to_i64(pr.0, "pull request number")?)
        .bind(to_i64(comment_id, "comment id")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_run(&self, run: NewRun) -> Result<i64, StoreError> {
        let report = serde_json::to_string(&run.report)
            .map_err(|e| StoreError::Corrupt(format!("report: {e}")))?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (repo, pr, head_sha, base_sha, delivery_id, report, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, paved_now_ms()) RETURNING id",
        )
        .bind(run.repo.to_string())
        .bind(to_i64(run.pr.0, "pull request number")?)
        .bind(run.head_sha.as_str())
        .bind(run.base_sha.as_str())
        .bind(run.delivery_id.as_str())
        .bind(report)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, repo, pr, head_sha, base_sha, delivery_id, report, created_at \
             FROM runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Closed);
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Provisioning: environments, operations, locks, merges
// ---------------------------------------------------------------------------------------

impl PgStore {
    /// Why `update_operation` changed nothing: the id is unknown, or its state forbids it.
    async fn explain_unchanged(&self, id: i64, wanted: &str) -> StoreError {
        let state: Result<Option<String>, sqlx::Error> =
            sqlx::query_scalar("SELECT state FROM operations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await;
        match state {
            Err(e) => e.into(),
            Ok(None) => invalid(format!("operation {id} does not exist")),
            Ok(Some(s)) if wanted.is_empty() => {
                invalid(format!("operation {id} ({s}) was not changed"))
            }
            Ok(Some(s)) => invalid(format!("operation {id} is {s}; {wanted}")),
        }
    }
}

/// Inserts or updates an inventory row. $8 / $9 NULL: keep the stored parameters /
/// outputs ('{}' for a new row). $10 NULL keeps the stored last operation too: once there
/// was one, it stays the last until another replaces it.
async fn upsert_env<'c, E>(conn: E, env: &EnvironmentUpdate) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let parameters = env
        .parameters
        .as_ref()
        .map(|p| to_json(p, "parameters"))
        .transpose()?;
    let outputs = env
        .outputs
        .as_ref()
        .map(|o| to_json(o, "outputs"))
        .transpose()?;
    sqlx::query(
        "INSERT INTO environments (repo, name, team, owner, env_type, definition, \
         state, parameters, outputs, last_operation, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}'), \
         COALESCE($9, '{}'), $10, paved_now_ms()) \
         ON CONFLICT (repo, name) DO UPDATE SET team = excluded.team, \
         owner = excluded.owner, env_type = excluded.env_type, \
         definition = excluded.definition, state = excluded.state, \
         parameters = COALESCE($8, environments.parameters), \
         outputs = COALESCE($9, environments.outputs), \
         last_operation = COALESCE($10, environments.last_operation), \
         updated_at = excluded.updated_at",
    )
    .bind(&env.repo)
    .bind(&env.name)
    .bind(&env.team)
    .bind(&env.owner)
    .bind(&env.env_type)
    .bind(&env.definition)
    .bind(env.state.as_str())
    .bind(parameters)
    .bind(outputs)
    .bind(env.last_operation)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl ProvisionStore for PgStore {
    async fn plan_operation(&self, op: NewOperation) -> Result<(i64, bool), StoreError> {
        if !matches!(op.state, OpState::Planned | OpState::Refused) {
            return Err(invalid(format!(
                "an operation is planned as planned or refused, not {}",
                op.state.as_str()
            )));
        }
        let pr = to_i64(op.pr, "pull request number")?;
        let parameters = to_json(&op.parameters, "parameters")?;
        let approvers = to_json(&op.approvers, "approvers")?;
        let checks = to_json(&op.checks, "checks")?;
        // A refused operation is final at once ($21).
        let new: Option<i64> = sqlx::query_scalar(
            "INSERT INTO operations (repo, env_name, kind, merge_sha, pr, attempt, \
             delivery_id, team, owner, env_type, definition, manifest_path, parameters, \
             requester, merger, approvers, governance_sha, checks, state, error, \
             started_at, finished_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, \
             CASE WHEN $21 THEN paved_now_ms() END, CASE WHEN $21 THEN paved_now_ms() END, \
             paved_now_ms()) \
             ON CONFLICT (repo, merge_sha, env_name, kind, attempt) DO NOTHING \
             RETURNING id",
        )
        .bind(&op.repo)
        .bind(&op.env_name)
        .bind(op.kind.as_str())
        .bind(&op.merge_sha)
        .bind(pr)
        .bind(i64::from(op.attempt))
        .bind(&op.delivery_id)
        .bind(&op.team)
        .bind(&op.owner)
        .bind(&op.env_type)
        .bind(&op.definition)
        .bind(&op.manifest_path)
        .bind(&parameters)
        .bind(&op.requester)
        .bind(&op.merger)
        .bind(&approvers)
        .bind(&op.governance_sha)
        .bind(&checks)
        .bind(op.state.as_str())
        .bind(&op.error)
        .bind(op.state == OpState::Refused)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(id) = new {
            return Ok((id, true));
        }
        // A separate statement: under READ COMMITTED it sees the row a concurrent
        // replica committed (the INSERT above waited for that commit to find the
        // conflict), which a single statement's snapshot might not.
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM operations WHERE repo = $1 AND merge_sha = $2 \
             AND env_name = $3 AND kind = $4 AND attempt = $5",
        )
        .bind(&op.repo)
        .bind(&op.merge_sha)
        .bind(&op.env_name)
        .bind(op.kind.as_str())
        .bind(i64::from(op.attempt))
        .fetch_one(&self.pool)
        .await?;
        Ok((id, false))
    }

    async fn operation(&self, id: i64) -> Result<Option<OperationRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(operation_from_row).transpose()
    }

    async fn operations_for_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE repo = $1 AND merge_sha = $2 ORDER BY id"
        ))
        .bind(repo.to_string())
        .bind(merge_sha.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn operations_for_environment(
        &self,
        repo: &RepoName,
        env_name: &str,
        limit: u32,
    ) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OP_COLUMNS} FROM operations WHERE repo = $1 AND env_name = $2 \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(repo.to_string())
        .bind(env_name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn update_operation(&self, id: i64, update: OperationUpdate) -> Result<(), StoreError> {
        // (statement, what the row must be for it to apply; bound as $1 = id, then `args`)
        enum Arg {
            Int(Option<i64>),
            Text(Option<String>),
        }
        let (sql, wanted, args): (&'static str, &'static str, Vec<Arg>) = match update {
            OperationUpdate::Pid(pid) => (
                "UPDATE operations SET pid = $2 WHERE id = $1 AND state = 'running'",
                "only a running operation has a script",
                vec![Arg::Int(Some(pid))],
            ),
            OperationUpdate::DeploymentCreated(d) => (
                "UPDATE operations SET deployment_id = $2 WHERE id = $1",
                "",
                vec![Arg::Int(Some(to_i64(d, "deployment id")?))],
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
                    "UPDATE operations SET state = $2, error = $3, log = $4, outputs = $5, \
                     finished_at = paved_now_ms() WHERE id = $1 AND state = 'running'",
                    "only a running operation can finish",
                    vec![
                        Arg::Text(Some(state.as_str().to_owned())),
                        Arg::Text(error),
                        Arg::Text(Some(log)),
                        Arg::Text(Some(to_json(&outputs, "outputs")?)),
                    ],
                )
            }
            OperationUpdate::Reported(bits) => (
                "UPDATE operations SET reported = reported | $2 WHERE id = $1",
                "",
                vec![Arg::Int(Some(i64::from(bits)))],
            ),
        };
        let mut q = sqlx::query(sql).bind(id);
        for a in args {
            q = match a {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
            };
        }
        if q.execute(&self.pool).await?.rows_affected() == 0 {
            return Err(self.explain_unchanged(id, wanted).await);
        }
        Ok(())
    }

    async fn start_operation(
        &self,
        id: i64,
        fence: &Fence,
        env: EnvironmentUpdate,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The lock row is locked (FOR SHARE) so it cannot change hands before the commit.
        let started = sqlx::query(
            "UPDATE operations SET state = 'running', started_at = paved_now_ms(), \
             holder = $2, lease_epoch = $3 WHERE id = $1 AND state = 'planned' AND EXISTS ( \
               SELECT 1 FROM env_locks WHERE repo = $4 AND name = $5 \
               AND holder = $2 AND epoch = $3 FOR SHARE)",
        )
        .bind(id)
        .bind(&fence.holder)
        .bind(fence.epoch)
        .bind(&env.repo)
        .bind(&env.name)
        .execute(&mut *tx)
        .await?;
        if started.rows_affected() == 0 {
            return Ok(false);
        }
        upsert_env(&mut *tx, &env).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_operation(
        &self,
        id: i64,
        fence: &Fence,
        finish: Finish,
        env: EnvironmentUpdate,
        storage: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        if !matches!(finish.state, OpState::Succeeded | OpState::Failed) {
            return Err(invalid(format!(
                "operation {id} cannot finish as {}",
                finish.state.as_str()
            )));
        }
        let outputs = to_json(&finish.outputs, "outputs")?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE operations SET state = $2, error = $3, log = $4, outputs = $5, \
             finished_at = paved_now_ms() WHERE id = $1 AND state = 'running' \
             AND holder = $6 AND lease_epoch = $7 AND EXISTS ( \
               SELECT 1 FROM env_locks WHERE repo = $8 AND name = $9 \
               AND holder = $6 AND epoch = $7 FOR SHARE)",
        )
        .bind(id)
        .bind(finish.state.as_str())
        .bind(&finish.error)
        .bind(&finish.log)
        .bind(&outputs)
        .bind(&fence.holder)
        .bind(fence.epoch)
        .bind(&env.repo)
        .bind(&env.name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        upsert_env(&mut *tx, &env).await?;
        if let Some(archive) = storage {
            sqlx::query("UPDATE environments SET storage = $3 WHERE repo = $1 AND name = $2")
                .bind(&env.repo)
                .bind(&env.name)
                .bind(archive)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Interrupts the running operations that no live replica is running: those whose
    /// environment lock ran out or is gone (a replica takes the lock before it starts an
    /// operation and renews it until the operation has finished). Returns them as they
    /// were. One statement: the rows are locked, and one a replica finishes meanwhile is
    /// checked again (no longer running: left alone).
    async fn interrupt_running_operations(&self) -> Result<Vec<OperationRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "WITH before AS ( \
               SELECT {OP_COLUMNS} FROM operations o \
               WHERE o.state = 'running' AND NOT EXISTS ( \
                 SELECT 1 FROM env_locks l \
                 WHERE l.repo = o.repo AND l.name = o.env_name \
                   AND l.expires_at > paved_now_ms()) \
               FOR UPDATE), \
             interrupted AS ( \
               UPDATE operations SET state = 'interrupted', finished_at = paved_now_ms(), \
                 error = 'interrupted: the server stopped while it ran' \
               WHERE id IN (SELECT id FROM before)) \
             SELECT * FROM before ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn environment(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<EnvironmentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENV_COLUMNS} FROM environments WHERE repo = $1 AND name = $2"
        ))
        .bind(repo.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(environment_from_row).transpose()
    }

    async fn environments(
        &self,
        repo: Option<&RepoName>,
    ) -> Result<Vec<EnvironmentRecord>, StoreError> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's collation.
        let rows = match repo {
            Some(repo) => {
                sqlx::query(&format!(
                    "SELECT {ENV_COLUMNS} FROM environments WHERE repo = $1 \
                     ORDER BY name COLLATE \"C\""
                ))
                .bind(repo.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {ENV_COLUMNS} FROM environments \
                     ORDER BY repo COLLATE \"C\", name COLLATE \"C\""
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(environment_from_row).collect()
    }

    async fn upsert_environment(&self, env: EnvironmentUpdate) -> Result<(), StoreError> {
        upsert_env(&self.pool, &env).await
    }

    async fn environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT storage FROM environments WHERE repo = $1 AND name = $2")
                .bind(repo.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.flatten())
    }

    async fn set_environment_storage(
        &self,
        repo: &RepoName,
        name: &str,
        archive: Vec<u8>,
    ) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE environments SET storage = $3 WHERE repo = $1 AND name = $2")
                .bind(repo.to_string())
                .bind(name)
                .bind(archive)
                .execute(&self.pool)
                .await?;
        if done.rows_affected() == 0 {
            return Err(invalid(format!(
                "environment {name} of {repo} does not exist: its storage has nowhere to go"
            )));
        }
        Ok(())
    }

    async fn try_lock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, StoreError> {
        // One statement: ON CONFLICT locks the existing row and checks the WHERE on its
        // latest version, so two replicas racing for a free or expired lock get one
        // winner. A lease whose expires_at is now or past is free.
        // The epoch stays for a renewal and goes up when the lock changes hands.
        let got: Option<i64> = sqlx::query_scalar(
            "INSERT INTO env_locks (repo, name, holder, expires_at, epoch) \
             VALUES ($1, $2, $3, paved_now_ms() + $4, 1) \
             ON CONFLICT (repo, name) DO UPDATE SET \
             epoch = CASE WHEN env_locks.holder = excluded.holder \
                     THEN env_locks.epoch ELSE env_locks.epoch + 1 END, \
             holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE env_locks.holder = excluded.holder OR env_locks.expires_at <= paved_now_ms() \
             RETURNING epoch",
        )
        .bind(repo.to_string())
        .bind(name)
        .bind(holder)
        .bind(ms(ttl))
        .fetch_optional(&self.pool)
        .await?;
        Ok(got)
    }

    async fn unlock_environment(
        &self,
        repo: &RepoName,
        name: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        // The row stays (with its epoch, which must only ever go up): released.
        sqlx::query(
            "UPDATE env_locks SET holder = '', expires_at = 0 \
             WHERE repo = $1 AND name = $2 AND holder = $3",
        )
        .bind(repo.to_string())
        .bind(name)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops only the locks whose lease ran out: the others belong to live replicas.
    async fn release_all_locks(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE env_locks SET holder = '', expires_at = 0 \
             WHERE holder <> '' AND expires_at <= paved_now_ms()",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn record_merge(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
        pr: PrNumber,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO merges (repo, merge_sha, pr, recorded_at) \
             VALUES ($1, $2, $3, paved_now_ms()) ON CONFLICT (repo, merge_sha) DO NOTHING",
        )
        .bind(repo.to_string())
        .bind(merge_sha.as_str())
        .bind(to_i64(pr.0, "pull request number")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn merge_of(
        &self,
        repo: &RepoName,
        merge_sha: &CommitSha,
    ) -> Result<Option<PrNumber>, StoreError> {
        let pr: Option<i64> =
            sqlx::query_scalar("SELECT pr FROM merges WHERE repo = $1 AND merge_sha = $2")
                .bind(repo.to_string())
                .bind(merge_sha.as_str())
                .fetch_optional(&self.pool)
                .await?;
        pr.map(|p| to_u64(p, "pull request number").map(PrNumber))
            .transpose()
    }
}
