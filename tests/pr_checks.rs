//! PR checks end to end: a signed webhook into the real service, real Git, and the commit
//! statuses and summary comment the strict GitHub emulator ends up with.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::{manifest, Harness};
use paved_testkit as testkit;

fn file(path: &str, content: &str) -> (String, Option<Vec<u8>>) {
    (path.to_string(), Some(content.as_bytes().to_vec()))
}

const NEW: &str = "environments/payments/orders-preview.yaml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_manifest_gets_green_statuses_and_one_comment() {
    let h = Harness::start().await;
    let pr = h.push_pr(7, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    for ctx in ["paved/schema", "paved/policy", "paved/quota"] {
        let s = v
            .get(ctx)
            .unwrap_or_else(|| panic!("no {ctx} status: {v:?}"));
        assert_eq!(s.state, "success", "{ctx}: {s:?}");
        assert!(
            s.target_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://paved.test/api/v1/runs/")),
            "{s:?}"
        );
    }
    // Each check went pending first, then its verdict.
    let all = h.github.statuses(&h.repo.to_string(), pr.head_sha.as_str());
    let schema: Vec<&str> = all
        .iter()
        .filter(|s| s.context == "paved/schema")
        .map(|s| s.state.as_str())
        .collect();
    assert_eq!(schema, ["pending", "success"]);
    h.github
        .wait_until(common::DEADLINE, "comment", |gh| {
            !gh.comments(common::REPO, 7).is_empty()
        })
        .await
        .unwrap();
    let comments = h.comments(7);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("orders-preview"),
        "{}",
        comments[0].body
    );
}

