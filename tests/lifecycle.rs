//! Lifecycle (SPEC 11, issue 13): expiry, extension, a deadline missed while down, drift
//! with its issue and reconcile, and a schedule across a daylight-saving change. Time is a
//! manual clock the tests move; nothing sleeps until a deadline.

mod common;

use chrono::{DateTime, Duration as Days, Utc};
use common::provisioning::Env;
use common::DEADLINE;
use paved::clock::Clock;
use paved::ids::CommitSha;
use paved_testkit::FileChange;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

pub const POSTGRES_SUITE: bool = false;
const REPO: &str = common::REPO;

/// `status.sh`: drifted (exit 2) while `$RECORD_DIR/drift-<env>` exists, in sync otherwise;
/// `stop.sh` and `start.sh` record themselves like the recorder's deploy does.
fn lifecycle_scripts() -> Vec<FileChange> {
    let status = r#"#!/bin/sh
if [ -e "$RECORD_DIR/drift-$ADE_ENVIRONMENT_NAME" ]; then
  echo "drifted: $(cat "$RECORD_DIR/drift-$ADE_ENVIRONMENT_NAME")"
  exit 2
fi
echo "in sync with $ADE_OPERATION_PARAMETERS"
"#;
    let switch = r#"#!/bin/sh
set -eu
env | sort > "$RECORD_DIR/$PAVED_RUN_ID.env"
date +%s%N > "$RECORD_DIR/$PAVED_RUN_ID.end"
"#;
    vec![
        ("catalog/recorder/status.sh".into(), Some(status.into())),
        ("catalog/recorder/stop.sh".into(), Some(switch.into())),
        ("catalog/recorder/start.sh".into(), Some(switch.into())),
    ]
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A recorder manifest expiring at `expires`, with `extra` lines under `spec`.
fn manifest(name: &str, expires: DateTime<Utc>, extra: &str) -> String {
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
{extra}",
        at(expires)
    )
}

fn path(name: &str) -> String {
    format!("environments/payments/{name}.yaml")
}

/// Paved with the lifecycle's clock at `clock`, ticking every second, drift checks every
/// `drift` (zero: off).
async fn start(clock: &Clock, drift: Duration) -> Env {
    let clock = clock.clone();
    Env::prepare_files(lifecycle_scripts())
        .await
        .run_with(move |c| {
            c.lifecycle.clock = clock;
            c.lifecycle.tick = Duration::from_secs(1);
            c.lifecycle.drift_interval = drift;
        })
        .await
}

/// Polls `f` until it gives a value, failing after the test deadline.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The file at `path` in `commit` of the remote.
fn file_at(e: &Env, commit: &CommitSha, path: &str) -> Option<Vec<u8>> {
    let git = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let c = git
        .find_commit(git2::Oid::from_str(commit.as_str()).expect("oid"))
        .expect("commit");
    let entry = c
        .tree()
        .expect("tree")
        .get_path(std::path::Path::new(path))
        .ok()?;
    let content = git.find_blob(entry.id()).ok().map(|b| b.content().to_vec());
    content
}

/// The pull request event GitHub sends for a PR the emulator holds (opened by Paved).
fn pull_spec(e: &Env, number: u64) -> paved_testkit::PullRequestSpec {
    let pull = e.h.github.pull(REPO, number).expect("pull at the emulator");
    let sha = |v: &Value| CommitSha::parse(v.as_str().expect("sha")).expect("sha");
    paved_testkit::PullRequestSpec {
        action: "opened".into(),
        repo: e.h.repo.clone(),
        clone_url: e.h.remote.clone_url(),
        default_branch: "main".into(),
        number,
        head_ref: pull["head"]["ref"].as_str().expect("head ref").into(),
        head_sha: sha(&pull["head"]["sha"]),
        base_ref: "main".into(),
        base_sha: sha(&pull["base"]["sha"]),
        author: pull["user"]["login"].as_str().expect("user").into(),
        head_repo: None,
    }
}

/// Opens and merges a PR with `changes`; returns the merge commit once provisioned.
async fn merge(e: &Env, changes: &[FileChange]) -> (CommitSha, github_emulator::Status, u64) {
    let spec = e.open(changes);
    e.h.send_pr(&spec).await;
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    (sha, status, spec.number)
}

