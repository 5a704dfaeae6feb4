//! The holes a security review found (issue 9), each driven through the real server, real
//! Git and the strict GitHub emulator where the hole was end to end. Each test fails with
//! its fix reverted.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::{manifest, Harness};
use paved_testkit as testkit;

fn file(path: &str, content: &str) -> (String, Option<Vec<u8>>) {
    (path.to_string(), Some(content.as_bytes().to_vec()))
}

const NEW: &str = "environments/payments/orders-preview.yaml";

const DENY_POLICY: &str = r#"package main

deny contains msg if {
    input.spec.tags["cost-center"] == "cc-0000"
    msg := "cost center cc-0000 is closed"
}
"#;

/// Item 1: a validly signed delivery about a repository Paved does not serve is answered
/// 2xx, never stored, never processed, and Paved never asks GitHub anything about it (no
/// token, no status).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_for_other_repositories_are_ignored() {
    let h = Harness::start().await;
    let mut pr = h.push_pr(3, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    pr.repo = paved::ids::RepoName::parse("evil/environments").expect("name");
    let body = testkit::pull_request_payload(&pr).expect("payload");
    let id = h.delivery_id();
    let status = h.send("pull_request", &id, &body).await;
    assert_eq!(status, reqwest::StatusCode::OK, "answered 2xx, not 202");

    // Not stored: the API has no such delivery.
    let r = h
        .client
        .get(format!("{}/api/v1/deliveries/{id}", h.url()))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    // Counted as ignored for its repository.
    let metrics = h
        .client
        .get(format!("{}/metrics", h.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("paved_webhooks_total{result=\"ignored_repository\"} 1"),
        "{metrics}"
    );

    // The served repository still works, and by the time its verdicts are in, nothing was
    // ever asked about the other one.
    let ok = h.push_pr(4, None, &[file(NEW, &manifest("orders-preview", "small"))]);
    h.send_pr(&ok).await;
    h.verdicts(&ok.head_sha, 3).await;
    let about_evil: Vec<_> = h
        .github
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("evil"))
        .collect();
    assert!(about_evil.is_empty(), "{about_evil:#?}");
}

/// Item 1: with no repositories configured, `paved serve` refuses to start and says how to
/// fix it; with `allow_any_repository` set explicitly it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_repository_list() {
    let h = Harness::prepare(&[]).await;
    let mut config = h.config();
    config.repositories = paved::config::RepoFilter::new(&[], false).expect("empty");
    let err = match paved::service::start(config).await {
        Ok(_) => panic!("started without github.repositories"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("github.repositories"), "{err}");
    assert!(err.contains("allow_any_repository"), "{err}");

    let mut config = h.config();
    config.repositories = paved::config::RepoFilter::new(&[], true).expect("any");
    let service = paved::service::start(config)
        .await
        .expect("starts with allow_any");
    service.shutdown().await.expect("stop");
}

/// Item 2: a PR into another branch, whose governance there is relaxed, shares its head
/// SHA with a PR into the default branch that fails. The other branch's PR gets no
/// statuses, so the head stays red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pr_into_another_branch_cannot_turn_a_red_head_green() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    // A branch whose governance lets the closed cost center through.
    let lax = h
        .remote
        .commit(
            "refs/heads/lax",
            Some(&h.base),
            &[(".paved/policies/closed_cost_center.rego".to_string(), None)],
            "relax the rules on a side branch",
        )
        .expect("lax branch");

    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let into_main = h.push_pr(20, None, &[file(NEW, &text)]);
    h.send_pr(&into_main).await;
    let v = h.verdicts(&into_main.head_sha, 3).await;
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    let posted_before = h
        .github
        .statuses(common::REPO, into_main.head_sha.as_str())
        .len();

    // The same head, proposed into `lax`.
    let mut into_lax = into_main.clone();
    into_lax.number = 21;
    into_lax.base_ref = "lax".into();
    into_lax.base_sha = lax;
    h.remote
        .publish_pull(21, &into_lax.head_sha)
        .expect("publish");
    h.github.set_pull(
        common::REPO,
        21,
        testkit::pull_json(&into_lax).expect("pull json"),
    );
    let id = h.send_pr(&into_lax).await;
    let d = h.wait_delivery(&id).await;
    assert_eq!(d["state"], "done", "{d}");

    let all = h.github.statuses(common::REPO, into_main.head_sha.as_str());
    assert_eq!(
        all.len(),
        posted_before,
        "the PR into lax posted statuses: {all:#?}"
    );
    let v = h
        .github
        .latest_statuses(common::REPO, into_main.head_sha.as_str());
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    assert!(h.comments(21).is_empty(), "no comment on the PR into lax");
}

