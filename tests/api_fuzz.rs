//! The API fuzzed from its own OpenAPI document, as a client generator would read it:
//! Schemathesis (property-based, Hypothesis) generates requests from
//! `/api/v1/openapi.json`, valid ones and ones the document forbids, and sends them as a
//! member of a team to a real server with content (an environment live, a run, a
//! delivery). It fails on any 5xx, any status the document does not list for the route, any
//! body or content type that does not match the document, any valid request refused as
//! malformed and any invalid one accepted (`tests/fixtures/schemathesis/schemathesis.toml`).
//!
//! Schemathesis lives in a virtualenv at `/opt/paved-fuzz` (`script/bootstrap` makes it;
//! elsewhere `PAVED_TEST_FUZZ_VENV`).

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use std::path::PathBuf;

const MEMBER: &str = "gho_octocat_fuzz";

fn schemathesis() -> PathBuf {
    let venv = std::env::var("PAVED_TEST_FUZZ_VENV").unwrap_or_else(|_| "/opt/paved-fuzz".into());
    let bin = PathBuf::from(&venv).join("bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run script/bootstrap, which installs Schemathesis into {venv}",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_generated_from_the_document_get_the_answers_it_promises() {
    let bin = schemathesis();
    let mut e = Env::prepare_platform(common::recorder::with_search_team, |c, git| {
        c.git_root = Some(git.to_path_buf())
    })
    .await
    .run_with(|_| {})
    .await;
    e.h.github.add_user_token(MEMBER, "octocat");
    // Paved asks GitHub whose each made-up token Schemathesis sends is (to answer 401):
    // those `GET /user` are the only requests GitHub may refuse here.
    e.h.allow_unknown_tokens();
    // Content for the answers: a checked PR (a run), a merge (a delivery, an operation, a
    // live environment).
    let pr = e.open(&add("orders-preview", "ok"));
    e.h.send_pr(&pr).await;
    e.h.verdicts(&pr.head_sha, 1).await;
    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");

    let url = e.h.url();
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schemathesis/schemathesis.toml"
    );
    let reports = tempfile::tempdir().expect("tempdir");
    let out = tokio::process::Command::new(&bin)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{url}/api/v1/openapi.json"))
        .args(["--url", &url])
        .args(["--header", &format!("Authorization: Bearer {MEMBER}")])
        .args(["--checks", "all"])
        .args(["--mode", "all"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "40"])
        .args(["--seed", "20261207"])
        // A fixed seed: the same requests every run (two workers, one per core of the
        // machine this runs on, share them out).
        .args(["--workers", "2"])
        .args(["--request-timeout", "20"])
        .args(["--generation-allow-x00", "true"])
        .args(["--report", "junit"])
        .arg("--report-junit-path")
        .arg(reports.path().join("junit.xml"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Its caches (`.schemathesis/`, Hypothesis's example database) go with the reports,
        // never into the checkout: each run starts from nothing.
        .current_dir(reports.path())
        .output()
        .await
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "Schemathesis found failures (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    // It ran, and on every operation of the document: the JUnit report has a test case for
    // each, none skipped.
    let report = std::fs::read_to_string(reports.path().join("junit.xml")).expect("junit.xml");
    let doc: serde_json::Value =
        e.h.client
            .get(format!("{url}/api/v1/openapi.json"))
            .send()
            .await
            .expect("document")
            .json()
            .await
            .expect("json");
    let mut untested = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            let name = format!("{} {path}", method.to_uppercase());
            let tested = report.split("<testcase ").skip(1).any(|case| {
                case.contains(&format!("name=\"{name}\"")) && !case.contains("<skipped")
            });
            // The document itself is what Schemathesis reads first. The Backstage export takes
            // nothing to vary (no parameter, no body), and Schemathesis skips such an operation
            // when its answer is not JSON; tests/openapi.rs checks its answers.
            let read_otherwise = [
                "GET /api/v1/openapi.json",
                "GET /api/v1/backstage/entities.yaml",
            ];
            if !tested && !read_otherwise.contains(&name.as_str()) {
                untested.push(name);
            }
        }
    }
    assert!(untested.is_empty(), "not fuzzed: {untested:?}\n{report}");
}