/// The environment's upcoming timer of `kind`, when set.
fn upcoming(env: &Value, kind: &str) -> Option<String> {
    env["upcoming"]
        .as_array()?
        .iter()
        .find(|u| u["kind"] == kind)
        .and_then(|u| u["due_at"].as_str())
        .map(str::to_string)
}

/// Runs of the recorder's scripts by operation name (deploy, delete, stop, start).
fn runs_of(e: &Env, op: &str) -> usize {
    e.runs()
        .values()
        .filter(|r| r.env.get("ADE_OPERATION_NAME").map(String::as_str) == Some(op))
        .count()
}

fn operations_of(env: &Value, kind: &str) -> Vec<Value> {
    env["operations"]
        .as_array()
        .map(|ops| ops.iter().filter(|o| o["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_is_warned_then_expires_and_its_cleanup_runs_nothing() {
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    let e = start(&clock, Duration::ZERO).await;
    let expires = t0 + Days::days(2);
    let (_, status, pr) = merge(
        &e,
        &[(path("web"), Some(manifest("web", expires, "").into()))],
    )
    .await;
    assert_eq!(status.state, "success", "{status:?}");
    let env = e.environment("web").await;
    assert_eq!(
        upcoming(&env, "expire").as_deref(),
        Some(at(expires).as_str()),
        "{env}"
    );
    assert_eq!(
        upcoming(&env, "warn").as_deref(),
        Some(at(expires - Days::hours(24)).as_str())
    );

    // A day and an hour later: inside the warning window, the owner is told on the PR.
    clock.advance(Days::hours(25));
    let warning = until("the expiry warning", || async {
        e.h.comments(pr)
            .into_iter()
            .find(|c| c.body.contains("paved:expiry-warning web"))
    })
    .await;
    assert!(warning.body.contains("@octocat"), "{}", warning.body);
    assert!(warning.body.contains(&at(expires)), "{}", warning.body);
    assert!(
        warning.body.contains("expiresAt"),
        "how to extend: {}",
        warning.body
    );
    assert_eq!(runs_of(&e, "delete"), 0, "nothing deleted yet");

    // Past expiresAt: delete runs as operation `expire`.
    clock.advance(Days::hours(24));
    let env = until("the environment deleted", || async {
        let env = e.environment("web").await;
        (env["environment"]["state"] == "deleted").then_some(env)
    })
    .await;
    let expired = operations_of(&env, "expire");
    assert_eq!(expired.len(), 1, "{env}");
    assert_eq!(expired[0]["state"], "succeeded");
    assert_eq!(runs_of(&e, "delete"), 1, "the delete script ran once");
    assert_eq!(
        e.h.comments(pr)
            .iter()
            .filter(|c| c.body.contains("paved:expiry-warning"))
            .count(),
        1,
        "one warning"
    );
    // Its GitHub deployment ends inactive; a note on the default branch records it.
    let tip = e.h.remote.tip("refs/heads/main").expect("main");
    let notes = e.notes(&tip);
    let note = notes
        .iter()
        .find(|n| n.operation == "expire")
        .expect("note");
    assert_eq!(note.outcome, "succeeded");
    let deployments = e.h.github.deployments(&e.repo());
    let d = deployments
        .iter()
        .find(|d| d.task == "expire")
        .expect("a deployment for the expiry");
    assert_eq!(
        common::provisioning::states(d).last().map(String::as_str),
        Some("inactive")
    );

    // The pull request Paved opened removes the manifest on a branch pushed with Git.
    e.h.assert_no_rejections();
    let cleanup = until("the cleanup pull request", || async {
        e.h.github.pulls(&e.repo()).into_iter().find(|p| {
            p["head"]["ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("paved/expired/web-"))
        })
    })
    .await;
    let branch = cleanup["head"]["ref"].as_str().expect("ref");
    let head =
        e.h.remote
            .tip(&format!("refs/heads/{branch}"))
            .expect("branch");
    assert!(
        file_at(&e, &head, &path("web")).is_none(),
        "the branch removes the manifest"
    );
    assert!(
        file_at(&e, &tip, &path("web")).is_some(),
        "main still has it"
    );
    // Merging it runs nothing more.
    let number = cleanup["number"].as_u64().expect("number");
    let spec = pull_spec(&e, number);
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    assert_eq!(status.state, "success", "{status:?}");
    assert!(
        e.operations(&sha).await.is_empty(),
        "no operation for the cleanup"
    );
    assert_eq!(runs_of(&e, "delete"), 1, "still one delete");
    e.h.assert_no_rejections();
}
