//! The GitHub emulator driven over real HTTP: strictness, state, pagination, faults, and
//! every answer checked against GitHub's published response schemas.

use std::time::Duration;

use github_emulator::schema;
use github_emulator::{self as emulator, Emulator, EmulatorConfig, EmulatorHandle, Fault, Outcome};
use serde_json::{json, Value};

const REPO: &str = "octo-org/environments";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const SHA2: &str = "e5bd3914e2e596debea16f433f57875b5b90bcd6";

/// The operations `tests/writes.rs` answers 2xx (it checks it exercises exactly these).
const ANSWERED_IN_WRITES: &[&str] = &[
    "pulls/list",
    "pulls/update",
    "issues/create",
    "issues/add-labels",
    "issues/update",
    "repos/get-collaborator-permission-level",
    "git/create-ref",
    "git/get-ref",
    "repos/create-or-update-file-contents",
    "repos/delete-file",
];

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A client that behaves like a correct GitHub client (User-Agent + token).
struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    user_agent: bool,
}

impl Client {
    fn new(emu: &EmulatorHandle) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: emu.url(),
            token: Some("token ghs_testtoken".to_string()),
            user_agent: true,
        }
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        accept: Option<&str>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, url);
        if self.user_agent {
            req = req.header("user-agent", "paved-tests");
        }
        if let Some(token) = &self.token {
            req = req.header("authorization", token);
        }
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request reaches the emulator");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()), None)
            .await
    }
}

/// Asserts a 2xx JSON answer validates against the operation's response schema.
fn assert_schema(operation_id: &str, reply: &Reply, media: &str) {
    let schema = emulator::response_schema(operation_id, reply.status, media)
        .unwrap_or_else(|| panic!("no schema for {operation_id} {}", reply.status));
    if let Err(errors) = schema::validate(schema, &reply.body) {
        panic!(
            "{operation_id} {} does not match its schema: {errors:#?}",
            reply.status
        );
    }
}

fn status_path(repo: &str, sha: &str) -> String {
    format!("/repos/{repo}/statuses/{sha}")
}

fn assert_nothing_wrong(emu: &EmulatorHandle) {
    assert!(
        emu.response_schema_violations().is_empty(),
        "{:#?}",
        emu.response_schema_violations()
    );
}

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

