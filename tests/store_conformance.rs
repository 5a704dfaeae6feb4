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
    CommentId, CommitSha, DeliveryId, DeploymentId, OperationId, PrNumber, RepoName, RunId,
};
use paved::store::postgres::PgStore;
use paved::store::prelude::*;
use paved::store::sqlite::SqliteStore;
use paved::store::{
    reported, Accepted, DeliveryState, EnvState, EnvironmentFilter, EnvironmentRecord,
    EnvironmentUpdate, Fence, Finish, NewDelivery, NewOperation, NewRun, OpKind, OpState,
    OperationRecord, OperationUpdate, Outcome, Store, StoreError,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    /// A fresh database on the server, or `None` (said on stderr) when no server is
    /// configured.
    async fn postgres() -> Option<Backend> {
        let server = match std::env::var(DATABASE_URL_VAR) {
            Ok(u) if !u.trim().is_empty() => u,
            _ => {
                // Straight to the process's stderr: eprintln! would be captured, and so
                // hidden, for a passing test.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "PostgreSQL store tests SKIPPED: {DATABASE_URL_VAR} is not set"
                );
                return None;
            }
        };
        let db = PgDatabase::create(&server).await;
        Some(Backend {
            kind: Kind::Postgres,
            url: db.url.clone(),
            _dir: None,
            pg: Some(db),
        })
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
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(b) = super::Backend::postgres().await else { return };
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
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(b) = super::Backend::postgres().await else { return };
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
        env_name: env.into(),
        kind: OpKind::Deploy,
        merge_sha: sha(merge),
        pr: 7,
        attempt,
        delivery_id: "d-merge".into(),
        cause: String::new(),
        team: "payments".into(),
        owner: "alice".into(),
        env_type: "preview".into(),
        definition: "web-app".into(),
        manifest_path: format!("environments/payments/{env}.yaml"),
        parameters: serde_json::json!({"size": "small", "cmd": "$(rm -rf /)", "q": "'; DROP TABLE operations; --"}),
        requester: "alice".into(),
        merger: "bob".into(),
        approvers: vec!["carol".into(), "dave".into()],
        governance_sha: sha('9').as_str().into(),
        checks: serde_json::json!([{"context": "paved/schema", "verdict": "pass"}]),
        state: OpState::Planned,
        error: None,
    }
}

fn env_update(repo: &str, name: &str, state: EnvState) -> EnvironmentUpdate {
    EnvironmentUpdate {
        repo: repo.into(),
        name: name.into(),
        team: "payments".into(),
        owner: "alice".into(),
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

// ---------------------------------------------------------------------------------------
// Scenarios for every store
// ---------------------------------------------------------------------------------------

async fn duplicate_delivery(b: &Backend) {
    let store = b.open().await;
    let before = now_ms();
    assert_eq!(
        store
            .accept_delivery(delivery("d-1", "o/r#1", "{\"first\":true}"))
            .await
            .expect("accept"),
        Accepted::New
    );
    let after = now_ms();
    let mut second = delivery("d-1", "o/r#2", "{\"second\":true}");
    second.event = "push".into();
    assert_eq!(
        store.accept_delivery(second).await.expect("accept again"),
        Accepted::Duplicate
    );
    let rec = store
        .delivery(&did("d-1"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(rec.event, "pull_request");
    assert_eq!(rec.action.as_deref(), Some("opened"));
    assert_eq!(rec.queue_key, "o/r#1");
    assert_eq!(rec.state, DeliveryState::Pending);
    assert_eq!((rec.attempts, rec.last_error), (0, None));
    assert!(chrono::DateTime::parse_from_rfc3339(&rec.received_at).is_ok());
    assert!(store.delivery(&did("d-2")).await.expect("read").is_none());

    let claimed = store.claim_delivery().await.expect("claim").expect("one");
    assert_eq!(claimed.body, b"{\"first\":true}");
    assert_eq!(claimed.attempts, 1);
    // The store's clock may be the database's: allow a little skew.
    assert!(
        (before - 2_000..=after + 2_000).contains(&claimed.received_at_ms),
        "{before} <= {} <= {after}",
        claimed.received_at_ms
    );
    assert!(store.claim_delivery().await.expect("claim").is_none());
    // A redelivery of a delivery being processed changes nothing either.
    assert_eq!(
        store
            .accept_delivery(delivery("d-1", "o/r#1", "{}"))
            .await
            .expect("accept again"),
        Accepted::Duplicate
    );
    assert_eq!(state_of(&*store, "d-1").await, DeliveryState::Running);

    // Concurrent redeliveries: each id stored once.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_delivery(delivery(&format!("x-{}", i % 10), "o/r#7", "{}"))
                .await
        }));
    }
    let (mut new, mut dup) = (0, 0);
    for t in tasks {
        match t.await.expect("join").expect("accept") {
            Accepted::New => new += 1,
            Accepted::Duplicate => dup += 1,
        }
    }
    assert_eq!((new, dup), (10, 40));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(counts["pending"], 10);
    assert_eq!(counts["running"], 1);
    assert_eq!(counts.values().sum::<u64>(), 11);
}

async fn delivery_bodies_round_trip(b: &Backend) {
    let store = b.open().await;
    // Over the size that is (de)compressed on a blocking thread; every byte value.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut d = delivery("big", "k1", "");
    d.body = bytes::Bytes::from(big.clone());
    store.accept_delivery(d).await.expect("accept");
    let mut e = delivery("empty", "k2", "");
    e.action = None;
    e.event = "ping".into();
    store.accept_delivery(e).await.expect("accept");
    let c = store.claim_delivery().await.expect("claim").expect("big");
    assert_eq!(c.id.as_str(), "big");
    assert!(c.body == big, "large body changed");
    let c = store.claim_delivery().await.expect("claim").expect("empty");
    assert_eq!((c.id.as_str(), c.body.len()), ("empty", 0));
    assert_eq!((c.event.as_str(), c.action), ("ping", None));
}

async fn claim_order_per_key(b: &Backend) {
    let store = b.open().await;
    for (i, key) in [
        ("a1", "o/r#1"),
        ("a2", "o/r#1"),
        ("b1", "o/r#2"),
        ("a3", "o/r#1"),
    ] {
        store
            .accept_delivery(delivery(i, key, "{}"))
            .await
            .expect("accept");
    }
    let first = store.claim_delivery().await.expect("claim").expect("a1");
    assert_eq!(first.id.as_str(), "a1");
    assert_eq!(first.queue_key, "o/r#1");
    // a2 waits for a1; b1 (another key) is claimable.
    let second = store.claim_delivery().await.expect("claim").expect("b1");
    assert_eq!(second.id.as_str(), "b1");
    assert!(store.claim_delivery().await.expect("claim").is_none());
    assert_eq!(state_of(&*store, "a1").await, DeliveryState::Running);
    // The lease of a delivery being processed can be renewed (trivially, on one node).
    assert!(store.renew_delivery_lease(&first.id).await.expect("renew"));

    store
        .finish_delivery(&first.id, Outcome::Done)
        .await
        .expect("finish");
    assert_eq!(state_of(&*store, "a1").await, DeliveryState::Done);
    // Finishing again (or finishing what is not running) changes nothing.
    store
        .finish_delivery(
            &first.id,
            Outcome::Failed {
                error: "late".into(),
            },
        )
        .await
        .expect("finish again is not an error");
    let rec = store.delivery(&did("a1")).await.expect("read").expect("a1");
    assert_eq!((rec.state, rec.last_error), (DeliveryState::Done, None));

    let third = store.claim_delivery().await.expect("claim").expect("a2");
    assert_eq!(third.id.as_str(), "a2");
    store
        .finish_delivery(
            &third.id,
            Outcome::Failed {
                error: "bad manifest".into(),
            },
        )
        .await
        .expect("finish");
    let rec = store.delivery(&did("a2")).await.expect("read").expect("a2");
    assert_eq!(rec.state, DeliveryState::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("bad manifest"));
    // A failed delivery does not hold back the rest of its key.
    let fourth = store.claim_delivery().await.expect("claim").expect("a3");
    assert_eq!(fourth.id.as_str(), "a3");
    assert!(store.claim_delivery().await.expect("claim").is_none());
}

