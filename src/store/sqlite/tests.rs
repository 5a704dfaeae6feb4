use super::writer::{chunks, insert_rows, insert_sql, CHUNK_SHIFTS, CLAIM};
use super::*;
use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
use crate::store::prelude::*;
use crate::store::{NewDelivery, NewOperation, OpKind, OpState};
use bytes::Bytes;

fn delivery(id: &str, key: &str, body: &str) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::parse(id).expect("test id"),
        event: "pull_request".into(),
        action: Some("opened".into()),
        queue_key: key.into(),
        body: Bytes::from(body.to_owned()),
    }
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    let path = dir.path().join("paved.db");
    SqliteStore::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open store")
}

#[tokio::test]
async fn duplicates_within_one_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_delivery(delivery(&format!("x-{}", i % 10), "o/r#1", "{}"))
                .await
        }));
    }
    let mut new = 0;
    let mut dup = 0;
    for t in tasks {
        match t.await.expect("join").expect("accept") {
            Accepted::New => new += 1,
            Accepted::Duplicate => dup += 1,
        }
    }
    assert_eq!((new, dup), (10, 40));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(counts["pending"], 10);
}

#[test]
fn batches_split_into_powers_of_two() {
    assert_eq!(chunks(7).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert_eq!(chunks(1).collect::<Vec<_>>(), vec![0]);
    assert_eq!(
        chunks(MAX_BATCH).collect::<Vec<_>>(),
        vec![CHUNK_SHIFTS - 1]
    );
    assert_eq!(chunks(MAX_BATCH - 1).count(), CHUNK_SHIFTS as usize - 1);
    assert!(insert_sql(CHUNK_SHIFTS - 1).contains(&format!("?{}", MAX_BATCH * 7)));
}

#[tokio::test]
async fn one_batch_with_duplicates_across_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paved.db");
    let store = open(&dir).await;
    store
        .accept_delivery(delivery("old", "k", "{}"))
        .await
        .expect("accept");
    store.close().await;
    let mut conn = connect_options(path.to_str().expect("utf-8"))
        .expect("options")
        .connect()
        .await
        .expect("connect");
    let row = |id: &str| DeliveryRow {
        id: id.into(),
        event: "push".into(),
        action: None,
        queue_key: "k".into(),
        body: compress_body(b"{}").expect("zstd"),
        body_len: 2,
        now: 0,
    };
    // 7 rows: chunks of 4, 2 and 1; "a" repeats in the second chunk, "b" within the
    // first, "old" was stored before.
    let rows = [
        row("a"),
        row("b"),
        row("b"),
        row("old"),
        row("a"),
        row("c"),
        row("d"),
    ];
    let refs: Vec<&DeliveryRow> = rows.iter().collect();
    let got = insert_rows(&mut conn, &refs).await.expect("insert");
    use Accepted::{Duplicate as D, New as N};
    assert_eq!(got, vec![N, N, D, D, D, N, N]);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM deliveries")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(n, 5);
}

#[tokio::test]
async fn body_round_trips_large_and_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    // Over BLOCKING_CODEC_BYTES: (de)compressed on a blocking thread.
    let body: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut d = delivery("big", "k", "");
    d.body = Bytes::from(body.clone());
    store.accept_delivery(d).await.expect("accept");
    let c = store.claim_delivery().await.expect("claim").expect("one");
    assert_eq!(c.body, body);
}

/// Random bytes do not compress: each body costs its size in the WAL.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_bounded_under_continuous_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    // Writers that never let the writer task idle, so SQLite never starts the WAL
    // over by itself: only the checkpoint task + writer restart keep it bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let (s, stop) = (store.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut d = delivery(&format!("w-{t}-{n}"), "k", "");
                d.body = Bytes::from(noise(16 * 1024, t << 32 | n));
                s.accept_delivery(d).await.expect("accept");
                n += 1;
            }
            n
        }));
    }
    let mut written = 0u64;
    let wal = dir.path().join("paved.db-wal");
    let mut largest = 0u64;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        written += t.await.expect("join");
    }
    let stats = store.group_commit_stats();
    let bytes = written * 16 * 1024;
    // Without restarts the WAL would hold every byte written.
    assert!(
        stats.wal_restarts > 0 || bytes < 4 * 1024 * 1024,
        "{stats:?}, {bytes} bytes written"
    );
    assert!(
        largest < (bytes / 2).max(4 * 1024 * 1024),
        "WAL reached {largest} bytes for {bytes} written: {stats:?}"
    );
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(counts["pending"], written);
}

#[tokio::test]
async fn claim_query_uses_the_partial_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {CLAIM}"))
        .bind(0i64)
        .fetch_all(&store.pool)
        .await
        .expect("plan");
    let text: Vec<&str> = plan.iter().map(|p| p.3.as_str()).collect();
    let joined = text.join("\n");
    assert!(joined.contains("deliveries_pending"), "{joined}");
    assert!(joined.contains("deliveries_active_by_key"), "{joined}");
    assert!(joined.contains("deliveries_running"), "{joined}");
}

// ---- provisioning ----