fn b64url(data: &[u8]) -> String {
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

fn app_jwt(exp_in: i64) -> String {
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

/// Every operation of the subset, answered 2xx, validated against its response schema.
#[tokio::test]
async fn every_successful_response_validates_against_its_schema() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    emu.set_pull(
        REPO,
        12,
        json!({"head": {"sha": SHA, "ref": "add-checkout"}, "base": {"sha": SHA2}, "user": {"login": "alice"}, "state": "open"}),
    )
    ;
    emu.set_pull_files(
        REPO,
        12,
        vec![
            json!({"filename": "environments/payments/checkout.yaml", "status": "added"}),
            json!({"filename": "environments/payments/old.yaml", "status": "removed"}),
        ],
    );
    emu.set_pull_reviews(
        REPO,
        12,
        vec![json!({"user": {"login": "bob"}, "state": "APPROVED", "commit_id": SHA})],
    );
    emu.set_content(REPO, "", ".paved/platform.yaml", b"teams: []\n");
    emu.set_content(REPO, "", ".paved/policies/a.rego", b"package a\n");
    emu.set_ref(REPO, "main", SHA2);

    let mut checked = std::collections::BTreeSet::new();
    let mut check = |op: &str, r: &Reply, media: &str| {
        assert!(
            (200..300).contains(&r.status),
            "{op}: {} {:?}",
            r.status,
            r.body
        );
        assert_schema(op, r, media);
        checked.insert(op.to_string());
    };

    let r = c
        .call(
            "POST",
            &status_path(REPO, SHA),
            Some(json!({"state": "success", "context": "paved/schema"})),
        )
        .await;
    check("repos/create-commit-status", &r, "application/json");
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/commits/{SHA}/status?per_page=1"),
            None,
        )
        .await;
    check("repos/get-combined-status-for-ref", &r, "application/json");

    let r = c
        .call("POST", &format!("/repos/{REPO}/check-runs"), Some(json!({"name": "paved", "head_sha": SHA, "status": "in_progress", "output": {"title": "t", "summary": "s"}})))
        .await;
    check("checks/create", &r, "application/json");
    let run = r.body["id"].as_u64().expect("id");
    let r = c
        .call(
            "PATCH",
            &format!("/repos/{REPO}/check-runs/{run}"),
            Some(json!({"status": "completed", "conclusion": "success"})),
        )
        .await;
    check("checks/update", &r, "application/json");
    assert_eq!(r.body["status"], "completed");
    let r = c
        .call(
            "PATCH",
            &format!("/repos/{REPO}/check-runs/{run}"),
            Some(json!({"status": "completed"})),
        )
        .await;
    assert_eq!(
        r.status, 400,
        "the request schema's anyOf: `completed` needs a `conclusion` in the body"
    );

    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/issues/12/comments"),
            Some(json!({"body": "summary"})),
        )
        .await;
    check("issues/create-comment", &r, "application/json");
    let comment = r.body["id"].as_u64().expect("id");
    let r = c
        .call(
            "PATCH",
            &format!("/repos/{REPO}/issues/comments/{comment}"),
            Some(json!({"body": "summary v2"})),
        )
        .await;
    check("issues/update-comment", &r, "application/json");
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/issues/12/comments?since=2000-01-01T00:00:00Z"),
            None,
        )
        .await;
    check("issues/list-comments", &r, "application/json");

    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments"),
            Some(json!({"ref": "main", "required_contexts": []})),
        )
        .await;
    check("repos/create-deployment", &r, "application/json");
    assert_eq!(r.body["sha"], SHA2);
    let dep = r.body["id"].as_u64().expect("id");
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments/{dep}/statuses"),
            Some(json!({"state": "in_progress"})),
        )
        .await;
    check("repos/create-deployment-status", &r, "application/json");
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/deployments?sha={SHA2}&environment=production&per_page=100"),
            None,
        )
        .await;
    check("repos/list-deployments", &r, "application/json");
    assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{:?}", r.body);
    assert_eq!(r.body[0]["id"], dep);
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/deployments?environment=elsewhere"),
            None,
        )
        .await;
    assert_eq!(r.body, json!([]));

    let r = c
        .call("GET", &format!("/repos/{REPO}/pulls/12"), None)
        .await;
    check("pulls/get", &r, "application/json");
    assert_eq!(r.body["head"]["sha"], SHA);
    assert_eq!(r.body["base"]["ref"], "main");
    assert_eq!(r.body["base"]["repo"]["full_name"], REPO);
    assert_eq!(r.body["user"]["login"], "alice");
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/pulls/12/files?per_page=1&page=2"),
            None,
        )
        .await;
    check("pulls/list-files", &r, "application/json");
    assert_eq!(r.body[0]["filename"], "environments/payments/old.yaml");
    let r = c
        .call("GET", &format!("/repos/{REPO}/pulls/12/reviews"), None)
        .await;
    check("pulls/list-reviews", &r, "application/json");
    assert_eq!(r.body[0]["user"]["login"], "bob");

    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/contents/.paved/platform.yaml"),
            None,
        )
        .await;
    check("repos/get-content", &r, "application/json");
    assert_eq!(r.body["type"], "file");
    assert_eq!(r.body["content"], "dGVhbXM6IFtdCg==\n");
    let r = c
        .raw(
            "GET",
            &format!("/repos/{REPO}/contents/.paved?ref=main"),
            None,
            None,
        )
        .await;
    check("repos/get-content", &r, "application/json");
    assert_eq!(r.body.as_array().map(Vec::len), Some(2), "{:?}", r.body);
    let r = c
        .raw(
            "GET",
            &format!("/repos/{REPO}/contents/.paved"),
            None,
            Some("application/vnd.github.object+json"),
        )
        .await;
    check("repos/get-content", &r, "application/vnd.github.object");
    assert_eq!(r.body["entries"].as_array().map(Vec::len), Some(2));
    let r = c
        .raw(
            "GET",
            &format!("/repos/{REPO}/contents/.paved/platform.yaml"),
            None,
            Some("application/vnd.github.raw+json"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Value::String("teams: []\n".to_string()));
    let r = c
        .raw(
            "GET",
            &format!("/repos/{REPO}/pulls/12"),
            None,
            Some("application/vnd.github.diff"),
        )
        .await;
    assert_eq!(
        r.status, 415,
        "unimplemented media types are refused, not ignored"
    );

    let mut app = Client::new(&emu);
    app.token = Some(app_jwt(540));
    let r = app
        .call(
            "POST",
            "/app/installations/7/access_tokens",
            Some(json!({"repositories": ["environments"], "permissions": {"statuses": "write"}})),
        )
        .await;
    check(
        "apps/create-installation-access-token",
        &r,
        "application/json",
    );
    assert_eq!(r.body["repository_selection"], "selected");

    let r = c.call("GET", &format!("/repos/{REPO}"), None).await;
    check("repos/get", &r, "application/json");

    // The pull requests of a commit: those merged as it, or whose head it is.
    let merged = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";
    emu.set_pull(
        REPO,
        41,
        json!({"state": "closed", "merged": true, "merged_at": "2026-12-01T10:00:00Z",
               "merge_commit_sha": merged}),
    );
    let r = c
        .call(
            "GET",
            &format!("/repos/{REPO}/commits/{merged}/pulls"),
            None,
        )
        .await;
    check(
        "repos/list-pull-requests-associated-with-commit",
        &r,
        "application/json",
    );
    assert_eq!(r.body[0]["number"], 41);
    let other = "0123456789abcdef0123456789abcdef01234567";
    let r = c
        .call("GET", &format!("/repos/{REPO}/commits/{other}/pulls"), None)
        .await;
    assert_eq!(r.body, json!([]));

    // A pull request opened through the API, from a branch into another.
    emu.set_ref(REPO, "refs/heads/feature-x", SHA2);
    emu.set_ref(REPO, "refs/heads/main", SHA);
    let r = c
        .call(
            "POST",
            &format!("/repos/{REPO}/pulls"),
            Some(json!({"title": "Add x", "head": "feature-x", "base": "main", "body": "why"})),
        )
        .await;
    check("pulls/create", &r, "application/json");
    assert_eq!(r.body["head"]["sha"], SHA2);
    assert_eq!(r.body["state"], "open");
    let again = c
        .call(
            "POST",
            &format!("/repos/{REPO}/pulls"),
            Some(json!({"title": "Add x", "head": "feature-x", "base": "main"})),
        )
        .await;
    assert_eq!(again.status, 422, "one open pull request per head");

    // People: the user a token belongs to, and a GitHub team's members.
    emu.add_user_token("gho_octocat", "octocat");
    let mut user = Client::new(&emu);
    user.token = Some("Bearer gho_octocat".to_string());
    let r = user.call("GET", "/user", None).await;
    check("users/get-authenticated", &r, "application/json");
    assert_eq!(r.body["login"], "octocat");
    emu.set_team_members("acme/search", &["octocat", "hubot"]);
    let r = c
        .call("GET", "/orgs/acme/teams/search/members?per_page=100", None)
        .await;
    check("teams/list-members-in-org", &r, "application/json");
    let logins: Vec<&str> = r
        .body
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["login"].as_str())
        .collect();
    assert_eq!(logins, ["octocat", "hubot"]);

    // Every operation of the subset is answered; the writes the orchestrator and the
    // lifecycle may make are answered in `tests/writes.rs` (named here so none is forgotten).
    let all: std::collections::BTreeSet<String> = emulator::operations()
        .expect("subset")
        .iter()
        .map(|op| op.operation_id.clone())
        .filter(|id| !ANSWERED_IN_WRITES.contains(&id.as_str()))
        .collect();
    assert_eq!(checked, all, "every operation answered 2xx at least once");
    assert_nothing_wrong(&emu);
    assert_eq!(emu.rejected().len(), 3, "{:#?}", emu.rejected());
}