async fn retry_delay(b: &Backend) {
    let store = b.open().await;
    for (i, key) in [("r1", "o/r#1"), ("r2", "o/r#1"), ("s1", "o/r#9")] {
        store
            .accept_delivery(delivery(i, key, "{}"))
            .await
            .expect("accept");
    }
    let c = store.claim_delivery().await.expect("claim").expect("r1");
    assert_eq!(c.id.as_str(), "r1");
    store
        .finish_delivery(
            &c.id,
            Outcome::Retry {
                error: "GitHub answered 502".into(),
                after: Duration::from_secs(3600),
            },
        )
        .await
        .expect("retry");
    let rec = store.delivery(&did("r1")).await.expect("read").expect("r1");
    assert_eq!(rec.state, DeliveryState::Pending);
    assert_eq!(rec.last_error.as_deref(), Some("GitHub answered 502"));
    assert_eq!(rec.attempts, 1);
    // Not due yet, and r2 waits behind it; the other key goes ahead.
    let other = store.claim_delivery().await.expect("claim").expect("s1");
    assert_eq!(other.id.as_str(), "s1");
    assert!(store.claim_delivery().await.expect("claim").is_none());

    // A short delay: not claimable before it, claimable after, as a new attempt.
    store
        .accept_delivery(delivery("t1", "o/r#5", "{}"))
        .await
        .expect("accept");
    let c = store.claim_delivery().await.expect("claim").expect("t1");
    assert_eq!(c.id.as_str(), "t1");
    let delay = Duration::from_millis(700);
    let retried = Instant::now();
    store
        .finish_delivery(
            &c.id,
            Outcome::Retry {
                error: "not yet".into(),
                after: delay,
            },
        )
        .await
        .expect("retry");
    let again = claim_within(&*store, "t1", DEADLINE).await;
    assert!(
        retried.elapsed() + Duration::from_millis(50) >= delay,
        "claimed {:?} after a {delay:?} retry delay",
        retried.elapsed()
    );
    assert_eq!(again.attempts, 2);
}

async fn operations_planned_once(b: &Backend) {
    let store = b.open().await;
    let op = new_op("checkout", 'a', 1);
    let (id, created) = store.plan_operation(op.clone()).await.expect("plan");
    assert!(created);
    // A redelivered merge plans it again (even computing something else): the first
    // one stands.
    let mut again = op.clone();
    again.parameters = serde_json::json!({"size": "huge"});
    assert_eq!(
        store.plan_operation(again).await.expect("plan again"),
        (id, false)
    );
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.op, op);
    assert_eq!(rec.state, OpState::Planned);
    assert_eq!(rec.op.parameters["cmd"], "$(rm -rf /)");
    assert_eq!((rec.started_at, rec.finished_at), (None, None));
    assert_eq!((rec.pid, rec.deployment_id, rec.error), (None, None, None));
    assert_eq!((rec.log.as_str(), rec.reported), ("", 0));
    assert_eq!(rec.outputs, serde_json::json!({}));
    assert!(chrono::DateTime::parse_from_rfc3339(&rec.created_at).is_ok());

    // Another attempt, or another kind, is another operation.
    let (id2, created2) = store
        .plan_operation(new_op("checkout", 'a', 2))
        .await
        .expect("plan attempt 2");
    assert!(created2);
    let mut delete = new_op("checkout", 'a', 1);
    delete.kind = OpKind::Delete;
    let (id3, created3) = store.plan_operation(delete).await.expect("plan delete");
    assert!(created3);
    let ids: Vec<OperationId> = store
        .operations_for_merge(&repo("octo/envs"), &sha('a'))
        .await
        .expect("of merge")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![id, id2, id3]);
    assert!(store
        .operations_for_merge(&repo("octo/envs"), &sha('b'))
        .await
        .expect("of other merge")
        .is_empty());
    assert!(store
        .operation(OperationId(id3.0 + 1000))
        .await
        .expect("read")
        .is_none());

    // Planned concurrently (a merge redelivered while it is handled): created once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.plan_operation(new_op("search", 'c', 1)).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join").expect("plan"));
    }
    assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1, "{results:?}");
    assert!(
        results.iter().all(|(i, _)| *i == results[0].0),
        "{results:?}"
    );

    // A refused operation is final at once, and nothing starts it.
    let mut refused = new_op("checkout", 'e', 1);
    refused.state = OpState::Refused;
    refused.error = Some("paved/policy was failing at merge time".into());
    let (rid, _) = store.plan_operation(refused.clone()).await.expect("plan");
    let rec = store.operation(rid).await.expect("read").expect("stored");
    assert_eq!(rec.op, refused);
    assert_eq!(rec.state, OpState::Refused);
    assert_eq!(rec.error, refused.error);
    assert!(rec.started_at.is_some());
    assert_eq!(rec.finished_at, rec.started_at);
    assert!(
        start(&*store, rid, "checkout", "A").await.is_none(),
        "a refused operation never starts"
    );
    let mut running = new_op("checkout", 'b', 1);
    running.state = OpState::Running;
    assert!(store.plan_operation(running).await.is_err());
}

async fn operation_lifecycle(b: &Backend) {
    let store = b.open().await;
    let (id, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    let fence = start(&*store, id, "checkout", "A").await.expect("started");
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Running);
    assert!(rec.started_at.is_some());
    assert_eq!((rec.pid, rec.finished_at), (None, None));
    let env = store
        .environment(&repo("octo/envs"), "checkout")
        .await
        .expect("read")
        .expect("inventory row written with the start");
    assert_eq!(
        (env.state, env.last_operation),
        (EnvState::Provisioning, Some(id))
    );
    // Started twice (a second worker or replica): refused, so it cannot run twice.
    assert!(start(&*store, id, "checkout", "A").await.is_none());

    store
        .update_operation(id, OperationUpdate::Pid(4242))
        .await
        .expect("pid");
    store
        .update_operation(
            id,
            OperationUpdate::DeploymentCreated(DeploymentId(9_000_000_001)),
        )
        .await
        .expect("deployment");
    let outputs = serde_json::json!({
        "url": {"type": "string", "value": "https://x", "sensitive": false},
        "token": {"type": "string", "value": "s3cr3t", "sensitive": true}
    });
    assert!(finish(&*store, id, &fence, OpState::Succeeded, outputs.clone()).await);
    // Result, inventory and storage were one write.
    let env = store
        .environment(&repo("octo/envs"), "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        (env.state, env.outputs.clone()),
        (EnvState::Ready, outputs.clone())
    );
    assert_eq!(
        store
            .environment_storage(&repo("octo/envs"), "checkout")
            .await
            .expect("storage"),
        Some(b"storage after".to_vec())
    );
    // Finishing again changes nothing.
    assert!(!finish(&*store, id, &fence, OpState::Failed, serde_json::json!({})).await);
    for bits in [reported::DEPLOYMENT, reported::NOTE, reported::DEPLOYMENT] {
        store
            .update_operation(id, OperationUpdate::Reported(bits))
            .await
            .expect("reported");
    }
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Succeeded);
    assert_eq!(rec.reported, reported::DEPLOYMENT | reported::NOTE);
    assert_eq!(rec.log, "deployed\n\u{1F680} done\n");
    assert_eq!(rec.outputs, outputs);
    assert_eq!(rec.error, None);
    assert_eq!(rec.pid, Some(4242));
    assert_eq!(rec.deployment_id, Some(DeploymentId(9_000_000_001)));
    let (started, done) = (
        rec.started_at.expect("started"),
        rec.finished_at.expect("finished"),
    );
    assert!(started <= done, "{started} > {done}");
    assert_eq!(rec.op, new_op("checkout", 'a', 1));

    // A failure keeps its error.
    let (id2, _) = store
        .plan_operation(new_op("checkout", 'b', 1))
        .await
        .expect("plan");
    let fence2 = start(&*store, id2, "checkout", "A").await.expect("started");
    assert!(
        finish(
            &*store,
            id2,
            &fence2,
            OpState::Failed,
            serde_json::json!({})
        )
        .await
    );
    let rec = store.operation(id2).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Failed);
    assert_eq!(rec.error.as_deref(), Some("deploy.sh exited with status 3"));
    let e = err_text(
        store
            .update_operation(OperationId(id2.0 + 1000), OperationUpdate::Pid(1))
            .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = err_text(
        store
            .update_operation(id2, finished(OpState::Running))
            .await,
    );
    assert!(e.contains("cannot finish as running"), "{e}");

    // History of an environment: newest first, limited, of that repo and name only.
    let (id3, _) = store
        .plan_operation(new_op("checkout", 'c', 1))
        .await
        .expect("plan");
    store
        .plan_operation(new_op("other", 'a', 1))
        .await
        .expect("plan other");
    let mut other_repo = new_op("checkout", 'a', 1);
    other_repo.repo = RepoName::parse("octo/else").expect("repo");
    store.plan_operation(other_repo).await.expect("plan");
    let got: Vec<OperationId> = store
        .operations_for_environment(&repo("octo/envs"), "checkout", 2)
        .await
        .expect("history")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, vec![id3, id2]);
    let all = store
        .operations_for_environment(&repo("octo/envs"), "checkout", 100)
        .await
        .expect("history");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.op.env_name == "checkout"));
}

