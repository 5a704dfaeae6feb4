//! Paved as a GitHub App, end to end: installation tokens minted with a JWT from the app's
//! private key and used for the REST API and for Git over HTTP (the emulator serves the
//! repository with `git http-backend` and takes only tokens it issued), check runs with
//! annotations on the manifests' lines, and tokens renewed when GitHub stops taking them.

/// `false`: SQLite; tests/postgres_suite.rs includes this file again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::{add, path_of, recorder_manifest};
use common::DEADLINE;
use github_emulator::{CheckRun, Outcome};
use paved::config::GithubAuth;
use paved::ids::CommitSha;
use paved_testkit::FileChange;
use std::path::Path;

/// Paved as app 1 with the test key, Git through the emulator, verdicts as check runs
/// (the default for an app). The emulator takes only tokens it issued.
async fn app_env() -> Env {
    let e = Env::prepare_with(|c, git_root| {
        c.require_issued_token = true;
        c.git_root = Some(git_root.to_path_buf());
    })
    .await;
    let git = e.h.github.git_url_template();
    e.run_with(move |c| {
        c.auth = Some(GithubAuth::App {
            app_id: 1,
            private_key_path: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/app-private-key.pem"),
        });
        c.clone_url_template = Some(git);
    })
    .await
}

/// The check runs on `sha`, once every one of them completed and `names` are among them
/// (Paved opens all of a PR's runs before it completes any).
async fn completed_runs(e: &Env, sha: &CommitSha, names: &[&str]) -> Vec<CheckRun> {
    let repo = e.repo();
    let sha = sha.to_string();
    let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let (r, s) = (repo.clone(), sha.clone());
    e.h.github
        .wait_until(DEADLINE, "completed check runs", move |gh| {
            let runs: Vec<CheckRun> = gh
                .check_runs(&r)
                .into_iter()
                .filter(|c| c.head_sha == s)
                .collect();
            runs.iter().all(|c| c.status == "completed")
                && wanted.iter().all(|n| runs.iter().any(|c| &c.name == n))
        })
        .await
        .expect("check runs");
    e.h.github
        .check_runs(&repo)
        .into_iter()
        .filter(|c| c.head_sha == sha)
        .collect()
}

fn run_named<'a>(runs: &'a [CheckRun], name: &str) -> &'a CheckRun {
    runs.iter()
        .rev()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check run {name} in {runs:#?}"))
}

