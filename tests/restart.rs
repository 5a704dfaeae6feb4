//! A crash or restart loses no accepted delivery: the real `paved serve` binary accepts
//! deliveries, is killed (SIGKILL) while it is still working on them, and a new process
//! on the same data directory finishes every one of them exactly once.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::serve::{free_port, spawn_serve};
use common::{manifest, Harness, DEADLINE};

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
    let db = h.config().database_url;
    let lease = [("PAVED_LEASE", "2s".to_string())];
    let (mut first, url) = spawn_serve(&h, &h.data_dir(), &db, &dead_api, &lease).await;
    h.external_url = Some(url);
    let mut ids = Vec::new();
    for pr in &prs {
        ids.push(h.send_pr(pr).await);
    }
    // A redelivery of the first one, before the crash.
    let body = paved_testkit::pull_request_payload(&prs[0]).unwrap();
    assert!(h.send("pull_request", &ids[0], &body).await.is_success());
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");

    // Second process on the same data directory, with GitHub back.
    let (_second, url) = spawn_serve(&h, &h.data_dir(), &db, &h.github.url(), &lease).await;
    h.external_url = Some(url);
    for id in &ids {
        let d = h.wait_delivery(id).await;
        assert_eq!(d["state"], "done", "{d}");
    }
    for pr in &prs {
        let v = h.verdicts(&pr.head_sha, 4).await;
        assert!(v.values().all(|s| s.state == "success"), "{v:?}");
        let all = h.github.statuses(common::REPO, pr.head_sha.as_str());
        assert_eq!(
            all.len(),
            8,
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
}
