//! Two `paved serve` replicas sharing one PostgreSQL database (each with its own data
//! directory and Git mirrors). Runs when `PAVED_TEST_DATABASE_URL` names a PostgreSQL
//! server (`script/test` sets it); otherwise it says it was skipped.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::records::{alive as alive_pid, ancestor_among, run_processes};
use common::serve::{spawn_serve, wait_for_file, Paved};
use common::{manifest, Harness};
use std::time::Duration;

fn server_url() -> Option<String> {
    std::env::var("PAVED_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Drops a test database (best effort; the replicas must be stopped first).
async fn drop_database(server: &str, database: &str) {
    use sqlx::Connection;
    let name = database.rsplit('/').next().unwrap_or_default().to_string();
    if let Ok(mut conn) = sqlx::PgConnection::connect(server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

/// A new, empty database on the server, for this test only.
async fn fresh_database(server: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server)
        .await
        .expect("connect to PAVED_TEST_DATABASE_URL");
    let name = format!("paved_replicas_{:016x}", rand::random::<u64>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let mut url = url::Url::parse(server).expect("database url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A replica on its own data directory, `<tmp>/<name>` (its log: `<tmp>/<name>.log`).
async fn spawn_replica_with(
    h: &Harness,
    name: &str,
    database: &str,
    extra_env: &[(&str, String)],
) -> (Paved, String) {
    spawn_serve(
        h,
        &h.tmp.path().join(name),
        database,
        &h.github.url(),
        extra_env,
    )
    .await
}

/// 300 signed deliveries (190 pull requests opened, 10 merges, and 100 redeliveries of
/// them) sent alternately to two replicas: each is processed exactly once, so each check
/// is posted pending once and decided once per head, and each merge's operation runs once.
#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_process_each_delivery_once() {
    let server =
        server_url().expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let database = fresh_database(&server).await;
    // The recorder definition, and room in the team's quota for every environment here.
    let mut files = common::recorder::governance_files();
    files[0].1 = files[0].1.as_ref().map(|b| {
        String::from_utf8_lossy(b)
            .replace("environments: 5", "environments: 500")
            .into_bytes()
    });
    let mut h = Harness::prepare(&files).await;
    let records = h.tmp.path().join("records");
    std::fs::create_dir_all(&records).expect("records");
    let record_url = common::records::serve(&records).await;
    let env = [
        ("RECORD_URL", record_url.clone()),
        ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
    ];
    let (a, url_a) = spawn_replica_with(&h, "replica-a", &database, &env).await;
    let (b, url_b) = spawn_replica_with(&h, "replica-b", &database, &env).await;
    let urls = [url_a, url_b];

    // Ten merged PRs, each adding one recorder environment.
    let mut merges = Vec::new();
    for i in 0..10u64 {
        let pr = h.push_pr(
            900 + i,
            None,
            &common::recorder::add(&format!("merged-{i}"), "ok"),
        );
        h.github.set_pull_reviews(
            common::REPO,
            pr.number,
            vec![
                serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                    "commit_id": pr.head_sha.as_str()}),
            ],
        );
        let merge = h.remote.merge_pull(&pr).expect("merge");
        let body = paved_testkit::merged_payload(&pr, &merge, "hubot").expect("payload");
        merges.push((merge, body));
    }

    let prs: Vec<_> = (0..190u64)
        .map(|i| {
            let name = format!("rep-{i:03}");
            h.push_pr(
                1000 + i,
                None,
                &[(
                    format!("environments/payments/{name}.yaml"),
                    Some(manifest(&name, "small").into_bytes()),
                )],
            )
        })
        .collect();
    let mut bodies: Vec<Vec<u8>> = prs
        .iter()
        .map(|pr| paved_testkit::pull_request_payload(pr).expect("payload"))
        .collect();
    // The merges go in among the other deliveries.
    for (k, (_, body)) in merges.iter().enumerate() {
        bodies.insert(k * 19 + 7, body.clone());
    }
    assert_eq!(bodies.len(), 200);
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let body = body.clone();
        let id = h.delivery_id();
        h.external_url = Some(urls[i % 2].clone());
        let first = h.send("pull_request", &id, &body).await;
        assert_eq!(first, reqwest::StatusCode::ACCEPTED, "delivery {i}");
        if i % 2 == 0 {
            // A redelivery of the same delivery id, to the other replica.
            h.external_url = Some(urls[(i + 1) % 2].clone());
            let again = h.send("pull_request", &id, &body).await;
            assert_eq!(
                again,
                reqwest::StatusCode::OK,
                "redelivery {i} is a duplicate"
            );
        }
        ids.push(id);
    }

    // Every delivery ends done (read through either replica: they share the database).
    let deadline = Duration::from_secs(240);
    for id in &ids {
        let v = common::eventually_within(deadline, format!("delivery {id} done"), async || {
            let v: serde_json::Value = h
                .client
                .get(format!("{}/api/v1/deliveries/{id}", urls[0]))
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
            assert_ne!(v["state"], "failed", "{v}");
            (v["state"] == "done").then_some(v)
        })
        .await;
        assert_eq!(v["attempts"], 1, "processed once: {v}");
    }
    for pr in &prs {
        let all = h.github.statuses(common::REPO, pr.head_sha.as_str());
        let mut per_context = std::collections::BTreeMap::<String, Vec<String>>::new();
        for s in &all {
            per_context
                .entry(s.context.clone())
                .or_default()
                .push(s.state.clone());
        }
        assert_eq!(per_context.len(), 4, "{per_context:?}");
        for (context, states) in &per_context {
            assert_eq!(
                states.len(),
                2,
                "{context}: pending once, decided once: {states:?}"
            );
            assert_eq!(states[0], "pending", "{context}: {states:?}");
        }
        assert_eq!(
            h.comments(pr.number).len(),
            1,
            "one comment on #{}",
            pr.number
        );
    }
    // Each merge's operation ran once: one recorded run, one deployment, each.
    let runs = std::fs::read_dir(&records)
        .expect("records")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".env"))
        .count();
    assert_eq!(runs, 10, "one run per merged environment");
    let deployments = h.github.deployments(common::REPO);
    assert_eq!(deployments.len(), 10, "one deployment per environment");
    for (merge, _) in &merges {
        let s = &h.github.latest_statuses(common::REPO, merge.as_str())["paved/provision"];
        assert_eq!(s.state, "success", "{s:?}");
    }
    drop((a, b));
    drop_database(&server, &database).await;
}

