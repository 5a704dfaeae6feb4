//! Every refusal is problem details (RFC 9457, `application/problem+json`), whoever makes
//! it: Paved's handlers, axum's extractors, the router (unknown path, wrong method), the
//! parameter rules and the webhook's body limit. A client reads each the same way: `type`,
//! `title`, `status`, `detail`, the field at fault where there is one, and the headers that
//! say what to do next (`Allow`, `WWW-Authenticate`).

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::Harness;
use serde_json::Value;

const MEMBER: &str = "gho_octocat_problems";

/// Sends `req` and returns the status, the `Allow` header and the problem it answered,
/// checking its shape.
async fn problem(req: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let media = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let allow = r
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.expect("body");
    assert_eq!(media, "application/problem+json", "{status}: {text}");
    let p: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(p["type"], "about:blank", "{p}");
    assert_eq!(p["status"], status, "{p}");
    let reason = reqwest::StatusCode::from_u16(status)
        .expect("status")
        .canonical_reason()
        .expect("reason");
    assert_eq!(p["title"], reason, "{p}");
    assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    assert_eq!(p["error"], p["detail"], "{p}");
    (status, allow, p)
}

/// Writes `request` to the server at `url` and reads the answer until the server closes or
/// a whole answer with its body is in.
async fn raw_request(url: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    common::eventually("the whole answer", async || {
        let n = tokio::time::timeout(common::DEADLINE, s.read(&mut buf))
            .await
            .expect("the server answered within the deadline")
            .unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let whole = text.contains("\r\n\r\n") && text.trim_end().ends_with('}');
        (n == 0 || whole).then_some(())
    })
    .await;
    String::from_utf8_lossy(&got).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_problem_details() {
    let h = Harness::start().await;
    h.github.add_user_token(MEMBER, "octocat");
    let url = h.url();
    // A client of its own: the harness's sends the service token with every request.
    let client = reqwest::Client::new();
    let c = &client;

    // No identity.
    let (status, _, p) = problem(c.get(format!("{url}/api/v1/me"))).await;
    assert_eq!(status, 401, "{p}");

    // A path no route serves, with and without an identity.
    let (status, _, p) = problem(
        c.get(format!("{url}/api/v1/nothing-here"))
            .bearer_auth(MEMBER),
    )
    .await;
    assert_eq!(status, 404, "{p}");
    let (status, _, _) = problem(c.get(format!("{url}/api/v2/environments"))).await;
    assert_eq!(status, 404);

    // A method the route does not take: 405 with the methods it does.
    let (status, allow, p) =
        problem(c.delete(format!("{url}/api/v1/me")).bearer_auth(MEMBER)).await;
    assert_eq!(status, 405, "{p}");
    assert_eq!(allow.as_deref(), Some("GET,HEAD"), "{p}");
    let (status, allow, _) = problem(c.get(format!("{url}/webhooks/github"))).await;
    assert_eq!(status, 405);
    assert_eq!(allow.as_deref(), Some("POST"));

    // Parameters against their rules: the parameter named.
    for (query, field, detail) in [
        ("per_page=0", "per_page", "per_page: an integer from 1 to 100"),
        ("per_page=101", "per_page", "per_page: an integer from 1 to 100"),
        ("per_page=ten", "per_page", "per_page: an integer from 1 to 100"),
        ("page=0", "page", "page: an integer from 1 to 100000"),
        ("kind=planet", "kind", "kind: one of repository, team, user, environmentType, template, environment, operation"),
        ("team=Payments", "team", "team: lower-case letters, digits and '-', starting and ending with a letter or digit, 1 to 63 characters"),
        ("repository=no-slash", "repository", "repository: owner/name, as GitHub spells a repository, 3 to 201 characters"),
    ] {
        let (status, _, p) =
            problem(c.get(format!("{url}/api/v1/entities?{query}")).bearer_auth(MEMBER)).await;
        assert_eq!(status, 400, "{query}: {p}");
        assert_eq!(p["detail"], detail, "{query}");
        assert_eq!(p["errors"][0]["field"], field, "{query}");
    }
    let (status, _, p) = problem(
        c.get(format!(
            "{url}/api/v1/repos/octo-org/envs/environments/Not_A_Name"
        ))
        .bearer_auth(MEMBER),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(p["errors"][0]["field"], "name");

    // Bodies axum's extractor refuses: not JSON, not a request, no content type.
    for (content_type, body) in [
        ("application/json", "{"),
        (
            "application/json",
            r#"{"repository":"octo-org/envs","action":"paint","environment":"web"}"#,
        ),
        ("text/plain", "hello"),
    ] {
        let (status, _, p) = problem(
            c.post(format!("{url}/api/v1/requests"))
                .bearer_auth(MEMBER)
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {p}");
    }

    // The webhook: no signature, a body over 25 MiB (refused before it is read).
    let (status, _, p) = problem(
        c.post(format!("{url}/webhooks/github"))
            .header("x-github-event", "ping")
            .header("x-github-delivery", "problem-1")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 401, "{p}");
    // Over 25 MiB by its Content-Length: refused before a byte of it is read. Sent by hand,
    // headers only, so the refusal is read whole (a client still writing the body would
    // find the connection closed under it).
    let answer = raw_request(
        &url,
        "POST /webhooks/github HTTP/1.1\r\nHost: paved\r\nX-GitHub-Event: ping\r\n\
         X-GitHub-Delivery: problem-2\r\nX-Hub-Signature-256: sha256=00\r\n\
         Content-Length: 27262976\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(answer.contains("\"status\":413"), "{answer}");

    // The portal's pages stay HTML.
    let page = c
        .get(format!("{url}/no-such-page"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 404);
    assert_ne!(
        page.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
}
