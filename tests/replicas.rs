//! Two `paved serve` replicas sharing one PostgreSQL database (each with its own data
//! directory and Git mirrors). Runs when `PAVED_TEST_DATABASE_URL` names a PostgreSQL
//! server (`.ci/run` sets it); otherwise it says it was skipped.

mod common;

use common::{manifest, Harness, SECRET};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

struct Paved(Child);

impl Drop for Paved {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn spawn_replica(h: &Harness, name: &str, database: &str) -> (Paved, String) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_paved"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATA_DIR", h.tmp.path().join(name))
        .env("PAVED_DATABASE_URL", database)
        .env("PAVED_WEBHOOK_SECRET", SECRET)
        .env("PAVED_GITHUB_API_URL", h.github.url())
        .env("PAVED_GITHUB_TOKEN", "test-token")
        .env(
            "PAVED_GIT_CLONE_URL_TEMPLATE",
            h.remote.clone_url_template(),
        )
        .env("PAVED_PUBLIC_URL", "http://paved.test")
        .current_dir(h.tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn paved");
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        if let Ok(r) = h.client.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "replica {name} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (Paved(child), url)
}

/// 300 signed deliveries (200 pull requests opened, and 100 redeliveries of them) sent
/// alternately to two replicas: each is processed exactly once, so each check is posted
/// pending once and decided once per head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_process_each_delivery_once() {
    let Some(server) = server_url() else {
        eprintln!(
            "SKIPPED two_replicas_process_each_delivery_once: PAVED_TEST_DATABASE_URL is not set"
        );
        return;
    };
    let database = fresh_database(&server).await;
    let mut h = Harness::prepare(&[]).await;
    let (a, url_a) = spawn_replica(&h, "replica-a", &database).await;
    let (b, url_b) = spawn_replica(&h, "replica-b", &database).await;
    let urls = [url_a, url_b];

    let prs: Vec<_> = (0..200u64)
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
    let mut ids = Vec::new();
    for (i, pr) in prs.iter().enumerate() {
        let body = paved::testkit::pull_request_payload(pr).expect("payload");
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
    let start = Instant::now();
    for id in &ids {
        loop {
            let v: serde_json::Value = h
                .client
                .get(format!("{}/api/v1/deliveries/{id}", urls[0]))
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
            if v["state"] == "done" {
                assert_eq!(v["attempts"], 1, "processed once: {v}");
                break;
            }
            assert_ne!(v["state"], "failed", "{v}");
            assert!(start.elapsed() < deadline, "delivery {id} not done: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        assert_eq!(per_context.len(), 3, "{per_context:?}");
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
    h.assert_no_rejections();
    drop((a, b));
    drop_database(&server, &database).await;
}