async fn locks(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("B refused")
        .is_none());
    // Another environment, or the same name in another repo, is another lock.
    assert!(store
        .try_lock_environment(&r, "search", "B", minute)
        .await
        .expect("B other env")
        .is_some());
    assert!(store
        .try_lock_environment(&repo("octo/else"), "checkout", "B", minute)
        .await
        .expect("B other repo")
        .is_some());
    // The holder renews.
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A renews")
        .is_some());
    // B cannot release A's lock.
    store
        .unlock_environment(&r, "checkout", "B")
        .await
        .expect("B unlock");
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("still A's")
        .is_none());
    store
        .unlock_environment(&r, "checkout", "A")
        .await
        .expect("A unlock");
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("B takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A refused")
        .is_none());

    // Expiry: a zero lease has run out as soon as it is taken, and anyone takes it over.
    assert!(store
        .try_lock_environment(&r, "billing", "A", Duration::ZERO)
        .await
        .expect("A takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "billing", "C", minute)
        .await
        .expect("C takes over")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "billing", "A", minute)
        .await
        .expect("A refused")
        .is_none());
    // A, whose lease was taken over, cannot release C's lock.
    store
        .unlock_environment(&r, "billing", "A")
        .await
        .expect("unlock");
    assert!(store
        .try_lock_environment(&r, "billing", "D", minute)
        .await
        .expect("D refused")
        .is_none());
    // A short lease runs out by itself.
    assert!(store
        .try_lock_environment(&r, "short", "A", Duration::from_millis(200))
        .await
        .expect("A takes")
        .is_some());
    let end = Instant::now() + DEADLINE;
    while store
        .try_lock_environment(&r, "short", "B", minute)
        .await
        .expect("B tries")
        .is_none()
    {
        assert!(Instant::now() < end, "a 200 ms lease never ran out");
        tokio::time::sleep(POLL).await;
    }

    // Many holders at once: one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, r) = (store.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            s.try_lock_environment(&r, "contended", &format!("H{i}"), minute)
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("join").expect("lock").is_some());
    }
    assert_eq!(won, 1);
}

/// Issue 9, item 5: a holder whose lease ran out and was taken over writes nothing more,
/// neither a start nor a result (nor the inventory or storage that go with it), and each
/// change of hands raises the lock's epoch, released locks included.
async fn fencing(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    let (id, _) = store
        .plan_operation(new_op("fenced", 'a', 1))
        .await
        .expect("plan");
    // A takes the lock with a lease that has run out at once, and starts the operation.
    let e1 = store
        .try_lock_environment(&r, "fenced", "A", Duration::ZERO)
        .await
        .expect("lock")
        .expect("A holds");
    let a = Fence {
        holder: "A".into(),
        epoch: e1,
    };
    let op = store.operation(id).await.expect("read").expect("op").op;
    assert!(store
        .start_operation(
            id,
            &a,
            EnvironmentUpdate::of(&op, EnvState::Provisioning, id)
        )
        .await
        .expect("start"));
    // Renewal by the same holder keeps the epoch.
    assert_eq!(
        store
            .try_lock_environment(&r, "fenced", "A", Duration::ZERO)
            .await
            .expect("renew"),
        Some(e1)
    );
    // B takes it over: a higher epoch.
    let e2 = store
        .try_lock_environment(&r, "fenced", "B", minute)
        .await
        .expect("lock")
        .expect("B holds");
    assert!(e2 > e1, "{e2} > {e1}");
    // A's late result is fenced off: nothing of it lands.
    assert!(
        !finish(
            &*store,
            id,
            &a,
            OpState::Succeeded,
            serde_json::json!({"x": 1})
        )
        .await
    );
    let rec = store.operation(id).await.expect("read").expect("op");
    assert_eq!(rec.state, OpState::Running);
    let env = store
        .environment(&r, "fenced")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(env.state, EnvState::Provisioning);
    assert_eq!(
        store.environment_storage(&r, "fenced").await.expect("read"),
        None
    );
    // Even with B's epoch, A's name is not B's: still nothing.
    let forged = Fence {
        holder: "A".into(),
        epoch: e2,
    };
    assert!(
        !finish(
            &*store,
            id,
            &forged,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    // B marks the run it found interrupted; A's result still cannot land afterwards.
    store
        .update_operation(id, finished(OpState::Interrupted))
        .await
        .expect("interrupt");
    assert!(!finish(&*store, id, &a, OpState::Succeeded, serde_json::json!({})).await);
    assert_eq!(
        store.operation(id).await.expect("read").expect("op").state,
        OpState::Interrupted
    );
    // A stale fence cannot start the next attempt either; B's can.
    let (next, _) = store
        .plan_operation(new_op("fenced", 'a', 2))
        .await
        .expect("plan");
    let op2 = store.operation(next).await.expect("read").expect("op").op;
    let env2 = EnvironmentUpdate::of(&op2, EnvState::Provisioning, next);
    assert!(!store
        .start_operation(next, &a, env2.clone())
        .await
        .expect("start"));
    let b_fence = Fence {
        holder: "B".into(),
        epoch: e2,
    };
    assert!(store
        .start_operation(next, &b_fence, env2)
        .await
        .expect("start"));
    assert!(
        finish(
            &*store,
            next,
            &b_fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    // Released and taken again: the epoch still only goes up.
    store
        .unlock_environment(&r, "fenced", "B")
        .await
        .expect("unlock");
    let e3 = store
        .try_lock_environment(&r, "fenced", "C", minute)
        .await
        .expect("lock")
        .expect("C holds");
    assert!(e3 > e2, "{e3} > {e2}");
    // A running operation's pid is recorded; a finished one's is not changed.
    let e = err_text(store.update_operation(next, OperationUpdate::Pid(7)).await);
    assert!(e.contains("succeeded"), "{e}");
}

async fn environments_upsert_and_order(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("insert");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Provisioning);
    assert_eq!(e.parameters, serde_json::json!({}));
    assert_eq!(e.outputs, serde_json::json!({}));
    assert_eq!(e.last_operation, None);
    assert_eq!((e.team.as_str(), e.owner.as_str()), ("payments", "alice"));

    let outputs = serde_json::json!({
        "url": {"type": "string", "value": "https://x"},
        "password": {"type": "string", "value": "hunter2", "sensitive": true}
    });
    let mut ready = env_update("octo/envs", "checkout", EnvState::Ready);
    ready.parameters = Some(serde_json::json!({"size": "small"}));
    ready.outputs = Some(outputs.clone());
    ready.last_operation = Some(OperationId(1));
    store.upsert_environment(ready).await.expect("ready");
    let before = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(before.outputs, outputs);
    let shown = before.public();
    assert!(shown.outputs.get("password").is_none());
    assert_eq!(shown.outputs["url"]["value"], "https://x");

    // A delete starts: only the state, owner and last operation change.
    let mut deleting = env_update("octo/envs", "checkout", EnvState::Deleting);
    deleting.owner = "erin".into();
    deleting.last_operation = Some(OperationId(2));
    store.upsert_environment(deleting).await.expect("deleting");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Deleting);
    assert_eq!(e.owner, "erin");
    assert_eq!(e.outputs, outputs);
    assert_eq!(e.parameters, serde_json::json!({"size": "small"}));
    assert_eq!(e.last_operation, Some(OperationId(2)));
    assert!(e.updated_at >= before.updated_at);
    // Without an operation id, the last one stays; given outputs replace the stored ones.
    let mut deleted = env_update("octo/envs", "checkout", EnvState::Deleted);
    deleted.outputs = Some(serde_json::json!({}));
    store.upsert_environment(deleted).await.expect("deleted");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Deleted);
    assert_eq!(e.last_operation, Some(OperationId(2)));
    assert_eq!(e.outputs, serde_json::json!({}));

    // Ordered by repo, then name (bytewise: upper case before lower case).
    for (r, n) in [
        ("octo/zeta", "b"),
        ("octo/alpha", "z"),
        ("octo/zeta", "a"),
        ("octo/alpha", "m"),
        ("octo/alpha", "Q"),
    ] {
        store
            .upsert_environment(env_update(r, n, EnvState::Ready))
            .await
            .expect("insert");
    }
    let all = store.environments(None).await.expect("all");
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.repo.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("octo/alpha", "Q"),
            ("octo/alpha", "m"),
            ("octo/alpha", "z"),
            ("octo/envs", "checkout"),
            ("octo/zeta", "a"),
            ("octo/zeta", "b")
        ]
    );
    let zeta: Vec<String> = store
        .environments(Some(&repo("octo/zeta")))
        .await
        .expect("zeta")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(zeta, vec!["a", "b"]);
    assert!(store
        .environments(Some(&repo("octo/none")))
        .await
        .expect("none")
        .is_empty());
}