/// Item 2: governance is read at the merge base of the head and the default branch, not
/// at whatever base SHA the payload names: here the default branch moved on (dropping the
/// policy) after the PR forked, and the payload names the new tip; the PR is still judged
/// by the rules it forked under until it is updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_is_read_where_the_pr_forked_off_the_default_branch() {
    let h =
        Harness::start_with(&[file(".paved/policies/closed_cost_center.rego", DENY_POLICY)]).await;
    let text = manifest("orders-preview", "small").replace("cc-1234", "cc-0000");
    let mut pr = h.push_pr(22, None, &[file(NEW, &text)]);
    let moved = h
        .remote
        .commit(
            "refs/heads/main",
            Some(&h.base),
            &[(".paved/policies/closed_cost_center.rego".to_string(), None)],
            "main moves on",
        )
        .expect("main moves");
    pr.base_sha = moved;
    h.send_pr(&pr).await;
    let v = h.verdicts(&pr.head_sha, 3).await;
    assert_eq!(v["paved/policy"].state, "failure", "{v:?}");
    h.github
        .wait_until(common::DEADLINE, "comment", |gh| {
            !gh.comments(common::REPO, 22).is_empty()
        })
        .await
        .expect("comment");
    let comment = &h.comments(22)[0].body;
    assert!(
        comment.contains(&format!("governance read at `{}`", h.base.short())),
        "{comment}"
    );
}

mod intake_bounds {
    //! Item 7: the webhook receiver is not a memory or connection sink.
    use super::common::Harness;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads what the server sends until it closes the connection or `within` passes;
    /// `None` when the connection was still open then.
    async fn read_until_closed(
        stream: &mut tokio::net::TcpStream,
        within: Duration,
    ) -> Option<String> {
        let mut out = Vec::new();
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into()),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    async fn harness(header: Duration, request: Duration) -> Harness {
        let mut h = Harness::prepare(&[]).await;
        let mut config = h.config();
        config.intake.header_timeout = header;
        config.intake.request_timeout = request;
        h.service = Some(paved::service::start(config).await.expect("start"));
        h
    }

    fn addr(h: &Harness) -> String {
        h.url().trim_start_matches("http://").to_string()
    }