async fn failing(
    h: &Harness,
    number: u64,
    path: &str,
    content: &str,
    context: &str,
) -> (String, String) {
    let pr = h.push_pr(number, None, &[file(path, content)]);
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 1).await;
    let s = v
        .get(context)
        .unwrap_or_else(|| panic!("no {context}: {v:?}"));
    assert_eq!(s.state, "failure", "{context}: {s:?}");
    h.github
        .wait_until(common::DEADLINE, "comment", move |gh| {
            !gh.comments(common::REPO, number).is_empty()
        })
        .await
        .unwrap();
    let comment = h.comments(number).remove(0).body;
    (s.description.clone().unwrap_or_default(), comment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_fails_schema_naming_line_and_column() {
    let h = Harness::start().await;
    let bad = "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: orders-preview\n  team: [payments\n";
    let (desc, comment) = failing(&h, 8, NEW, bad, "paved/schema").await;
    assert!(comment.contains(NEW), "{comment}");
    assert!(
        comment.contains(":5:") || comment.contains("line 5"),
        "no line in: {comment}"
    );
    assert!(!desc.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_field_is_named_with_its_line() {
    let h = Harness::start().await;
    let text = manifest("orders-preview", "small")
        .replace("  owner: octocat\n", "  owner: octocat\n  colour: blue\n");
    let (desc, comment) = failing(&h, 9, NEW, &text, "paved/schema").await;
    assert!(comment.contains("colour"), "{comment}");
    assert!(comment.contains(".yaml:7"), "no line 7 in: {comment}");
    assert!(desc.contains("colour"), "{desc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_outside_allowed_fails_schema() {
    let h = Harness::start().await;
    let (desc, comment) = failing(
        &h,
        10,
        NEW,
        &manifest("orders-preview", "gigantic"),
        "paved/schema",
    )
    .await;
    assert!(comment.contains("spec.parameters.size"), "{comment}");
    assert!(desc.contains("gigantic"), "{desc}");
}

const DENY_POLICY: &str = r#"package main

deny contains msg if {
    input.spec.tags["cost-center"] == "cc-0000"
    msg := "cost center cc-0000 is closed"
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rego_deny_fails_policy() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let (desc, comment) = failing(&h, 11, NEW, &text, "paved/policy").await;
    assert!(
        comment.contains("cost center cc-0000 is closed"),
        "{comment}"
    );
    assert!(desc.contains("cc-0000"), "{desc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_cannot_relax_the_policies_it_is_judged_by() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let pr = h.push_pr(
        12,
        None,
        &[
            file(NEW, &text),
            file(".paved/policies/closed_cost_center.rego", "package main\n"),
        ],
    );
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 4).await;
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    // Changing .paved/ is itself governed: platform's approval is needed.
    let g = &v["paved/governance"];
    assert_eq!(g.state, "failure", "{g:?}");
    assert!(
        g.description.as_deref().unwrap_or("").contains("platform"),
        "{g:?}"
    );

    // With admin1's approval the governance check passes; the manifest is still judged
    // by the base's policy.
    h.github.set_pull_reviews(
        common::REPO,
        12,
        vec![
            serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                "commit_id": pr.head_sha.as_str()}),
        ],
    );
    let body = testkit::review_payload(&pr, "submitted", "admin1").unwrap();
    let id = h.delivery_id();
    assert!(h.send("pull_request_review", &id, &body).await.is_success());
    h.wait_delivery(&id).await;
    let v = h.verdicts(&pr.head_sha, 4).await;
    assert_eq!(v["paved/governance"].state, "success", "{v:?}");
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
}

/// What-if: a stricter policy in a PR names the live environments it would break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_names_the_live_environments_it_would_break() {
    let second = manifest("billing-preview", "small");
    let h =
        Harness::start_with(&[file("environments/payments/billing-preview.yaml", &second)]).await;
    let stricter = DENY_POLICY.replace("cc-0000", "cc-1234");
    let pr = h.push_pr(
        14,
        None,
        &[file(".paved/policies/closed_cost_center.rego", &stricter)],
    );
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 1).await;
    assert_eq!(v.len(), 1, "only paved/governance: {v:?}");
    assert_eq!(v["paved/governance"].state, "failure", "{v:?}");
    h.github
        .wait_until(common::DEADLINE, "comment", |gh| {
            !gh.comments(common::REPO, 14).is_empty()
        })
        .await
        .unwrap();
    let body = &h.comments(14)[0].body;
    for env in ["payments/checkout-preview", "payments/billing-preview"] {
        assert!(body.contains(env), "{env} not named in {body}");
    }
    assert!(body.contains("cost center cc-1234 is closed"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_overrun_fails_quota() {
    let h = Harness::start().await;
    // The examples give team payments a quota of 5 and one live environment.
    let changes: Vec<_> = (1..=5)
        .map(|i| {
            let name = format!("extra-{i}");
            file(
                &format!("environments/payments/{name}.yaml"),
                &manifest(&name, "small"),
            )
        })
        .collect();
    let pr = h.push_pr(13, None, &changes);
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert_eq!(v["paved/quota"].state, "failure", "{v:?}");
    assert!(
        v["paved/quota"]
            .description
            .as_deref()
            .unwrap_or("")
            .contains('6'),
        "{v:?}"
    );
    assert_eq!(v["paved/schema"].state, "success", "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pr_touching_no_manifest_gets_nothing() {
    let h = Harness::start().await;
    let pr = h.push_pr(14, None, &[file("README.md", "docs only\n")]);
    let id = h.send_pr(&pr).await;
    let d = h.wait_delivery(&id).await;
    assert_eq!(d["state"], "done", "{d}");
    assert!(h
        .github
        .statuses(common::REPO, pr.head_sha.as_str())
        .is_empty());
    assert!(h.comments(14).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_is_rejected_and_nothing_stored() {
    let h = Harness::start().await;
    let pr = h.push_pr(15, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    let body = testkit::pull_request_payload(&pr).unwrap();
    let id = h.delivery_id();
    let wrong = testkit::sign("not-the-secret", &body);
    assert_eq!(h.send_signed("pull_request", &id, &body, &wrong).await, 401);
    assert_eq!(h.send_signed("pull_request", &id, &body, "").await, 401);
    let r = h
        .client
        .get(format!("{}/api/v1/deliveries/{id}", h.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a rejected delivery must not be stored");
    assert!(h.github.requests().is_empty(), "nothing may reach GitHub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_is_processed_once() {
    let h = Harness::start().await;
    let pr = h.push_pr(16, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    let body = testkit::pull_request_payload(&pr).unwrap();
    let id = h.delivery_id();
    assert_eq!(h.send("pull_request", &id, &body).await, 202);
    let again = h.send("pull_request", &id, &body).await;
    assert!(
        again.is_success() && again != 202,
        "redelivery answered {again}"
    );
    h.wait_delivery(&id).await;
    h.verdicts(&pr.head_sha, 4).await;
    let all = h.github.statuses(common::REPO, pr.head_sha.as_str());
    assert_eq!(all.len(), 8, "4 pending + 4 verdicts, once: {all:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_the_same_pr_edits_the_comment() {
    let h = Harness::start().await;
    let pr = h.push_pr(
        17,
        None,
        &[file(NEW, &manifest("orders-preview", "gigantic"))],
    );
    h.send_pr(&pr).await;
    h.verdicts(&pr.head_sha, 3).await;
    h.github
        .wait_until(common::DEADLINE, "first comment", |gh| {
            gh.comments(common::REPO, 17).len() == 1
        })
        .await
        .unwrap();
    let first = h.comments(17).remove(0);

    let mut next = h.push_pr(
        17,
        Some(&pr.head_sha),
        &[file(NEW, &manifest("orders-preview", "small"))],
    );
    next.action = "synchronize".into();
    h.send_pr(&next).await;
    let v = h.verdicts(&next.head_sha, 3).await;
    assert_eq!(v["paved/schema"].state, "success", "{v:?}");
    let short = next.head_sha.short().to_string();
    h.github
        .wait_until(common::DEADLINE, "edited comment", move |gh| {
            gh.comments(common::REPO, 17)
                .iter()
                .any(|c| c.body.contains(&short))
        })
        .await
        .unwrap();
    let comments = h.comments(17);
    assert_eq!(
        comments.len(),
        1,
        "the comment must be edited, not duplicated"
    );
    assert_eq!(comments[0].id, first.id);
    assert_ne!(comments[0].body, first.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bomb_and_huge_manifest_fail_clearly_and_server_stays_up() {
    let h = Harness::start().await;
    let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n\
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n\
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n\
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n\
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n\
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n\
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n\
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n\
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    let (_, comment) = failing(
        &h,
        18,
        "environments/payments/bomb-env.yaml",
        bomb,
        "paved/schema",
    )
    .await;
    assert!(
        comment.to_lowercase().contains("alias") || comment.to_lowercase().contains("anchor"),
        "{comment}"
    );

    let mut huge = manifest("huge-env", "small");
    huge.push_str("# ");
    huge.push_str(&"x".repeat(5 * 1024 * 1024));
    huge.push('\n');
    let (_, comment) = failing(
        &h,
        19,
        "environments/payments/huge-env.yaml",
        &huge,
        "paved/schema",
    )
    .await;
    assert!(comment.contains("huge-env.yaml"), "{comment}");
    assert!(
        comment.contains("larger than") || comment.contains("too large"),
        "{comment}"
    );
    let r = h
        .client
        .get(format!("{}/healthz", h.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_errors_are_retried_until_the_status_lands() {
    let h = Harness::start().await;
    let pr = h.push_pr(20, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    h.github.fail_next_with(2, 502, None);
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert!(v.values().all(|s| s.state == "success"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recheck_comment_runs_the_checks_again() {
    let h = Harness::start().await;
    let pr = h.push_pr(21, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    h.github
        .set_pull(common::REPO, 21, testkit::pull_json(&pr).unwrap());
    let body =
        testkit::issue_comment_payload(&h.repo, &pr.clone_url, 21, "/paved recheck").unwrap();
    let id = h.delivery_id();
    assert_eq!(h.send("issue_comment", &id, &body).await, 202);
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert!(v.values().all(|s| s.state == "success"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_re_evaluates_the_checks_at_the_head() {
    let h = Harness::start().await;
    let pr = h.push_pr(22, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    let body = testkit::review_payload(&pr, "submitted", "admin1").unwrap();
    let id = h.delivery_id();
    assert_eq!(h.send("pull_request_review", &id, &body).await, 202);
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert!(v.values().all(|s| s.state == "success"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_requests_closed_without_merging_are_not_queued() {
    let h = Harness::start().await;
    let mut pr = h.push_pr(23, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    pr.action = "closed".into();
    let body = testkit::pull_request_payload(&pr).unwrap();
    let id = h.delivery_id();
    let status = h.send("pull_request", &id, &body).await;
    assert_eq!(status, 200, "acknowledged without being queued");
    let r = h
        .client
        .get(format!("{}/api/v1/deliveries/{id}", h.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
