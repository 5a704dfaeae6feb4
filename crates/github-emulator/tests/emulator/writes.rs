//! App tokens, comments, injected faults, waiting on changes, deployments.

use super::*;

pub(crate) fn b64url(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub(crate) fn app_jwt(exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64url(
        json!({"iat": now - 60, "exp": now + exp_in, "iss": "1"})
            .to_string()
            .as_bytes(),
    );
    format!("Bearer {header}.{claims}.c2lnbmF0dXJl")
}

#[tokio::test]
async fn installation_tokens_need_an_app_jwt_and_can_be_required() {
    let emu = Emulator::start_with(EmulatorConfig {
        require_issued_token: true,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let mut c = Client::new(&emu);
    let r = c
        .call("POST", "/app/installations/42/access_tokens", None)
        .await;
    assert_eq!(r.status, 401, "an installation token is not an app JWT");
    c.token = Some(app_jwt(3600));
    let r = c
        .call("POST", "/app/installations/42/access_tokens", None)
        .await;
    assert_eq!(r.status, 401, "exp more than 10 minutes ahead");
    assert!(
        r.message().contains("too far in the future"),
        "{}",
        r.message()
    );
    c.token = Some(app_jwt(540));
    let r = c
        .call(
            "POST",
            "/app/installations/42/access_tokens",
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_schema(
        "apps/create-installation-access-token",
        &r,
        "application/json",
    );
    let token = r.body["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("ghs_"));
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().expect("expires_at"))
            .expect("RFC 3339");
    let ahead = expires.timestamp() - chrono::Utc::now().timestamp();
    assert!((3500..=3600).contains(&ahead), "expires {ahead}s ahead");
    assert_eq!(emu.tokens()[0].installation_id, 42);

    // Only issued, unexpired tokens open the repository endpoints.
    c.token = Some("token ghs_madeup".to_string());
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 401);
    c.token = Some(format!("token {token}"));
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        emu.requests().last().and_then(|r| r.token.clone()),
        Some(token.clone())
    );
    emu.expire_tokens();
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.message(), "Bad credentials");
}

#[tokio::test]
async fn comments_are_created_updated_and_listed_with_pagination() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    let other = emu.add_comment(REPO, 7, "alice", "/paved recheck");
    let mut ids = vec![other.id];
    for i in 0..4 {
        let r = c
            .call(
                "POST",
                &format!("/repos/{REPO}/issues/7/comments"),
                Some(json!({"body": format!("comment {i}")})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_schema("issues/create-comment", &r, "application/json");
        assert_eq!(r.body["user"]["login"], "paved[bot]");
        assert_eq!(r.body["user"]["type"], "Bot");
        assert_eq!(r.header("location").as_deref(), r.body["url"].as_str());
        ids.push(r.body["id"].as_u64().expect("id"));
    }
    // A comment on another issue does not show up.
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/issues/8/comments"),
            Some(json!({"body": "elsewhere"})),
        )
        .await;
    assert_eq!(r.status, 201);

    // Edit the second bot comment.
    let edited = ids[2];
    let r = c
        .call(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/{edited}"),
            Some(json!({"body": "edited"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_schema("issues/update-comment", &r, "application/json");
    assert_eq!(r.body["body"], "edited");
    assert_eq!(r.body["id"], edited);

    // Page through with per_page=2, following the Link header like a client would.
    let mut seen = Vec::new();
    let mut next = Some(format!(
        "{}/repos/{REPO}/issues/7/comments?per_page=2",
        emu.url()
    ));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let path = url
            .strip_prefix(&emu.url())
            .expect("link under the emulator")
            .to_string();
        let r = c.call("GET", &path, None).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_schema("issues/list-comments", &r, "application/json");
        pages += 1;
        let link = r.header("link").expect("several pages have a Link header");
        if pages == 1 {
            assert!(link.contains("rel=\"last\""), "{link}");
            assert!(link.contains("page=3"), "{link}");
            assert!(!link.contains("rel=\"prev\""), "{link}");
        }
        for item in r.body.as_array().expect("array") {
            seen.push((
                item["id"].as_u64().expect("id"),
                item["body"].as_str().unwrap_or("").to_string(),
            ));
        }
        next = link
            .split(", ")
            .find(|l| l.ends_with("rel=\"next\""))
            .map(|l| {
                l.split(';')
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_string()
            });
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    assert_eq!(seen[2].1, "edited");
    assert_eq!(seen[0].1, "/paved recheck");

    // Page beyond the end: empty, with prev/first links.
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/7/comments?per_page=2&page=3"),
            None,
        )
        .await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    let link = r.header("link").expect("link");
    assert!(
        link.contains("rel=\"prev\"")
            && link.contains("rel=\"first\"")
            && !link.contains("rel=\"next\""),
        "{link}"
    );
    // One page: no Link header.
    let r = c
        .call("GET", &format!("/repos/{REPO}/issues/8/comments"), None)
        .await;
    assert!(r.header("link").is_none());
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));

    let stored = emu.comments(REPO, 7);
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[2].edits, 1);
    assert_eq!(stored[0].user, "alice");

    // Editing a comment that does not exist: 404, counted as not found, not rejected.
    let r = c
        .call(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/999999"),
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(emu.requests_with(Outcome::NotFound).len(), 1);
    assert!(emu.rejected().is_empty(), "{:#?}", emu.rejected());
    assert_nothing_wrong(&emu);
}

#[tokio::test]
async fn injected_faults_answer_then_recover() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    emu.fail_next_with(2, 503, Some(0));
    for _ in 0..2 {
        let r = c
            .call(
                "POST",
                &status_path(REPO, SHA),
                Some(json!({"state": "success"})),
            )
            .await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after").as_deref(), Some("0"));
    }
    assert!(emu.statuses(REPO, SHA).is_empty(), "faults change nothing");
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(emu.statuses(REPO, SHA).len(), 1);

    emu.fail_next(1, 403);
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 403);
    assert!(
        r.message().contains("secondary rate limit"),
        "{}",
        r.message()
    );
    assert!(r.header("retry-after").is_none());

    // A fault for one operation lets the others through.
    emu.inject(
        1,
        Fault {
            status: 429,
            retry_after_secs: Some(0),
            operation_id: Some("issues/create-comment".to_string()),
            ..Fault::default()
        },
    );
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(emu.pending_faults(), 1);
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/issues/1/comments"),
            Some(json!({"body": "hi"})),
        )
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(emu.pending_faults(), 0);

    // A primary rate limit carries x-ratelimit-remaining: 0 and a reset time.
    emu.inject(
        1,
        Fault {
            status: 403,
            rate_limit_reset_secs: Some(1),
            ..Fault::default()
        },
    );
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    assert!(r.header("x-ratelimit-reset").is_some());

    assert_eq!(emu.requests_with(Outcome::Injected).len(), 5);
    assert!(
        emu.rejected().is_empty(),
        "injected faults are not rejections"
    );
    assert!(emu.comments(REPO, 1).is_empty());
}

