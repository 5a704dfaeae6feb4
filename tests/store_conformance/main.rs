//! Store conformance: the same scenarios, written once over `Arc<dyn Store>`, run against
//! every store. `sqlite::*` always run (a temporary file). `postgres::*` run when
//! `PAVED_TEST_DATABASE_URL` names a PostgreSQL server (for example
//! `postgres://postgres@127.0.0.1:5432/test`, a role allowed to create databases): each
//! test creates its own database `paved_test_<random hex>` there and drops it at the end,
//! so they run in parallel. Without the variable, each PostgreSQL test says it was
//! skipped, on stderr.
//!
//! Where the stores differ on purpose (start-up recovery: a single node owns everything,
//! replicas only what is provably dead), the scenario says so per store. The
//! `postgres::replicas_*` tests run two `PgStore`s ("replicas") on one database.

use paved::config::{Config, Overrides};
use paved::ids::{
    CommentId, CommitSha, DeliveryId, DeploymentId, EvaluationId, OperationId, PrNumber, RepoName,
};
use paved::store::postgres::PgStore;
use paved::store::prelude::*;
use paved::store::sqlite::SqliteStore;
use paved::store::{
    reported, Accepted, DeliveryState, EnvState, EnvironmentFilter, EnvironmentRecord,
    EnvironmentUpdate, Fence, Finish, NewDelivery, NewEvaluation, NewOperation, OpKind, OpState,
    OperationRecord, OperationUpdate, Outcome, Store, StoreError,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod deliveries;
mod imports;
mod inventory;
mod keys;
mod operations;
mod replicas;
mod upkeep;

use deliveries::*;
use imports::*;
use inventory::*;
use keys::*;
use operations::*;
use replicas::*;
use upkeep::*;

const DATABASE_URL_VAR: &str = "PAVED_TEST_DATABASE_URL";
/// How long a test waits for something that should happen.
const DEADLINE: Duration = Duration::from_secs(20);
/// How often a waiting test looks again.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Where a test's database lives: a temporary directory, or a PostgreSQL database made
/// for this test alone.
struct Backend {
    kind: Kind,
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("paved.sqlite").display());
        Backend {
            kind: Kind::Sqlite,
            url,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh database on the server named by `PAVED_TEST_DATABASE_URL` (the PostgreSQL
    /// tests are ignored without it).
    async fn postgres() -> Backend {
        let server = std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .expect("PAVED_TEST_DATABASE_URL is set: the PostgreSQL tests are ignored without it");
        let db = PgDatabase::create(&server).await;
        Backend {
            kind: Kind::Postgres,
            url: db.url.clone(),
            _dir: None,
            pg: Some(db),
        }
    }

    /// Opens a store on this backend's database: for SQLite the same file again (as a
    /// restarted server would), for PostgreSQL a new instance (a replica, or a restart).
    async fn open(&self) -> Arc<dyn Store> {
        match self.kind {
            Kind::Sqlite => Arc::new(SqliteStore::open(&self.url).await.expect("open sqlite")),
            Kind::Postgres => Arc::new(self.open_pg().await),
        }
    }

    async fn open_pg(&self) -> PgStore {
        PgStore::open(&self.url).await.expect("open postgres")
    }

    async fn finish(mut self) {
        if let Some(db) = self.pg.take() {
            db.drop_now().await;
        }
    }
}

/// A database `paved_test_<hex>` on the test server, dropped by [`PgDatabase::drop_now`]
/// or, if the test panicked before that, when this is dropped (best effort).
struct PgDatabase {
    server: PgConnectOptions,
    name: String,
    url: String,
    dropped: bool,
}

impl PgDatabase {
    async fn create(server_url: &str) -> PgDatabase {
        let server = PgConnectOptions::from_str(server_url)
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR}={server_url:?} is not a URL: {e}"));
        let name = format!("paved_test_{:016x}", rand::random::<u64>());
        let mut conn = server
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {DATABASE_URL_VAR} ({server_url}): {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(server_url).expect("server URL");
        url.set_path(&format!("/{name}"));
        PgDatabase {
            server,
            name,
            url: url.to_string(),
            dropped: false,
        }
    }

    /// The URL of another database name on the same server.
    fn url_of(&self, name: &str) -> String {
        let mut url = url::Url::parse(&self.url).expect("url");
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    async fn drop_now(mut self) {
        drop_database(&self.server, &self.name).await;
        self.dropped = true;
    }
}

async fn drop_database(server: &PgConnectOptions, name: &str) {
    if let Ok(mut conn) = server.connect().await {
        // FORCE: stores the test left open are disconnected.
        if let Err(e) = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
        {
            eprintln!("could not drop test database {name}: {e}");
        }
        let _ = conn.close().await;
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (server, name) = (self.server.clone(), self.name.clone());
        // The test's runtime may be the one panicking: drop from a runtime of our own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&server, &name));
            }
        })
        .join();
    }
}

/// `conformance!(a, b)`: tests `sqlite::a`, `postgres::a`, … each running scenario `a`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::sqlite();
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[cfg_attr(not(paved_postgres), ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::postgres().await;
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
    };
}

/// `postgres_only!(a, b)`: tests `postgres::a`, … (scenarios about replicas).
macro_rules! postgres_only {
    ($($name:ident),* $(,)?) => {
        mod postgres_replicas {
            $(
                #[cfg_attr(not(paved_postgres), ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::postgres().await;
                    super::$name(&b).await;
                    b.finish().await;
                }
            )*
        }
    };
}