#[tokio::test]
async fn missing_pulls_are_not_found_and_set_pull_checks_the_schema() {
    let emu = emulator::start().await.expect("emulator starts");
    let c = Client::new(&emu);
    let r = c.call("GET", &format!("/repos/{REPO}/pulls/5"), None).await;
    assert_eq!(r.status, 404);
    assert!(emu.rejected().is_empty());
    assert_eq!(emu.requests_with(Outcome::NotFound).len(), 1);
    let err = emu
        .try_set_pull(REPO, 5, json!({"state": 3}))
        .expect_err("schema");
    assert!(err.to_string().contains("/state"), "{err}");
    let stored = emu.set_pull(REPO, 5, json!({"merged": true, "merge_commit_sha": SHA}));
    assert_eq!(stored["number"], 5);
    assert_eq!(stored["base"]["repo"]["full_name"], REPO);
    let r = c.call("GET", &format!("/repos/{REPO}/pulls/5"), None).await;
    assert_eq!(r.body["merged"], true);
    // Files default to none once the pull exists.
    let r = c
        .call("GET", &format!("/repos/{REPO}/pulls/5/files"), None)
        .await;
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let emu = emulator::start().await.expect("emulator starts");
    let url = emu.url();
    let c = Client::new(&emu);
    assert_eq!(
        c.call("GET", &format!("/repos/{REPO}"), None).await.status,
        200
    );
    emu.shutdown().await;
    let fresh = reqwest::Client::new();
    let result = fresh
        .get(format!("{url}/repos/{REPO}"))
        .header("user-agent", "t")
        .send()
        .await;
    assert!(result.is_err(), "the emulator still answers after shutdown");
}