#[tokio::test]
async fn wait_until_wakes_on_changes_and_times_out_clearly() {
    let emu = emulator::start().await.expect("emulator starts");
    let poster = {
        let emu = emu.clone();
        tokio::spawn(async move {
            let c = Client::new(&emu);
            c.call(
                "POST",
                &status_path(REPO, SHA),
                Some(json!({"state": "pending", "context": "paved/plan"})),
            )
            .await
            .status
        })
    };
    emu.wait_until(Duration::from_secs(10), "a paved/plan status", |e| {
        e.latest_statuses(REPO, SHA).contains_key("paved/plan")
    })
    .await
    .expect("the status arrives");
    assert_eq!(poster.await.expect("task"), 201);

    let err = emu
        .wait_until(
            Duration::from_millis(50),
            "a comment that never comes",
            |e| !e.comments(REPO, 1).is_empty(),
        )
        .await
        .expect_err("times out");
    let msg = err.to_string();
    assert!(msg.contains("a comment that never comes"), "{msg}");
    assert!(
        msg.contains("POST /repos/octo-org/environments/statuses"),
        "{msg}"
    );
}

#[tokio::test]
async fn deployments_follow_required_contexts_and_auto_inactive() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    emu.add_status(REPO, SHA, "pending", "ci/build", "octocat");
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments"),
            Some(json!({"ref": SHA, "environment": "payments/checkout"})),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "GitHub refuses while a context is not success: {:?}",
        r.body
    );
    assert_eq!(emu.requests_with(Outcome::Conflict).len(), 1);
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments"),
            Some(json!({"ref": "feature"})),
        )
        .await;
    assert_eq!(r.status, 422, "unknown ref");

    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = c
            .call(
                "POST",
                &format!("/repos/{REPO}/deployments"),
                Some(json!({
                    "ref": SHA, "environment": "payments/checkout", "required_contexts": [],
                    "auto_merge": false, "payload": {"env": "checkout"}, "description": "Paved provision",
                    "production_environment": false
                })),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_schema("repos/create-deployment", &r, "application/json");
        assert_eq!(r.body["environment"], "payments/checkout");
        ids.push(r.body["id"].as_u64().expect("id"));
    }
    for (id, states) in [
        (ids[0], ["in_progress", "success"]),
        (ids[1], ["in_progress", "success"]),
    ] {
        for state in states {
            let r = c
                .call(
                    "POST",
                    &format!("/repos/{REPO}/deployments/{id}/statuses"),
                    Some(json!({"state": state, "environment_url": "https://checkout.example", "log_url": "https://paved.example/runs/1", "description": "ok"})),
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            assert_schema("repos/create-deployment-status", &r, "application/json");
        }
    }
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments/999999/statuses"),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments/{}/statuses", ids[0]),
            Some(json!({"state": "done"})),
        )
        .await;
    assert_eq!(r.status, 400);

    let deployments = emu.deployments(REPO);
    assert_eq!(deployments.len(), 2);
    let first: Vec<&str> = deployments[0]
        .statuses
        .iter()
        .map(|s| s.state.as_str())
        .collect();
    assert_eq!(
        first,
        ["in_progress", "success", "inactive"],
        "auto_inactive"
    );
    assert!(deployments[0].statuses[2].automatic);
    let second: Vec<&str> = deployments[1]
        .statuses
        .iter()
        .map(|s| s.state.as_str())
        .collect();
    assert_eq!(second, ["in_progress", "success"]);
    assert_eq!(
        deployments[1].statuses[1].environment_url,
        "https://checkout.example"
    );
    assert_eq!(emu.rejected().len(), 2);
    assert_nothing_wrong(&emu);
}
