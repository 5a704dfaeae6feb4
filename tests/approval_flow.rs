//! Approvals end to end, table-driven: a PR asking for a `prod` environment (two approvals
//! from team `platform`: admin1, admin2), the reviews GitHub's API lists for it, and a
//! `pull_request_review` delivery (GitHub's example payload, rewritten) that makes Paved
//! read them. Each case checks the `paved/approval` status a reviewer would see.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::Harness;
use paved_testkit::{self as testkit, PullRequestSpec};
use serde_json::json;

fn prod_manifest(name: &str) -> String {
    format!(
        "apiVersion: paved/v1
kind: Environment
metadata:
  name: {name}
  team: payments
  owner: octocat
spec:
  type: prod
  definition: postgres-db
  parameters:
    size: large
  tags:
    cost-center: cc-1234
"
    )
}

/// A review as `pulls/list-reviews` lists it.
fn review(user: &str, state: &str, commit: &str) -> serde_json::Value {
    json!({"user": {"login": user}, "state": state, "commit_id": commit})
}

struct Case {
    name: &'static str,
    /// The PR's author.
    author: &'static str,
    /// (reviewer, state, on the current head?) oldest first.
    reviews: &'static [(&'static str, &'static str, bool)],
    /// Expected state of `paved/approval` and a phrase of its description.
    state: &'static str,
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "no review yet",
        author: "octocat",
        reviews: &[],
        state: "failure",
        says: "needs 2 more approvals from team platform",
    },
    Case {
        name: "one of two",
        author: "octocat",
        reviews: &[("admin1", "APPROVED", true)],
        state: "failure",
        says: "needs 1 more approval from team platform",
    },
    Case {
        name: "two of two",
        author: "octocat",
        reviews: &[("admin1", "APPROVED", true), ("admin2", "APPROVED", true)],
        state: "success",
        says: "admin1",
    },
    Case {
        name: "the author's own approval does not count",
        author: "admin1",
        reviews: &[("admin1", "APPROVED", true), ("admin2", "APPROVED", true)],
        state: "failure",
        says: "needs 1 more approval from team platform",
    },
    Case {
        name: "an outsider's approval does not count",
        author: "octocat",
        reviews: &[("hubot", "APPROVED", true), ("admin2", "APPROVED", true)],
        state: "failure",
        says: "needs 1 more approval from team platform",
    },
    Case {
        name: "changes requested, then approved by the same reviewer",
        author: "octocat",
        reviews: &[
            ("admin1", "CHANGES_REQUESTED", true),
            ("admin1", "APPROVED", true),
            ("admin2", "APPROVED", true),
        ],
        state: "success",
        says: "admin2",
    },
    Case {
        name: "changes requested still standing",
        author: "octocat",
        reviews: &[
            ("admin1", "APPROVED", true),
            ("admin2", "APPROVED", true),
            ("admin2", "CHANGES_REQUESTED", true),
        ],
        state: "failure",
        says: "admin2",
    },
    Case {
        name: "a dismissed approval stops counting",
        author: "octocat",
        reviews: &[
            ("admin1", "APPROVED", true),
            ("admin1", "DISMISSED", true),
            ("admin2", "APPROVED", true),
        ],
        state: "failure",
        says: "needs 1 more approval from team platform",
    },
    Case {
        name: "approvals of an earlier push are stale (dismissStale defaults to true)",
        author: "octocat",
        reviews: &[("admin1", "APPROVED", false), ("admin2", "APPROVED", true)],
        state: "failure",
        says: "needs 1 more approval from team platform",
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_follows_each_reviewers_latest_review() {
    let h = Harness::start().await;
    let repo = h.repo.to_string();
    for (i, case) in CASES.iter().enumerate() {
        let number = 300 + i as u64;
        let name = format!("prod-{i:02}");
        let path = format!("environments/payments/{name}.yaml");
        let first = h.push_pr(
            number,
            None,
            &[(path.clone(), Some(prod_manifest(&name).into_bytes()))],
        );
        // A second push, so "an earlier push" has a commit of its own.
        let mut spec: PullRequestSpec = h.push_pr(
            number,
            Some(&first.head_sha),
            &[(
                path,
                Some(format!("{}# reviewed\n", prod_manifest(&name)).into_bytes()),
            )],
        );
        spec.author = case.author.to_string();
        h.github
            .set_pull(&repo, number, testkit::pull_json(&spec).expect("pull"));
        let reviews = case
            .reviews
            .iter()
            .map(|(who, state, current)| {
                let on = if *current {
                    &spec.head_sha
                } else {
                    &first.head_sha
                };
                review(who, state, on.as_str())
            })
            .collect();
        h.github.set_pull_reviews(&repo, number, reviews);
        let reviewer = case.reviews.last().map(|r| r.0).unwrap_or("admin1");
        let body = testkit::review_payload(&spec, "submitted", reviewer).expect("payload");
        let id = h.delivery_id();
        assert_eq!(
            h.send("pull_request_review", &id, &body).await,
            reqwest::StatusCode::ACCEPTED,
            "{}",
            case.name
        );
        let d = h.wait_delivery(&id).await;
        assert_eq!(d["state"], "done", "{}: {d}", case.name);
        let v = h.verdicts(&spec.head_sha, 4).await;
        let a = v
            .get("paved/approval")
            .unwrap_or_else(|| panic!("{}: no paved/approval in {v:?}", case.name));
        let says = a.description.clone().unwrap_or_default();
        assert_eq!(a.state, case.state, "{}: {says}", case.name);
        assert!(
            says.contains(case.says),
            "{}: {says:?} should say {:?}",
            case.name,
            case.says
        );
        // The other checks are unaffected by reviews.
        for ctx in ["paved/schema", "paved/policy", "paved/quota"] {
            assert_eq!(v[ctx].state, "success", "{}: {ctx} {:?}", case.name, v[ctx]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_environment_gets_no_approval_check() {
    let h = Harness::start().await;
    let pr = h.push_pr(
        9,
        None,
        &[(
            "environments/payments/dev-one.yaml".into(),
            Some(common::manifest("dev-one", "small").into_bytes()),
        )],
    );
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert!(!v.contains_key("paved/approval"), "{v:?}");
}