/// A replica killed (SIGKILL) while it runs a provisioning script: the other replica takes
/// the merge over once the lease has run out (2 s here), reports the first attempt
/// interrupted and completes the operation once.
#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_run_is_taken_over_after_the_lease() {
    use common::recorder::{add, governance_files};
    let server =
        server_url().expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let database = fresh_database(&server).await;
    let mut h = Harness::prepare(&governance_files()).await;
    let records = h.tmp.path().join("records");
    std::fs::create_dir_all(&records).expect("records");
    let record_url = common::records::serve(&records).await;
    let env = [
        ("PAVED_LEASE", "2s".to_string()),
        ("RECORD_URL", record_url.clone()),
        ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
    ];
    let mut a = spawn_replica_with(&h, "replica-a", &database, &env).await;
    let mut b = spawn_replica_with(&h, "replica-b", &database, &env).await;

    let pr = h.push_pr(70, None, &add("ha-preview", "block"));
    h.github.set_pull_reviews(
        common::REPO,
        70,
        vec![
            serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                "commit_id": pr.head_sha.as_str()}),
        ],
    );
    let merge = h.remote.merge_pull(&pr).expect("merge");
    let body = paved_testkit::merged_payload(&pr, &merge, "hubot").expect("payload");
    h.external_url = Some(a.1.clone());
    let id = h.delivery_id();
    assert_eq!(
        h.send("pull_request", &id, &body).await,
        reqwest::StatusCode::ACCEPTED
    );

    // Whichever replica claimed the merge runs attempt 1; kill that replica, and the
    // script with it (as when its machine dies).
    wait_for_file(&records.join("1.pid")).await;
    let script = run_processes(&record_url, "1");
    let runner = script
        .iter()
        .find_map(|p| ancestor_among(*p, &[a.0 .0.id() as i32, b.0 .0.id() as i32]))
        .expect("the script runs under a replica");
    let (dead, alive) = if runner == a.0 .0.id() as i32 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.0 .0.kill().expect("SIGKILL");
    dead.0 .0.wait().expect("reap");
    for pid in run_processes(&record_url, "1") {
        // SAFETY: kill(2) on a process of the script this test started through Paved.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }

    // The survivor takes over after the lease and runs attempt 2; let it finish.
    // (Run ids come from a sequence: attempt 2's is not necessarily 2.)
    let second = wait_for_other_pid_file(&h, &records, "1.pid").await;
    std::fs::write(records.join("release"), b"").expect("release");
    h.external_url = Some(alive.1.clone());
    let repo = common::REPO.to_string();
    let sha = merge.to_string();
    h.github
        .wait_until(Duration::from_secs(60), "paved/provision", move |gh| {
            gh.latest_statuses(&repo, &sha)
                .get("paved/provision")
                .is_some_and(|s| s.state != "pending")
        })
        .await
        .expect("paved/provision");
    let status = &h.github.latest_statuses(common::REPO, merge.as_str())["paved/provision"];
    assert_eq!(status.state, "success", "{status:?}");

    let ops: serde_json::Value = h
        .client
        .get(format!(
            "{}/api/v1/repos/{}/merges/{merge}",
            alive.1,
            common::REPO
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let summary: Vec<(i64, String)> = ops
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| {
            (
                o["attempt"].as_i64().unwrap_or(0),
                o["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "interrupted".to_string()), (2, "succeeded".to_string())]
    );
    assert!(
        records.join(format!("{second}.end")).exists(),
        "attempt 2 completed"
    );
    assert!(!records.join("1.end").exists(), "attempt 1 never completed");

    // The audit trail: one completed run.
    let remote = git2::Repository::open_bare(h.remote.path()).expect("remote");
    let note = remote
        .find_note(
            Some("refs/notes/paved"),
            git2::Oid::from_str(merge.as_str()).expect("oid"),
        )
        .expect("note");
    let outcomes: Vec<String> = paved::audit::parse(note.message().unwrap_or_default())
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"]);
    drop((a, b));
    drop_database(&server, &database).await;
}

/// Issue 9, item 5: the replica running a script is paused (SIGSTOP) past its lease. The
/// other replica takes the merge and the lock over, marks the first attempt interrupted and
/// runs a second. When the paused replica wakes, its renewal finds the lock taken: it
/// kills its script's process group and records nothing, so the first attempt stays
/// `interrupted` and the inventory shows the second.
#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_replica_that_lost_its_lock_kills_its_script_and_records_nothing() {
    use common::recorder::{add, governance_files};
    let server =
        server_url().expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let database = fresh_database(&server).await;
    let mut h = Harness::prepare(&governance_files()).await;
    let records = h.tmp.path().join("records");
    std::fs::create_dir_all(&records).expect("records");
    let record_url = common::records::serve(&records).await;
    let env = [
        ("PAVED_LEASE", "2s".to_string()),
        ("RECORD_URL", record_url.clone()),
        ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
    ];
    let a = spawn_replica_with(&h, "replica-a", &database, &env).await;
    let b = spawn_replica_with(&h, "replica-b", &database, &env).await;

    let pr = h.push_pr(71, None, &add("paused-preview", "block"));
    h.github.set_pull_reviews(
        common::REPO,
        71,
        vec![
            serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                "commit_id": pr.head_sha.as_str()}),
        ],
    );
    let merge = h.remote.merge_pull(&pr).expect("merge");
    let body = paved_testkit::merged_payload(&pr, &merge, "hubot").expect("payload");
    h.external_url = Some(a.1.clone());
    let id = h.delivery_id();
    assert_eq!(
        h.send("pull_request", &id, &body).await,
        reqwest::StatusCode::ACCEPTED
    );

    // Pause whichever replica runs attempt 1 (its script keeps running: its own group).
    wait_for_file(&records.join("1.pid")).await;
    let first = run_processes(&record_url, "1");
    let runner = first
        .iter()
        .find_map(|p| ancestor_among(*p, &[a.0 .0.id() as i32, b.0 .0.id() as i32]))
        .expect("the script runs under a replica");
    let (paused, alive) = if runner == a.0 .0.id() as i32 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let paused_pid = paused.0 .0.id() as i32;
    // SAFETY: signals to a child process this test started.
    unsafe {
        libc::kill(paused_pid, libc::SIGSTOP);
    }

    // The other replica takes over after the lease and starts attempt 2.
    let second = wait_for_other_pid_file(&h, &records, "1.pid").await;
    // Wake the paused replica: its renewal finds the lock taken, and it kills attempt 1's
    // script (which is still waiting for the release file).
    unsafe {
        libc::kill(paused_pid, libc::SIGCONT);
    }
    common::eventually("attempt 1's script killed", async || {
        (!first.iter().any(|p| alive_pid(*p))).then_some(())
    })
    .await;
    // Now let attempt 2 finish.
    std::fs::write(records.join("release"), b"").expect("release");
    h.external_url = Some(alive.1.clone());
    let repo = common::REPO.to_string();
    let sha = merge.to_string();
    h.github
        .wait_until(Duration::from_secs(60), "paved/provision", move |gh| {
            gh.latest_statuses(&repo, &sha)
                .get("paved/provision")
                .is_some_and(|s| s.state != "pending")
        })
        .await
        .expect("paved/provision");
    let status = &h.github.latest_statuses(common::REPO, merge.as_str())["paved/provision"];
    assert_eq!(status.state, "success", "{status:?}");

    // The woken replica's log says it stopped without recording.
    let log_path = h.tmp.path().join(if std::ptr::eq(paused, &a) {
        "replica-a.log"
    } else {
        "replica-b.log"
    });
    common::eventually("word of the lost lock in the log", async || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.contains("nothing was recorded").then_some(())
    })
    .await;

    let ops: serde_json::Value = h
        .client
        .get(format!(
            "{}/api/v1/repos/{}/merges/{merge}",
            alive.1,
            common::REPO
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let summary: Vec<(i64, String)> = ops
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| {
            (
                o["attempt"].as_i64().unwrap_or(0),
                o["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "interrupted".to_string()), (2, "succeeded".to_string())]
    );
    assert!(
        !records.join("1.end").exists(),
        "attempt 1's script never completed"
    );
    assert!(
        records.join(format!("{second}.end")).exists(),
        "attempt 2 completed"
    );
    let env: serde_json::Value = h
        .client
        .get(format!(
            "{}/api/v1/repos/{}/environments/paused-preview",
            alive.1,
            common::REPO
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    assert_eq!(env["environment"]["state"], "ready", "{env}");
    assert_eq!(
        env["environment"]["last_operation"].to_string(),
        second,
        "{env}"
    );
    drop((a, b));
    drop_database(&server, &database).await;
}

/// The run id of the first `<id>.pid` file in `records` other than `except`: another
/// attempt started.
async fn wait_for_other_pid_file(h: &Harness, records: &std::path::Path, except: &str) -> String {
    let _logs = LogsIfItFails(h.tmp.path());
    common::eventually("another attempt starts", async || {
        std::fs::read_dir(records)
            .expect("records")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n.ends_with(".pid") && n != except)
            .map(|n| n.trim_end_matches(".pid").to_string())
    })
    .await
}

/// Prints both replicas' logs when the test fails while it is alive: they say why.
struct LogsIfItFails<'a>(&'a std::path::Path);

impl Drop for LogsIfItFails<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["replica-a", "replica-b"] {
                let log =
                    std::fs::read_to_string(self.0.join(format!("{name}.log"))).unwrap_or_default();
                eprintln!("---- {name} ----\n{log}");
            }
        }
    }
}
