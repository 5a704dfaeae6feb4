//! GitHub's merge queue: the checks (previews included) of the queue's commit, reported on
//! it; the pull request provisions once, when the queue lands it.

use super::planned::{approve, planned, start, status};
use crate::common::recorder::path_of;
use paved_testkit as testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_queue_commit_gets_the_checks_and_the_pull_request_provisions_once() {
    let env = start(Vec::new()).await;
    let pr = env.open(&[(
        path_of("mq1"),
        Some(planned("mq1", "dev", "small", "ok").into_bytes()),
    )]);
    approve(&env, &pr, &[(1, "admin1")]);
    env.h.send_pr(&pr).await;
    env.h.verdicts(&pr.head_sha, 4).await;

    // The queue makes its commit on main and asks for the checks there.
    let (head_ref, head, base) = env.h.remote.queue_pull(&pr).expect("queue");
    let body = testkit::merge_group_payload(
        &env.h.repo,
        &env.h.remote.clone_url(),
        &head_ref,
        &head,
        &base,
    )
    .expect("payload");
    let id = env.h.delivery_id();
    assert_eq!(
        env.h.send("merge_group", &id, &body).await,
        reqwest::StatusCode::ACCEPTED
    );
    env.h.wait_delivery(&id).await;
    let v = env.h.verdicts(&head, 4).await;
    for context in ["paved/schema", "paved/policy", "paved/quota", "paved/plan"] {
        assert_eq!(v[context].state, "success", "{context}: {:?}", v[context]);
    }
    assert_eq!(v["paved/plan"].description.as_deref(), Some("1 to create"));
    // The queue's checks leave the pull request's own comment alone.
    let comments = env.h.comments(pr.number);
    assert_eq!(comments.len(), 1, "one summary comment");
    assert!(comments[0]
        .body
        .contains(&format!("`{}`", pr.head_sha.short())));

    // The queue lands its commit: main is it, and GitHub says the PR was merged with it.
    env.h.remote.land_queue(&head).expect("land");
    env.h.github.set_pull(
        &env.repo(),
        pr.number,
        serde_json::json!({"state": "closed", "merged": true,
                           "merge_commit_sha": head.as_str()}),
    );
    let first = env.send_merge(&pr, &head).await;
    env.h.wait_delivery(&first).await;
    assert_eq!(env.provision_status(&head).await.state, "success");
    // The same merge told twice runs nothing twice.
    let again = env.send_merge(&pr, &head).await;
    env.h.wait_delivery(&again).await;
    let ops = env.operations(&head).await;
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_eq!(status(&env, &head, "paved/provision").state, "success");
}
