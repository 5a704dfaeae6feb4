//! Lifecycle (SPEC 11, issue 13): expiry, extension, a deadline missed while down, drift
//! with its issue and reconcile, and a schedule across a daylight-saving change. Time is a
//! manual clock the tests move; nothing sleeps until a deadline.

mod common;

use chrono::{DateTime, Duration as Days, Utc};
use common::provisioning::Env;
use paved::clock::Clock;
use paved::ids::CommitSha;
use paved_testkit::FileChange;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;

pub const POSTGRES_SUITE: bool = false;
const REPO: &str = common::REPO;

/// `status.sh`: drifted (exit 2) while the environment has had fewer deploys than
/// the test's `drift-<env>` record says (a change by hand that only another deploy undoes), in
/// sync otherwise;
/// `stop.sh` and `start.sh` record themselves like the recorder's deploy does.
fn lifecycle_scripts() -> Vec<FileChange> {
    let status = r#"#!/bin/sh
need=$(curl -sf --noproxy '*' "$RECORD_URL/drift-$ADE_ENVIRONMENT_NAME" || echo 0)
have=$(grep -c '^deploy' "$ADE_STORAGE/history" 2>/dev/null || echo 0)
if [ "$have" -lt "$need" ]; then
  echo "drifted: the site was changed by hand ($have of $need deploys)"
  exit 2
fi
echo "in sync with $ADE_OPERATION_PARAMETERS"
"#;
    let switch = r#"#!/bin/sh
set -eu
report() { curl -sfS --noproxy '*' -X PUT --data-binary @- "$RECORD_URL/$1" >/dev/null; }
env | sort | report "$PAVED_RUN_ID.env"
date +%s%N | report "$PAVED_RUN_ID.end"
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
    common::eventually(what, async || f().await).await
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
    paved_testkit::PullRequestSpec::of_pull(&pull, &e.h.repo, &e.h.remote.clone_url())
        .expect("a pull request")
}

/// Opens and merges a PR with `changes`; returns the merge commit once provisioned.
async fn merge(e: &Env, changes: &[FileChange]) -> (CommitSha, github_emulator::Status, u64) {
    let spec = e.open(changes);
    e.h.send_pr(&spec).await;
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    (sha, status, spec.number)
}

/// `paved/provision`'s description says `text`.
fn says(status: &github_emulator::Status, text: &str) {
    assert!(
        status
            .description
            .as_deref()
            .is_some_and(|d| d.contains(text)),
        "{status:?}"
    );
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
    let note = until("the expiry's note", || async {
        e.notes(&tip).into_iter().find(|n| n.operation == "expire")
    })
    .await;
    assert_eq!(note.outcome, "succeeded");
    assert_eq!(note.requester.as_deref(), Some("paved"));
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
    // Its checks pass: it is the owner's, as a request is. Merging it runs nothing more.
    let number = cleanup["number"].as_u64().expect("number");
    let spec = pull_spec(&e, number);
    e.h.send_pr(&spec).await;
    let verdicts = e.h.verdicts(&spec.head_sha, 3).await;
    assert!(
        verdicts.values().all(|s| s.state == "success"),
        "{verdicts:#?}"
    );
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    assert_eq!(status.state, "success", "{status:?}");
    says(&status, "removed the manifest of web (already deleted)");
    assert!(
        e.operations(&sha).await.is_empty(),
        "no operation for the cleanup"
    );
    assert_eq!(runs_of(&e, "delete"), 1, "still one delete");
}

