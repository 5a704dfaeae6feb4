//! `/api/v1/openapi.json` against the real server: it answers without an identity, lists
//! every route the API reference (`docs/api.md`) documents and every route the server answers, and every answer
//! the server gives (successes and refusals, from every route) validates against the
//! schema the document gives for that route and status, with unlisted properties refused.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use common::{REPO, SECRET};
use github_emulator::schema::{validate_with, Options};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const OCTOCAT: &str = "gho_octocat_openapi";
const SEARCHER: &str = "gho_searcher_openapi";

/// One answer the server gave.
struct Answer {
    method: &'static str,
    path: String,
    status: u16,
    content_type: String,
    body: String,
}

/// A body, with the headers sent beside it.
type Body<'a> = (Vec<u8>, Vec<(&'a str, String)>);

struct Client<'a> {
    e: &'a Env,
    seen: Vec<Answer>,
}

impl Client<'_> {
    async fn call(
        &mut self,
        method: &'static str,
        path: &str,
        token: Option<&str>,
        body: Option<Body<'_>>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.e.h.url());
        let http = reqwest::Client::new();
        let mut req = match method {
            "GET" => http.get(url),
            "POST" => http.post(url),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((bytes, headers)) = body {
            req = req.header("content-type", "application/json").body(bytes);
            for (k, v) in headers {
                req = req.header(k, v);
            }
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = r.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.seen.push(Answer {
            method,
            path: path.to_string(),
            status,
            content_type,
            body,
        });
        (status, json)
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    async fn post_json(&mut self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        self.call("POST", path, Some(token), Some((bytes, vec![])))
            .await
    }

    async fn webhook(&mut self, event: &str, delivery: &str, body: &[u8], sig: String) -> u16 {
        let headers = vec![
            ("x-github-event", event.to_string()),
            ("x-github-delivery", delivery.to_string()),
            ("x-hub-signature-256", sig),
        ];
        self.call(
            "POST",
            "/webhooks/github",
            None,
            Some((body.to_vec(), headers)),
        )
        .await
        .0
    }
}

/// `schema` with every `#/components/schemas/…` reference replaced by its target.
fn resolve(doc: &Value, schema: &Value, depth: usize) -> Value {
    assert!(depth < 32, "a $ref cycle");
    match schema {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("a $ref outside the components: {r}"));
                let target = &doc["components"]["schemas"][name];
                assert!(!target.is_null(), "unresolved $ref {r}");
                return resolve(doc, target, depth + 1);
            }
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), resolve(doc, v, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(doc, v, depth + 1)).collect()),
        other => other.clone(),
    }
}

/// The document's path template that `path` is an instance of (parameters are one
/// segment each; a query is not part of the path).
fn template_of<'d>(doc: &'d Value, path: &str) -> Option<&'d str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.keys().find_map(|t| {
        let ts: Vec<&str> = t.split('/').collect();
        let fits = ts.len() == segments.len()
            && ts
                .iter()
                .zip(&segments)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        fits.then_some(t.as_str())
    })
}

/// Checks one answer against the document; returns the (template, method) it exercised.
fn check(doc: &Value, a: &Answer) -> (String, String) {
    let template = template_of(doc, &a.path)
        .unwrap_or_else(|| panic!("{} {} is not in the document", a.method, a.path));
    let method = a.method.to_ascii_lowercase();
    let op = &doc["paths"][template][&method];
    assert!(
        op.is_object(),
        "{} {template} is not in the document",
        a.method
    );
    let response = &op["responses"][a.status.to_string()];
    assert!(
        response.is_object(),
        "{} {} answered {}, which the document does not list: {}",
        a.method,
        a.path,
        a.status,
        a.body
    );
    let content = response["content"].as_object().expect("content");
    let media = a.content_type.split(';').next().unwrap_or_default().trim();
    let schema = &content.get(media).unwrap_or_else(|| {
        panic!(
            "{} {} answered {media}, the document says {:?}",
            a.method,
            a.path,
            content.keys().collect::<Vec<_>>()
        )
    })["schema"];
    let value = if media.ends_with("json") {
        serde_json::from_str(&a.body).expect("a JSON answer")
    } else {
        Value::String(a.body.clone())
    };
    let schema = resolve(doc, schema, 0);
    let strict = Options {
        deny_unlisted_properties: true,
    };
    if let Err(errors) = validate_with(&schema, &value, strict) {
        panic!(
            "{} {} ({}) does not match the document: {errors:?}\n{}",
            a.method, a.path, a.status, a.body
        );
    }
    (template.to_string(), method)
}

