//! What runs is what was governed (SPEC 12, issue 19 item 1): scheduled and requested work
//! reads an environment's manifest and definition at its last governed change, never at the
//! default branch's tip; a refused merge moves no timer and changes no job's input; a push
//! that changes governed files without a pull request is flagged, and nothing it changed
//! runs until a governed pull request changes it again.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::{add, path_of, recorder_manifest, RECORDER_DEPLOY};
use paved::ids::CommitSha;
use paved_testkit::FileChange;
use serde_json::Value;
use std::time::Duration;

const TOKEN: &str = "gho_octocat_governed";

/// A deploy.sh someone pushes straight to the default branch: it leaves a mark.
/// (reported to the record server, the one place a sandboxed script can leave one).
const PUSHED_DEPLOY: &str = "#!/bin/sh\necho ran | curl -s --noproxy '*' -X PUT --data-binary @- \"$RECORD_URL/pushed-script-ran\"\necho pwned\n";

async fn start() -> Env {
    let e = Env::prepare_with(|c, git| c.git_root = Some(git.to_path_buf()))
        .await
        .run_with(|c| {
            c.lifecycle.tick = Duration::from_secs(1);
            c.lifecycle.drift_interval = Duration::ZERO;
        })
        .await;
    e.h.github.add_user_token(TOKEN, "octocat");
    e
}

/// Opens and merges a PR with `changes`; the final `paved/provision` status.
async fn merge(e: &Env, changes: &[FileChange]) -> (CommitSha, github_emulator::Status) {
    let spec = e.open(changes);
    let (sha, _) = e.merge(&spec).await;
    let status = e.provision_status(&sha).await;
    (sha, status)
}

/// Pushes `changes` straight to `main` and sends the push; the pushed commit.
async fn direct_push(e: &Env, changes: &[FileChange]) -> CommitSha {
    let before = e.h.remote.tip("refs/heads/main").expect("main");
    let after =
        e.h.remote
            .commit("refs/heads/main", Some(&before), changes, "direct push")
            .expect("commit");
    let id = e.send_push(&before, &after, "mallory").await;
    assert_eq!(e.h.wait_delivery(&id).await["state"], "done");
    after
}

/// Asks for a reconcile as octocat and waits for it to end; the reconcile operation.
async fn reconcile(e: &Env, name: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/repos/{}/environments/{name}/reconcile",
            e.h.url(),
            e.repo()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("reconcile");
    assert!(r.status().is_success(), "{}", r.status());
    common::eventually("the reconcile ended", async || {
        let env = e.environment(name).await;
        env["operations"].as_array().and_then(|ops| {
            ops.iter()
                .find(|o| {
                    o["kind"] == "reconcile" && o["state"] != "running" && o["state"] != "planned"
                })
                .cloned()
        })
    })
    .await
}

fn upcoming(env: &Value, kind: &str) -> Option<String> {
    env["upcoming"]
        .as_array()?
        .iter()
        .find(|u| u["kind"] == kind)
        .and_then(|u| u["due_at"].as_str())
        .map(str::to_string)
}

