//! A `plan.sh` definition (`planned`): previews of a create, a replace and a delete, the
//! neutral "no preview", a failing preview, redaction, approvals bound to the preview and
//! `approvals.onDestroy`.

use crate::common::provisioning::Env;
use crate::common::recorder::{manifest_of, path_of, recorder_manifest};
use paved::config::Secret;
use paved_testkit::{self as testkit, FileChange, PullRequestSpec};
use serde_json::json;

/// A runner secret the preview prints.
pub const PREVIEW_KEY: &str = "pk-0123456789-secret";

/// The database of `planned`: created when `ADE_STORAGE` has no size, replaced when the
/// size changes, deleted with the environment. It prints the runner's secret, the stored
/// (sensitive) password and the deploy generation: all but the generation must be redacted.
const PLAN: &str = r#"#!/bin/sh
set -eu
res="db.$ADE_ENVIRONMENT_NAME"
case "$ADE_OPERATION_PARAMETERS" in *'"mode":"fail"'*)
  echo "cannot reach the cloud" > "$ADE_ERROR_LOG"; exit 1 ;;
esac
case "$ADE_OPERATION_PARAMETERS" in *'"size":"big"'*) size=big ;; *) size=small ;; esac
echo "preview key ${PREVIEW_KEY:-unset}"
if [ -e "$ADE_STORAGE/password" ]; then echo "current password $(cat "$ADE_STORAGE/password")"; fi
if [ -e "$ADE_STORAGE/generation" ]; then echo "generation $(cat "$ADE_STORAGE/generation")"; fi
if [ "$PAVED_PLAN_OPERATION" = delete ]; then
  printf '[{"action":"delete","resource":"%s"}]' "$res" > "$ADE_PLAN"; echo "- $res"; exit 2
fi
if [ ! -e "$ADE_STORAGE/size" ]; then
  printf '[{"action":"create","resource":"%s"}]' "$res" > "$ADE_PLAN"; echo "+ $res ($size)"; exit 2
fi
old=$(cat "$ADE_STORAGE/size")
if [ "$old" = "$size" ]; then echo "$res is up to date"; exit 0; fi
printf '[{"action":"replace","resource":"%s"}]' "$res" > "$ADE_PLAN"
echo "-/+ $res ($old to $size)"
exit 2
"#;

/// Keeps the size, counts generations, and outputs the approved change list it was given
/// in `ADE_PLAN` (quotes left out) as `approved`.
const DEPLOY: &str = r#"#!/bin/sh
set -eu
case "$ADE_OPERATION_PARAMETERS" in *'"size":"big"'*) size=big ;; *) size=small ;; esac
printf '%s' "$size" > "$ADE_STORAGE/size"
g=$(cat "$ADE_STORAGE/generation" 2>/dev/null || echo 0)
echo $((g + 1)) > "$ADE_STORAGE/generation"
echo "pw-$ADE_ENVIRONMENT_NAME-0123" > "$ADE_STORAGE/password"
approved=$(tr -d '"\n' < "${ADE_PLAN:-/dev/null}")
printf '{"outputs": {"approved": {"type": "string", "value": "%s", "sensitive": false}, "password": {"type": "string", "value": "pw-%s-0123", "sensitive": true}}}' "$approved" "$ADE_ENVIRONMENT_NAME" > "$ADE_OUTPUTS"
"#;