fn sha(c: char) -> CommitSha {
    CommitSha::parse(&c.to_string().repeat(40)).expect("sha")
}

fn new_op(env: &str, merge: char, attempt: u32) -> NewOperation {
    NewOperation {
        repo: RepoName::parse("octo/envs").expect("repo"),
        env_name: crate::ids::EnvName::parse(env).unwrap(),
        kind: OpKind::Deploy,
        merge_sha: sha(merge),
        pr: Some(PrNumber(7)),
        attempt,
        delivery_id: Some(DeliveryId::parse("d-merge").expect("delivery id")),
        cause: String::new(),
        team: crate::ids::TeamName::parse("payments").unwrap(),
        owner: crate::ids::Login::parse("alice").unwrap(),
        env_type: "preview".into(),
        definition: "web-app".into(),
        manifest_path: format!("environments/payments/{env}.yaml"),
        parameters: serde_json::json!({"size": "small", "cmd": "$(rm -rf /)"}),
        requester: crate::ids::Login::parse("alice").unwrap(),
        merger: Some(crate::ids::Login::parse("bob").unwrap()),
        approvers: vec![
            crate::ids::Login::parse("carol").unwrap(),
            crate::ids::Login::parse("dave").unwrap(),
        ],
        governance_sha: sha('9').as_str().into(),
        checks: serde_json::json!([{"context": "paved/schema", "verdict": "pass"}]),
        state: OpState::Planned,
        error: None,
    }
}

#[tokio::test]
async fn provisioning_migration_upgrades_a_schema_1_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paved.db");
    let path = path.to_str().expect("utf-8");
    // A database as the previous release left it: schema 1 only, with a delivery.
    let mut first = sqlx::migrate!("./migrations/sqlite");
    let only_1: Vec<_> = first.migrations.iter().take(1).cloned().collect();
    assert_eq!(only_1[0].version, 1);
    first.migrations = only_1.into();
    let mut conn = connect_options(path)
        .expect("options")
        .connect()
        .await
        .expect("connect");
    first.run(&mut conn).await.expect("schema 1");
    sqlx::query(
        "INSERT INTO deliveries (id, event, queue_key, body, body_len, next_attempt_at, \
         received_at) VALUES ('old', 'push', 'k', ?1, 2, 0, 1700000000000)",
    )
    .bind(compress_body(b"{}").expect("zstd"))
    .execute(&mut conn)
    .await
    .expect("old delivery");
    conn.close().await.expect("close");

    let store = SqliteStore::open(path).await.expect("open upgrades");
    let old = store.claim_delivery().await.expect("claim").expect("kept");
    assert_eq!(old.id.as_str(), "old");
    assert_eq!(old.received_at_ms, 1_700_000_000_000);
    assert_eq!(old.body, b"{}");
    let (id, created) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    assert!(created);
    assert!(store.operation(id).await.expect("read").is_some());
    store.close().await;
    // Opening again applies nothing new.
    let store = SqliteStore::open(path).await.expect("reopen");
    assert!(store.operation(id).await.expect("read").is_some());
}

#[tokio::test]
async fn claimed_delivery_knows_when_it_was_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let before = now_ms();
    store
        .accept_delivery(delivery("t1", "k", "{}"))
        .await
        .expect("accept");
    let after = now_ms();
    let c = store.claim_delivery().await.expect("claim").expect("t1");
    assert!(
        (before..=after).contains(&c.received_at_ms),
        "{before} <= {} <= {after}",
        c.received_at_ms
    );
}

/// Writes queued together share one commit, but a write that fails is rolled back alone:
/// what it wrote before failing is gone, the others' writes and the acceptances stay.
#[tokio::test]
async fn a_failing_write_in_a_round_is_rolled_back_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let failing = store.clone();
    let fails = tokio::spawn(async move {
        failing
            .write(|conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO pr_comments (repo, pr, comment_id) VALUES ('a/b', 1, 10)",
                    )
                    .execute(&mut *conn)
                    .await?;
                    Err::<(), _>(StoreError::Corrupt(
                        "this write fails after its insert".into(),
                    ))
                })
            })
            .await
    });
    let repo = RepoName::parse("a/b").expect("repo");
    let ok = store.set_pr_comment(&repo, crate::ids::PrNumber(2), crate::ids::CommentId(20));
    let accepted = store.accept_delivery(delivery("round-1", "a/b#2", "{}"));
    let (fails, ok, accepted) = tokio::join!(fails, ok, accepted);
    assert!(fails.expect("join").is_err());
    ok.expect("the other write");
    assert_eq!(accepted.expect("accepted"), Accepted::New);
    assert_eq!(
        store
            .pr_comment(&repo, crate::ids::PrNumber(1))
            .await
            .expect("read"),
        None,
        "the failed write's insert was rolled back"
    );
    assert_eq!(
        store
            .pr_comment(&repo, crate::ids::PrNumber(2))
            .await
            .expect("read"),
        Some(crate::ids::CommentId(20))
    );
    assert!(store
        .delivery(&DeliveryId::parse("round-1").expect("id"))
        .await
        .expect("read")
        .is_some());
}