/// The routes the API reference's tables document (`docs/api.md`): `` `GET /api/v1/…` `` at
/// the start of a table row.
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("docs/api.md");
    let mut out = BTreeSet::new();
    for line in readme.lines() {
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((route, _)) = rest.split_once('`') else {
            continue;
        };
        let Some((method, path)) = route.split_once(' ') else {
            continue;
        };
        if ["GET", "POST"].contains(&method) && path.starts_with('/') {
            let path = path.split('?').next().unwrap_or(path);
            out.insert((method.to_ascii_lowercase(), path.to_string()));
        }
    }
    out
}

fn create(name: &str, mode: &str) -> Value {
    let expires = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    json!({
        "repository": REPO, "action": "create", "environment": name, "team": "payments",
        "type": "quick", "template": "recorder", "parameters": {"mode": mode},
        "expiresAt": expires, "tags": {"cost-center": "cc-1234"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_every_route_and_every_answer_validates_against_it() {
    let mut e = Env::prepare_platform(common::recorder::with_search_team, |c, git| {
        c.git_root = Some(git.to_path_buf())
    })
    .await
    .run_with(|_| {})
    .await;
    e.h.allow_unknown_tokens();
    e.h.github.add_user_token(OCTOCAT, "octocat");
    e.h.github.add_user_token(SEARCHER, "searcher");
    let service = Some(paved_testkit::SERVICE_TOKEN);
    let octocat = Some(OCTOCAT);

    // Something of each kind to answer with: a run, a delivery, a merge, an operation.
    let pr = e.open(&add("orders-preview", "ok"));
    e.h.send_pr(&pr).await;
    let verdicts = e.h.verdicts(&pr.head_sha, 1).await;
    let run = verdicts
        .values()
        .find_map(|s| s.target_url.clone())
        .expect("a status links its run");
    let run = run.rsplit('/').next().expect("run id").to_string();
    let (merge, delivery) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let op = e.operations(&merge).await[0]["id"].as_i64().expect("id");

    let mut c = Client {
        e: &e,
        seen: Vec::new(),
    };
    // The document itself answers without an identity.
    let (status, doc) = c.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Paved");

    // Every route, with what it answers.
    let r = REPO;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        assert_eq!(c.get(path, None).await.0, 200, "{path}");
    }
    assert_eq!(c.get("/api/v1/me", None).await.0, 401);
    assert_eq!(c.get("/api/v1/me", Some("gho_unknown")).await.0, 401);
    assert_eq!(c.get("/api/v1/me", octocat).await.0, 200);
    assert_eq!(c.get("/api/v1/me", service).await.0, 200);
    assert_eq!(c.get(&format!("/api/v1/runs/{run}"), octocat).await.0, 200);
    assert_eq!(c.get("/api/v1/runs/x", octocat).await.0, 400);
    assert_eq!(c.get("/api/v1/runs/98765", octocat).await.0, 404);
    let d = format!("/api/v1/deliveries/{delivery}");
    assert_eq!(c.get(&d, service).await.0, 200);
    assert_eq!(c.get(&d, octocat).await.0, 404);
    assert_eq!(c.get("/api/v1/environments", octocat).await.0, 200);
    let envs = format!("/api/v1/repos/{r}/environments");
    assert_eq!(c.get(&envs, octocat).await.0, 200);
    assert_eq!(
        c.get(&format!("{envs}/orders-preview"), octocat).await.0,
        200
    );
    assert_eq!(c.get(&format!("{envs}/nope"), octocat).await.0, 404);
    let reconcile = |name: &str| format!("{envs}/{name}/reconcile");
    let (status, queued) = c
        .post_json(&reconcile("orders-preview"), OCTOCAT, &json!({}))
        .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["asked_by"], "octocat");
    assert_eq!(
        c.post_json(&reconcile("nope"), OCTOCAT, &json!({})).await.0,
        404
    );
    assert_eq!(
        c.post_json(
            &reconcile("orders-preview"),
            paved_testkit::SERVICE_TOKEN,
            &json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        c.post_json(
            "/api/v1/repos/a..b/c d/environments/x/reconcile",
            OCTOCAT,
            &json!({})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        c.get("/api/v1/repos/a..b/c d/environments", octocat)
            .await
            .0,
        400
    );
    let merges = format!("/api/v1/repos/{r}/merges/{merge}");
    assert_eq!(c.get(&merges, octocat).await.0, 200);
    assert_eq!(
        c.get(&format!("/api/v1/repos/{r}/merges/abc"), octocat)
            .await
            .0,
        400
    );
    assert_eq!(
        c.get(&format!("/api/v1/operations/{op}"), octocat).await.0,
        200
    );
    assert_eq!(c.get("/api/v1/operations/98765", octocat).await.0, 404);
    assert_eq!(c.get("/api/v1/templates", octocat).await.0, 200);
    assert_eq!(
        c.get("/api/v1/templates?repository=x", octocat).await.0,
        400
    );
    let (status, page) = c.get("/api/v1/entities?per_page=2", octocat).await;
    assert_eq!(status, 200);
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    assert_eq!(
        c.get("/api/v1/entities?kind=environment", octocat).await.0,
        200
    );
    assert_eq!(c.get("/api/v1/entities?kind=planet", octocat).await.0, 400);
    // An id is one path parameter: a generic client encodes its slashes.
    let id = format!(
        "environment:{}",
        format!("{r}/orders-preview").replace('/', "%2F")
    );
    let (status, one) = c.get(&format!("/api/v1/entities/{id}"), octocat).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["entity"]["name"], "orders-preview");
    assert_eq!(
        c.get("/api/v1/entities/environment:nope", octocat).await.0,
        404
    );
    assert_eq!(c.get("/api/v1/graph", octocat).await.0, 200);
    assert_eq!(
        c.get("/api/v1/backstage/entities.yaml", octocat).await.0,
        200
    );
    assert_eq!(c.get("/schemas/environment.json", octocat).await.0, 200);
    assert_eq!(c.get("/schemas/nope.json", octocat).await.0, 404);

    // Requests: opened, followed, and each refusal.
    let (status, opened) = c
        .post_json("/api/v1/requests", OCTOCAT, &create("cart-preview", "ok"))
        .await;
    assert_eq!(status, 201, "{opened}");
    let id = opened["id"].as_i64().expect("id");
    let (status, shown) = c.get(&format!("/api/v1/requests/{id}"), octocat).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(c.get("/api/v1/requests/98765", octocat).await.0, 404);
    let (status, conflict) = c
        .post_json("/api/v1/requests", OCTOCAT, &create("cart-preview", "ok"))
        .await;
    assert_eq!(status, 409);
    assert!(conflict["pullRequest"].is_string(), "{conflict}");
    let mut bad = create("cart-two", "ok");
    bad["parameters"] = json!({"mode": 7});
    let (status, refused) = c.post_json("/api/v1/requests", OCTOCAT, &bad).await;
    assert_eq!(status, 422);
    assert!(!refused["errors"].as_array().expect("errors").is_empty());
    assert_eq!(
        c.post_json("/api/v1/requests", SEARCHER, &create("cart-three", "ok"))
            .await
            .0,
        403
    );
    assert_eq!(
        c.post_json("/api/v1/requests", OCTOCAT, &json!({"nope": 1}))
            .await
            .0,
        400
    );
    let mut elsewhere = create("cart-four", "ok");
    elsewhere["repository"] = json!("acme/elsewhere");
    assert_eq!(
        c.post_json("/api/v1/requests", OCTOCAT, &elsewhere).await.0,
        404
    );

    // The webhook: stored, redelivered, ignored, refused.
    let body = paved_testkit::pull_request_payload(&pr).expect("payload");
    let sig = paved_testkit::sign(SECRET, &body);
    let delivery = "00000000-0000-4000-8000-00000000f00d";
    assert_eq!(
        c.webhook("pull_request", delivery, &body, sig.clone())
            .await,
        202
    );
    assert_eq!(c.webhook("pull_request", delivery, &body, sig).await, 200);
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let sig = paved_testkit::sign(SECRET, ping);
    assert_eq!(
        c.webhook("ping", "00000000-0000-4000-8000-00000000beef", ping, sig)
            .await,
        200
    );
    assert_eq!(c.webhook("ping", "x", ping, "sha256=00".into()).await, 401);

    // Every answer validates; every operation of the document was exercised.
    let doc = {
        let a = c.seen.first().expect("the document");
        serde_json::from_str::<Value>(&a.body).expect("json")
    };
    let mut exercised: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for a in &c.seen {
        let (t, m) = check(&doc, a);
        exercised.entry((m, t)).or_default().insert(a.status);
    }
    let mut in_doc = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            in_doc.insert((method.clone(), path.clone()));
        }
    }
    let answered: BTreeSet<_> = exercised.keys().cloned().collect();
    assert_eq!(
        in_doc, answered,
        "the document's routes and the routes the server answered differ"
    );
    for ((m, t), statuses) in &exercised {
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{m} {t}: only refusals were exercised"
        );
    }
    // The API reference's route table and the document list the same routes.
    assert_eq!(
        readme_routes(),
        in_doc,
        "docs/api.md and the document differ"
    );

    // The check bites: an answer with a property the type does not have is refused.
    let mut me: Value = c
        .seen
        .iter()
        .find(|a| a.path == "/api/v1/me" && a.status == 200)
        .map(|a| serde_json::from_str(&a.body).expect("json"))
        .expect("me");
    me["secret"] = json!("x");
    let schema = resolve(
        &doc,
        &doc["paths"]["/api/v1/me"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"],
        0,
    );
    let strict = Options {
        deny_unlisted_properties: true,
    };
    assert!(validate_with(&schema, &me, strict).is_err());
    me.as_object_mut().expect("object").remove("secret");
    me["kind"] = json!("robot");
    assert!(validate_with(&schema, &me, strict).is_err());
}