async fn merges(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    assert_eq!(store.merge_of(&r, &sha('a')).await.expect("read"), None);
    store
        .record_merge(&r, &sha('a'), PrNumber(12))
        .await
        .expect("record");
    store
        .record_merge(&r, &sha('a'), PrNumber(12))
        .await
        .expect("record again");
    // The first record stands.
    store
        .record_merge(&r, &sha('a'), PrNumber(99))
        .await
        .expect("record other");
    assert_eq!(
        store.merge_of(&r, &sha('a')).await.expect("read"),
        Some(PrNumber(12))
    );
    assert_eq!(store.merge_of(&r, &sha('b')).await.expect("read"), None);
    assert_eq!(
        store
            .merge_of(&repo("octo/else"), &sha('a'))
            .await
            .expect("read"),
        None
    );
}

/// The notes outbox: a queued note marks its operations noted with it (one transaction),
/// waits out its grace, has one holder at a time, goes back with backoff when its push
/// fails, and counts as pending until it lands.
async fn notes_outbox(b: &Backend) {
    use paved::store::{NewNote, Prunable};
    let store = b.open().await;
    let (op, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    let note = NewNote {
        repo: repo("octo/envs"),
        clone_url: "file:///srv/git/octo/envs.git".into(),
        installation: None,
        commit: sha('a'),
        text: "Paved-Audit: v1\nEnvironment: checkout\n".into(),
    };
    // Queued with a grace: the outbox leaves it to whoever queued it.
    let id = store
        .queue_note(note.clone(), &[op], Duration::from_secs(60))
        .await
        .expect("queue");
    let rec = store.operation(op).await.expect("read").expect("op");
    assert_ne!(rec.reported & reported::NOTE, 0, "noted with the queueing");
    assert!(store.note_pending(op).await.expect("pending"));
    let depth = store.outbox_depth().await.expect("depth");
    assert_eq!(depth.pending, 1);
    assert!(depth.oldest_ms.is_some_and(|t| t <= now_ms() + 1000));
    let lease = Duration::from_secs(60);
    assert!(store
        .claim_notes("replica-b", lease, 10)
        .await
        .expect("claim")
        .is_empty());
    // Its queuer takes it at once; nobody else may meanwhile.
    let mine = store
        .claim_note(id, "replica-a", lease)
        .await
        .expect("claim one")
        .expect("claimed");
    assert_eq!((mine.note.commit.clone(), mine.attempts), (sha('a'), 1));
    assert_eq!(mine.note.text, note.text);
    assert!(store
        .claim_note(id, "replica-b", lease)
        .await
        .expect("claim one")
        .is_none());
    // The push failed: due again right away here (retry_in 0), claimed by the outbox.
    store
        .note_failed(id, "the origin refused", Duration::ZERO)
        .await
        .expect("failed");
    let again = store
        .claim_notes("replica-b", lease, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(store.pending_notes().await.expect("list").len(), 1);
    store.note_landed(id).await.expect("landed");
    // Kept until the retention passes; a pending note is never pruned.
    let pending = store
        .queue_note(note.clone(), &[], Duration::ZERO)
        .await
        .expect("queue");
    let later = now_ms() + 60_000;
    assert_eq!(
        store
            .prune(Prunable::NoteLinks, now_ms() - 60_000, 10)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        store
            .prune(Prunable::NoteLinks, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::LandedNotes, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(store.pending_notes().await.expect("list")[0].id, pending);
    store.note_landed(pending).await.expect("landed");
    assert!(!store.note_pending(op).await.expect("pending"));
    assert_eq!(store.outbox_depth().await.expect("depth").pending, 0);
    assert!(store.pending_notes().await.expect("list").is_empty());
    assert!(store
        .claim_note(id, "replica-b", lease)
        .await
        .expect("claim one")
        .is_none());
}

async fn repositories(b: &Backend) {
    use paved::ids::InstallationId;
    use paved::store::KnownRepository;
    let store = b.open().await;
    assert_eq!(
        store.repository(&repo("octo/envs")).await.expect("read"),
        None
    );
    let known = |name: &str, branch: &str, inst: Option<u64>| KnownRepository {
        repo: repo(name),
        default_branch: branch.into(),
        clone_url: format!("https://github.com/{name}.git"),
        installation: inst.map(InstallationId),
    };
    store
        .note_repository(&known("octo/envs", "main", Some(7)))
        .await
        .expect("note");
    store
        .note_repository(&known("acme/a", "trunk", None))
        .await
        .expect("note");
    // A later delivery's description replaces the earlier one.
    store
        .note_repository(&known("octo/envs", "develop", Some(8)))
        .await
        .expect("note again");
    assert_eq!(
        store.repository(&repo("octo/envs")).await.expect("read"),
        Some(known("octo/envs", "develop", Some(8)))
    );
    let all = store.repositories().await.expect("all");
    assert_eq!(
        all,
        vec![
            known("acme/a", "trunk", None),
            known("octo/envs", "develop", Some(8))
        ]
    );
}

async fn requests(b: &Backend) {
    use paved::store::NewRequest;
    let store = b.open().await;
    let new = |name: &str, who: &str| NewRequest {
        repo: repo("octo/envs"),
        action: "create".into(),
        env_name: name.into(),
        team: "payments".into(),
        requester: who.into(),
        branch: String::new(),
        manifest_path: format!("environments/payments/{name}.yaml"),
    };
    let first = store
        .open_request(&new("a", "octocat"))
        .await
        .expect("open");
    let id = first.expect("the first request for a is open");
    // One open request per environment.
    assert_eq!(
        store.open_request(&new("a", "hubot")).await.expect("open"),
        None
    );
    let other = store.open_request(&new("b", "hubot")).await.expect("open");
    assert!(other.is_some());
    store
        .set_request_pr(id, 7, "https://github.com/octo/envs/pull/7")
        .await
        .expect("pr");
    let r = store.request(id).await.expect("read").expect("request");
    assert_eq!(
        (r.pr_number, r.open, r.requester.as_str()),
        (Some(7), true, "octocat")
    );
    assert_eq!(r.branch_name(), format!("paved/requests/a-{id}"));
    assert_eq!(r.head_sha, None);
    store
        .set_request_head(id, &"f".repeat(40))
        .await
        .expect("head");
    let r = store.request(id).await.expect("read").expect("request");
    assert_eq!(r.head_sha.as_deref(), Some("f".repeat(40).as_str()));
    assert_eq!(
        store
            .request_for_pr(&repo("octo/envs"), 7)
            .await
            .expect("by pr")
            .map(|r| r.id),
        Some(id)
    );
    assert_eq!(
        store
            .open_request_for(&repo("octo/envs"), "a")
            .await
            .expect("open for")
            .map(|r| r.id),
        Some(id)
    );
    // Closed, the environment takes a new request.
    store.close_request(id).await.expect("close");
    assert_eq!(
        store
            .open_request_for(&repo("octo/envs"), "a")
            .await
            .expect("open for"),
        None
    );
    assert!(store
        .open_request(&new("a", "hubot"))
        .await
        .expect("open")
        .is_some());
}

/// What the portal's operations page reads: troubled deliveries, newest first, and
/// operations not finished.
async fn operator_views(b: &Backend) {
    let store = b.open().await;
    for (id, key) in [
        ("d-clean", "o/r#1"),
        ("d-failed", "o/r#2"),
        ("d-retried", "o/r#3"),
    ] {
        store
            .accept_delivery(delivery(id, key, "{}"))
            .await
            .expect("accept");
        // Received in this order, a millisecond apart at least.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for _ in 0..3 {
        let d = store
            .claim_delivery()
            .await
            .expect("claim")
            .expect("a delivery");
        let outcome = match d.id.as_str() {
            "d-failed" => Outcome::Failed {
                error: "payload unusable".into(),
            },
            "d-retried" => Outcome::Retry {
                error: "GitHub answered 502".into(),
                after: std::time::Duration::ZERO,
            },
            _ => Outcome::Done,
        };
        store.finish_delivery(&d.id, outcome).await.expect("finish");
    }
    let troubled: Vec<(String, Option<String>)> = store
        .troubled_deliveries(10)
        .await
        .expect("troubled")
        .into_iter()
        .map(|d| (d.id, d.last_error))
        .collect();
    assert_eq!(
        troubled,
        [
            (
                "d-retried".to_string(),
                Some("GitHub answered 502".to_string())
            ),
            ("d-failed".into(), Some("payload unusable".into())),
        ]
    );
    assert_eq!(store.troubled_deliveries(1).await.expect("one").len(), 1);
    // Operations: planned and running are unfinished; a finished one is not.
    let r = repo("octo/envs");
    let (a, _) = store
        .plan_operation(new_op("a-env", 'a', 1))
        .await
        .expect("plan");
    let (b_id, _) = store
        .plan_operation(new_op("b-env", 'b', 1))
        .await
        .expect("plan");
    let ids = |ops: Vec<OperationRecord>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unfinished_operations(&r).await.expect("unfinished")),
        [a, b_id]
    );
    let fence = start(&*store, a, "a-env", "me").await.expect("started");
    let unfinished = store.unfinished_operations(&r).await.expect("unfinished");
    assert_eq!(unfinished[0].state, OpState::Running);
    assert!(unfinished[0].log.is_empty(), "read without its log");
    assert!(
        finish(
            &*store,
            a,
            &fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    assert_eq!(
        ids(store.unfinished_operations(&r).await.expect("unfinished")),
        [b_id]
    );
    assert!(store
        .unfinished_operations(&repo("octo/other"))
        .await
        .expect("other")
        .is_empty());
}

async fn inventory_pages(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    for (name, team) in [
        ("b-env", "payments"),
        ("a-env", "search"),
        ("B-upper", "payments"),
        ("c-env", "payments"),
    ] {
        let mut u = env_update("octo/envs", name, EnvState::Ready);
        u.team = team.into();
        store.upsert_environment(u).await.expect("upsert");
    }
    store
        .upsert_environment(env_update("octo/other", "a-env", EnvState::Ready))
        .await
        .expect("upsert");
    // A page, chosen in the database: counted, by name in byte order (upper case first),
    // this repository's only.
    let names =
        |rows: &[EnvironmentRecord]| rows.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let all = EnvironmentFilter::default();
    let (total, rows) = store.environment_page(&r, &all, 0, 10).await.expect("page");
    assert_eq!(total, 4);
    assert_eq!(names(&rows), ["B-upper", "a-env", "b-env", "c-env"]);
    let (total, rows) = store.environment_page(&r, &all, 1, 2).await.expect("page");
    assert_eq!(
        (total, names(&rows)),
        (4, vec!["a-env".to_string(), "b-env".into()])
    );
    let (total, rows) = store.environment_page(&r, &all, 9, 2).await.expect("page");
    assert_eq!((total, rows.len()), (4, 0));
    let (total, rows) = store
        .environment_page(&r, &all, 0, 0)
        .await
        .expect("count only");
    assert_eq!((total, rows.len()), (4, 0));
    // By team: exactly the teams listed; a team with a comma cannot match across two.
    let teams = |t: &[&str]| EnvironmentFilter {
        teams: Some(t.iter().map(ToString::to_string).collect()),
        name_contains: None,
    };
    let (total, rows) = store
        .environment_page(&r, &teams(&["search"]), 0, 10)
        .await
        .expect("page");
    assert_eq!((total, names(&rows)), (1, vec!["a-env".to_string()]));
    let (total, _) = store
        .environment_page(&r, &teams(&["pay"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0, "a prefix of a team is not the team");
    let (total, _) = store
        .environment_page(&r, &teams(&["x,payments"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0);
    let (total, _) = store
        .environment_page(&r, &teams(&[]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0);
    let (total, _) = store
        .environment_page(&r, &teams(&["search", "payments"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 4);
    // By a part of the name, case-insensitively; `%` and `_` are no wildcards.
    let part = |q: &str| EnvironmentFilter {
        teams: Some(vec!["payments".into()]),
        name_contains: Some(q.into()),
    };
    let (total, rows) = store
        .environment_page(&r, &part("-ENV"), 0, 10)
        .await
        .expect("page");
    assert_eq!(
        (total, names(&rows)),
        (2, vec!["b-env".to_string(), "c-env".into()])
    );
    let (_, rows) = store
        .environment_page(&r, &part("UPP"), 0, 10)
        .await
        .expect("page");
    assert_eq!(names(&rows), ["B-upper"]);
    for wild in ["%", "_", "b_env"] {
        let (total, _) = store
            .environment_page(&r, &part(wild), 0, 10)
            .await
            .expect("page");
        assert_eq!(total, 0, "{wild}");
    }
    // An operation read without its log keeps everything else.
    let (id, _) = store
        .plan_operation(new_op("a-env", 'a', 1))
        .await
        .expect("plan");
    let fence = start(&*store, id, "a-env", "me").await.expect("started");
    assert!(
        finish(
            &*store,
            id,
            &fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    let full = store.operation(id).await.expect("read").expect("op");
    let light = store
        .operation_without_log(id)
        .await
        .expect("read")
        .expect("op");
    assert!(!full.log.is_empty(), "the scenario needs a log");
    assert_eq!(light.log, "");
    assert_eq!(
        (light.state, light.op.env_name.as_str()),
        (full.state, full.op.env_name.as_str())
    );
    assert_eq!(
        store
            .operation_without_log(OperationId(987_654))
            .await
            .expect("read"),
        None
    );
}

async fn storage_round_trip(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    // No environment row: nothing is created, and the caller hears about it.
    let e = err_text(
        store
            .set_environment_storage(&r, "checkout", vec![1, 2, 3])
            .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        None
    );
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("insert");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        None
    );
    // Every byte value, NULs included, and more than a page.
    let archive: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
    store
        .set_environment_storage(&r, "checkout", archive.clone())
        .await
        .expect("store");
    // An inventory update does not touch the archive.
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Ready))
        .await
        .expect("update");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        Some(archive)
    );
    store
        .set_environment_storage(&r, "checkout", Vec::new())
        .await
        .expect("store empty");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        Some(Vec::new())
    );
}

/// SPEC 12: an environment's last governed change, and the paths a direct push changed.
async fn governed_input(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let other = repo("octo/other");
    // No row: nothing to record, and no row is made.
    store
        .set_governed(
            &r,
            "checkout",
            "a".repeat(40).as_str(),
            "b".repeat(40).as_str(),
        )
        .await
        .expect("no row is fine");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Ready))
        .await
        .expect("insert");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!((e.governed_sha, e.code_sha), (None, None));
    let (at, code) = ("a".repeat(40), "b".repeat(40));
    store
        .set_governed(&r, "checkout", &at, &code)
        .await
        .expect("set");
    // An inventory update (a run's start or end) keeps it.
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("update");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.governed_sha.as_deref(), Some(at.as_str()));
    assert_eq!(e.code_sha.as_deref(), Some(code.as_str()));

    // Ungoverned paths: per repository, by path, the latest push's commit.
    assert!(store.ungoverned(&r).await.expect("read").is_empty());
    let paths = vec![
        "catalog/site/deploy.sh".to_string(),
        ".paved/platform.yaml".to_string(),
    ];
    store
        .flag_ungoverned(&r, &paths, &"c".repeat(40), "mallory")
        .await
        .expect("flag");
    store
        .flag_ungoverned(&r, &paths[..1], &"d".repeat(40), "mallory")
        .await
        .expect("flag again");
    store
        .flag_ungoverned(&other, &paths[..1], &"e".repeat(40), "eve")
        .await
        .expect("another repository");
    assert_eq!(
        store.ungoverned(&r).await.expect("read"),
        vec![
            (".paved/platform.yaml".to_string(), "c".repeat(40)),
            ("catalog/site/deploy.sh".to_string(), "d".repeat(40)),
        ]
    );
    store
        .clear_ungoverned(&r, &paths[..1])
        .await
        .expect("clear");
    assert_eq!(
        store.ungoverned(&r).await.expect("read"),
        vec![(".paved/platform.yaml".to_string(), "c".repeat(40))]
    );
    assert_eq!(store.ungoverned(&other).await.expect("read").len(), 1);
}

async fn comments_runs_and_counts(b: &Backend) {
    let store = b.open().await;
    store.ping().await.expect("ping");
    let counts = store.delivery_counts().await.expect("counts");
    let zero: BTreeMap<String, u64> = ["done", "failed", "pending", "running"]
        .into_iter()
        .map(|s| (s.to_owned(), 0))
        .collect();
    assert_eq!(counts, zero);

    let r = repo("octo/env");
    assert_eq!(store.pr_comment(&r, PrNumber(3)).await.expect("get"), None);
    store
        .set_pr_comment(&r, PrNumber(3), CommentId(11))
        .await
        .expect("set");
    store
        .set_pr_comment(&r, PrNumber(3), CommentId(12))
        .await
        .expect("set");
    store
        .set_pr_comment(&r, PrNumber(4), CommentId(u64::from(u32::MAX) + 5))
        .await
        .expect("set");
    assert_eq!(
        store.pr_comment(&r, PrNumber(3)).await.expect("get"),
        Some(CommentId(12))
    );
    assert_eq!(
        store.pr_comment(&r, PrNumber(4)).await.expect("get"),
        Some(CommentId(u64::from(u32::MAX) + 5))
    );
    let report = serde_json::json!({"checks": [{"name": "paved/schema", "ok": true}]});
    let run_id = store
        .insert_run(NewRun {
            repo: r.clone(),
            pr: PrNumber(3),
            head_sha: sha('a'),
            base_sha: sha('b'),
            delivery_id: did("d-9"),
            report: report.clone(),
        })
        .await
        .expect("insert run");
    let run = store.run(run_id).await.expect("run").expect("stored");
    assert_eq!(run.id, run_id);
    assert_eq!((run.repo.as_str(), run.pr), ("octo/env", 3));
    assert_eq!(run.head_sha, sha('a').as_str());
    assert_eq!(run.base_sha, sha('b').as_str());
    assert_eq!(run.delivery_id, "d-9");
    assert_eq!(run.report, report);
    assert!(chrono::DateTime::parse_from_rfc3339(&run.created_at).is_ok());
    assert!(store
        .run(RunId(run_id.0 + 1000))
        .await
        .expect("run")
        .is_none());

    for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
        store
            .accept_delivery(delivery(&format!("c{i}"), k, "{}"))
            .await
            .expect("accept");
    }
    let c = store.claim_delivery().await.expect("claim").expect("c0");
    store
        .finish_delivery(&c.id, Outcome::Done)
        .await
        .expect("finish");
    let c = store.claim_delivery().await.expect("claim").expect("c1");
    store
        .finish_delivery(&c.id, Outcome::Failed { error: "no".into() })
        .await
        .expect("finish");
    store.claim_delivery().await.expect("claim").expect("c2");
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(
        (
            counts["pending"],
            counts["running"],
            counts["done"],
            counts["failed"]
        ),
        (0, 1, 1, 1)
    );
}

/// Deliveries accepted at the same moment are grouped into one commit: a redelivery in
/// the same group is still a duplicate, and each key's deliveries are claimed in the order
/// they were accepted.
async fn duplicates_at_once(b: &Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_delivery(delivery(&format!("g-{}", i % 20), "o/r#1", "{}"))
                .await
        }));
    }
    let mut new = 0;
    for t in tasks {
        if t.await.expect("join").expect("accept") == Accepted::New {
            new += 1;
        }
    }
    assert_eq!(new, 20);
    assert_eq!(
        store.delivery_counts().await.expect("counts")["pending"],
        20
    );
    // One key, accepted one after another: claimed in that order.
    for i in 0..5 {
        store
            .accept_delivery(delivery(&format!("o-{i}"), "o/r#2", "{}"))
            .await
            .expect("accept");
    }
    let mut order = Vec::new();
    while order.len() < 25 {
        let d = store
            .claim_delivery()
            .await
            .expect("claim")
            .expect("one is claimable");
        if d.queue_key == "o/r#2" {
            order.push(d.id.as_str().to_string());
        } else {
            order.push(String::new());
        }
        store
            .finish_delivery(&d.id, Outcome::Done)
            .await
            .expect("finish");
    }
    let mine: Vec<&str> = order
        .iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(mine, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
}

/// Retention prunes finished deliveries, check-run reports and finished operations' logs,
/// a batch at a time; it never touches pending or running deliveries, an operation's record
/// and outcome, or the inventory.
async fn retention(b: &Backend) {
    use paved::store::Prunable;
    let store = b.open().await;
    for (id, key) in [("r-done", "k1"), ("r-failed", "k2"), ("r-running", "k3")] {
        store
            .accept_delivery(delivery(id, key, "{}"))
            .await
            .expect("accept");
    }
    let c = claim_within(store.as_ref(), "r-done", DEADLINE).await;
    store
        .finish_delivery(&c.id, Outcome::Done)
        .await
        .expect("done");
    let c = claim_within(store.as_ref(), "r-failed", DEADLINE).await;
    store
        .finish_delivery(&c.id, Outcome::Failed { error: "no".into() })
        .await
        .expect("failed");
    claim_within(store.as_ref(), "r-running", DEADLINE).await;
    store
        .accept_delivery(delivery("r-pending", "k4", "{}"))
        .await
        .expect("accept");
    let run_id = store
        .insert_run(NewRun {
            repo: repo("octo/envs"),
            pr: PrNumber(7),
            head_sha: sha('a'),
            base_sha: sha('b'),
            delivery_id: did("r-done"),
            report: serde_json::json!({"environments": []}),
        })
        .await
        .expect("run");
    let (op, _) = store
        .plan_operation(new_op("kept", 'c', 1))
        .await
        .expect("plan");
    let fence = start(store.as_ref(), op, "kept", "me")
        .await
        .expect("started");
    let outputs = serde_json::json!({"url": {"type": "string", "value": "https://kept.test"}});
    assert!(
        finish(
            store.as_ref(),
            op,
            &fence,
            OpState::Succeeded,
            outputs.clone()
        )
        .await
    );
    let (running_op, _) = store
        .plan_operation(new_op("busy", 'd', 1))
        .await
        .expect("plan");
    start(store.as_ref(), running_op, "busy", "me")
        .await
        .expect("started");

    // Nothing is older than an hour ago.
    let hour_ago = now_ms() - 3_600_000;
    for what in Prunable::ALL {
        assert_eq!(
            store.prune(what, hour_ago, 100).await.expect("prune"),
            0,
            "{what:?}"
        );
    }

    // Everything finished is older than a minute from now; batches of one.
    let later = now_ms() + 60_000;
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        store.prune(Prunable::Runs, later, 10).await.expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::OperationLogs, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::OperationLogs, later, 10)
            .await
            .expect("prune"),
        0
    );

    for gone in ["r-done", "r-failed"] {
        assert!(
            store.delivery(&did(gone)).await.expect("read").is_none(),
            "{gone}"
        );
    }
    assert_eq!(
        state_of(store.as_ref(), "r-running").await,
        DeliveryState::Running
    );
    assert_eq!(
        state_of(store.as_ref(), "r-pending").await,
        DeliveryState::Pending
    );
    assert!(store.run(run_id).await.expect("read").is_none());

    // The operation and its outcome stay; only the log went. The inventory is whole.
    let kept = store.operation(op).await.expect("read").expect("kept");
    assert_eq!(kept.state, OpState::Succeeded);
    assert_eq!(kept.outputs, outputs);
    assert_eq!(
        kept.op.approvers,
        vec!["carol".to_string(), "dave".to_string()]
    );
    assert_eq!(kept.log, "");
    let busy = store
        .operation(running_op)
        .await
        .expect("read")
        .expect("busy");
    assert_eq!(busy.state, OpState::Running);
    let env = store
        .environment(&repo("octo/envs"), "kept")
        .await
        .expect("read")
        .expect("inventory");
    assert_eq!(env.state, EnvState::Ready);
    assert_eq!(
        store
            .environment_storage(&repo("octo/envs"), "kept")
            .await
            .expect("storage"),
        Some(b"storage after".to_vec())
    );
}