    /// A request without a signature header is refused without waiting for its body: the
    /// answer comes while 24 MB are still "to come".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unsigned_body_is_refused_before_it_is_read() {
        let h = harness(Duration::from_secs(10), Duration::from_secs(60)).await;
        let mut s = tokio::net::TcpStream::connect(addr(&h))
            .await
            .expect("connect");
        s.write_all(
            b"POST /webhooks/github HTTP/1.1\r\nHost: paved\r\nX-GitHub-Event: push\r\n\
              X-GitHub-Delivery: 00000000-0000-4000-8000-000000000001\r\n\
              Content-Type: application/json\r\nContent-Length: 24000000\r\n\r\n{",
        )
        .await
        .expect("write");
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered without reading the body")
            .expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    }

    /// Half a request header: the connection is closed after the header timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_sent_header_is_cut_off() {
        let h = harness(Duration::from_millis(500), Duration::from_secs(60)).await;
        let mut s = tokio::net::TcpStream::connect(addr(&h))
            .await
            .expect("connect");
        s.write_all(b"POST /webhooks/github HTTP/1.1\r\nHost: paved\r\nX-Git")
            .await
            .expect("write");
        let started = Instant::now();
        let got = read_until_closed(&mut s, Duration::from_secs(5)).await;
        assert!(got.is_some(), "still open after {:?}", started.elapsed());
    }

    /// A signed request whose body trickles in is answered 408 after the request timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickling_body_gets_408() {
        let h = harness(Duration::from_secs(10), Duration::from_millis(500)).await;
        let mut s = tokio::net::TcpStream::connect(addr(&h))
            .await
            .expect("connect");
        s.write_all(
            b"POST /webhooks/github HTTP/1.1\r\nHost: paved\r\nX-GitHub-Event: push\r\n\
              X-GitHub-Delivery: 00000000-0000-4000-8000-000000000002\r\n\
              X-Hub-Signature-256: sha256=00\r\nContent-Length: 1000\r\n\r\n{\"a\"",
        )
        .await
        .expect("write");
        let got = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("answered within 5 s");
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        // Problem details, as every refusal.
        let lower = got.to_ascii_lowercase();
        assert!(
            lower.contains("content-type: application/problem+json"),
            "{got}"
        );
        assert!(got.contains("\"status\":408"), "{got}");
    }

    /// Peak memory of `pid` (VmHWM), in MiB.
    fn peak_mib(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM");
        kb / 1024
    }

    /// Sixteen 24 MB bodies with a bad signature, all at once, against the real binary:
    /// the in-flight budget (64 MiB by default) keeps the process's peak memory far below
    /// the 16 × 24 MB the bodies add up to.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_large_bodies_at_once_stay_within_the_budget() {
        let h = Harness::prepare(&[]).await;
        let data = h.data_dir();
        std::fs::create_dir_all(&data).expect("data dir");
        let db = format!("sqlite://{}", data.join("paved.sqlite").display());
        let (paved, url) =
            super::common::serve::spawn_serve(&h, &data, &db, &h.github.url(), &[]).await;
        let pid = paved.0.id();
        let before = peak_mib(pid);
        let body = bytes::Bytes::from(vec![b'x'; 24 * 1000 * 1000]);
        let sends = (0..16).map(|i| {
            let client = h.client.clone();
            let body = body.clone();
            let url = url.clone();
            async move {
                client
                    .post(format!("{url}/webhooks/github"))
                    .header("X-GitHub-Event", "push")
                    .header(
                        "X-GitHub-Delivery",
                        format!("00000000-0000-4000-8000-{i:012}"),
                    )
                    .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status())
            }
        });
        for r in futures::future::join_all(sends).await {
            assert_eq!(r.expect("answered"), reqwest::StatusCode::UNAUTHORIZED);
        }
        let peak = peak_mib(pid);
        eprintln!("peak memory: {before} MiB before, {peak} MiB after 16 x 24 MB bodies");
        assert!(
            peak < before + 160,
            "peak {peak} MiB (was {before} MiB): bodies were not bounded"
        );
    }
}

mod merges {
    //! Items 3 and 4: a merge never judges itself, what is deployed is what was checked,
    //! and `runner.pass_env` secrets are redacted everywhere.
    use super::common::provisioning::Env;
    use super::common::recorder::{add, path_of, recorder_manifest};
    use paved_testkit::{self as testkit, FileChange};

    const POLICY_PATH: &str = ".paved/policies/no_forbidden_notes.rego";
    const POLICY: &str = "package main

deny contains msg if {
    input.spec.parameters.note == \"forbidden\"
    msg := \"the note forbidden is not allowed\"
}
";

    fn main_tip(e: &Env) -> paved::ids::CommitSha {
        e.h.remote.tip("refs/heads/main").expect("main")
    }

