//! What a request must be: schema, bodies, parameters, authentication.

use super::*;

#[tokio::test]
async fn valid_statuses_are_stored_and_combined() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    for (state, context) in [
        ("success", "paved/schema"),
        ("pending", "paved/policy"),
        ("success", "paved/policy"),
    ] {
        let r = c
            .call(
                "POST",
                &status_path(REPO, SHA),
                Some(json!({"state": state, "context": context, "description": "why", "target_url": "https://paved.example/runs/1"})),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_schema("repos/create-commit-status", &r, "application/json");
        assert_eq!(r.body["state"], state);
        assert_eq!(r.body["context"], context);
        assert_eq!(r.body["creator"]["login"], "paved[bot]");
        assert!(r.header("location").is_some_and(|l| l.ends_with(SHA)));
    }
    let all = emu.statuses(REPO, SHA);
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "creation order");
    let latest = emu.latest_statuses(REPO, SHA);
    assert_eq!(latest.len(), 2);
    assert_eq!(latest["paved/policy"].state, "success");
    assert_eq!(emu.status_posts_count(), 3);

    let r = c
        .call("GET", &format!("/repos/{REPO}/commits/{SHA}/status"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_schema("repos/get-combined-status-for-ref", &r, "application/json");
    assert_eq!(r.body["state"], "success");
    assert_eq!(r.body["total_count"], 2);
    assert_eq!(r.body["sha"], SHA);
    assert_eq!(r.body["repository"]["full_name"], REPO);

    // A failure in any context makes the combined state a failure; contexts are
    // case-insensitive, so this replaces paved/schema.
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "failure", "context": "Paved/Schema"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = c
        .call("GET", &format!("/repos/{REPO}/commits/{SHA}/status"), None)
        .await;
    assert_eq!(r.body["state"], "failure");
    assert_eq!(r.body["total_count"], 2);
    assert_eq!(emu.combined_state(REPO, SHA), "failure");

    // No statuses: pending. Refs resolve through set_ref.
    emu.set_ref(REPO, "main", SHA2);
    let r = c
        .call("GET", &format!("/repos/{REPO}/commits/main/status"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "pending");
    assert_eq!(r.body["sha"], SHA2);

    // Repositories are case-insensitive.
    assert_eq!(emu.statuses("Octo-Org/Environments", SHA).len(), 4);
    assert!(emu.rejected().is_empty(), "{:#?}", emu.rejected());
    assert_nothing_wrong(&emu);
}

#[tokio::test]
async fn a_status_with_an_unknown_state_is_rejected_and_not_stored() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "ok", "context": "paved/schema"})),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.message().contains("\"ok\" is not one of"),
        "{}",
        r.message()
    );
    assert!(r.body["documentation_url"].as_str().is_some());
    assert!(emu.statuses(REPO, SHA).is_empty());
    let rejected = emu.rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].status, 400);
    assert_eq!(
        rejected[0].operation_id.as_deref(),
        Some("repos/create-commit-status")
    );
    assert!(
        rejected[0]
            .reason
            .as_deref()
            .is_some_and(|m| m.contains("/state")),
        "{:?}",
        rejected[0].reason
    );
    assert_eq!(emu.status_posts_count(), 0);
}

#[tokio::test]
async fn bodies_are_required_parsed_and_validated() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    // Missing required field.
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"context": "paved/schema"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("missing required property \"state\""),
        "{}",
        r.message()
    );
    // No body at all.
    let r = c.raw("POST", &status_path(REPO, SHA), None, None).await;
    assert_eq!(r.status, 400);
    // Not JSON.
    let r = c
        .raw(
            "POST",
            &status_path(REPO, SHA),
            Some(b"{state: success".to_vec()),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.message(), "Problems parsing JSON");
    // Wrong type.
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/issues/1/comments"),
            Some(json!({"body": 5})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("/body: expected string"),
        "{}",
        r.message()
    );
    // Wrong type nested in an array.
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments"),
            Some(json!({"ref": SHA, "required_contexts": ["a", 1]})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("/required_contexts/1"),
        "{}",
        r.message()
    );
    assert_eq!(emu.rejected().len(), 5);
    assert!(emu.statuses(REPO, SHA).is_empty());
    assert!(emu.comments(REPO, 1).is_empty());
    assert!(emu.deployments(REPO).is_empty());
}

