//! Branches and comments Paved trusts (SPEC 12, issue 19 item 4): a branch anyone pushed
//! first is never Paved's clean-up pull request; a requester counts as a pull request's
//! author only while its head is the commit Paved made; a comment is Paved's only if Paved
//! wrote it, whatever marker it carries.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use chrono::{DateTime, Duration as Days, Utc};
use common::provisioning::Env;
use common::REPO;
use paved::clock::Clock;
use paved::ids::CommitSha;
use paved_testkit::FileChange;
use std::future::Future;
use std::time::Duration;

const MALLORY: &str = "gho_mallory_trust";

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn manifest(name: &str, expires: DateTime<Utc>) -> String {
    format!(
        "apiVersion: paved/v1
kind: Environment
metadata:
  name: {name}
  team: payments
  owner: octocat
spec:
  type: dev
  definition: recorder
  parameters:
    mode: ok
  expiresAt: {}
  tags:
    cost-center: cc-1234
",
        at(expires)
    )
}

fn path(name: &str) -> String {
    format!("environments/payments/{name}.yaml")
}

async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, async || f().await).await
}

fn file_at(e: &Env, commit: &CommitSha, path: &str) -> bool {
    let git = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let c = git
        .find_commit(git2::Oid::from_str(commit.as_str()).expect("oid"))
        .expect("commit");
    let found = c
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new(path))
        .is_ok();
    found
}

