//! `/metrics` after a pull request and its merge: the series an operator's dashboards and
//! alerts read (README, "Metrics") are there, with the figures of what happened.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use std::collections::BTreeMap;

/// `series{labels}` → value, from the OpenMetrics text.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics: {m:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_pull_request_and_its_merge() {
    let e = Env::start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    let checked = e.h.send_pr(&pr).await;
    assert_eq!(e.h.wait_delivery(&checked).await["state"], "done");
    let (merge, merged) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    assert_eq!(e.h.wait_delivery(&merged).await["state"], "done");

    let resp =
        e.h.client
            .get(format!("{}/metrics", e.h.url()))
            .send()
            .await
            .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.expect("body");
    let m = parse(&text);

    assert_eq!(value(&m, r#"paved_webhooks_total{result="accepted"}"#), 2.0);
    assert_eq!(
        value(&m, r#"paved_webhooks_total{result="rejected_signature"}"#),
        0.0
    );
    assert_eq!(value(&m, r#"paved_deliveries{state="done"}"#), 2.0);
    assert_eq!(value(&m, r#"paved_deliveries{state="pending"}"#), 0.0);
    assert_eq!(value(&m, "paved_delivery_oldest_pending_age_seconds"), 0.0);
    assert_eq!(
        value(
            &m,
            r#"paved_delivery_processing_seconds_count{event="pull_request",result="done"}"#
        ),
        2.0
    );
    for check in ["paved/schema", "paved/policy", "paved/quota"] {
        assert_eq!(
            value(
                &m,
                &format!(r#"paved_check_verdicts_total{{check="{check}",verdict="pass"}}"#)
            ),
            1.0,
            "{check}"
        );
    }
    assert_eq!(
        value(
            &m,
            r#"paved_operations_total{kind="deploy",outcome="succeeded"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            r#"paved_operation_duration_seconds_count{kind="deploy",outcome="succeeded"}"#
        ),
        1.0
    );
    // Every status Paved posted is counted by operation and answer.
    let statuses = e.h.github.served_count("repos/create-commit-status") as f64;
    assert!(statuses >= 4.0);
    assert_eq!(
        value(
            &m,
            r#"paved_github_requests_total{operation="repos/create-commit-status",status="201"}"#
        ),
        statuses
    );
    assert_eq!(
        value(
            &m,
            r#"paved_github_requests_total{operation="repos/create-deployment",status="201"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "paved_lease_takeovers_total"), 0.0);
    assert!(text.ends_with("# EOF\n"));
}