/// The environment's last drift check, once one ran at or after `since`.
fn drift_since(env: &Value, since: DateTime<Utc>) -> Option<Value> {
    let d = &env["environment"]["drift"];
    let checked = utc(d["checked_at"].as_str()?);
    (checked >= since).then(|| d.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_runs_nothing_and_a_merge_past_expiry_is_refused() {
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    // Drift checks every day: each one shows the scheduler looked after the clock moved.
    let e = start(&clock, Duration::from_secs(86_400)).await;
    let first = t0 + Days::days(2);
    let (_, status, _) = merge(
        &e,
        &[(path("keep"), Some(manifest("keep", first, "").into()))],
    )
    .await;
    assert_eq!(status.state, "success");
    assert_eq!(runs_of(&e, "deploy"), 1);

    // Only expiresAt moves: no script runs, and the expiry moves with it.
    let later = t0 + Days::days(5);
    let (sha, status, extension_pr) = merge(
        &e,
        &[(path("keep"), Some(manifest("keep", later, "").into()))],
    )
    .await;
    assert_eq!(status.state, "success", "{status:?}");
    says(&status, "extended keep");
    assert!(
        e.operations(&sha).await.is_empty(),
        "no operation for an extension"
    );
    assert_eq!(runs_of(&e, "deploy"), 1, "no script ran");
    let env = e.environment("keep").await;
    assert_eq!(
        upcoming(&env, "expire").as_deref(),
        Some(at(later).as_str())
    );

    // Past the first expiresAt: the scheduler looks (a drift check at the new time) and
    // deletes nothing.
    clock.advance(Days::days(3));
    let now = clock.now();
    let env = until("a check after the clock moved", || async {
        let env = e.environment("keep").await;
        drift_since(&env, now).map(|_| env)
    })
    .await;
    assert_eq!(env["environment"]["state"], "ready", "{env}");
    assert!(operations_of(&env, "expire").is_empty(), "{env}");
    assert_eq!(runs_of(&e, "delete"), 0);

    // A pull request checked green, merged after its expiresAt passed: refused, clearly.
    let soon = clock.now() + Days::hours(2);
    let spec = e.open(&[(path("late"), Some(manifest("late", soon, "").into()))]);
    e.h.send_pr(&spec).await;
    let verdicts = e.h.verdicts(&spec.head_sha, 1).await;
    assert!(
        verdicts.values().all(|s| s.state == "success"),
        "{verdicts:?}"
    );
    clock.advance(Days::hours(3));
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    assert_eq!(status.state, "failure", "{status:?}");
    says(&status, "late refused, expired: expiresAt");
    let ops = e.operations(&sha).await;
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["state"], "refused");
    assert_eq!(runs_of(&e, "deploy"), 1, "nothing ran for it");

    // A day before the new expiresAt, the owner is warned on the pull request that last
    // changed the manifest: the extension's, though nothing ran for it.
    clock.set(later - Days::hours(23));
    let warning = until("the warning on the extension's PR", || async {
        e.h.comments(extension_pr)
            .into_iter()
            .find(|c| c.body.contains("paved:expiry-warning keep"))
    })
    .await;
    assert!(warning.body.contains(&at(later)), "{}", warning.body);

    // Extending through the API (`action: extend`): the same pull request, the same
    // outcome: no script, the expiry moved.
    let latest = later + Days::days(2);
    e.h.github
        .add_user_token("gho_octocat_lifecycle", "octocat");
    let r =
        e.h.client
            .post(format!("{}/api/v1/requests", e.h.url()))
            .bearer_auth("gho_octocat_lifecycle")
            .json(&serde_json::json!({
                "repository": REPO, "action": "extend", "environment": "keep",
                "expiresAt": at(latest),
            }))
            .send()
            .await
            .expect("request");
    assert_eq!(r.status(), 201);
    let opened: Value = r.json().await.expect("json");
    let number = opened["pullRequest"]["number"].as_u64().expect("number");
    let spec = pull_spec(&e, number);
    e.h.send_pr(&spec).await;
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    assert_eq!(status.state, "success", "{status:?}");
    says(&status, "extended keep");
    assert_eq!(runs_of(&e, "deploy"), 1, "no script ran");
    let env = e.environment("keep").await;
    assert_eq!(
        upcoming(&env, "expire").as_deref(),
        Some(at(latest).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_passed_while_down_is_acted_on_once_at_the_next_start() {
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    let mut e = start(&clock, Duration::ZERO).await;
    let expires = t0 + Days::days(1);
    let (_, status, pr) = merge(
        &e,
        &[(path("down"), Some(manifest("down", expires, "").into()))],
    )
    .await;
    assert_eq!(status.state, "success");

    // Down over the warning and the expiry.
    e.h.stop().await;
    clock.advance(Days::days(2));
    let tweak = |clock: Clock| {
        move |c: &mut paved::config::Config| {
            c.lifecycle.clock = clock;
            c.lifecycle.tick = Duration::from_secs(1);
            c.lifecycle.drift_interval = Duration::ZERO;
        }
    };
    e.restart_with(tweak(clock.clone())).await;
    let env = until("the expiry after the restart", || async {
        let env = e.environment("down").await;
        (env["environment"]["state"] == "deleted").then_some(env)
    })
    .await;
    assert_eq!(operations_of(&env, "expire").len(), 1);
    assert_eq!(runs_of(&e, "delete"), 1);
    until("the cleanup pull request", || async {
        e.h.github.pulls(&e.repo()).into_iter().find(|p| {
            p["head"]["ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("paved/expired/down-"))
        })
    })
    .await;
    assert!(
        !e.h.comments(pr)
            .iter()
            .any(|c| c.body.contains("paved:expiry-warning")),
        "no warning after the fact"
    );

    // Down and up again: nothing more runs.
    e.restart_with(tweak(clock.clone())).await;
    clock.advance(Days::hours(1));
    let env = e.environment("down").await;
    assert!(
        env["upcoming"].as_array().is_some_and(Vec::is_empty),
        "{env}"
    );
    assert_eq!(operations_of(&env, "expire").len(), 1);
    assert_eq!(runs_of(&e, "delete"), 1, "exactly one delete");
    let cleanups =
        e.h.github
            .pulls(&e.repo())
            .into_iter()
            .filter(|p| {
                p["head"]["ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("paved/expired/"))
            })
            .count();
    assert_eq!(cleanups, 1);
}

/// Sends `/paved reconcile` (or any `body`) commented by `login` on issue `number`.
async fn comment_on_issue(e: &Env, number: u64, login: &str, body: &str) {
    let payload =
        paved_testkit::issue_comment_payload(&e.h.repo, &e.h.remote.clone_url(), number, body)
            .expect("payload");
    let mut v: Value = serde_json::from_slice(&payload).expect("json");
    // A comment on an issue, not a pull request.
    v["issue"]
        .as_object_mut()
        .expect("issue")
        .remove("pull_request");
    v["comment"]["user"]["login"] = Value::String(login.into());
    let id = e.h.delivery_id();
    let status =
        e.h.send("issue_comment", &id, &serde_json::to_vec(&v).expect("json"))
            .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    e.h.wait_delivery(&id).await;
}

async fn drifted_gauge(e: &Env) -> String {
    let text =
        e.h.client
            .get(format!("{}/metrics", e.h.url()))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
    text.lines()
        .find(|l| l.starts_with("paved_environments{state=\"drifted\"}"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_found_told_in_one_issue_reconciled_and_the_issue_closed() {
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    let e = start(&clock, Duration::from_secs(6 * 3600)).await;
    let (_, status, _) = merge(
        &e,
        &[(
            path("site"),
            Some(manifest("site", t0 + Days::days(30), "").into()),
        )],
    )
    .await;
    assert_eq!(status.state, "success");
    // Changed behind Paved's back: only a second deploy puts it back.
    std::fs::write(e.records.join("drift-site"), "2").expect("drift");

    clock.advance(Days::hours(6));
    let first_check = clock.now();
    let env = until("the drift found and its issue opened", || async {
        let env = e.environment("site").await;
        drift_since(&env, first_check)
            .filter(|d| d["issue"].is_u64())
            .map(|_| env)
    })
    .await;
    let drift = &env["environment"]["drift"];
    assert_eq!(drift["state"], "drifted", "{env}");
    assert!(
        drift["summary"]
            .as_str()
            .is_some_and(|s| s.contains("drifted")),
        "{drift}"
    );
    let number = drift["issue"].as_u64().expect("an issue");
    let issue = e.h.github.issue(&e.repo(), number).expect("issue");
    assert_eq!(issue["title"], "Drift: payments/site");
    assert_eq!(issue["state"], "open");
    assert_eq!(e.h.github.labels(&e.repo(), number), ["paved", "drift"]);
    assert_eq!(
        drifted_gauge(&e).await,
        "paved_environments{state=\"drifted\"} 1"
    );
    // The Graph says it too, with a link to the issue.
    let entity = e
        .get(&format!("/api/v1/entities/environment:{REPO}/site"))
        .await;
    assert_eq!(entity["entity"]["drift"], "drifted", "{entity}");
    assert!(
        entity["entity"]["links"]["driftIssue"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/issues/{number}"))),
        "{entity}"
    );

    // Still drifted at the next check: the same issue, edited.
    clock.advance(Days::hours(6));
    let second_check = clock.now();
    // Edited: it names the second check's time.
    until("the second check's edit", || async {
        e.h.github.issue(&e.repo(), number).filter(|i| {
            i["body"]
                .as_str()
                .is_some_and(|b| b.contains(&at(second_check)))
        })
    })
    .await;
    assert_eq!(
        e.environment("site").await["environment"]["drift"]["issue"],
        number
    );

    // Someone without the rights asks: told so, nothing runs.
    comment_on_issue(&e, number, "searcher", "/paved reconcile").await;
    let refused = until("the reply", || async {
        e.h.comments(number)
            .into_iter()
            .find(|c| c.body.contains("@searcher"))
    })
    .await;
    assert!(
        refused.body.contains("only a member of `payments`"),
        "{}",
        refused.body
    );
    assert!(operations_of(&e.environment("site").await, "reconcile").is_empty());

    // The owner's team asks: deploy runs again with the last parameters, and the check
    // right after finds it in sync and closes the issue.
    comment_on_issue(&e, number, "octocat", "/paved reconcile").await;
    let env = until(
        "the reconcile, the check after it and the issue closed",
        || async {
            let env = e.environment("site").await;
            let d = &env["environment"]["drift"];
            (d["state"] == "in_sync" && d["issue"].is_null()).then_some(env)
        },
    )
    .await;
    let reconciled = operations_of(&env, "reconcile");
    assert_eq!(reconciled.len(), 1, "{env}");
    assert_eq!(reconciled[0]["state"], "succeeded");
    assert_eq!(reconciled[0]["requester"], "octocat");
    assert_eq!(
        reconciled[0]["parameters"]["mode"], "ok",
        "the last parameters"
    );
    assert_eq!(runs_of(&e, "deploy"), 2);
    let issue = e.h.github.issue(&e.repo(), number).expect("issue");
    assert_eq!(issue["state"], "closed", "{issue}");
    assert!(env["environment"]["drift"]["issue"].is_null(), "{env}");
    assert_eq!(
        drifted_gauge(&e).await,
        "paved_environments{state=\"drifted\"} 0"
    );
    let issues = (1..=number + 5)
        .filter_map(|n| e.h.github.issue(&e.repo(), n))
        .filter(|i| i["title"].as_str().is_some_and(|t| t.starts_with("Drift:")))
        .count();
    assert_eq!(issues, 1, "never a second issue");
}

/// Moves the clock to `to`, just past a `kind` switch of the `office` environment, and
/// waits for it to be in `state` with its next `kind` set; checks it ran once.
async fn switch_at(e: &Env, clock: &Clock, to: &str, kind: &str, state: &str) -> Value {
    let before = upcoming(&e.environment("office").await, kind);
    clock.set(utc(to));
    let env = until(&format!("{state}, and the next {kind} set"), || async {
        let env = e.environment("office").await;
        (env["environment"]["state"] == state && upcoming(&env, kind) != before).then_some(env)
    })
    .await;
    assert_eq!(operations_of(&env, kind).len(), 1, "{env}");
    assert_eq!(runs_of(e, kind), 1);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_stops_and_starts_at_local_times_across_daylight_saving_in_berlin() {
    // Friday 27 March 2026, noon UTC; Berlin moves to summer time on Sunday 29 March.
    let t0 = utc("2026-03-27T12:00:00Z");
    let clock = Clock::manual(t0);
    let e = start(&clock, Duration::ZERO).await;
    let schedule = "  schedule:\n    stop: \"19:00\"\n    start: \"08:00\"\n    timeZone: Europe/Berlin\n    days: [mon, tue, wed, thu, fri]\n";
    let (_, status, _) = merge(
        &e,
        &[(
            path("office"),
            Some(manifest("office", utc("2026-04-10T00:00:00Z"), schedule).into()),
        )],
    )
    .await;
    assert_eq!(status.state, "success", "{status:?}");
    let env = e.environment("office").await;
    // 19:00 in Berlin on a winter Friday is 18:00 UTC; 08:00 on the summer Monday is 06:00.
    assert_eq!(
        upcoming(&env, "stop").as_deref(),
        Some("2026-03-27T18:00:00Z"),
        "{env}"
    );
    assert_eq!(
        upcoming(&env, "start").as_deref(),
        Some("2026-03-30T06:00:00Z")
    );

    let env = switch_at(&e, &clock, "2026-03-27T18:00:30Z", "stop", "stopped").await;
    // The weekend is skipped: the next stop is Monday's, in summer time.
    assert_eq!(
        upcoming(&env, "stop").as_deref(),
        Some("2026-03-30T17:00:00Z"),
        "{env}"
    );

    let env = switch_at(&e, &clock, "2026-03-30T06:00:30Z", "start", "ready").await;
    assert_eq!(
        upcoming(&env, "start").as_deref(),
        Some("2026-03-31T06:00:00Z")
    );
    // Each is audited like any operation: a note on the default branch.
    let tip = e.h.remote.tip("refs/heads/main").expect("main");
    let ops = until("both notes", || async {
        let ops: Vec<String> = e.notes(&tip).into_iter().map(|n| n.operation).collect();
        (ops.contains(&"stop".to_string()) && ops.contains(&"start".to_string())).then_some(ops)
    })
    .await;
    // The tip is the merge commit: its note holds the deploy, then the stop and the start.
    assert_eq!(ops, ["deploy", "stop", "start"]);
}

/// `paved_scheduler_leading` of the replica at `url`.
async fn leading(client: &reqwest::Client, url: &str) -> Option<bool> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("paved_scheduler_leading "))?;
    Some(line.ends_with(" 1"))
}

#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_one_scheduler_and_the_other_takes_over_when_it_dies() {
    let server = common::postgres_server()
        .expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    let mut prepared = Env::prepare_files(lifecycle_scripts()).await;
    prepared.h.database = Some(common::TestDatabase::create(&server).await);
    let tweak = |clock: Clock| {
        move |c: &mut paved::config::Config| {
            c.lifecycle.clock = clock;
            c.lifecycle.tick = Duration::from_secs(1);
            c.lifecycle.drift_interval = Duration::ZERO;
        }
    };
    let mut e = prepared.run_with(tweak(clock.clone())).await;
    // A second replica: its own data directory and mirrors, the same database and clock.
    let mut config = e.h.config();
    config.data_dir = e.h.tmp.path().join("data-b");
    e.report_to(&mut config);
    tweak(clock.clone())(&mut config);
    let b = paved::service::start(config).await.expect("replica b");
    let (a_url, b_url) = (e.h.url(), b.url());

    // One of the two runs the scheduler.
    let client = reqwest::Client::new();
    let a_leads = until("one scheduler", || async {
        match (
            leading(&client, &a_url).await?,
            leading(&client, &b_url).await?,
        ) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let expires = t0 + Days::days(1);
    let (_, status, _) = merge(
        &e,
        &[(
            path("standby"),
            Some(manifest("standby", expires, "").into()),
        )],
    )
    .await;
    assert_eq!(status.state, "success");

    // The leader dies without a word; the deadline passes; the other takes over once its
    // lease runs out, and the environment expires exactly once.
    let a = e.h.service.take().expect("replica a");
    let (dead, survivor, survivor_url) = if a_leads {
        a.kill();
        (a_url, Some(b), b_url)
    } else {
        b.kill();
        e.h.service = Some(a);
        (b_url, None, a_url)
    };
    clock.advance(Days::days(2));
    until("the survivor leads", || async {
        leading(&client, &survivor_url).await.filter(|l| *l)
    })
    .await;
    let env_url = format!("{survivor_url}/api/v1/repos/{REPO}/environments/standby");
    let env: Value = until("the expiry by the survivor", || async {
        let v: Value =
            e.h.client
                .get(&env_url)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
        (v["environment"]["state"] == "deleted").then_some(v)
    })
    .await;
    assert_eq!(operations_of(&env, "expire").len(), 1, "{env}");
    assert_eq!(runs_of(&e, "delete"), 1, "exactly one delete");
    // A new connection (a pooled one may outlive the server's task): nobody listens.
    assert!(
        reqwest::Client::new()
            .get(format!("{dead}/healthz"))
            .send()
            .await
            .is_err(),
        "the dead replica is gone"
    );
    if let Some(b) = survivor {
        b.shutdown().await.expect("shutdown b");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_sets_missing_timers_though_another_repository_cannot_be_read() {
    use paved::store::{EnvState, EnvironmentUpdate, KnownRepository};
    let t0 = utc(&at(Utc::now()));
    let clock = Clock::manual(t0);
    let mut e = start(&clock, Duration::ZERO).await;
    let expires = t0 + Days::days(3);
    let (_, status, _) = merge(
        &e,
        &[(path("older"), Some(manifest("older", expires, "").into()))],
    )
    .await;
    assert_eq!(status.state, "success");
    // As if it had been provisioned before Paved kept timers: none are set.
    let repo = e.h.repo.clone();
    let store = e.h.service.as_ref().expect("running").store.clone();
    store
        .clear_timers(&repo, "older", &[])
        .await
        .expect("clear");
    assert!(upcoming(&e.environment("older").await, "expire").is_none());
    // And a repository Paved knows but can no longer fetch, with a live environment.
    let ghost = paved::ids::RepoName::parse("acme/ghost").expect("name");
    store
        .note_repository(&KnownRepository {
            repo: ghost.clone(),
            default_branch: "main".into(),
            clone_url: "https://example.invalid/acme/ghost.git".into(),
            installation: None,
        })
        .await
        .expect("repository");
    store
        .upsert_environment(EnvironmentUpdate {
            repo: ghost.clone(),
            name: "haunted".parse().expect("name"),
            team: "payments".parse().expect("team"),
            owner: "octocat".parse().expect("login"),
            env_type: "dev".into(),
            definition: "recorder".into(),
            state: EnvState::Ready,
            parameters: None,
            outputs: None,
            last_operation: None,
            new_generation: false,
        })
        .await
        .expect("environment");

    // The next replica to take the scheduler over sets the missing timers anyway.
    let tweak = clock.clone();
    e.restart_with(move |c| {
        c.lifecycle.clock = tweak;
        c.lifecycle.tick = Duration::from_secs(1);
        c.lifecycle.drift_interval = Duration::ZERO;
    })
    .await;
    let env = until("the expiry set again", || async {
        let env = e.environment("older").await;
        upcoming(&env, "expire").map(|_| env)
    })
    .await;
    assert_eq!(
        upcoming(&env, "expire").as_deref(),
        Some(at(expires).as_str())
    );
    // And they run.
    clock.set(expires + Days::minutes(1));
    until("the expiry", || async {
        let env = e.environment("older").await;
        (env["environment"]["state"] == "deleted").then_some(())
    })
    .await;
}
