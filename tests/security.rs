//! The holes a security review found (issue 9), each driven through the real server, real
//! Git and the strict GitHub emulator where the hole was end to end. Each test fails with
//! its fix reverted.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::{manifest, Harness};
use paved::testkit;

fn file(path: &str, content: &str) -> (String, Option<Vec<u8>>) {
    (path.to_string(), Some(content.as_bytes().to_vec()))
}

const NEW: &str = "environments/payments/orders-preview.yaml";

const DENY_POLICY: &str = r#"package main

deny contains msg if {
    input.spec.tags["cost-center"] == "cc-0000"
    msg := "cost center cc-0000 is closed"
}
"#;

/// Item 1: a validly signed delivery about a repository Paved does not serve is answered
/// 2xx, never stored, never processed, and Paved never asks GitHub anything about it (no
/// token, no status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_for_other_repositories_are_ignored() {
    let h = Harness::start().await;
    let mut pr = h.push_pr(3, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    pr.repo = paved::ids::RepoName::parse("evil/environments").expect("name");
    let body = testkit::pull_request_payload(&pr).expect("payload");
    let id = h.delivery_id();
    let status = h.send("pull_request", &id, &body).await;
    assert_eq!(status, reqwest::StatusCode::OK, "answered 2xx, not 202");

    // Not stored: the API has no such delivery.
    let r = h
        .client
        .get(format!("{}/api/v1/deliveries/{id}", h.url()))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    // Counted as ignored for its repository.
    let metrics = h
        .client
        .get(format!("{}/metrics", h.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("paved_webhooks_total{result=\"ignored_repository\"} 1"),
        "{metrics}"
    );

    // The served repository still works, and by the time its verdicts are in, nothing was
    // ever asked about the other one.
    let ok = h.push_pr(4, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    h.send_pr(&ok).await;
    h.verdicts(&ok.head_sha, 3).await;
    let about_evil: Vec<_> = h
        .github
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("evil"))
        .collect();
    assert!(about_evil.is_empty(), "{about_evil:#?}");
    h.assert_no_rejections();
}

/// Item 1: with no repositories configured, `paved serve` refuses to start and says how to
/// fix it; with `allow_any_repository` set explicitly it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_repository_list() {
    let h = Harness::prepare(&[]).await;
    let mut config = h.config();
    config.repositories = paved::config::RepoFilter::new(&[], false).expect("empty");
    let err = match paved::service::start(config).await {
        Ok(_) => panic!("started without github.repositories"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("github.repositories"), "{err}");
    assert!(err.contains("allow_any_repository"), "{err}");

    let mut config = h.config();
    config.repositories = paved::config::RepoFilter::new(&[], true).expect("any");
    let service = paved::service::start(config)
        .await
        .expect("starts with allow_any");
    service.shutdown().await.expect("stop");
}

/// Item 2: a PR into another branch, whose governance there is relaxed, shares its head
/// SHA with a PR into the default branch that fails. The other branch's PR gets no
/// statuses, so the head stays red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_into_another_branch_cannot_turn_a_red_head_green() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    // A branch whose governance lets the closed cost center through.
    let lax = h
        .remote
        .commit(
            "refs/heads/lax",
            Some(&h.base),
            &[(".paved/policies/closed_cost_center.rego".to_string(), None)],
            "relax the rules on a side branch",
        )
        .expect("lax branch");

    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let into_main = h.push_pr(20, None, &[file(NEW, &text)]);
    h.send_pr(&into_main).await;
    let v = h.verdicts(&into_main.head_sha, 3).await;
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    let posted_before = h
        .github
        .statuses(common::REPO, into_main.head_sha.as_str())
        .len();

    // The same head, proposed into `lax`.
    let mut into_lax = into_main.clone();
    into_lax.number = 21;
    into_lax.base_ref = "lax".into();
    into_lax.base_sha = lax;
    h.remote
        .publish_pull(21, &into_lax.head_sha)
        .expect("publish");
    h.github.set_pull(
        common::REPO,
        21,
        testkit::pull_json(&into_lax).expect("pull json"),
    );
    let id = h.send_pr(&into_lax).await;
    let d = h.wait_delivery(&id).await;
    assert_eq!(d["state"], "done", "{d}");

    let all = h.github.statuses(common::REPO, into_main.head_sha.as_str());
    assert_eq!(
        all.len(),
        posted_before,
        "the PR into lax posted statuses: {all:#?}"
    );
    let v = h
        .github
        .latest_statuses(common::REPO, into_main.head_sha.as_str());
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    assert!(h.comments(21).is_empty(), "no comment on the PR into lax");
    h.assert_no_rejections();
}

/// Item 2: governance is read at the merge base of the head and the default branch, not
/// at whatever base SHA the payload names: here the default branch moved on (dropping the
/// policy) after the PR forked, and the payload names the new tip; the PR is still judged
/// by the rules it forked under until it is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_is_read_where_the_pr_forked_off_the_default_branch() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let mut pr = h.push_pr(22, None, &[file(NEW, &text)]);
    let moved = h
        .remote
        .commit(
            "refs/heads/main",
            Some(&h.base),
            &[(".paved/policies/closed_cost_center.rego".to_string(), None)],
            "main moves on",
        )
        .expect("main moves");
    pr.base_sha = moved;
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    h.github
        .wait_until(common::DEADLINE, "comment", |gh| {
            !gh.comments(common::REPO, 22).is_empty()
        })
        .await
        .expect("comment");
    let comment = &h.comments(22)[0].body;
    assert!(
        comment.contains(&format!("governance read at `{}`", h.base.short())),
        "{comment}"
    );
}
