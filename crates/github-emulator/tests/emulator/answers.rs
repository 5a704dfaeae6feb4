//! Every answer validates against its schema; pulls, shutdown, the OAuth web flow.

use super::writes::app_jwt;
use super::*;

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
        .filter(|id| {
            !ANSWERED_IN_WRITES.contains(&id.as_str()) && !ANSWERED_IN_APPS.contains(&id.as_str())
        })
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