/// What a restart finds. A single node (SQLite) owns everything: whatever was running
/// died with it. Replicas (PostgreSQL) only touch what no live replica holds: operations
/// whose environment lock ran out, expired locks; deliveries come back by lease expiry.
async fn restart_recovery(b: &Backend) {
    let r = repo("octo/envs");
    let hour = Duration::from_secs(3600);
    let (planned, live, unlocked, expired, done) = {
        let store = b.open().await;
        store
            .accept_delivery(delivery("c1", "o/r#1", "{\"n\":1}"))
            .await
            .expect("accept");
        store
            .accept_delivery(delivery("c2", "o/r#2", "{\"n\":2}"))
            .await
            .expect("accept");
        let c = store.claim_delivery().await.expect("claim").expect("c1");
        assert_eq!(c.id.as_str(), "c1");
        let mut ids = Vec::new();
        for env in ["a", "b", "c", "d", "e"] {
            ids.push(
                store
                    .plan_operation(new_op(env, 'a', 1))
                    .await
                    .expect("plan")
                    .0,
            );
        }
        // b: running, its lock held for an hour; c: running, no lock; d: running, its
        // lock ran out; e: finished.
        assert!(store
            .try_lock_environment(&r, "b", "node-1:b", hour)
            .await
            .expect("lock")
            .is_some());
        assert!(store
            .try_lock_environment(&r, "d", "node-1:d", Duration::ZERO)
            .await
            .expect("lock")
            .is_some());
        for (&id, env) in ids[1..].iter().zip(["b", "c", "d", "e"]) {
            let holder = format!("node-1:{env}");
            // d's lease runs out as soon as it is taken.
            let ttl = if env == "d" { Duration::ZERO } else { hour };
            let epoch = store
                .try_lock_environment(&r, env, &holder, ttl)
                .await
                .expect("lock")
                .expect("held");
            let fence = Fence { holder, epoch };
            let op = store.operation(id).await.expect("read").expect("op").op;
            assert!(store
                .start_operation(
                    id,
                    &fence,
                    EnvironmentUpdate::of(&op, EnvState::Provisioning, id)
                )
                .await
                .expect("start"));
            store
                .update_operation(id, OperationUpdate::Pid(500 + id.0))
                .await
                .expect("pid");
            if env == "e" {
                assert!(
                    finish(
                        &*store,
                        id,
                        &fence,
                        OpState::Succeeded,
                        serde_json::json!({})
                    )
                    .await
                );
            }
            if env == "c" || env == "e" {
                store
                    .unlock_environment(&r, env, &fence.holder)
                    .await
                    .expect("unlock");
            }
        }
        // Dropped with c1 and b, c, d running: the server died.
        (ids[0], ids[1], ids[2], ids[3], ids[4])
    };
    let store = b.open().await;
    let hit = store
        .interrupt_running_operations()
        .await
        .expect("interrupt");
    let hit_ids: Vec<OperationId> = hit.iter().map(|o| o.id).collect();
    match b.kind {
        Kind::Sqlite => assert_eq!(hit_ids, vec![live, unlocked, expired]),
        Kind::Postgres => assert_eq!(hit_ids, vec![unlocked, expired]),
    }
    // As they were: running, with the pid whose process group may need killing.
    for o in &hit {
        assert_eq!(o.state, OpState::Running);
        assert_eq!(o.pid, Some(500 + o.id.0));
        assert_eq!(o.finished_at, None);
        let now = store.operation(o.id).await.expect("read").expect("op");
        assert_eq!(now.state, OpState::Interrupted);
        assert_eq!(
            now.error.as_deref(),
            Some("interrupted: the server stopped while it ran")
        );
        assert!(now.finished_at.is_some());
        assert_eq!(now.pid, Some(500 + o.id.0));
    }
    let state = |id| {
        let store = store.clone();
        async move { store.operation(id).await.expect("read").expect("op").state }
    };
    assert_eq!(state(planned).await, OpState::Planned);
    assert_eq!(state(done).await, OpState::Succeeded);
    assert_eq!(
        state(live).await,
        match b.kind {
            Kind::Sqlite => OpState::Interrupted,
            Kind::Postgres => OpState::Running,
        }
    );
    assert!(store
        .interrupt_running_operations()
        .await
        .expect("again")
        .is_empty());

    let released = store.release_all_locks().await.expect("release");
    match b.kind {
        // Both locks.
        Kind::Sqlite => assert_eq!(released, 2),
        // Only the expired one: b's holder may be alive.
        Kind::Postgres => {
            assert_eq!(released, 1);
            assert!(store
                .try_lock_environment(&r, "b", "node-2:b", hour)
                .await
                .expect("b still locked")
                .is_none());
        }
    }
    assert!(store
        .try_lock_environment(&r, "d", "node-2:d", hour)
        .await
        .expect("d is free")
        .is_some());

    let requeued = store.requeue_interrupted().await.expect("requeue");
    match b.kind {
        Kind::Sqlite => {
            assert_eq!(requeued, 1);
            let c = store.claim_delivery().await.expect("claim").expect("c1");
            assert_eq!((c.id.as_str(), c.attempts), ("c1", 2));
            assert_eq!(c.body, b"{\"n\":1}");
            let c = store.claim_delivery().await.expect("claim").expect("c2");
            assert_eq!(c.id.as_str(), "c2");
        }
        Kind::Postgres => {
            // c1 stays leased to the first instance (until its lease runs out).
            assert_eq!(requeued, 0);
            assert_eq!(state_of(&*store, "c1").await, DeliveryState::Running);
            let c = store.claim_delivery().await.expect("claim").expect("c2");
            assert_eq!(c.id.as_str(), "c2");
            assert!(store.claim_delivery().await.expect("claim").is_none());
        }
    }
}