conformance!(
    duplicate_delivery,
    delivery_bodies_round_trip,
    claim_order_per_key,
    retry_delay,
    operations_planned_once,
    operation_lifecycle,
    locks,
    fencing,
    environments_upsert_and_order,
    merges,
    repositories,
    requests,
    inventory_pages,
    operator_views,
    storage_round_trip,
    governed_input,
    notes_outbox,
    comments_runs_and_counts,
    restart_recovery,
    migrations_apply_on_an_empty_database,
    retention,
    duplicates_at_once,
    signing_keys,
    imports,
);

postgres_only!(
    replicas_claim_each_delivery_once,
    replicas_take_over_an_expired_lease,
    replicas_respect_a_renewed_lease,
    replicas_share_locks_and_operations,
);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn did(s: &str) -> DeliveryId {
    DeliveryId::parse(s).expect("delivery id")
}

fn delivery(id: &str, key: &str, body: &str) -> NewDelivery {
    NewDelivery {
        id: did(id),
        event: "pull_request".into(),
        action: Some("opened".into()),
        queue_key: key.into(),
        body: bytes::Bytes::from(body.to_owned()),
    }
}

fn repo(s: &str) -> RepoName {
    RepoName::parse(s).expect("repo")
}

fn sha(c: char) -> CommitSha {
    CommitSha::parse(&c.to_string().repeat(40)).expect("sha")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_op(env: &str, merge: char, attempt: u32) -> NewOperation {
    NewOperation {
        repo: RepoName::parse("octo/envs").expect("repo"),
        env_name: env.parse().expect("environment name"),
        kind: OpKind::Deploy,
        merge_sha: sha(merge),
        pr: Some(PrNumber(7)),
        attempt,
        delivery_id: Some(DeliveryId::parse("d-merge").expect("delivery id")),
        cause: String::new(),
        team: "payments".parse().expect("team"),
        owner: paved::ids::Login::parse("alice").unwrap(),
        env_type: "preview".into(),
        definition: "web-app".into(),
        manifest_path: format!("environments/payments/{env}.yaml"),
        parameters: serde_json::json!({"size": "small", "cmd": "$(rm -rf /)", "q": "'; DROP TABLE operations; --"}),
        requester: paved::ids::Login::parse("alice").unwrap(),
        merger: Some(paved::ids::Login::parse("bob").unwrap()),
        approvers: vec![
            paved::ids::Login::parse("carol").unwrap(),
            paved::ids::Login::parse("dave").unwrap(),
        ],
        governance_sha: sha('9').as_str().into(),
        checks: serde_json::json!([{"context": "paved/schema", "verdict": "pass"}]),
        state: OpState::Planned,
        error: None,
    }
}

fn env_update(repo: &str, name: &str, state: EnvState) -> EnvironmentUpdate {
    EnvironmentUpdate {
        repo: repo.parse().expect("repo"),
        name: name.parse().expect("environment name"),
        team: "payments".parse().expect("team"),
        owner: paved::ids::Login::parse("alice").unwrap(),
        env_type: "preview".into(),
        definition: "web-app".into(),
        state,
        parameters: None,
        outputs: None,
        last_operation: None,
        new_generation: false,
    }
}

fn err_text(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Takes `env`'s lock (of octo/envs) as `holder` for an hour and starts operation `id`
/// under it: the fence, or `None` when the lock is another's or the operation did not
/// start.
async fn start(store: &dyn Store, id: OperationId, env: &str, holder: &str) -> Option<Fence> {
    let epoch = store
        .try_lock_environment(&repo("octo/envs"), env, holder, Duration::from_secs(3600))
        .await
        .expect("lock")?;
    let fence = Fence {
        holder: holder.into(),
        epoch,
    };
    let op = store.operation(id).await.expect("read").expect("op").op;
    store
        .start_operation(
            id,
            &fence,
            EnvironmentUpdate::of(&op, EnvState::Provisioning, id),
        )
        .await
        .expect("start")
        .then_some(fence)
}

/// Finishes operation `id` as `state` under `fence`; whether it was written.
async fn finish(
    store: &dyn Store,
    id: OperationId,
    fence: &Fence,
    state: OpState,
    outputs: serde_json::Value,
) -> bool {
    let op = store.operation(id).await.expect("read").expect("op").op;
    let ended = if state == OpState::Succeeded {
        EnvState::Ready
    } else {
        EnvState::Failed
    };
    store
        .finish_operation(
            id,
            fence,
            Finish {
                state,
                error: (state == OpState::Failed).then(|| "deploy.sh exited with status 3".into()),
                log: "deployed\n\u{1F680} done\n".into(),
                outputs: outputs.clone(),
            },
            EnvironmentUpdate {
                outputs: Some(outputs),
                ..EnvironmentUpdate::of(&op, ended, id)
            },
            Some(b"storage after".to_vec()),
        )
        .await
        .expect("finish")
}

fn finished(state: OpState) -> OperationUpdate {
    OperationUpdate::Finished {
        state,
        error: None,
        log: String::new(),
        outputs: serde_json::json!({}),
    }
}

/// Claims until `want` is claimed (other deliveries claimed meanwhile are a failure), or
/// panics at the deadline.
async fn claim_within(store: &dyn Store, want: &str, deadline: Duration) -> paved::store::Delivery {
    let end = Instant::now() + deadline;
    loop {
        if let Some(d) = store.claim_delivery().await.expect("claim") {
            assert_eq!(d.id.as_str(), want, "claimed another delivery");
            return d;
        }
        assert!(
            Instant::now() < end,
            "{want} was not claimable within {deadline:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

async fn state_of(store: &dyn Store, id: &str) -> DeliveryState {
    store
        .delivery(&did(id))
        .await
        .expect("read")
        .expect("stored")
        .state
}