const DEFINITION: &str = "name: planned
version: 1.0.0
summary: A database previewed by plan.sh (Paved's tests)
runner: command
parameters:
  - id: size
    name: Size
    type: string
    default: small
    allowed: [small, big]
  - id: mode
    name: Mode
    type: string
    default: ok
    allowed: [ok, fail]
  - id: note
    name: Note
    type: string
    default: ''
";

pub fn planned_files() -> Vec<FileChange> {
    vec![
        (
            "catalog/planned/environment.yaml".into(),
            Some(DEFINITION.as_bytes().to_vec()),
        ),
        (
            "catalog/planned/plan.sh".into(),
            Some(PLAN.as_bytes().to_vec()),
        ),
        (
            "catalog/planned/deploy.sh".into(),
            Some(DEPLOY.as_bytes().to_vec()),
        ),
        (
            "catalog/planned/delete.sh".into(),
            Some(b"#!/bin/sh\nexit 0\n".to_vec()),
        ),
    ]
}

/// `dev` may use `planned` and `tfdb`; a `guarded` type requires its preview and an SRE's
/// approval when a preview destroys anything.
pub fn with_planned(text: String) -> String {
    let text = text
        .replace(
            "definitions: [postgres-db, static-site, recorder]",
            "definitions: [postgres-db, static-site, recorder, planned, tfdb]",
        )
        .replace(
            "    members: [admin1, admin2]\n",
            "    members: [admin1, admin2]\n  sre:\n    members: [sre1]\n",
        );
    assert!(
        text.contains("planned, tfdb") && text.contains("sre1"),
        "platform.yaml changed shape"
    );
    text + "  guarded:
    description: Previewed, and destroying needs an SRE.
    workflow: production
    maxTtl: 3650d
    definitions: [planned]
    requiredTags: [cost-center]
    requirePlan: true
    approvals:
      team: platform
      count: 1
      onDestroy: { team: sre, count: 1 }
"
}

pub async fn start(extra: Vec<FileChange>) -> Env {
    start_with(extra, |_| {}).await
}

pub async fn start_with(
    extra: Vec<FileChange>,
    tweak: impl FnOnce(&mut paved::config::Config),
) -> Env {
    let mut files = planned_files();
    files.extend(extra);
    Env::prepare_platform_files(with_planned, files)
        .await
        .run_with(|c| {
            c.runner
                .env
                .push(("PREVIEW_KEY".into(), Secret::new(PREVIEW_KEY)));
            tweak(c);
        })
        .await
}

pub fn planned(name: &str, env_type: &str, size: &str, mode: &str) -> String {
    manifest_of(
        name,
        env_type,
        "planned",
        &format!("    size: {size}\n    mode: {mode}\n"),
    )
}

pub type Verdicts = std::collections::BTreeMap<String, github_emulator::Status>;

/// Opens `changes` as a PR and waits for its verdicts; returns them and the comment.
pub async fn checked(
    env: &Env,
    changes: &[FileChange],
    min: usize,
) -> (PullRequestSpec, Verdicts, String) {
    let pr = env.open(changes);
    let id = env.h.send_pr(&pr).await;
    env.h.wait_delivery(&id).await;
    let v = env.h.verdicts(&pr.head_sha, min).await;
    (pr.clone(), v, last_comment(env, pr.number))
}

pub fn last_comment(env: &Env, pr: u64) -> String {
    env.h
        .comments(pr)
        .last()
        .map(|c| c.body.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_sh_previews_a_create_a_replace_and_a_delete_and_deploy_gets_what_was_approved() {
    let env = start(Vec::new()).await;

    let created = planned("pv1", "dev", "small", "ok");
    let (pr, v, comment) = checked(&env, &[(path_of("pv1"), Some(created.into_bytes()))], 4).await;
    let plan = &v["paved/plan"];
    assert_eq!(plan.state, "success", "{plan:?}");
    assert_eq!(plan.description.as_deref(), Some("1 to create"));
    assert!(comment.contains("#### Preview"), "{comment}");
    assert!(comment.contains("**create** `db.pv1`"), "{comment}");
    assert!(comment.contains("preview key [redacted]"), "{comment}");
    assert!(!comment.contains(PREVIEW_KEY), "{comment}");
    let (merge, _) = env.merge(&pr).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");
    let detail = env.environment("pv1").await;
    assert_eq!(
        detail["environment"]["outputs"]["approved"]["value"],
        json!("[{action:create,resource:db.pv1}]"),
        "deploy.sh got the approved change list in ADE_PLAN"
    );

    let grown = planned("pv1", "dev", "big", "ok");
    let (pr, v, comment) = checked(&env, &[(path_of("pv1"), Some(grown.into_bytes()))], 4).await;
    assert_eq!(v["paved/policy"].state, "success", "{v:#?}");
    assert_eq!(
        v["paved/plan"].description.as_deref(),
        Some("1 to replace (db.pv1)")
    );
    assert!(comment.contains("Destroyed or replaced:"), "{comment}");
    assert!(
        comment.contains("⚠️ `payments/pv1` **replace** `db.pv1`"),
        "{comment}"
    );
    assert!(comment.contains("-/+ db.pv1 (small to big)"), "{comment}");
    // The environment's sensitive output, printed by the preview, never shows.
    assert!(comment.contains("current password [redacted]"), "{comment}");
    assert!(!comment.contains("pw-pv1-0123"), "{comment}");
    let (merge, _) = env.merge(&pr).await;
    let ps = env.provision_status(&merge).await;
    let ops = env.operations(&merge).await;
    assert_eq!(ps.state, "success", "{ps:?} {ops:#?}");
    let detail = env.environment("pv1").await;
    assert_eq!(
        detail["environment"]["outputs"]["approved"]["value"],
        json!("[{action:replace,resource:db.pv1}]")
    );

    // Deleting the manifest previews the deletion.
    let (_, v, comment) = checked(&env, &[(path_of("pv1"), None)], 4).await;
    assert_eq!(
        v["paved/plan"].description.as_deref(),
        Some("1 to delete (db.pv1)")
    );
    assert!(comment.contains("(delete)"), "{comment}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_preview_is_neutral_and_a_failed_preview_fails_only_where_required() {
    let env = start(Vec::new()).await;
    // The recorder has no plan.sh.
    let recorder = recorder_manifest("np1", "dev", "ok", "");
    let (_, v, comment) = checked(&env, &[(path_of("np1"), Some(recorder.into_bytes()))], 4).await;
    assert_eq!(v["paved/plan"].state, "success");
    assert_eq!(
        v["paved/plan"].description.as_deref(),
        Some("no preview for recorder")
    );
    assert!(comment.contains("no preview for recorder"), "{comment}");

    // A failing preview of a type that does not require it: reported, not failing.
    let failing = planned("fp1", "dev", "small", "fail");
    let (_, v, _) = checked(&env, &[(path_of("fp1"), Some(failing.into_bytes()))], 4).await;
    assert_eq!(v["paved/plan"].state, "success", "{:?}", v["paved/plan"]);
    assert_eq!(
        v["paved/plan"].description.as_deref(),
        Some("preview failed for payments/fp1: exited with code 1: cannot reach the cloud")
    );
    // `requirePlan: true`: the same failure fails paved/plan.
    let required = planned("fp2", "guarded", "small", "fail");
    let (_, v, comment) = checked(&env, &[(path_of("fp2"), Some(required.into_bytes()))], 5).await;
    assert_eq!(v["paved/plan"].state, "failure", "{:?}", v["paved/plan"]);
    assert!(
        v["paved/plan"]
            .description
            .as_deref()
            .is_some_and(|d| d.contains("requirePlan")),
        "{:?}",
        v["paved/plan"]
    );
    assert!(comment.contains("cannot reach the cloud"), "{comment}");
}

/// Sets the PR's reviews: each (id, login) approving its head.
pub fn approve(env: &Env, pr: &PullRequestSpec, reviewers: &[(u64, &str)]) {
    let reviews = reviewers
        .iter()
        .map(|(id, login)| {
            json!({"id": id, "user": {"login": login}, "state": "APPROVED",
                   "commit_id": pr.head_sha.as_str()})
        })
        .collect();
    env.h
        .github
        .set_pull_reviews(&env.repo(), pr.number, reviews);
}

async fn send_review(env: &Env, pr: &PullRequestSpec, reviewer: &str) {
    let body = testkit::review_payload(pr, "submitted", reviewer).expect("payload");
    let id = env.h.delivery_id();
    assert_eq!(
        env.h.send("pull_request_review", &id, &body).await,
        reqwest::StatusCode::ACCEPTED
    );
    env.h.wait_delivery(&id).await;
}

pub async fn comment_on(env: &Env, pr: &PullRequestSpec, body: &str) {
    let payload =
        testkit::issue_comment_payload(&env.h.repo, &env.h.remote.clone_url(), pr.number, body)
            .expect("payload");
    let id = env.h.delivery_id();
    assert_eq!(
        env.h.send("issue_comment", &id, &payload).await,
        reqwest::StatusCode::ACCEPTED
    );
    env.h.wait_delivery(&id).await;
}

pub fn status(env: &Env, sha: &paved::ids::CommitSha, context: &str) -> github_emulator::Status {
    env.h
        .github
        .latest_statuses(&env.repo(), sha.as_str())
        .get(context)
        .cloned()
        .unwrap_or_else(|| panic!("no {context} on {sha}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_counts_for_the_preview_it_was_given_on_and_on_destroy_needs_its_approver() {
    let env = start(Vec::new()).await;
    let guarded = |size: &str| planned("gd1", "guarded", size, "ok").into_bytes();
    // A guarded environment, approved and made.
    let pr = env.open(&[(path_of("gd1"), Some(guarded("small")))]);
    approve(&env, &pr, &[(1, "admin1")]);
    let id = env.h.send_pr(&pr).await;
    env.h.wait_delivery(&id).await;
    assert_eq!(
        status(&env, &pr.head_sha, "paved/approval").state,
        "success"
    );
    let (merge, _) = env.merge(&pr).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");

    // Growing it replaces the database: the platform's approval is not enough.
    let grow = env.open(&[(path_of("gd1"), Some(guarded("big")))]);
    approve(&env, &grow, &[(11, "admin1")]);
    let id = env.h.send_pr(&grow).await;
    env.h.wait_delivery(&id).await;
    let a = status(&env, &grow.head_sha, "paved/approval");
    assert_eq!(a.state, "failure", "{a:?}");
    assert!(
        a.description
            .as_deref()
            .is_some_and(|d| d.contains("team sre")),
        "{a:?}"
    );
    let comment = last_comment(&env, grow.number);
    assert!(
        comment.contains("the preview destroys or replaces db.gd1"),
        "{comment}"
    );
    // The SRE approves too: it passes.
    approve(&env, &grow, &[(11, "admin1"), (12, "sre1")]);
    send_review(&env, &grow, "sre1").await;
    assert_eq!(
        status(&env, &grow.head_sha, "paved/approval").state,
        "success"
    );

    // The environment moves on (another change deployed: the preview now shows a new
    // generation). `/paved plan` previews again: the approvals were for the old preview.
    let touched = manifest_of(
        "gd1",
        "guarded",
        "planned",
        "    size: small\n    mode: ok\n    note: moved\n",
    );
    let other = env.open(&[(path_of("gd1"), Some(touched.into_bytes()))]);
    approve(&env, &other, &[(21, "admin1")]);
    let (merge, _) = env.merge(&other).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");
    comment_on(&env, &grow, "/paved plan").await;
    let a = status(&env, &grow.head_sha, "paved/approval");
    assert_eq!(a.state, "failure", "{a:?}");
    assert!(
        a.description
            .as_deref()
            .is_some_and(|d| d.contains("approved a preview that has changed since")),
        "{a:?}"
    );
    let comment = last_comment(&env, grow.number);
    assert!(comment.contains("generation 2"), "{comment}");
    // Approving again (new reviews, seen with the new preview) counts.
    approve(&env, &grow, &[(31, "admin1"), (32, "sre1")]);
    send_review(&env, &grow, "admin1").await;
    assert_eq!(
        status(&env, &grow.head_sha, "paved/approval").state,
        "success"
    );
}