    /// Item 3: "Rebase and merge" of a PR whose branch merged the default branch in. Its
    /// first commit removes a policy, its last adds a manifest the policy denies. Counting
    /// the merge-in as a commit used to send the heuristic past the replayed commits and
    /// fall back to the first parent — the PR's own replayed first commit, without the
    /// policy. Now the replay is recognised (or the merge base is used): refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebase_merge_of_a_branch_that_merged_main_in_never_judges_itself() {
        let e = Env::start().await;
        let before =
            e.h.remote
                .commit(
                    "refs/heads/main",
                    Some(&main_tip(&e)),
                    &[(POLICY_PATH.into(), Some(POLICY.as_bytes().to_vec()))],
                    "add a policy",
                )
                .expect("policy");
        let relax: Vec<FileChange> = vec![(POLICY_PATH.into(), None)];
        let manifest: Vec<FileChange> = vec![(
            path_of("rebased-preview"),
            Some(recorder_manifest("rebased-preview", "dev", "ok", "forbidden").into_bytes()),
        )];
        let mut pr = e.open(&relax);
        let branch = format!("refs/heads/{}", pr.head_ref);
        // main moves on; the PR merges it in.
        let moved =
            e.h.remote
                .commit(
                    "refs/heads/main",
                    Some(&before),
                    &[("README.md".into(), Some(b"moved on\n".to_vec()))],
                    "unrelated",
                )
                .expect("main moves");
        let merged_in = merge_commit(&e, &pr.head_sha, &moved, &branch);
        let head =
            e.h.remote
                .commit(&branch, Some(&merged_in), &manifest, "add an environment")
                .expect("last commit");
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
        // Rebase and merge: the two non-merge commits replayed on main.
        let replayed =
            e.h.remote
                .commit("refs/heads/main", Some(&moved), &relax, "remove the policy")
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
        assert_eq!(notes[0].outcome, "refused", "{notes:?}");
        assert_eq!(
            notes[0].governance_commit.as_deref(),
            Some(moved.as_str()),
            "governance read at the default branch before the PR"
        );
    }

    /// A merge commit of `ours` and `theirs` (taking both trees' union), on `refname`.
    fn merge_commit(
        e: &Env,
        ours: &paved::ids::CommitSha,
        theirs: &paved::ids::CommitSha,
        refname: &str,
    ) -> paved::ids::CommitSha {
        let repo = git2::Repository::open_bare(e.h.remote.path()).expect("remote");
        let a = repo
            .find_commit(git2::Oid::from_str(ours.as_str()).expect("oid"))
            .expect("ours");
        let b = repo
            .find_commit(git2::Oid::from_str(theirs.as_str()).expect("oid"))
            .expect("theirs");
        let mut index = repo.merge_commits(&a, &b, None).expect("merge");
        assert!(!index.has_conflicts());
        let tree = repo
            .find_tree(index.write_tree_to(&repo).expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("Dev", "dev@example.invalid").expect("sig");
        let oid = repo
            .commit(Some(refname), &sig, &sig, "Merge main", &tree, &[&a, &b])
            .expect("commit");
        paved::ids::CommitSha::parse(&oid.to_string()).expect("sha")
    }

    /// Item 3: the head passed its checks, but the squash commit that landed holds a
    /// different manifest (a conflict resolution changed a parameter to a denied value).
    /// The manifest as merged is checked again and refused; nothing runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_merged_manifest_that_differs_from_the_checked_head_is_checked_again() {
        let e = Env::start().await;
        e.h.remote
            .commit(
                "refs/heads/main",
                Some(&main_tip(&e)),
                &[(POLICY_PATH.into(), Some(POLICY.as_bytes().to_vec()))],
                "add a policy",
            )
            .expect("policy");
        let pr = e.open(&[(
            path_of("squashed-preview"),
            Some(recorder_manifest("squashed-preview", "dev", "ok", "fine").into_bytes()),
        )]);
        let squash =
            e.h.remote
                .commit(
                    "refs/heads/main",
                    Some(&main_tip(&e)),
                    &[(
                        path_of("squashed-preview"),
                        Some(
                            recorder_manifest("squashed-preview", "dev", "ok", "forbidden")
                                .into_bytes(),
                        ),
                    )],
                    "Squash merge (conflict resolved by hand)",
                )
                .expect("squash");
        e.send_merge(&pr, &squash).await;
        let status = e.provision_status(&squash).await;
        assert_eq!(status.state, "failure", "{status:?}");
        assert!(e.runs().is_empty(), "deployed what was never checked");
        let notes = e.notes(&squash);
        assert_eq!(notes[0].outcome, "refused", "{notes:?}");
        let message = notes[0].message.clone().unwrap_or_default();
        assert!(
            message.contains("as merged") && message.contains("paved/policy"),
            "{message}"
        );
    }

    /// Item 4: a script that prints a `runner.pass_env` secret, to its output and to its
    /// error log, never gets it into the operation log, the deployment status, the PR
    /// comment or the audit note.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pass_env_secrets_are_redacted_everywhere() {
        const TOKEN: &str = "pass-env-secret-value-4242";
        let e = Env::start_with(|c| {
            c.runner
                .pass_env
                .push(("API_TOKEN".into(), paved::config::Secret::new(TOKEN)));
        })
        .await;
        let pr = e.open(&add("leaky-preview", "leak"));
        let (merge, _) = e.merge(&pr).await;
        let status = e.provision_status(&merge).await;
        assert_eq!(status.state, "failure", "{status:?}");
        // The script did get the secret.
        let run = e.runs().into_values().next().expect("a run");
        assert_eq!(run.env.get("API_TOKEN").map(String::as_str), Some(TOKEN));

        let env = e.environment("leaky-preview").await;
        let op = &env["operations"][0];
        let log = op["log"].as_str().unwrap_or_default();
        assert!(
            log.contains("calling the API with token [redacted]"),
            "{log}"
        );
        let everywhere = [
            env.to_string(),
            serde_json::to_string(&e.h.github.deployments(&e.repo())).expect("json"),
            e.h.comments(pr.number)
                .iter()
                .map(|c| c.body.clone())
                .collect::<String>(),
            format!("{:?}", e.notes(&merge)),
            format!("{status:?}"),
        ];
        for (i, text) in everywhere.iter().enumerate() {
            assert!(!text.contains(TOKEN), "secret leaked in place {i}: {text}");
        }
        let d = &e.h.github.deployments(&e.repo())[0];
        let why = &d.statuses.last().expect("status").description;
        assert!(why.contains("[redacted]"), "{why}");
    }
}