/// What the emulator refused, other than 401s for a token it no longer takes.
fn unexpected_rejections(e: &Env) -> Vec<String> {
    e.h.github
        .requests_with(Outcome::Rejected)
        .into_iter()
        .filter(|r| r.status != 401)
        .map(|r| format!("{} {} -> {} {:?}", r.method, r.path, r.status, r.reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_checks_with_annotations_and_provisions_with_installation_tokens() {
    let e = app_env().await;

    // A PR whose manifest has a bad parameter on line 11: a failing `paved/schema` check
    // run with an annotation on exactly that line, and no commit statuses.
    let bad = recorder_manifest("orders-preview", "dev", "bogus", "");
    let line = bad
        .lines()
        .position(|l| l.trim() == "mode: bogus")
        .expect("the mode line")
        + 1;
    assert_eq!(line, 11);
    let pr = e.open(&[(path_of("orders-preview"), Some(bad.into_bytes()))]);
    e.h.send_pr(&pr).await;
    let runs = completed_runs(&e, &pr.head_sha, &["paved/schema", "paved/policy"]).await;
    let schema = run_named(&runs, "paved/schema");
    assert_eq!(schema.conclusion.as_deref(), Some("failure"), "{schema:#?}");
    assert!(
        schema.updates >= 1,
        "the run was opened in progress, then completed"
    );
    let a = &schema.annotations;
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0]["path"], path_of("orders-preview"));
    assert_eq!(a[0]["start_line"], line);
    assert_eq!(a[0]["end_line"], line);
    assert_eq!(a[0]["annotation_level"], "failure");
    let message = a[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.parameters.mode") && message.contains("bogus"),
        "{message}"
    );
    assert_eq!(
        run_named(&runs, "paved/policy").conclusion.as_deref(),
        Some("success")
    );
    assert!(
        e.h.github
            .statuses(&e.repo(), pr.head_sha.as_str())
            .is_empty(),
        "an app reports with check runs, not statuses"
    );

    // A good PR, merged: checks pass, the environment is provisioned and its deployment
    // made, the audit note pushed, all with installation tokens.
    let good = e.open(&add("orders-preview", "ok"));
    e.h.send_pr(&good).await;
    let runs = completed_runs(&e, &good.head_sha, &["paved/schema", "paved/policy"]).await;
    for r in &runs {
        // Nothing these definitions could preview: `paved/plan` is neutral.
        let want = if r.name == "paved/plan" {
            "neutral"
        } else {
            "success"
        };
        assert_eq!(r.conclusion.as_deref(), Some(want), "{r:#?}");
    }
    let (merge, _) = e.merge(&good).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let deployments = e.h.github.deployments(&e.repo());
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].sha, merge.to_string());
    assert_eq!(
        e.notes(&merge).len(),
        1,
        "the audit note reached the remote"
    );

    // Every token used was one the emulator issued to installation 1, minted with the
    // app's JWT; Git fetched and pushed with them.
    let tokens = e.h.github.tokens();
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| t.installation_id == 1));
    let issued: Vec<&str> = tokens.iter().map(|t| t.token.as_str()).collect();
    let git = e.h.github.git_requests();
    let authorised: Vec<_> = git.iter().filter(|g| g.status == 200).collect();
    assert!(
        authorised
            .iter()
            .any(|g| g.service.as_deref() == Some("git-upload-pack")),
        "{git:#?}"
    );
    assert!(
        authorised
            .iter()
            .any(|g| g.service.as_deref() == Some("git-receive-pack")),
        "the notes were pushed over HTTP: {git:#?}"
    );
    assert!(authorised
        .iter()
        .all(|g| g.token.as_deref().is_some_and(|t| issued.contains(&t))));
    // One token served the whole run: it is kept, not minted per call.
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(unexpected_rejections(&e), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_github_stops_taking_is_renewed() {
    let e = app_env().await;
    let first = e.open(&add("first-preview", "ok"));
    let id = e.h.send_pr(&first).await;
    assert_eq!(e.h.wait_delivery(&id).await["state"], "done");
    assert_eq!(e.h.github.tokens().len(), 1);

    // GitHub ends the token early (as after a revocation, or a clock that ran ahead):
    // Git and the API refuse it; Paved drops it and mints another.
    e.h.github.expire_tokens();
    let second = e.open(&add("second-preview", "ok"));
    let id = e.h.send_pr(&second).await;
    let runs = completed_runs(&e, &second.head_sha, &["paved/schema", "paved/policy"]).await;
    for r in &runs {
        // Nothing these definitions could preview: `paved/plan` is neutral.
        let want = if r.name == "paved/plan" {
            "neutral"
        } else {
            "success"
        };
        assert_eq!(r.conclusion.as_deref(), Some(want), "{r:#?}");
    }
    let tokens = e.h.github.tokens();
    assert_eq!(
        tokens.len(),
        2,
        "one more token, not one per request: {tokens:#?}"
    );
    let refused =
        e.h.github
            .git_requests()
            .into_iter()
            .filter(|g| g.status == 401 && g.token.as_deref() == Some(tokens[0].token.as_str()))
            .count();
    assert!(refused >= 1, "Git was refused the old token first");
    let delivery = e.h.wait_delivery(&id).await;
    assert_eq!(delivery["state"], "done", "{delivery}");
    assert_eq!(unexpected_rejections(&e), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_annotations_than_one_request_takes_are_all_sent() {
    let e = app_env().await;
    // 60 manifests, each with one error: 60 annotations, sent 50 then 10.
    let changes: Vec<FileChange> = (0..60)
        .map(|i| {
            let name = format!("bad-{i:02}");
            let body = recorder_manifest(&name, "dev", "bogus", "");
            (path_of(&name), Some(body.into_bytes()))
        })
        .collect();
    let pr = e.open(&changes);
    e.h.send_pr(&pr).await;
    let runs = completed_runs(&e, &pr.head_sha, &["paved/schema"]).await;
    let schema = run_named(&runs, "paved/schema");
    assert_eq!(schema.conclusion.as_deref(), Some("failure"));
    assert_eq!(schema.annotations.len(), 60);
    let paths: std::collections::BTreeSet<&str> = schema
        .annotations
        .iter()
        .filter_map(|a| a["path"].as_str())
        .collect();
    assert_eq!(paths.len(), 60, "one on each manifest");
    assert!(schema.annotations.iter().all(|a| a["start_line"] == 11));
    assert_eq!(unexpected_rejections(&e), Vec::<String>::new());
}
