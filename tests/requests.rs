//! The Orchestrator (SPEC 9): a request through the API becomes a branch, a commit and a
//! pull request on the real Git remote and the strict emulator, governed like any other,
//! with the requester as its author; through to provisioning.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::REPO;
use paved_testkit::PullRequestSpec;
use serde_json::{json, Value};

const OCTOCAT: &str = "gho_octocat_requests";
const HUBOT: &str = "gho_hubot_requests";
const SEARCHER: &str = "gho_searcher_requests";

async fn start() -> Env {
    let e = Env::prepare_platform(
        common::recorder::with_quick_approval_and_search_team,
        |c, git| c.git_root = Some(git.to_path_buf()),
    )
    .await
    .run_with(|_| {})
    .await;
    e.h.github.add_user_token(OCTOCAT, "octocat");
    e.h.github.add_user_token(HUBOT, "hubot");
    e.h.github.add_user_token(SEARCHER, "searcher");
    e
}

async fn post(e: &Env, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/requests", e.h.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(e: &Env, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", e.h.url()))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn create(name: &str, env_type: &str, mode: &str) -> Value {
    let expires = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({
        "repository": REPO, "action": "create", "environment": name, "team": "payments",
        "type": env_type, "template": "recorder", "parameters": {"mode": mode},
        "expiresAt": expires, "tags": {"cost-center": "cc-1234"},
    })
}

/// The pull request event GitHub sends for a PR the emulator holds.
fn spec_of(e: &Env, number: u64, action: &str) -> PullRequestSpec {
    let pull = e.h.github.pull(REPO, number).expect("pull at the emulator");
    let mut spec = PullRequestSpec::of_pull(&pull, &e.h.repo, &e.h.remote.clone_url())
        .expect("a pull request");
    spec.action = action.into();
    spec
}

