//! Provisioning end to end: the real service (SQLite file, HTTP on loopback, real Git
//! repositories, real scripts) against the strict GitHub emulator. A test definition,
//! `recorder`, writes down what each run received so the tests can check it.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::{states, Env, Run};
use common::recorder::{add, path_of, recorder_manifest, RECORDER_DEPLOY};
use common::serve::wait_for_file;
use paved_testkit::{self as testkit, FileChange};
use serde_json::Value;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_provisions_once_with_the_ade_environment() {
    let e = Env::start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    let (merge, _) = e.merge(&pr).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "success", "{status:?}");

    // The script ran once, with the ADE contract and nothing of Paved's own environment.
    let runs = e.runs();
    assert_eq!(runs.len(), 1, "one run");
    let (id, run) = runs.iter().next().expect("run");
    for prefix in ["ADE", "PAVED"] {
        assert_eq!(run.env[&format!("{prefix}_OPERATION_NAME")], "deploy");
        assert_eq!(
            run.env[&format!("{prefix}_ENVIRONMENT_NAME")],
            "orders-preview"
        );
        assert_eq!(run.env[&format!("{prefix}_ENVIRONMENT_TYPE")], "dev");
        assert!(run.env.contains_key(&format!("{prefix}_STORAGE")));
        assert!(run.env.contains_key(&format!("{prefix}_OUTPUTS")));
        assert!(run.env.contains_key(&format!("{prefix}_ERROR_LOG")));
    }
    assert_eq!(run.env["PAVED_RUN_ID"], id.to_string());
    assert_eq!(run.env["PAVED_ENVIRONMENT_TEAM"], "payments");
    assert_eq!(run.env["PAVED_COMMIT"], merge.to_string());
    assert_eq!(run.params, serde_json::json!({"mode": "ok", "note": ""}));
    assert!(
        !run.env.contains_key("CARGO") && !run.env.contains_key("CARGO_MANIFEST_DIR"),
        "the service's own environment leaked into the script: {:?}",
        run.env.keys().collect::<Vec<_>>()
    );

    // A deployment with in_progress then success, and the url output as environment_url.
    let deployments = e.h.github.deployments(&e.repo());
    assert_eq!(deployments.len(), 1);
    let d = &deployments[0];
    assert_eq!(d.sha, merge.to_string());
    assert_eq!(d.environment, "orders-preview");
    assert_eq!(states(d), ["in_progress", "success"]);
    assert_eq!(
        d.statuses.last().expect("status").environment_url,
        "https://orders-preview.example.test"
    );

    // The inventory says ready, with the public output only.
    let env = e.environment("orders-preview").await;
    assert_eq!(env["environment"]["state"], "ready");
    assert_eq!(env["environment"]["owner"], "octocat");
    assert_eq!(env["environment"]["definition"], "recorder");
    assert!(env["environment"]["outputs"].get("url").is_some());
    assert!(env["environment"]["outputs"].get("password").is_none());

    // The note on the merge commit, on the origin.
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1, "{notes:?}");
    let n = &notes[0];
    assert_eq!(
        (
            n.environment.as_str(),
            n.operation.as_str(),
            n.outcome.as_str()
        ),
        ("orders-preview", "deploy", "succeeded")
    );
    assert_eq!(n.requester.as_deref(), Some("octocat"));
    assert_eq!(n.merger.as_deref(), Some("hubot"));
    assert_eq!(n.approvers, ["admin1"]);
    assert_eq!(n.run_id, Some(*id));
    assert_eq!(n.checks.len(), 4, "{:?}", n.checks);
    assert!(n.checks.iter().all(|c| c.verdict == "pass"));
    let first_parent = e.h.base.to_string();
    assert_eq!(n.governance_commit.as_deref(), Some(first_parent.as_str()));

    // The PR's comment says what happened, with the public output and not the secret.
    let comments = e.h.comments(pr.number);
    assert_eq!(comments.len(), 1);
    let body = &comments[0].body;
    assert!(
        body.contains("succeeded") && body.contains("https://orders-preview.example.test"),
        "{body}"
    );

    // The secret never leaves the database: not in the comment, the note, nor the API.
    let secret = "s3cr3t-orders-preview-value";
    assert!(!body.contains(secret));
    let remote = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
    let note = remote
        .find_note(
            Some("refs/notes/paved"),
            git2::Oid::from_str(merge.as_str()).expect("oid"),
        )
        .expect("note");
    assert!(!note.message().unwrap_or_default().contains(secret));
    let op = e.get(&format!("/api/v1/operations/{id}")).await.to_string();
    assert!(op.contains("the password is"), "the log is kept: {op}");
    assert!(!op.contains(secret), "{op}");
    assert!(!e
        .get("/api/v1/environments")
        .await
        .to_string()
        .contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_merge_delivered_twice_runs_once() {
    let e = Env::start().await;
    let pr = e.open(&add("twice-preview", "ok"));
    let (merge, first) = e.merge(&pr).await;
    e.h.wait_delivery(&first).await;
    // GitHub's "Redeliver" gives the same event a new delivery id.
    let second = e.send_merge(&pr, &merge).await;
    let d = e.h.wait_delivery(&second).await;
    assert_eq!(d["state"], "done", "{d}");
    assert_eq!(e.runs().len(), 1, "the script ran once");
    assert_eq!(e.h.github.deployments(&e.repo()).len(), 1, "one deployment");
    assert_eq!(e.notes(&merge).len(), 1, "one note record");
    assert_eq!(e.operations(&merge).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_passes_new_parameters_and_keeps_storage() {
    let e = Env::start().await;
    let (m1, _) = e.merge(&e.open(&add("upd-preview", "ok"))).await;
    assert_eq!(e.provision_status(&m1).await.state, "success");
    let changed = recorder_manifest("upd-preview", "dev", "slow", "second");
    let (m2, _) = e
        .merge(&e.open(&[(path_of("upd-preview"), Some(changed.into_bytes()))]))
        .await;
    assert_eq!(e.provision_status(&m2).await.state, "success");
    let runs = e.runs();
    assert_eq!(runs.len(), 2);
    let last = runs.values().last().expect("run");
    assert_eq!(last.env["ADE_OPERATION_NAME"], "deploy");
    assert_eq!(
        last.params,
        serde_json::json!({"mode": "slow", "note": "second"})
    );
    // ADE_STORAGE came back with what the first deploy wrote.
    assert_eq!(last.history.lines().count(), 2, "{}", last.history);
    let env = e.environment("upd-preview").await;
    assert_eq!(env["environment"]["state"], "ready");
    assert_eq!(env["environment"]["parameters"]["note"], "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_manifest_runs_delete() {
    let e = Env::start().await;
    let (m1, _) = e.merge(&e.open(&add("gone-preview", "ok"))).await;
    assert_eq!(e.provision_status(&m1).await.state, "success");
    let (m2, _) = e.merge(&e.open(&[(path_of("gone-preview"), None)])).await;
    assert_eq!(e.provision_status(&m2).await.state, "success");
    let runs = e.runs();
    let last = runs.values().last().expect("run");
    assert_eq!(last.env["ADE_OPERATION_NAME"], "delete");
    assert_eq!(
        last.params,
        serde_json::json!({"mode": "ok", "note": ""}),
        "the last deployed parameters"
    );
    let env = e.environment("gone-preview").await;
    assert_eq!(env["environment"]["state"], "deleted");
    let deployments = e.h.github.deployments(&e.repo());
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[1].task, "delete");
    assert_eq!(states(&deployments[1]), ["in_progress", "success"]);
    let notes = e.notes(&m2);
    assert_eq!(notes[0].operation, "delete");
    assert_eq!(notes[0].outcome, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_an_environment_deletes_the_old_and_deploys_the_new() {
    let e = Env::start().await;
    let (m1, _) = e.merge(&e.open(&add("old-name", "ok"))).await;
    assert_eq!(e.provision_status(&m1).await.state, "success");
    let mut rename = add("new-name", "ok");
    rename.push((path_of("old-name"), None));
    let (m2, _) = e.merge(&e.open(&rename)).await;
    assert_eq!(e.provision_status(&m2).await.state, "success");
    let mut ops: Vec<(String, String)> = e
        .operations(&m2)
        .await
        .iter()
        .map(|o| {
            (
                o["env_name"].as_str().unwrap_or_default().to_string(),
                o["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ops.sort();
    assert_eq!(
        ops,
        [
            ("new-name".to_string(), "deploy".to_string()),
            ("old-name".to_string(), "delete".to_string())
        ]
    );
    assert_eq!(
        e.environment("old-name").await["environment"]["state"],
        "deleted"
    );
    // Both records are in the merge commit's note (written in one commit and push).
    let mut noted: Vec<(String, String)> = e
        .notes(&m2)
        .into_iter()
        .map(|n| (n.environment, n.operation))
        .collect();
    noted.sort();
    assert_eq!(noted, ops);
    assert_eq!(
        e.environment("new-name").await["environment"]["state"],
        "ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_script_is_reported_everywhere() {
    let e = Env::start().await;
    let (merge, _) = e.merge(&e.open(&add("fail-preview", "fail"))).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure");
    assert!(
        status
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("fail-preview"),
        "{status:?}"
    );
    let d = &e.h.github.deployments(&e.repo())[0];
    assert_eq!(states(d), ["in_progress", "failure"]);
    let why = &d.statuses.last().expect("status").description;
    assert!(
        why.contains("code 3") && why.contains("upstream refused"),
        "{why}"
    );
    let env = e.environment("fail-preview").await;
    assert_eq!(env["environment"]["state"], "failed");
    let op = &env["operations"][0];
    assert_eq!(op["state"], "failed");
    assert!(
        op["log"].as_str().unwrap_or_default().contains("boom"),
        "{op}"
    );
    let notes = e.notes(&merge);
    assert_eq!(notes[0].outcome, "failed");
    assert!(notes[0]
        .message
        .as_deref()
        .unwrap_or_default()
        .contains("code 3"));
    let comment = &e.h.comments(100)[0].body;
    assert!(comment.contains("failed"), "{comment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_outlives_its_timeout_is_killed_and_reported() {
    let e = Env::start().await;
    let manifest = recorder_manifest("slow-preview", "quick", "hang", "");
    let (merge, _) = e
        .merge(&e.open(&[(path_of("slow-preview"), Some(manifest.into_bytes()))]))
        .await;
    // The script runs (and can be found) while it hangs.
    wait_for_file(&e.records.join("1.pid")).await;
    let hanging = e.run_processes("1");
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure");
    let d = &e.h.github.deployments(&e.repo())[0];
    let why = &d.statuses.last().expect("status").description;
    assert!(why.contains("timeout"), "{why}");
    assert!(
        !hanging.is_empty(),
        "run 1's processes were not to be found"
    );
    // The script's processes are gone.
    e.wait_run_gone("1", "the timed-out script").await;
    assert_eq!(
        e.environment("slow-preview").await["environment"]["state"],
        "failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_holding_shell_syntax_is_inert_data() {
    let e = Env::start().await;
    let sentinel = e.h.tmp.path().join("pwned");
    let note = format!(
        "$(touch {s}); `touch {s}` ; touch {s} && echo '\"' \\ | > {s}",
        s = sentinel.display()
    );
    let manifest = recorder_manifest("shell-preview", "dev", "ok", &note);
    let (merge, _) = e
        .merge(&e.open(&[(path_of("shell-preview"), Some(manifest.into_bytes()))]))
        .await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let run = e.runs().into_values().next().expect("run");
    assert_eq!(run.params["note"], Value::String(note));
    assert!(!sentinel.exists(), "a parameter was executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_merged_with_a_failing_check_provisions_nothing() {
    let e = Env::start().await;
    // `huge` is not an allowed mode: paved/schema fails; the PR is merged anyway.
    let (merge, _) = e.merge(&e.open(&add("bad-preview", "huge"))).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure");
    assert!(
        status
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("bad-preview"),
        "{status:?}"
    );
    assert!(e.runs().is_empty(), "nothing ran");
    assert!(
        e.h.github.deployments(&e.repo()).is_empty(),
        "no deployment"
    );
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].outcome, "refused");
    assert!(notes[0].checks.iter().any(|c| c.verdict == "fail"));
    let r =
        e.h.client
            .get(format!(
                "{}/api/v1/repos/{}/environments/bad-preview",
                e.h.url(),
                e.repo()
            ))
            .send()
            .await
            .expect("api");
    assert_eq!(
        r.status(),
        reqwest::StatusCode::NOT_FOUND,
        "not in the inventory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_push_is_flagged_ungoverned_without_waiting_the_grace() {
    // The grace (10 minutes) is far beyond the test's deadline: GitHub's answer to "which
    // pull request is this commit from" decides at once.
    let e = Env::start().await;
    let before = e.h.remote.tip("refs/heads/main").expect("main");
    let after =
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&before),
                &add("sneaky", "ok"),
                "direct push",
            )
            .expect("commit");
    let id = e.send_push(&before, &after, "mallory").await;
    let statuses = e.h.verdicts(&after, 1).await;
    let g = &statuses["paved/governance"];
    assert_eq!(g.state, "failure");
    assert!(
        g.description
            .as_deref()
            .unwrap_or_default()
            .contains("without a pull request"),
        "{g:?}"
    );
    assert_eq!(e.h.wait_delivery(&id).await["state"], "done");
    assert!(e.runs().is_empty(), "nothing provisioned");
    assert!(e.h.github.deployments(&e.repo()).is_empty());
    let notes = e.notes(&after);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].outcome, "ungoverned");
    assert_eq!(notes[0].requester.as_deref(), Some("mallory"));

    // The push of a governed merge is not flagged, whichever event arrives first.
    let pr = e.open(&add("proper", "ok"));
    let merge = e.merge_on_github(&pr);
    let push_id = e.send_push(&after, &merge, "hubot").await;
    e.send_merge(&pr, &merge).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    e.h.wait_delivery(&push_id).await;
    let on_merge = e.h.github.latest_statuses(&e.repo(), &merge.to_string());
    assert!(!on_merge.contains_key("paved/governance"), "{on_merge:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_github_cannot_say_a_push_waits_the_grace_for_its_merge() {
    let e = Env::start_with(|c| c.push_grace = Duration::from_secs(2)).await;
    // GitHub fails every "pull requests of this commit" question.
    e.h.github.inject(
        1000,
        github_emulator::Fault {
            status: 500,
            operation_id: Some("repos/list-pull-requests-associated-with-commit".into()),
            ..github_emulator::Fault::default()
        },
    );
    let before = e.h.remote.tip("refs/heads/main").expect("main");
    let after =
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&before),
                &add("sly", "ok"),
                "direct push",
            )
            .expect("commit");
    let sent = Instant::now();
    let id = e.send_push(&before, &after, "mallory").await;
    let statuses = e.h.verdicts(&after, 1).await;
    assert_eq!(statuses["paved/governance"].state, "failure");
    assert!(
        sent.elapsed() >= Duration::from_secs(2),
        "flagged before the grace ran out: {:?}",
        sent.elapsed()
    );
    assert_eq!(e.h.wait_delivery(&id).await["state"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_merges_touching_one_environment_run_one_after_the_other() {
    let e = Env::start().await;
    let (m0, _) = e.merge(&e.open(&add("shared-preview", "ok"))).await;
    assert_eq!(e.provision_status(&m0).await.state, "success");
    // Two PRs changing the same environment, merged one after the other, whose merge
    // events are delivered back to back (different PRs: processed in parallel).
    let a = e.open(&[(
        path_of("shared-preview"),
        Some(recorder_manifest("shared-preview", "dev", "slow", "a").into_bytes()),
    )]);
    let ma = e.h.remote.merge_pull(&a).expect("merge a");
    let b = e.open(&[(
        path_of("shared-preview"),
        Some(recorder_manifest("shared-preview", "dev", "slow", "b").into_bytes()),
    )]);
    // b was opened off main after a's merge, so it merges cleanly.
    let mb = e.h.remote.merge_pull(&b).expect("merge b");
    e.send_merge(&a, &ma).await;
    e.send_merge(&b, &mb).await;
    assert_eq!(e.provision_status(&ma).await.state, "success");
    assert_eq!(e.provision_status(&mb).await.state, "success");
    let runs: Vec<Run> = e.runs().into_values().skip(1).collect();
    assert_eq!(runs.len(), 2);
    let spans: Vec<(u128, u128)> = runs
        .iter()
        .map(|r| (r.start.expect("start"), r.end.expect("end")))
        .collect();
    let (first, second) = if spans[0].0 <= spans[1].0 {
        (spans[0], spans[1])
    } else {
        (spans[1], spans[0])
    };
    assert!(first.1 <= second.0, "runs overlapped: {spans:?}");
}
/// A fork's PR is checked on its data only; when it is merged, definitions come from the
/// default branch as it was, so a script the fork changed never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_pull_request_never_runs_its_own_scripts() {
    let e = Env::start().await;
    let evil = format!(
        "#!/bin/sh\necho ran | curl -s --noproxy '*' -X PUT --data-binary @- \"$RECORD_URL/fork-script-ran\"\n{}",
        RECORDER_DEPLOY.trim_start_matches("#!/bin/sh\n")
    );
    let mut changes = add("forked-preview", "ok");
    changes[0].1 = Some(
        recorder_manifest("forked-preview", "dev", "ok", "")
            .replace("owner: octocat", "owner: hubot")
            .into_bytes(),
    );
    changes.push(("catalog/recorder/deploy.sh".into(), Some(evil.into_bytes())));
    let pr = e.open_fork(&changes);
    let id = e.h.send_pr(&pr).await;
    e.h.wait_delivery(&id).await;
    let comment = &e.h.comments(pr.number)[0].body;
    assert!(
        comment.contains(paved::handlers::comment::FORK_NOTE),
        "{comment}"
    );
    assert!(!e.records.join("fork-script-ran").exists());

    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    assert_eq!(e.runs().len(), 1, "the environment was provisioned");
    assert!(
        !e.records.join("fork-script-ran").exists(),
        "the fork's deploy.sh ran"
    );
    let comment = &e.h.comments(pr.number)[0].body;
    assert!(
        comment.contains(paved::handlers::comment::FORK_NOTE),
        "{comment}"
    );
}

/// Approvals are checked again at merge, against the PR's final head: a `prod` PR merged
/// with one approval of the two it needs provisions nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_without_the_required_approvals_provisions_nothing() {
    let e = Env::start().await;
    let manifest = "apiVersion: paved/v1
kind: Environment
metadata:
  name: prod-orders
  team: payments
  owner: octocat
spec:
  type: prod
  definition: postgres-db
  parameters:
    size: large
  tags:
    cost-center: cc-1234
";
    // `open` registers one approval (admin1); prod needs two from platform.
    let pr = e.open(&[(path_of("prod-orders"), Some(manifest.as_bytes().to_vec()))]);
    let (merge, _) = e.merge(&pr).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure");
    assert!(
        e.h.github.deployments(&e.repo()).is_empty(),
        "no deployment"
    );
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].outcome, "refused");
    assert!(
        notes[0]
            .checks
            .iter()
            .any(|c| c.context == "paved/approval" && c.verdict == "fail"),
        "{:?}",
        notes[0].checks
    );
    assert_eq!(notes[0].approvers, ["admin1"]);
}

/// "Rebase and merge" of a PR of two commits: the merge commit's first parent is the PR's
/// own first commit, replayed. Governance is still read at the default branch as it was
/// before the PR, so a PR whose first commit removes a policy cannot use that to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebase_merge_is_judged_by_the_default_branch_before_the_pr() {
    let e = Env::start().await;
    let policy_path = ".paved/policies/no_forbidden_notes.rego";
    let policy = "package main

deny contains msg if {
    input.spec.parameters.note == \"forbidden\"
    msg := \"the note forbidden is not allowed\"
}
";
    let before =
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&e.h.remote.tip("refs/heads/main").expect("main")),
                &[(policy_path.into(), Some(policy.as_bytes().to_vec()))],
                "add a policy",
            )
            .expect("policy");
    let relax: Vec<FileChange> = vec![(policy_path.into(), None)];
    let manifest: Vec<FileChange> = vec![(
        path_of("rebased-preview"),
        Some(recorder_manifest("rebased-preview", "dev", "ok", "forbidden").into_bytes()),
    )];
    // The PR: commit 1 removes the policy, commit 2 adds a manifest it would deny.
    let mut pr = e.open(&relax);
    let head =
        e.h.remote
            .commit(
                &format!("refs/heads/{}", pr.head_ref),
                Some(&pr.head_sha),
                &manifest,
                "add an environment",
            )
            .expect("second commit");
    e.h.remote.publish_pull(pr.number, &head).expect("publish");
    pr.head_sha = head;
    e.h.github.set_pull(
        &e.repo(),
        pr.number,
        testkit::pull_json(&pr).expect("pull json"),
    );
    e.h.github.set_pull_reviews(
        &e.repo(),
        pr.number,
        vec![
            serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                "commit_id": pr.head_sha.as_str()}),
        ],
    );
    // Rebase and merge: both commits replayed on main, no merge commit.
    let replayed =
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&before),
                &relax,
                "remove the policy",
            )
            .expect("replay 1");
    let merge =
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&replayed),
                &manifest,
                "add an environment",
            )
            .expect("replay 2");
    e.send_merge(&pr, &merge).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure", "{status:?}");
    assert!(e.runs().is_empty(), "provisioned under the PR's own rules");
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].outcome, "refused");
    assert_eq!(
        notes[0].governance_commit.as_deref(),
        Some(before.as_str()),
        "governance read before the PR"
    );
    assert!(notes[0]
        .checks
        .iter()
        .any(|c| c.context == "paved/policy" && c.verdict == "fail"));
}

/// A manifest no environment can be named from (a name too short), merged over its red
/// `paved/schema`: nothing runs, and `paved/provision` says it was refused instead of
/// counting zero operations as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_manifest_with_no_valid_name_is_refused_not_a_success() {
    let e = Env::start().await;
    let spec = e.open(&[(
        path_of("ab"),
        Some(recorder_manifest("ab", "dev", "ok", "").into()),
    )]);
    e.h.send_pr(&spec).await;
    let verdicts = e.h.verdicts(&spec.head_sha, 1).await;
    assert_eq!(verdicts["paved/schema"].state, "failure", "{verdicts:?}");
    let (merge, _) = e.merge(&spec).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "failure", "{status:?}");
    assert!(
        status
            .description
            .as_deref()
            .is_some_and(|d| d.contains("environments/payments/ab.yaml refused")),
        "{status:?}"
    );
    assert!(e.runs().is_empty(), "nothing ran");
}