/// Posts a comment on issue or pull request `number` as mallory, at the emulator.
async fn comment_as_mallory(e: &Env, number: u64, body: &str) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/repos/{REPO}/issues/{number}/comments",
            e.h.github.url()
        ))
        .bearer_auth(MALLORY)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "mallory")
        .json(&serde_json::json!({ "body": body }))
        .send()
        .await
        .expect("comment");
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_branches_markers_and_pushes_do_not_speak_for_paved() {
    let t0: DateTime<Utc> = at(Utc::now()).parse().expect("time");
    let clock = Clock::manual(t0);
    let tick_clock = clock.clone();
    let e = Env::prepare_with(|c, git| c.git_root = Some(git.to_path_buf()))
        .await
        .run_with(move |c| {
            c.lifecycle.clock = tick_clock;
            c.lifecycle.tick = Duration::from_secs(1);
            c.lifecycle.drift_interval = Duration::ZERO;
        })
        .await;
    e.h.github.add_user_token(MALLORY, "mallory");
    let expires = t0 + Days::days(2);
    let spec = e.open(&[(path("web"), Some(manifest("web", expires).into_bytes()))]);
    e.h.send_pr(&spec).await;
    let (sha, _) = e.merge(&spec).await;
    assert_eq!(e.provision_status(&sha).await.state, "success");
    let pr = spec.number;

    // Mallory writes Paved's expiry-warning marker first, hoping to silence the warning,
    // and pushes branches named as Paved once named its clean-ups, each with a manifest of
    // her own in it.
    comment_as_mallory(
        &e,
        pr,
        &format!(
            "<!-- paved:expiry-warning web {} -->\nnothing to see",
            at(expires)
        ),
    )
    .await;
    let main = e.h.remote.tip("refs/heads/main").expect("main");
    let planted_change: Vec<FileChange> = vec![(
        path("planted"),
        Some(manifest("planted", expires).into_bytes()),
    )];
    let mut planted = Vec::new();
    for run in 1..=20 {
        let branch = format!("paved/expired/web-{run}");
        e.h.remote
            .commit(
                &format!("refs/heads/{branch}"),
                Some(&main),
                &planted_change,
                "planted",
            )
            .expect("plant");
        planted.push(branch);
    }

    // The warning is posted all the same, by Paved.
    clock.advance(Days::hours(25));
    let warning = until("Paved's expiry warning", || async {
        e.h.comments(pr)
            .into_iter()
            .find(|c| c.user == "paved[bot]" && c.body.contains("paved:expiry-warning web"))
    })
    .await;
    assert!(warning.body.contains("@octocat"), "{}", warning.body);

    // The clean-up pull request comes from a branch of Paved's own, not a planted one.
    clock.advance(Days::hours(24));
    let cleanup = until("the cleanup pull request", || async {
        e.h.github.pulls(REPO).into_iter().find(|p| {
            p["title"]
                .as_str()
                .is_some_and(|t| t.contains("Remove expired environment payments/web"))
        })
    })
    .await;
    let branch = cleanup["head"]["ref"].as_str().expect("ref").to_string();
    assert!(!planted.contains(&branch), "{branch} was planted");
    let suffix = branch
        .strip_prefix("paved/expired/web-")
        .unwrap_or_else(|| panic!("{branch}"));
    assert!(
        suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{branch}"
    );
    let head =
        e.h.remote
            .tip(&format!("refs/heads/{branch}"))
            .expect("branch");
    assert!(
        !file_at(&e, &head, &path("web")),
        "the branch removes the manifest"
    );
    assert!(
        !file_at(&e, &head, &path("planted")),
        "nothing planted in it"
    );

    // As Paved made it, the clean-up is the owner's: its checks pass.
    let number = cleanup["number"].as_u64().expect("number");
    let pull = e.h.github.pull(REPO, number).expect("pull");
    let clean = paved_testkit::PullRequestSpec::of_pull(&pull, &e.h.repo, &e.h.remote.clone_url())
        .expect("spec");
    e.h.send_pr(&clean).await;
    let verdicts = e.h.verdicts(&clean.head_sha, 3).await;
    assert!(
        verdicts.values().all(|s| s.state == "success"),
        "{verdicts:#?}"
    );

    // Someone adds a commit to Paved's branch: the pull request is no longer the owner's,
    // and what it now changes is judged as its real author's.
    let pushed =
        e.h.remote
            .commit(
                &format!("refs/heads/{branch}"),
                Some(&head),
                &planted_change,
                "one more thing",
            )
            .expect("push onto the branch");
    e.h.remote.publish_pull(number, &pushed).expect("refs/pull");
    e.h.github.set_pull(
        REPO,
        number,
        serde_json::json!({"head": {"sha": pushed.as_str()}}),
    );
    let mut moved = clean.clone();
    moved.action = "synchronize".into();
    moved.head_sha = pushed.clone();
    e.h.send_pr(&moved).await;
    let verdicts = e.h.verdicts(&pushed, 3).await;
    let policy = &verdicts["paved/policy"];
    assert_eq!(policy.state, "failure", "{verdicts:#?}");

    // Mallory's comment is left as she wrote it, and Paved's summary is its own.
    let comments = e.h.comments(pr);
    assert!(comments
        .iter()
        .any(|c| c.user == "mallory" && c.body.ends_with("nothing to see")));
    assert_eq!(
        comments
            .iter()
            .filter(|c| c.body.contains("paved:expiry-warning web"))
            .filter(|c| c.user == "paved[bot]")
            .count(),
        1
    );
}

/// The summary comment is found by its marker only among Paved's own comments: one that
/// someone else wrote with the marker first is never taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_summary_marker_from_someone_else_is_not_paveds_comment() {
    let e = Env::prepare_with(|c, git| c.git_root = Some(git.to_path_buf()))
        .await
        .run_with(|_| {})
        .await;
    e.h.github.add_user_token(MALLORY, "mallory");
    let spec = e.open(&common::recorder::add("shop", "ok"));
    comment_as_mallory(
        &e,
        spec.number,
        "<!-- paved:summary -->\nall green, merge away",
    )
    .await;
    e.h.send_pr(&spec).await;
    e.h.verdicts(&spec.head_sha, 3).await;
    let comments = until("Paved's summary comment", || async {
        let c = e.h.comments(spec.number);
        c.iter()
            .any(|c| c.user == "paved[bot]" && c.body.starts_with("<!-- paved:summary -->"))
            .then_some(c)
    })
    .await;
    let mallorys: Vec<_> = comments.iter().filter(|c| c.user == "mallory").collect();
    assert_eq!(mallorys.len(), 1);
    assert!(
        mallorys[0].body.ends_with("all green, merge away"),
        "Paved edited someone else's comment: {}",
        mallorys[0].body
    );
}