async fn migrations_apply_on_an_empty_database(b: &Backend) {
    // Through `paved migrate` and the service's store selection by URL scheme.
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, fresh_url) = match b.kind {
        Kind::Sqlite => (
            format!("sqlite://{}", dir.path().join("fresh.sqlite").display()),
            None,
        ),
        Kind::Postgres => {
            let pg = b.pg.as_ref().expect("pg");
            // postgresql:// is accepted too.
            let url = b.url.replacen("postgres://", "postgresql://", 1);
            // A database that does not exist yet is created.
            let fresh = format!("paved_test_{:016x}", rand::random::<u64>());
            (url, Some((fresh.clone(), pg.url_of(&fresh))))
        }
    };
    let config = |url: &str| {
        Config::load(
            &Overrides {
                database_url: Some(url.to_owned()),
                data_dir: Some(dir.path().join("data")),
                ..Default::default()
            },
            &|_| None,
        )
        .expect("config")
    };
    paved::service::migrate(&config(&url))
        .await
        .expect("migrate");
    paved::service::migrate(&config(&url))
        .await
        .expect("migrate again is a no-op");
    let store = paved::service::open_store(&config(&url))
        .await
        .expect("open after migrate");
    store.ping().await.expect("ping");
    store
        .accept_delivery(delivery("m1", "k", "{}"))
        .await
        .expect("accept");
    let (op, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    drop(store);
    // Opening again applies nothing and keeps everything.
    let store = paved::service::open_store(&config(&url))
        .await
        .expect("reopen");
    assert!(store.operation(op).await.expect("read").is_some());
    assert_eq!(state_of(&*store, "m1").await, DeliveryState::Pending);
    drop(store);
    // The store's own entry points agree.
    match b.kind {
        Kind::Sqlite => SqliteStore::migrate(&url).await.expect("migrate"),
        Kind::Postgres => PgStore::migrate(&url).await.expect("migrate"),
    }
    let e = paved::service::open_store(&config("mysql://localhost/paved"))
        .await
        .err()
        .expect("unknown scheme refused");
    assert!(
        e.to_string().contains("database_url must start with"),
        "{e}"
    );

    if let Some((name, fresh_url)) = fresh_url {
        let pg = b.pg.as_ref().expect("pg");
        let result = async {
            paved::service::migrate(&config(&fresh_url)).await?;
            let store = PgStore::open(&fresh_url).await?;
            store.ping().await?;
            store.close().await;
            anyhow::Ok(())
        }
        .await;
        drop_database(&pg.server, &name).await;
        result.expect("migrate creates a missing database");
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL replicas
// ---------------------------------------------------------------------------------------

/// Two replicas, four claimers each, 200 deliveries over 40 pull requests accepted
/// through both at once: every delivery is claimed exactly once, the deliveries of one
/// pull request never run at the same time and run in the order they were accepted.
async fn replicas_claim_each_delivery_once(b: &Backend) {
    let a = Arc::new(b.open_pg().await);
    let bb = Arc::new(b.open_pg().await);
    assert_ne!(a.instance_id(), bb.instance_id());
    const KEYS: usize = 40;
    const PER_KEY: usize = 5;
    const TOTAL: usize = KEYS * PER_KEY;

    // Each key's deliveries are accepted in order, alternately through either replica;
    // the keys concurrently.
    let mut accepting = Vec::new();
    for k in 0..KEYS {
        let stores: [Arc<PgStore>; 2] = [a.clone(), bb.clone()];
        accepting.push(tokio::spawn(async move {
            for n in 0..PER_KEY {
                let s = &stores[(k + n) % 2];
                let got = s
                    .accept_delivery(delivery(&format!("k{k}-n{n}"), &format!("o/r#{k}"), "{}"))
                    .await
                    .expect("accept");
                assert_eq!(got, Accepted::New);
            }
        }));
    }

    #[derive(Default)]
    struct Seen {
        order: HashMap<String, Vec<String>>,
        running: HashSet<String>,
        claims: Vec<String>,
        by: [usize; 2],
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let end = Instant::now() + Duration::from_secs(60);
    let mut claimers = Vec::new();
    for (which, store) in [(0usize, a.clone()), (1, bb.clone())] {
        for _ in 0..4 {
            let (store, seen) = (store.clone(), seen.clone());
            claimers.push(tokio::spawn(async move {
                loop {
                    if seen.lock().unwrap().claims.len() >= TOTAL {
                        return;
                    }
                    assert!(Instant::now() < end, "not all deliveries claimed in time");
                    let Some(d) = store.claim_delivery().await.expect("claim") else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    {
                        let mut s = seen.lock().unwrap();
                        assert!(
                            s.running.insert(d.queue_key.clone()),
                            "two deliveries of {} running at once",
                            d.queue_key
                        );
                        s.order
                            .entry(d.queue_key.clone())
                            .or_default()
                            .push(d.id.as_str().to_owned());
                        s.claims.push(d.id.as_str().to_owned());
                        s.by[which] += 1;
                    }
                    tokio::task::yield_now().await;
                    seen.lock().unwrap().running.remove(&d.queue_key);
                    store
                        .finish_delivery(&d.id, Outcome::Done)
                        .await
                        .expect("finish");
                }
            }));
        }
    }
    for t in accepting {
        t.await.expect("accept task");
    }
    for t in claimers {
        t.await.expect("claimer");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let unique: HashSet<&String> = seen.claims.iter().collect();
    assert_eq!(seen.claims.len(), TOTAL, "claims: {}", seen.claims.len());
    assert_eq!(unique.len(), TOTAL, "a delivery was claimed twice");
    for k in 0..KEYS {
        let want: Vec<String> = (0..PER_KEY).map(|n| format!("k{k}-n{n}")).collect();
        assert_eq!(seen.order[&format!("o/r#{k}")], want, "order of key {k}");
    }
    assert!(
        seen.by[0] > 0 && seen.by[1] > 0,
        "both replicas claimed: {:?}",
        seen.by
    );
    let counts = a.delivery_counts().await.expect("counts");
    assert_eq!(counts["done"], TOTAL as u64);
    assert_eq!(counts["pending"] + counts["running"], 0);
    for d in seen.claims.iter().take(5) {
        let rec = bb.delivery(&did(d)).await.expect("read").expect("stored");
        assert_eq!(rec.attempts, 1, "{d} was claimed more than once");
    }
}

/// A replica that stops renewing loses its delivery to another one once its lease runs
/// out, and its late result is not committed.
async fn replicas_take_over_an_expired_lease(b: &Backend) {
    let lease = Duration::from_millis(300);
    let a = b.open_pg().await.with_lease(lease);
    let other = b.open_pg().await;
    a.accept_delivery(delivery("slow", "o/r#1", "{}"))
        .await
        .expect("accept");
    other
        .accept_delivery(delivery("next", "o/r#1", "{}"))
        .await
        .expect("accept");
    let before = Instant::now();
    let d = a.claim_delivery().await.expect("claim").expect("slow");
    let claimed = Instant::now();
    assert_eq!((d.id.as_str(), d.attempts), ("slow", 1));
    if before.elapsed() < lease / 2 {
        // Leased: the other replica cannot take it, nor the next one of its key.
        assert!(other.claim_delivery().await.expect("claim").is_none());
    }
    // Wait (polling, with a deadline) until the lease has surely run out.
    let expired = claimed + lease + Duration::from_millis(50);
    while Instant::now() < expired {
        tokio::time::sleep(POLL).await;
    }
    // The replica holding it does not claim it again: its task is still at work.
    assert!(a.claim_delivery().await.expect("claim").is_none());
    // Another replica does, as a new attempt (the first one "died").
    let again = claim_within(&other, "slow", DEADLINE).await;
    assert_eq!(again.attempts, 2);
    assert_eq!(again.body, b"{}");
    // The first replica's lease is gone: renewing says so, and its result is dropped.
    assert!(!a.renew_delivery_lease(&d.id).await.expect("renew"));
    a.finish_delivery(&d.id, Outcome::Done)
        .await
        .expect("a stale finish is not an error");
    let rec = other
        .delivery(&did("slow"))
        .await
        .expect("read")
        .expect("slow");
    assert_eq!(rec.state, DeliveryState::Running, "stale result committed");
    assert_eq!(rec.attempts, 2);
    a.finish_delivery(
        &d.id,
        Outcome::Retry {
            error: "stale".into(),
            after: Duration::ZERO,
        },
    )
    .await
    .expect("stale retry");
    let rec = other
        .delivery(&did("slow"))
        .await
        .expect("read")
        .expect("slow");
    assert_eq!((rec.state, rec.last_error), (DeliveryState::Running, None));
    // The key stays blocked behind it for both replicas.
    assert!(a.claim_delivery().await.expect("claim").is_none());
    assert!(other.claim_delivery().await.expect("claim").is_none());
    // The new holder renews and commits.
    assert!(other.renew_delivery_lease(&again.id).await.expect("renew"));
    other
        .finish_delivery(
            &again.id,
            Outcome::Failed {
                error: "by the second replica".into(),
            },
        )
        .await
        .expect("finish");
    let rec = a.delivery(&did("slow")).await.expect("read").expect("slow");
    assert_eq!(rec.state, DeliveryState::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("by the second replica"));
    assert!(!other.renew_delivery_lease(&again.id).await.expect("renew"));
    // The next delivery of the key is free now, for either replica.
    let n = a.claim_delivery().await.expect("claim").expect("next");
    assert_eq!(n.id.as_str(), "next");
}

/// A lease renewed in time is never taken over.
async fn replicas_respect_a_renewed_lease(b: &Backend) {
    let lease = Duration::from_millis(400);
    let a = Arc::new(b.open_pg().await.with_lease(lease));
    let other = b.open_pg().await;
    a.accept_delivery(delivery("long", "o/r#1", "{}"))
        .await
        .expect("accept");
    let d = a.claim_delivery().await.expect("claim").expect("long");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (a, stop, id) = (a.clone(), stop.clone(), d.id.clone());
        tokio::spawn(async move {
            let mut renewed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(
                    a.renew_delivery_lease(&id).await.expect("renew"),
                    "lease lost"
                );
                renewed += 1;
                tokio::time::sleep(lease / 5).await;
            }
            renewed
        })
    };
    // For four lease lengths, the other replica keeps trying and never gets it.
    let watch_until = Instant::now() + lease * 4;
    while Instant::now() < watch_until {
        assert!(
            other.claim_delivery().await.expect("claim").is_none(),
            "a renewed lease was taken over"
        );
        tokio::time::sleep(POLL).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let renewed = renewer.await.expect("renewer");
    assert!(renewed >= 4, "renewed only {renewed} times");
    assert_eq!(
        a.delivery(&d.id)
            .await
            .expect("read")
            .expect("long")
            .attempts,
        1
    );
    // Renewal stopped: the lease runs out and the other replica takes it.
    let again = claim_within(&other, "long", DEADLINE).await;
    assert_eq!(again.attempts, 2);
}

/// Environment locks and planned operations are shared: one winner across replicas.
async fn replicas_share_locks_and_operations(b: &Backend) {
    let a = Arc::new(b.open_pg().await);
    let other = Arc::new(b.open_pg().await);
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { other.clone() };
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let lock = s
                .try_lock_environment(&r, "checkout", &format!("replica-{}:op", i % 2), minute)
                .await
                .expect("lock");
            let planned = s
                .plan_operation(new_op("checkout", 'f', 1))
                .await
                .expect("plan");
            (i % 2, lock, planned)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    // The same holder renews, so every try of the winning replica succeeds (at one epoch)
    // and none of the other's.
    let winners: HashSet<usize> = results
        .iter()
        .filter(|r| r.1.is_some())
        .map(|r| r.0)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let epochs: HashSet<i64> = results.iter().filter_map(|r| r.1).collect();
    assert_eq!(epochs.len(), 1, "{results:?}");
    let created = results.iter().filter(|r| r.2 .1).count();
    assert_eq!(created, 1, "{results:?}");
    let ids: HashSet<OperationId> = results.iter().map(|r| r.2 .0).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    // A replica starting up leaves the other's live lock and running operation alone.
    let id = *ids.iter().next().expect("id");
    let w = *winners.iter().next().expect("winner");
    let (winner, loser) = if w == 0 { (&a, &other) } else { (&other, &a) };
    let fence = Fence {
        holder: format!("replica-{w}:op"),
        epoch: *epochs.iter().next().expect("epoch"),
    };
    let op = winner.operation(id).await.expect("read").expect("op").op;
    let env = EnvironmentUpdate::of(&op, EnvState::Provisioning, id);
    assert!(winner
        .start_operation(id, &fence, env.clone())
        .await
        .expect("start"));
    assert!(loser
        .interrupt_running_operations()
        .await
        .expect("interrupt")
        .is_empty());
    assert_eq!(loser.release_all_locks().await.expect("release"), 0);
    // The loser cannot start it, nor finish it, with a fence of its own.
    let theirs = Fence {
        holder: format!("replica-{}:op", 1 - w),
        epoch: fence.epoch,
    };
    assert!(!loser
        .start_operation(id, &theirs, env.clone())
        .await
        .expect("start"));
    assert!(
        !finish(
            &**loser,
            id,
            &theirs,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    assert!(
        finish(
            &**winner,
            id,
            &fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
}
