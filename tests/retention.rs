//! Bounded data, end to end: after a pull request is checked, merged and provisioned,
//! pruning everything past retention removes the deliveries, the check-run report and the
//! script's log, and nothing of the audit trail: the operation's record and outcome, the
//! inventory and the Git note all stay. A repacked mirror keeps serving.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use paved::metrics::Metrics;
use paved::repo::{Anonymous, Repos};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_audit_trail_and_a_repacked_mirror_keeps_serving() {
    let e = Env::start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    let checked = e.h.send_pr(&pr).await;
    assert_eq!(e.h.wait_delivery(&checked).await["state"], "done");
    let (merge, merged) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    assert_eq!(e.h.wait_delivery(&merged).await["state"], "done");
    let ops = e.operations(&merge).await;
    assert_eq!(ops.len(), 1);
    let op_id = ops[0]["id"].as_i64().expect("id");
    let before = e.get(&format!("/api/v1/operations/{op_id}")).await;
    assert!(!before["log"].as_str().unwrap_or_default().is_empty());
    let run_url = e.h.github.latest_statuses(&e.repo(), pr.head_sha.as_str())["paved/schema"]
        .target_url
        .clone()
        .expect("target url");
    let run_path = run_url.trim_start_matches("http://paved.test").to_string();
    assert_eq!(e.get(&run_path).await["pr"], 100);

    // Everything is past retention (a cut-off a minute from now).
    let store = e.h.service.as_ref().expect("running").store.clone();
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    let metrics = Metrics::new();
    let pruned =
        paved::retention::prune(store.as_ref(), later, &metrics, &CancellationToken::new())
            .await
            .expect("prune");
    assert_eq!(pruned["deliveries"], 2);
    assert_eq!(pruned["runs"], 1);
    assert_eq!(pruned["operation_logs"], 1);
    assert!(metrics
        .encode()
        .contains("paved_pruned_rows_total{table=\"deliveries\"} 2"));

    // Gone: the deliveries, the report, the log.
    for id in [&checked, &merged] {
        let status =
            e.h.client
                .get(format!("{}/api/v1/deliveries/{id}", e.h.url()))
                .send()
                .await
                .expect("get")
                .status();
        assert_eq!(status, 404, "delivery {id}");
    }
    let status =
        e.h.client
            .get(format!("{}{run_path}", e.h.url()))
            .send()
            .await
            .expect("get")
            .status();
    assert_eq!(status, 404);

    // Kept: the operation's record and outcome, the inventory, the Git note.
    let after = e.get(&format!("/api/v1/operations/{op_id}")).await;
    assert_eq!(after["log"], "");
    for field in [
        "state",
        "approvers",
        "requester",
        "merger",
        "checks",
        "merge_sha",
        "deployment_id",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after["state"], "succeeded");
    let env = e.environment("orders-preview").await;
    assert_eq!(env["environment"]["state"], "ready");
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].outcome, "succeeded");
    assert_eq!(notes[0].environment, "orders-preview");

    // The mirror, repacked into one pack, serves the next pull request.
    let repos = Repos::new(e.h.data_dir(), None, Arc::new(Anonymous));
    let repacked = repos.repack_all(0, 0).await;
    assert_eq!(repacked.len(), 1, "the one mirror");
    assert!(repacked[0].1.objects > 0);
    let next = e.open(&add("billing-preview", "ok"));
    let id = e.h.send_pr(&next).await;
    assert_eq!(e.h.wait_delivery(&id).await["state"], "done");
    let verdicts = e.h.verdicts(&next.head_sha, 3).await;
    assert!(
        verdicts.values().all(|s| s.state == "success"),
        "{verdicts:#?}"
    );
}