/// Item 6: the input that panicked the YAML line scanner (an escape before a multi-byte
/// character in a quoted key) gets a failing `paved/schema` status naming the field and
/// line, at the first attempt; nothing is retried and nothing stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_crashed_the_scanner_fails_its_check_at_once() {
    let h = Harness::start().await;
    let text = manifest("orders-preview", "small") + "\"\\é\": x\n";
    let pr = h.push_pr(30, None, &[file(NEW, &text)]);
    let id = h.send_pr(&pr).await;
    let d = h.wait_delivery(&id).await;
    assert_eq!(d["state"], "done", "{d}");
    assert_eq!(d["attempts"], 1, "{d}");
    let v = h.verdicts(&pr.head_sha, 3).await;
    let schema = &v["paved/schema"];
    assert_eq!(schema.state, "failure", "{schema:?}");
    let comment = &h.comments(30)[0].body;
    // The line and column of the bad key, and why.
    assert!(comment.contains("orders-preview.yaml:15:"), "{comment}");
    assert!(comment.contains("escape"), "{comment}");
}

mod side_effects {
    //! Item 9: side effects at GitHub are not doubled when an answer is lost.
    use super::common::provisioning::Env;
    use super::common::recorder::add;
    use github_emulator::Fault;

    fn lose(operation: &str) -> Fault {
        Fault {
            operation_id: Some(operation.into()),
            lose_answer: true,
            ..Fault::default()
        }
    }