#[tokio::test]
async fn the_oauth_web_flow_signs_a_user_in() {
    let emu = emulator::start().await.expect("emulator starts");
    emu.register_oauth_app("Iv1.portal", "portal-secret-123");
    emu.sign_in_as("octocat");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authorize = |client: &str| {
        format!(
            "{}/login/oauth/authorize?client_id={client}&redirect_uri=http%3A%2F%2Fportal.test%2Foauth%2Fcallback&state=s-42",
            emu.url()
        )
    };
    // An unknown app is refused.
    let r = http
        .get(authorize("nobody"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status().as_u16(), 404);
    // The signed-in user authorizes: back to the portal with a code and the state.
    let r = http
        .get(authorize("Iv1.portal"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status().as_u16(), 302);
    let location =
        url::Url::parse(r.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(location.path(), "/oauth/callback");
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "s-42");
    let code = q["code"].clone();
    let exchange = |secret: &str, code: &str| {
        http.post(format!("{}/login/oauth/access_token", emu.url()))
            .header("accept", "application/json")
            .form(&[
                ("client_id", "Iv1.portal"),
                ("client_secret", secret),
                ("code", code),
                ("redirect_uri", "http://portal.test/oauth/callback"),
            ])
            .send()
    };
    let bad: Value = exchange("wrong", &code)
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(bad["error"], "incorrect_client_credentials");
    let ok: Value = exchange("portal-secret-123", &code)
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    let token = ok["access_token"].as_str().expect("token").to_string();
    assert!(token.starts_with("gho_"));
    // A code works once.
    let again: Value = exchange("portal-secret-123", &code)
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(again["error"], "bad_verification_code");
    // The token is the user's: GET /user says who.
    let mut user = Client::new(&emu);
    user.token = Some(format!("Bearer {token}"));
    let r = user.call("GET", "/user", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["login"], "octocat");
}