#[tokio::test]
async fn unknown_properties_and_parameters_are_rejected() {
    // No request body in the subset says `additionalProperties: false` at its top level
    // (checked by the assertion below), so GitHub's schema alone would accept unknown
    // properties. The
    // emulator's default pedantic mode rejects properties the schema does not list, which
    // catches misspelt fields GitHub would silently drop.
    for op in emulator::operations().expect("subset") {
        if let Some(schema) = op.request_schema() {
            assert!(
                schema["additionalProperties"] != false,
                "{} now has additionalProperties:false; test it directly",
                op.operation_id
            );
        }
    }
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success", "context": "c", "desription": "typo"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("unknown property \"desription\""),
        "{}",
        r.message()
    );
    assert!(emu.statuses(REPO, SHA).is_empty());

    // Path and query parameters must match their schemas.
    let r = c
        .call("GET", &format!("/repos/{REPO}/issues/abc/comments"), None)
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("issue_number"), "{}", r.message());
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/1/comments?per_page=lots"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/1/comments?since=yesterday"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/1/comments?sort=created"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.message().contains("unknown query parameter `sort`"),
        "{}",
        r.message()
    );
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/1/comments?page=1&page=2"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    // Unknown routes are GitHub's 404.
    let r = c
        .call("GET", &format!("/repos/{REPO}/issues/comments/1"), None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.message(), "Not Found");
    let r = c.call("GET", "/rate_limit", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(emu.rejected().len(), 8);

    // With the pedantic mode off, the emulator accepts what GitHub accepts.
    let lenient = Emulator::start_with(EmulatorConfig {
        deny_unlisted_properties: false,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let c = Client::new(&lenient);
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success", "desription": "typo"})),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(lenient.statuses(REPO, SHA)[0].context, "default");
}

#[tokio::test]
async fn github_semantic_validations_answer_422() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    let long = "x".repeat(141);
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success", "description": long})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["errors"][0]["message"],
        "description is too long (maximum is 140 characters)"
    );
    let r = c
        .call(
            "POST",
            &status_path(REPO, "main"),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.message(), "No commit found for SHA: main");
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/issues/3/comments"),
            Some(json!({"body": "y".repeat(65537)})),
        )
        .await;
    assert_eq!(r.status, 422);
    let exactly = "é".repeat(140);
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success", "description": exactly})),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "140 characters are fine even when they are 280 bytes"
    );
    assert_eq!(emu.rejected().len(), 3);
    assert_eq!(emu.statuses(REPO, SHA).len(), 1);
    assert!(emu.comments(REPO, 3).is_empty());
}

#[tokio::test]
async fn authentication_and_user_agent_are_required() {
    let emu = emulator::start().await.expect("emulator starts");
    let mut c = Client::new(&emu);
    c.token = None;
    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success"})),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.message(), "Requires authentication");
    c.token = Some("Basic dXNlcjpwYXNz".to_string());
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.message(), "Bad credentials");
    c.token = Some("Bearer ghs_abc".to_string());
    c.user_agent = false;
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 403);
    assert!(r.message().contains("User-Agent"), "{}", r.message());
    c.user_agent = true;
    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    assert_eq!(r.status, 200);
    assert_schema("repos/get", &r, "application/json");
    assert_eq!(r.body["full_name"], REPO);
    assert_eq!(r.body["default_branch"], "main");
    assert!(emu.statuses(REPO, SHA).is_empty());
    let rejected = emu.rejected();
    assert_eq!(rejected.len(), 3);
    assert_eq!(
        rejected[0].reason.as_deref(),
        Some("no Authorization header")
    );
}
