//! A crash or restart loses no accepted delivery: the real `paved serve` binary accepts
//! deliveries, is killed (SIGKILL) while it is still working on them, and a new process
//! on the same data directory finishes every one of them exactly once.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::{manifest, Harness, DEADLINE, SECRET};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Kills the child when dropped, so a failing assertion leaves no server running.
struct Paved(Child);

impl Drop for Paved {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_paved(h: &Harness, port: u16, api_url: &str) -> Paved {
    let child = Command::new(env!("CARGO_BIN_EXE_paved"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATA_DIR", h.data_dir())
        .env("PAVED_DATABASE_URL", h.config().database_url)
        .env("PAVED_LEASE", "2s")
        .env("PAVED_WEBHOOK_SECRET", SECRET)
        .env("PAVED_GITHUB_API_URL", api_url)
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
    Paved(child)
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "paved did not become ready at {url}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_accepting_loses_nothing_and_repeats_nothing() {
    let mut h = Harness::prepare(&[]).await;
    let prs: Vec<_> = (1..=3u64)
        .map(|n| {
            let name = format!("restart-{n}");
            h.push_pr(
                30 + n,
                None,
                &[(
                    format!("environments/payments/{name}.yaml"),
                    Some(manifest(&name, "small").into_bytes()),
                )],
            )
        })
        .collect();

    // First process: GitHub is unreachable, so it accepts the deliveries and is still
    // retrying them when it is killed.
    let dead_api = format!("http://127.0.0.1:{}", free_port());
    let port = free_port();
    let mut first = spawn_paved(&h, port, &dead_api);
    let url = format!("http://127.0.0.1:{port}");
    h.external_url = Some(url.clone());
    wait_ready(&h.client, &url).await;
    let mut ids = Vec::new();
    for pr in &prs {
        ids.push(h.send_pr(pr).await);
    }
    // A redelivery of the first one, before the crash.
    let body = paved::testkit::pull_request_payload(&prs[0]).unwrap();
    assert!(h.send("pull_request", &ids[0], &body).await.is_success());
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");

    // Second process on the same data directory, with GitHub back.
    let port = free_port();
    let _second = spawn_paved(&h, port, &h.github.url());
    let url = format!("http://127.0.0.1:{port}");
    h.external_url = Some(url.clone());
    wait_ready(&h.client, &url).await;
    for id in &ids {
        let d = h.wait_delivery(id).await;
        assert_eq!(d["state"], "done", "{d}");
    }
    for pr in &prs {
        let v = h.verdicts(&pr.head_sha, 3).await;
        assert!(v.values().all(|s| s.state == "success"), "{v:?}");
        let all = h.github.statuses(common::REPO, pr.head_sha.as_str());
        assert_eq!(
            all.len(),
            6,
            "each check pending once and decided once: {all:#?}"
        );
        let n = pr.number;
        h.github
            .wait_until(DEADLINE, "comment", move |gh| {
                !gh.comments(common::REPO, n).is_empty()
            })
            .await
            .unwrap();
        assert_eq!(h.comments(pr.number).len(), 1);
    }
    h.assert_no_rejections();
}