fn deploys(e: &Env) -> usize {
    e.runs()
        .values()
        .filter(|r| r.env.get("ADE_OPERATION_NAME").map(String::as_str) == Some("deploy"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_script_is_flagged_and_runs_only_after_a_pull_request_changes_it() {
    let e = start().await;
    let (governed, status) = merge(&e, &add("shop", "ok")).await;
    assert_eq!(status.state, "success", "{status:?}");

    // A direct push that only edits the definition's script.
    let pushed = direct_push(
        &e,
        &[(
            "catalog/recorder/deploy.sh".into(),
            Some(PUSHED_DEPLOY.as_bytes().to_vec()),
        )],
    )
    .await;
    let v = e.h.verdicts(&pushed, 1).await;
    let g = &v["paved/governance"];
    assert_eq!(g.state, "failure", "{g:?}");
    assert!(
        g.description
            .as_deref()
            .is_some_and(|d| d.contains("1 governance or catalog file(s)")),
        "{g:?}"
    );
    let notes = e.notes(&pushed);
    assert!(
        notes.iter().any(|n| n.outcome == "ungoverned"
            && n.message
                .as_deref()
                .is_some_and(|m| m.contains("catalog/recorder/deploy.sh"))),
        "{notes:?}"
    );

    // A reconcile runs the governed script, at the governed commit.
    let op = reconcile(&e, "shop").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["merge_sha"], governed.to_string(), "{op}");
    assert!(
        !e.records.join("pushed-script-ran").exists(),
        "the pushed script ran"
    );
    assert_eq!(deploys(&e), 2, "the recorder's own deploy ran twice");

    // A governed merge that does not touch the script still may not run it.
    let (_, refused) = merge(&e, &add("cart", "ok")).await;
    assert_eq!(refused.state, "failure", "{refused:?}");
    assert!(
        refused
            .description
            .as_deref()
            .is_some_and(|d| d.contains("ungoverned: catalog/recorder/deploy.sh")),
        "{refused:?}"
    );
    assert!(!e.records.join("pushed-script-ran").exists());
    assert_eq!(deploys(&e), 2);

    // A pull request that changes the script (back) clears it: cart deploys.
    let mut changes = vec![(
        "catalog/recorder/deploy.sh".to_string(),
        Some(RECORDER_DEPLOY.as_bytes().to_vec()),
    )];
    changes.push((
        path_of("cart"),
        Some(recorder_manifest("cart", "dev", "ok", "again").into_bytes()),
    ));
    let (_, cleared) = merge(&e, &changes).await;
    assert_eq!(cleared.state, "success", "{cleared:?}");
    assert_eq!(deploys(&e), 3);
    assert!(!e.records.join("pushed-script-ran").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_manifest_switching_its_definition_changes_nothing_that_runs() {
    let e = start().await;
    let (governed, status) = merge(&e, &add("shop", "ok")).await;
    assert_eq!(status.state, "success", "{status:?}");
    let switched = recorder_manifest("shop", "dev", "ok", "")
        .replace("definition: recorder", "definition: static-site");
    let pushed = direct_push(&e, &[(path_of("shop"), Some(switched.into_bytes()))]).await;
    let v = e.h.verdicts(&pushed, 1).await;
    assert_eq!(v["paved/governance"].state, "failure");
    assert!(v["paved/governance"]
        .description
        .as_deref()
        .is_some_and(|d| d.contains("1 environment manifest(s)")));

    let op = reconcile(&e, "shop").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["definition"], "recorder", "{op}");
    assert_eq!(op["merge_sha"], governed.to_string(), "{op}");
    assert_eq!(deploys(&e), 2, "the governed definition deployed again");
    let env = e.environment("shop").await;
    assert_eq!(env["environment"]["definition"], "recorder", "{env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_merge_moves_no_timer_and_changes_no_job() {
    let e = start().await;
    let (_, status) = merge(&e, &add("shop", "ok")).await;
    assert_eq!(status.state, "success", "{status:?}");
    let before = e.environment("shop").await;
    let expiry = upcoming(&before, "expire").expect("an expiry timer");

    // Red: 4000 days is beyond the type's maxTtl (3650d); and another definition.
    let far = (chrono::Utc::now() + chrono::Duration::days(4000))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let red = recorder_manifest("shop", "dev", "ok", "")
        .replace("definition: recorder", "definition: static-site");
    let red = red
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("expiresAt:") {
                format!("  expiresAt: {far}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let (_, refused) = merge(&e, &[(path_of("shop"), Some(red.into_bytes()))]).await;
    assert_eq!(refused.state, "failure", "{refused:?}");
    assert!(
        refused
            .description
            .as_deref()
            .is_some_and(|d| d.contains("refused")),
        "{refused:?}"
    );
    let after = e.environment("shop").await;
    assert_eq!(
        upcoming(&after, "expire").as_deref(),
        Some(expiry.as_str()),
        "the refused merge moved the expiry: {after}"
    );

    let op = reconcile(&e, "shop").await;
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(op["definition"], "recorder", "{op}");
    assert_eq!(deploys(&e), 2);
}

/// A search-team manifest of the recorder named `name`, owned by searcher.
fn search_manifest(name: &str) -> (String, Option<Vec<u8>>) {
    let text = recorder_manifest(name, "dev", "ok", "")
        .replace("team: payments", "team: search")
        .replace("owner: octocat", "owner: searcher");
    (
        format!("environments/search/{name}.yaml"),
        Some(text.into_bytes()),
    )
}

async fn start_with_search_team() -> Env {
    let e = Env::prepare_platform(common::recorder::with_search_team, |c, git| {
        c.git_root = Some(git.to_path_buf())
    })
    .await
    .run_with(|_| {})
    .await;
    e.h.github.add_user_token(SEARCHER, "searcher");
    e
}

const SEARCHER: &str = "gho_searcher_governed";

/// Issue 19, item 3: an environment is (repository, name, generation). A name another
/// team deleted is a new environment for the next team: none of the first one's operations,
/// logs or `ADE_STORAGE` come with it; a name another team still holds live is refused
/// before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_used_again_is_a_new_environment_and_a_held_one_is_refused() {
    let e = start_with_search_team().await;
    // Payments makes `shared`, then deletes it.
    let (_, made) = merge(&e, &add("shared", "ok")).await;
    assert_eq!(made.state, "success", "{made:?}");
    let (_, gone) = merge(&e, &[(path_of("shared"), None)]).await;
    assert_eq!(gone.state, "success", "{gone:?}");
    assert_eq!(
        e.environment("shared").await["environment"]["state"],
        "deleted"
    );

    // Search makes an environment of the same name: a second generation, its own.
    let (_, again) = merge(&e, &[search_manifest("shared")]).await;
    assert_eq!(again.state, "success", "{again:?}");
    let run = e
        .runs()
        .into_iter()
        .filter(|(_, r)| r.env.get("PAVED_ENVIRONMENT_TEAM").map(String::as_str) == Some("search"))
        .map(|(_, r)| r)
        .next()
        .expect("search's deploy ran");
    assert_eq!(
        run.history.lines().count(),
        1,
        "ADE_STORAGE came from the first generation: {:?}",
        run.history
    );
    let detail: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/repos/{}/environments/shared",
            e.h.url(),
            e.repo()
        ))
        .bearer_auth(SEARCHER)
        .send()
        .await
        .expect("detail")
        .json()
        .await
        .expect("json");
    assert_eq!(detail["environment"]["team"], "search", "{detail}");
    assert_eq!(detail["environment"]["generation"], 2, "{detail}");
    let ops = detail["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), 1, "only search's own operation: {detail}");
    assert_eq!(ops[0]["team"], "search");
    assert!(
        !detail.to_string().contains("s3cr3t"),
        "payments' log is not shown"
    );

    // Payments' `held` failed and still exists: search may not take its name.
    let (_, failed) = merge(&e, &add("held", "fail")).await;
    assert_eq!(failed.state, "failure", "{failed:?}");
    let spec = e.open(&[search_manifest("held")]);
    e.h.send_pr(&spec).await;
    let verdicts = e.h.verdicts(&spec.head_sha, 3).await;
    let quota = &verdicts["paved/quota"];
    assert_eq!(quota.state, "failure", "{verdicts:#?}");
    assert!(
        quota
            .description
            .as_deref()
            .is_some_and(|d| d.contains("held by team payments")),
        "{quota:?}"
    );
    let runs_before = e.runs().len();
    let (sha, _) = e.merge(&spec).await;
    let refused = e.provision_status(&sha).await;
    assert_eq!(refused.state, "failure", "{refused:?}");
    assert_eq!(e.runs().len(), runs_before, "nothing ran");
    let held = e.environment("held").await;
    assert_eq!(held["environment"]["team"], "payments", "{held}");
}