async fn state_of(e: &Env, id: i64) -> String {
    let (status, v) = get(e, OCTOCAT, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(status, 200, "{v}");
    v["state"].as_str().expect("state").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_becomes_a_governed_pull_request_and_then_an_environment() {
    let e = start().await;
    let (status, opened) = post(&e, OCTOCAT, create("cart-preview", "quick", "ok")).await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_i64().expect("id");
    let number = opened["pullRequest"]["number"].as_u64().expect("number");
    let branch = opened["branch"].as_str().expect("branch").to_string();
    // A name no one can guess (SPEC 12): the environment, then 16 random hex digits.
    let suffix = branch
        .strip_prefix("paved/requests/cart-preview-")
        .unwrap_or_else(|| panic!("{branch}"));
    assert!(
        suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{branch} (request {id})"
    );

    // A real branch and commit on the remote: Paved's, with the requester in a trailer.
    let tip =
        e.h.remote
            .tip(&format!("refs/heads/{branch}"))
            .expect("branch pushed");
    let git = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let commit = git
        .find_commit(git2::Oid::from_str(tip.as_str()).expect("oid"))
        .expect("commit");
    assert_eq!(commit.committer().name(), Some("Paved"));
    assert!(
        commit
            .message()
            .unwrap_or("")
            .contains("Requested-by: octocat"),
        "{:?}",
        commit.message()
    );
    let manifest = commit
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new(
            "environments/payments/cart-preview.yaml",
        ))
        .expect("manifest in the commit");
    let text = String::from_utf8(
        git.find_blob(manifest.id())
            .expect("blob")
            .content()
            .to_vec(),
    )
    .expect("utf-8");
    assert!(
        text.contains("owner: octocat") && text.contains("mode: ok"),
        "{text}"
    );
    // The pull request, opened at the emulator from that branch.
    let pull = e.h.github.pull(REPO, number).expect("pull");
    assert_eq!(pull["head"]["sha"], tip.as_str());
    assert_eq!(pull["base"]["ref"], "main");
    assert_eq!(state_of(&e, id).await, "open");

    // GitHub tells Paved of the PR: it is checked as octocat's, so octocat's own approval
    // does not count.
    let spec = spec_of(&e, number, "opened");
    let self_review = json!({"user": {"login": "octocat"}, "state": "APPROVED",
                              "commit_id": spec.head_sha.as_str()});
    e.h.github
        .set_pull_reviews(REPO, number, vec![self_review.clone()]);
    e.h.send_pr(&spec).await;
    let verdicts = e.h.verdicts(&spec.head_sha, 3).await;
    let approval = &verdicts["paved/approval"];
    assert_eq!(approval.state, "failure", "{verdicts:?}");
    assert_eq!(verdicts["paved/schema"].state, "success", "{verdicts:?}");
    assert_eq!(state_of(&e, id).await, "awaiting approval");

    // A teammate approves: ready.
    e.h.github.set_pull_reviews(
        REPO,
        number,
        vec![
            self_review,
            json!({"user": {"login": "hubot"}, "state": "APPROVED",
                   "commit_id": spec.head_sha.as_str()}),
        ],
    );
    let mut review = spec.clone();
    review.action = "synchronize".into();
    e.h.send_pr(&review).await;
    let head = spec.head_sha.to_string();
    e.h.github
        .wait_until(common::DEADLINE, "approval passes", move |gh| {
            gh.latest_statuses(REPO, &head)
                .get("paved/approval")
                .is_some_and(|s| s.state == "success")
        })
        .await
        .expect("approved");
    assert_eq!(state_of(&e, id).await, "ready");

    // Merged: provisioned, and the request says so.
    let (merge, _) = e.merge(&spec).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    assert_eq!(state_of(&e, id).await, "succeeded");
    let (_, v) = get(&e, OCTOCAT, &format!("/api/v1/requests/{id}")).await;
    assert_eq!(v["operations"][0]["state"], "succeeded", "{v}");
    assert_eq!(v["requester"], "octocat");
    // The audit note names the requester, not the bot that opened the PR.
    let notes = e.notes(&merge);
    assert_eq!(notes[0].requester.as_deref(), Some("octocat"));
    // An update: parameters merged into the manifest on main, the rest kept.
    let (status, v) = post(
        &e,
        HUBOT,
        json!({"repository": REPO, "action": "update", "environment": "cart-preview",
               "parameters": {"note": "hello"}}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let branch = v["branch"].as_str().expect("branch").to_string();
    let tip =
        e.h.remote
            .tip(&format!("refs/heads/{branch}"))
            .expect("pushed");
    let git = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let entry = git
        .find_commit(git2::Oid::from_str(tip.as_str()).expect("oid"))
        .expect("commit")
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new(
            "environments/payments/cart-preview.yaml",
        ))
        .expect("manifest");
    let updated = String::from_utf8(git.find_blob(entry.id()).expect("blob").content().to_vec())
        .expect("utf-8");
    assert!(
        updated.contains("note: hello")
            && updated.contains("mode: ok")
            && updated.contains("owner: octocat"),
        "{updated}"
    );
    // An update to a value the definition does not allow fails pre-flight; a valid second
    // update waits for the first (409).
    let (status, v) = post(
        &e,
        HUBOT,
        json!({"repository": REPO, "action": "update", "environment": "cart-preview",
               "parameters": {"mode": "sideways"}}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["field"], "spec.parameters.mode", "{v}");
    let (status, v) = post(
        &e,
        HUBOT,
        json!({"repository": REPO, "action": "update", "environment": "cart-preview",
               "parameters": {"note": "again"}}),
    )
    .await;
    assert_eq!(status, 409, "{v}");

    // Another team's member cannot follow it: the same answer as for no request at all.
    let hidden = get(&e, SEARCHER, &format!("/api/v1/requests/{id}")).await;
    let missing = get(&e, SEARCHER, "/api/v1/requests/987654").await;
    assert_eq!(hidden, missing);
    assert_eq!(hidden.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_preflight_or_is_not_theirs_writes_nothing() {
    let e = start().await;
    let refs_before = e.h.remote.refs().expect("refs");

    // A parameter outside its allowed values: 422 naming file and field; nothing pushed.
    let (status, v) = post(&e, OCTOCAT, create("bad-preview", "dev", "bogus")).await;
    assert_eq!(status, 422, "{v}");
    let errors = v["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|p| p["file"] == "environments/payments/bad-preview.yaml"
                && p["field"] == "spec.parameters.mode"
                && p["check"] == "paved/schema"),
        "{v}"
    );
    // A team the caller is not in: 403.
    let (status, v) = post(&e, SEARCHER, create("their-preview", "dev", "ok")).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("payments"),
        "{v}"
    );
    // Another team's environment is as missing as a missing one, for a change or a delete.
    let delete = |name: &str| json!({"repository": REPO, "action": "delete", "environment": name});
    let theirs = post(&e, SEARCHER, delete("checkout-preview")).await;
    let nowhere = post(&e, SEARCHER, delete("nowhere-preview")).await;
    assert_eq!(theirs.0, 404, "{theirs:?}");
    assert_eq!(
        theirs.1["error"]
            .as_str()
            .map(|m| m.replace("checkout-preview", "X")),
        nowhere.1["error"]
            .as_str()
            .map(|m| m.replace("nowhere-preview", "X")),
    );
    // Someone with no role in the repository is refused before anything is looked at, with
    // the answer a repository Paved does not serve gets (issue 19, item 5).
    e.h.github.add_user_token("gho_nobody_requests", "nobody");
    let (status, body) = post(&e, "gho_nobody_requests", delete("checkout-preview")).await;
    assert_eq!(status, 404, "{body}");
    let mut elsewhere = delete("checkout-preview");
    elsewhere["repository"] = json!("acme/not-served");
    let (other_status, other_body) = post(&e, "gho_nobody_requests", elsewhere).await;
    assert_eq!(other_status, 404);
    assert_eq!(
        body["error"].as_str().map(|m| m.replace(REPO, "R")),
        other_body["error"]
            .as_str()
            .map(|m| m.replace("acme/not-served", "R"))
    );
    // Service tokens read; they do not ask.
    let (status, _) = post(
        &e,
        paved_testkit::SERVICE_TOKEN,
        create("svc-preview", "dev", "ok"),
    )
    .await;
    assert_eq!(status, 403);
    // Not JSON of the right shape: 400.
    let (status, _) = post(&e, OCTOCAT, json!({"repository": REPO, "action": "create"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        e.h.remote.refs().expect("refs"),
        refs_before,
        "nothing pushed"
    );
    assert!(e.h.github.pull(REPO, 1).is_none(), "no pull request opened");

    // Two requests for one name: the second gets 409 with the first's pull request.
    let (status, first) = post(&e, OCTOCAT, create("twin-preview", "dev", "ok")).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = post(&e, HUBOT, create("twin-preview", "dev", "ok")).await;
    assert_eq!(status, 409, "{second}");
    assert_eq!(second["pullRequest"], first["pullRequest"]["url"]);
    // Anonymous: 401.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/requests", e.h.url()))
        .json(&create("anon-preview", "dev", "ok"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
}

fn paved(e: &Env, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_SERVER", e.h.url())
        .env("PAVED_TOKEN", token)
        .output()
        .expect("run paved");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_asks_for_extends_and_deletes_through_pull_requests() {
    let e = start().await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let request = |mode: &str| {
        vec![
            "env".to_string(),
            "request".into(),
            "cli-preview".into(),
            "--team".into(),
            "payments".into(),
            "--type".into(),
            "dev".into(),
            "--template".into(),
            "recorder".into(),
            "--param".into(),
            format!("mode={mode}"),
            "--expires-at".into(),
            expires.clone(),
            "--tag".into(),
            "cost-center=cc-1234".into(),
        ]
    };
    // A bad value: every error named, nothing opened.
    let args = request("bogus");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = tokio::task::block_in_place(|| paved(&e, OCTOCAT, &args));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environments/payments/cli-preview.yaml")
            && err.contains("spec.parameters.mode"),
        "{err}"
    );
    assert!(e.h.github.pull(REPO, 1).is_none());
    // A good one: the pull request's number and address.
    let args = request("ok");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = tokio::task::block_in_place(|| paved(&e, OCTOCAT, &args));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("opened pull request #1: "), "{out}");
    assert!(e.h.github.pull(REPO, 1).is_some());

    // Delete and extend the example environment on main (its manifest exists).
    let (code, out, err) =
        tokio::task::block_in_place(|| paved(&e, OCTOCAT, &["env", "delete", "checkout-preview"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("opened pull request #2"), "{out}");
    let pull = e.h.github.pull(REPO, 2).expect("delete PR");
    let branch = pull["head"]["ref"].as_str().expect("ref").to_string();
    let tip =
        e.h.remote
            .tip(&format!("refs/heads/{branch}"))
            .expect("branch");
    let git = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let tree = git
        .find_commit(git2::Oid::from_str(tip.as_str()).expect("oid"))
        .expect("commit")
        .tree()
        .expect("tree");
    assert!(
        tree.get_path(std::path::Path::new(
            "environments/payments/checkout-preview.yaml"
        ))
        .is_err(),
        "the delete request removes the manifest"
    );
    // Its delete is open: an extend of the same environment waits (409).
    let (code, _, err) = tokio::task::block_in_place(|| {
        paved(
            &e,
            OCTOCAT,
            &[
                "env",
                "extend",
                "checkout-preview",
                "--expires-at",
                &expires,
            ],
        )
    });
    assert_eq!(code, 2);
    assert!(err.contains("already has an open request"), "{err}");
    let (code, _, err) = tokio::task::block_in_place(|| {
        paved(
            &e,
            OCTOCAT,
            &["env", "extend", "nowhere", "--expires-at", &expires],
        )
    });
    assert_eq!(code, 2);
    assert!(err.contains("no environment nowhere"), "{err}");
}

/// Issue 19, item 5: with `github.repositories = ["acme/*"]`, a stranger asking for an
/// environment in `acme/<anything>` learns nothing: a repository that exists and one that
/// does not get the same answer, and Paved neither asks GitHub about them nor mirrors them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_learns_nothing_of_which_repositories_exist() {
    const STRANGER: &str = "gho_stranger_requests";
    let e = Env::prepare_platform(
        common::recorder::with_quick_approval_and_search_team,
        |c, git| c.git_root = Some(git.to_path_buf()),
    )
    .await
    .run_with(|c| {
        c.repositories =
            paved::config::RepoFilter::new(&["acme/*".to_string()], false).expect("filter");
    })
    .await;
    e.h.github.add_user_token(STRANGER, "stranger");
    e.h.github.add_user_token(OCTOCAT, "octocat");
    let ask = |repo: &str| {
        let mut body = create("peek", "dev", "ok");
        body["repository"] = json!(repo);
        body
    };
    // acme/environments exists at GitHub (and in Git); acme/nothing-here does not.
    let exists = post(&e, STRANGER, ask(REPO)).await;
    let missing = post(&e, STRANGER, ask("acme/nothing-here")).await;
    assert_eq!(exists.0, 404, "{exists:?}");
    assert_eq!(
        exists.1["error"].as_str().map(|m| m.replace(REPO, "R")),
        missing.1["error"]
            .as_str()
            .map(|m| m.replace("acme/nothing-here", "R")),
        "the answers tell the two apart: {exists:?} {missing:?}"
    );
    assert_eq!(exists.0, missing.0);
    // Nothing was asked of GitHub about either, and nothing was mirrored or recorded.
    let asked: Vec<String> =
        e.h.github
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/repos/"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
    assert!(asked.is_empty(), "GitHub was asked {asked:?}");
    let mirrors = e.h.data_dir().join("mirrors");
    let mirrored: Vec<_> = std::fs::read_dir(&mirrors)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(mirrored.is_empty(), "mirrored {mirrored:?}");
    let store = e.h.service.as_ref().expect("paved").store.clone();
    assert!(store.repositories().await.expect("read").is_empty());
    // A member is no stranger, but without a delivery Paved does not serve a glob's
    // repository either: the same answer, until GitHub sends one.
    let member = post(&e, OCTOCAT, ask("acme/nothing-here")).await;
    assert_eq!(member.0, 404, "{member:?}");
}
