use super::*;
use std::path::PathBuf;

fn fixture(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(rel)).expect("json")
}

fn bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

fn key(event: &str, body: &[u8]) -> Option<String> {
    classify(event, body)
        .expect("classify")
        .map(|c| c.queue_key)
}

#[test]
fn pull_request_actions() {
    for (file, handled) in [
        ("opened.payload.json", true),
        ("synchronize.payload.json", true),
        ("reopened.payload.json", true),
        // An unmerged close (the fixture's `merged` is false).
        ("closed.payload.json", false),
        ("labeled.payload.json", false),
    ] {
        let body = fixture(&format!("webhooks/pull_request/{file}"));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let expect = format!(
            "{}#{}",
            v["repository"]["full_name"].as_str().expect("repo"),
            v["pull_request"]["number"]
        );
        let got = classify("pull_request", &body).expect(file);
        if handled {
            let c = got.expect(file);
            assert_eq!(c.queue_key, expect, "{file}");
            assert_eq!(c.action.as_deref(), v["action"].as_str(), "{file}");
            assert_eq!(c.repo.to_string(), v["repository"]["full_name"]);
        } else {
            assert_eq!(got, None, "{file}");
        }
    }
}

#[test]
fn edited_matters_only_when_the_base_changed() {
    // The real `edited` delivery changed the body only.
    let edited = fixture("webhooks-supplement/pull_request/pr_edited.json");
    assert_eq!(classify("pull_request", &edited).expect("edited"), None);
    let mut v: serde_json::Value = serde_json::from_slice(&edited).expect("json");
    v["changes"] = serde_json::json!({"base": {"ref": {"from": "develop"}}});
    let c = classify("pull_request", &bytes(&v))
        .expect("edited")
        .expect("handled");
    assert_eq!(c.action.as_deref(), Some("edited"));
    assert!(matches!(
        Event::parse("pull_request", &bytes(&v)).expect("parse"),
        Some(Event::PullRequest(_))
    ));
}

#[test]
fn a_merge_is_keyed_by_its_pull_request() {
    let body = fixture("webhooks-supplement/pull_request/pull_request.closed.json");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let ev = Event::parse("pull_request", &body).expect("parse");
    assert!(matches!(ev, Some(Event::Merged(_))), "{ev:?}");
    let c = classify("pull_request", &body)
        .expect("classify")
        .expect("handled");
    assert_eq!(
        c.queue_key,
        format!(
            "{}#{}",
            v["repository"]["full_name"].as_str().expect("repo"),
            v["pull_request"]["number"]
        )
    );
    match ev {
        Some(Event::Merged(m)) => assert_eq!(
            m.installation.map(|i| i.id),
            v["installation"]["id"].as_u64()
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pushes_to_the_default_branch_only() {
    let mut v = json("webhooks/push/payload.json");
    let repo = v["repository"]["full_name"]
        .as_str()
        .expect("repo")
        .to_string();
    let default = v["repository"]["default_branch"]
        .as_str()
        .expect("default")
        .to_string();
    v["ref"] = serde_json::json!(format!("refs/heads/{default}"));
    assert_eq!(key("push", &bytes(&v)), Some(format!("{repo}@push")));
    v["ref"] = serde_json::json!("refs/heads/feature");
    assert_eq!(
        key("push", &bytes(&v)),
        None,
        "only the default branch matters"
    );
}

#[test]
fn reviews() {
    for file in ["submitted.payload.json", "dismissed.payload.json"] {
        let body = fixture(&format!("webhooks/pull_request_review/{file}"));
        let k = key("pull_request_review", &body).expect(file);
        assert!(k.contains('#'), "{k}");
        assert!(matches!(
            Event::parse("pull_request_review", &body).expect(file),
            Some(Event::Review(_))
        ));
    }
}

#[test]
fn comments_only_commands_on_pull_requests_and_issues() {
    // The fixtures are comments on issues, not pull requests, and no command.
    let body = fixture("webhooks/issue_comment/created.payload.json");
    assert_eq!(key("issue_comment", &body), None);
    let mut on_issue: serde_json::Value = serde_json::from_slice(&body).expect("json");
    on_issue["comment"]["body"] = serde_json::json!("/paved reconcile");
    match Event::parse("issue_comment", &bytes(&on_issue)).expect("parse") {
        Some(Event::Command {
            command,
            on_pull_request,
            commenter,
            ..
        }) => {
            assert_eq!(command, "reconcile");
            assert!(!on_pull_request, "a drift issue is an issue");
            assert_eq!(
                commenter.as_deref(),
                on_issue["comment"]["user"]["login"].as_str()
            );
        }
        other => panic!("{other:?}"),
    }

    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["issue"]["pull_request"] = serde_json::json!({"url": "https://api.github.com/x"});
    assert_eq!(key("issue_comment", &bytes(&v)), None, "not a command");

    v["comment"]["body"] = serde_json::json!("  /paved recheck\nplease");
    assert_eq!(
        key("issue_comment", &bytes(&v)).as_deref(),
        Some("Codertocat/Hello-World#1")
    );
    match Event::parse("issue_comment", &bytes(&v)).expect("parse") {
        Some(Event::Command {
            command,
            number,
            on_pull_request,
            ..
        }) => assert_eq!(
            (command.as_str(), number, on_pull_request),
            ("recheck", 1, true)
        ),
        other => panic!("{other:?}"),
    }
    v["comment"]["body"] = serde_json::json!("/pavedx");
    assert_eq!(key("issue_comment", &bytes(&v)), None);
    v["comment"]["body"] = serde_json::json!("/paved");
    v["action"] = serde_json::json!("edited");
    assert_eq!(key("issue_comment", &bytes(&v)), None);
}

#[test]
fn check_run_rerequested() {
    let body = fixture("webhooks/check_run/rerequested.payload.json");
    assert_eq!(
        key("check_run", &body).as_deref(),
        Some("github/hello-world@d6fde92930d4715a2b49857d24b940956b26d2d3")
    );
    let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["check_run"]["pull_requests"] = serde_json::json!([{"number": 5, "id": 1}]);
    assert_eq!(
        key("check_run", &bytes(&v)).as_deref(),
        Some("github/hello-world#5")
    );
    let created = fixture("webhooks/check_run/created.payload.json");
    assert_eq!(key("check_run", &created), None);
}

#[test]
fn ignored_and_invalid() {
    let ping = fixture("webhooks/ping/payload.json");
    assert_eq!(key("ping", &ping), None);
    assert_eq!(key("installation", b"not json"), None);
    assert!(matches!(
        classify("pull_request", b"not json"),
        Err(EventError::Json(_))
    ));
    assert!(matches!(
        classify("pull_request", br#"{"action":"opened"}"#),
        Err(EventError::Json(_))
    ));
    let mut v = json("webhooks/pull_request/opened.payload.json");
    v["repository"]["full_name"] = serde_json::json!("../etc");
    assert!(matches!(
        classify("pull_request", &bytes(&v)),
        Err(EventError::Invalid(_))
    ));
}