    /// GitHub performs the deployment and the comment, but both answers are lost. Paved
    /// finds what it made instead of making it again: one deployment, one comment.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_answer_does_not_create_twice() {
        let e = Env::start().await;
        let pr = e.open(&add("lost-preview", "ok"));
        e.h.github.inject(1, lose("repos/create-deployment"));
        e.h.github.inject(1, lose("issues/create-comment"));
        let (merge, _) = e.merge(&pr).await;
        let status = e.provision_status(&merge).await;
        assert_eq!(status.state, "success", "{status:?}");
        assert_eq!(e.h.github.pending_faults(), 0, "both answers were lost");
        let deployments = e.h.github.deployments(&e.repo());
        assert_eq!(deployments.len(), 1, "{deployments:#?}");
        assert_eq!(
            super::common::provisioning::states(&deployments[0]),
            ["in_progress", "success"]
        );
        let comments = e.h.comments(pr.number);
        assert_eq!(comments.len(), 1, "{comments:#?}");
        assert!(
            comments[0].body.contains("merged as"),
            "{}",
            comments[0].body
        );
    }
}

mod pr_shapes {
    //! Item 10: unbounded PR shapes and primary rate limits.
    use super::common::{self, Harness};
    use super::{file, manifest};
    use github_emulator::Fault;

    /// A PR touching more manifests than `checks.max_manifests` gets one failing
    /// `paved/schema` saying so, and nothing is evaluated; merging it provisions nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pr_over_the_manifest_cap_fails_clearly_and_provisions_nothing() {
        let mut h = Harness::prepare(&[]).await;
        let mut config = h.config();
        config.checks.max_manifests = 3;
        h.service = Some(paved::service::start(config).await.expect("start"));
        let files: Vec<_> = (0..4)
            .map(|i| {
                let name = format!("bulk-{i}");
                file(
                    &format!("environments/payments/{name}.yaml"),
                    &manifest(&name, "small"),
                )
            })
            .collect();
        let pr = h.push_pr(40, None, &files);
        h.send_pr(&pr).await;
        let v = h.verdicts(&pr.head_sha, 1).await;
        assert_eq!(v.len(), 1, "one status only: {v:?}");
        let s = &v["paved/schema"];
        assert_eq!(s.state, "failure");
        let d = s.description.clone().unwrap_or_default();
        assert!(
            d.contains("4 environment manifests") && d.contains("at most 3"),
            "{d}"
        );
        // No policy was evaluated: no run was recorded, only the one status.
        assert_eq!(
            h.github.statuses(common::REPO, pr.head_sha.as_str()).len(),
            1,
            "not even a pending status for the other checks"
        );

        let merge = h.remote.merge_pull(&pr).expect("merge");
        let body = paved_testkit::merged_payload(&pr, &merge, "hubot").expect("payload");
        let id = h.delivery_id();
        assert!(h.send("pull_request", &id, &body).await.is_success());
        h.wait_delivery(&id).await;
        let v = h.verdicts(&merge, 1).await;
        let p = &v["paved/provision"];
        assert_eq!(p.state, "failure", "{p:?}");
        assert!(
            p.description
                .as_deref()
                .unwrap_or("")
                .contains("nothing was provisioned"),
            "{p:?}"
        );
        assert!(h.github.deployments(common::REPO).is_empty());
    }

    /// A primary rate limit (403, `x-ratelimit-remaining: 0`) resetting in two minutes:
    /// the delivery is put back until the reset instead of the request being sent again
    /// and again within the client's backoff.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_primary_rate_limit_waits_for_its_reset() {
        let h = Harness::start().await;
        h.github.inject(
            1,
            Fault {
                rate_limit_reset_secs: Some(120),
                ..Fault::status(403)
            },
        );
        let pr = h.push_pr(
            41,
            None,
            &[file(super::NEW, &manifest("orders-preview", "small"))],
        );
        let id = h.send_pr(&pr).await;
        common::eventually("put back for the rate limit", async || {
            let d: serde_json::Value = h
                .client
                .get(format!("{}/api/v1/deliveries/{id}", h.url()))
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
            (d["state"] == "pending"
                && d["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("rate limit")))
            .then_some(())
        })
        .await;
        // One request met the limit, and nothing was sent after it.
        let sent = h.github.requests().len();
        assert_eq!(sent, 1, "{:#?}", h.github.requests());
    }
}
