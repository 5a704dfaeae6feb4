//! GitHub's App manifest flow, for `paved setup github`: a form posted to
//! `/settings/apps/new` (or `/organizations/{org}/settings/apps/new`) with a `manifest`
//! is answered, as if the signed-in user ([`EmulatorHandle::sign_in_as`]) had clicked
//! "Create GitHub App", with a redirect to the manifest's `redirect_url` carrying a one-time
//! `code` (and the `state` given); `POST /app-manifests/{code}/conversions` turns the code,
//! once and within an hour, into the App: its id, key, webhook secret and OAuth client.
//!
//! Strict as GitHub is: the manifest must be JSON with GitHub's keys only, URLs where URLs
//! go, known permissions at `read` or `write`, known events, and each event's permission
//! granted (`merge_group` needs `merge_queues`, `push` needs `contents`…). A refused
//! manifest gets a 422 page and no code. The App's private key is the one the test gave
//! ([`EmulatorConfig::manifest_app_key`]): the installation-token endpoint then takes only
//! JWTs signed with it for that App's id, and the App's OAuth client signs people in.

#![allow(clippy::wildcard_imports)]
use super::*;
use axum::extract::{Path, RawQuery};

/// The conversion's operation id.
pub(crate) const CONVERSION: &str = "apps/create-from-manifest";

/// A code is good for one hour, once (GitHub's docs).
const CODE_TTL_SECS: i64 = 3600;

const KEYS: &[&str] = &[
    "name",
    "url",
    "hook_attributes",
    "redirect_url",
    "callback_urls",
    "setup_url",
    "description",
    "public",
    "default_events",
    "default_permissions",
    "request_oauth_on_install",
    "setup_on_update",
];

const PERMISSIONS: &[&str] = &[
    "actions",
    "administration",
    "checks",
    "contents",
    "deployments",
    "environments",
    "issues",
    "members",
    "merge_queues",
    "metadata",
    "organization_administration",
    "organization_hooks",
    "organization_projects",
    "packages",
    "pages",
    "pull_requests",
    "repository_hooks",
    "repository_projects",
    "secrets",
    "security_events",
    "single_file",
    "statuses",
    "vulnerability_alerts",
    "workflows",
];

/// Events an App may subscribe to, each with the permissions of which it needs one.
const EVENTS: &[(&str, &[&str])] = &[
    ("check_run", &["checks"]),
    ("check_suite", &["checks"]),
    ("create", &["contents"]),
    ("delete", &["contents"]),
    ("deployment", &["deployments"]),
    ("deployment_status", &["deployments"]),
    ("issue_comment", &["issues", "pull_requests"]),
    ("issues", &["issues"]),
    ("label", &["metadata"]),
    ("member", &["members"]),
    ("membership", &["members"]),
    ("merge_group", &["merge_queues"]),
    ("public", &["metadata"]),
    ("pull_request", &["pull_requests"]),
    ("pull_request_review", &["pull_requests"]),
    ("pull_request_review_comment", &["pull_requests"]),
    ("push", &["contents"]),
    ("release", &["contents"]),
    ("repository", &["metadata"]),
    ("status", &["statuses"]),
    ("team", &["members"]),
    ("workflow_run", &["actions"]),
];

#[derive(Debug, Clone)]
pub(crate) struct PendingManifest {
    manifest: Value,
    owner: String,
    issued_at: DateTime<Utc>,
}

/// An App made through the manifest flow.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedApp {
    pub id: u64,
    pub slug: String,
    pub name: String,
    /// The user or organization that owns it.
    pub owner: String,
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: String,
    /// The manifest it was made from.
    pub manifest: Value,
    #[serde(skip)]
    pub(crate) public_key_pem: String,
}

fn is_web_url(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| url::Url::parse(s).ok())
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Why GitHub would refuse `m` as an App manifest (empty: it takes it).
pub(crate) fn manifest_problems(m: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = m.as_object() else {
        return vec!["the manifest is not a JSON object".into()];
    };
    for k in obj.keys() {
        if !KEYS.contains(&k.as_str()) {
            problems.push(format!("unknown key {k:?}"));
        }
    }
    if !is_web_url(&m["url"]) {
        problems.push("url: required, an http(s) URL".into());
    }
    match m.get("hook_attributes").and_then(Value::as_object) {
        Some(h) => {
            if !is_web_url(&m["hook_attributes"]["url"]) {
                problems.push("hook_attributes.url: required, an http(s) URL".into());
            }
            for k in h.keys() {
                if k != "url" && k != "active" {
                    problems.push(format!("hook_attributes: unknown key {k:?}"));
                }
            }
            if h.get("active").is_some_and(|a| !a.is_boolean()) {
                problems.push("hook_attributes.active: a boolean".into());
            }
        }
        None => problems.push("hook_attributes: required, with url".into()),
    }
    // Optional here on GitHub; this emulator's flow needs somewhere to send the code.
    if !is_web_url(&m["redirect_url"]) {
        problems.push("redirect_url: required by this emulator, an http(s) URL".into());
    }
    if m.get("setup_url").is_some() && !is_web_url(&m["setup_url"]) {
        problems.push("setup_url: an http(s) URL".into());
    }
    if let Some(c) = m.get("callback_urls") {
        match c.as_array() {
            Some(list) if list.len() <= 10 && list.iter().all(is_web_url) => {}
            _ => problems.push("callback_urls: at most 10 http(s) URLs".into()),
        }
    }
    if let Some(n) = m.get("name") {
        if !n
            .as_str()
            .is_some_and(|s| !s.trim().is_empty() && s.len() <= 34)
        {
            problems.push("name: 1 to 34 characters".into());
        }
    }
    for k in ["public", "request_oauth_on_install", "setup_on_update"] {
        if m.get(k).is_some_and(|v| !v.is_boolean()) {
            problems.push(format!("{k}: a boolean"));
        }
    }
    let granted: Vec<&str> = match m.get("default_permissions") {
        None => Vec::new(),
        Some(Value::Object(p)) => {
            for (k, v) in p {
                if !PERMISSIONS.contains(&k.as_str()) {
                    problems.push(format!("default_permissions: unknown permission {k:?}"));
                }
                if !matches!(v.as_str(), Some("read" | "write")) {
                    problems.push(format!("default_permissions.{k}: read or write"));
                }
            }
            p.keys().map(String::as_str).collect()
        }
        Some(_) => {
            problems.push("default_permissions: an object".into());
            Vec::new()
        }
    };
    match m.get("default_events") {
        None => {}
        Some(Value::Array(events)) => {
            for e in events {
                let Some(name) = e.as_str() else {
                    problems.push("default_events: strings".into());
                    continue;
                };
                match EVENTS.iter().find(|(n, _)| *n == name) {
                    None => problems.push(format!("default_events: unknown event {name:?}")),
                    Some((_, needs)) if !needs.iter().any(|p| granted.contains(p)) => problems
                        .push(format!(
                            "default_events: {name} needs the {} permission",
                            needs.join(" or ")
                        )),
                    Some(_) => {}
                }
            }
        }
        Some(_) => problems.push("default_events: an array".into()),
    }
    problems
}

/// `POST /settings/apps/new`: an App for the signed-in user.
pub(crate) async fn new_app_for_user(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    new_code(&shared, None, query, &headers, &body)
}

/// `POST /organizations/{org}/settings/apps/new`: an App for the organization.
pub(crate) async fn new_app(
    State(shared): State<Arc<Shared>>,
    Path(org): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    new_code(&shared, Some(org), query, &headers, &body)
}

/// A browser's form with `manifest` (and `state`, in the query or the form): a code, sent
/// to the manifest's `redirect_url`.
fn new_code(
    shared: &Shared,
    org: Option<String>,
    query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return text_page(
            415,
            "post the manifest as a form (application/x-www-form-urlencoded)",
        );
    }
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let from_query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let manifests: Vec<&String> = fields
        .iter()
        .filter(|(k, _)| k == "manifest")
        .map(|(_, v)| v)
        .collect();
    let [manifest] = manifests.as_slice() else {
        return text_page(422, "the form needs exactly one manifest field");
    };
    let state = from_query
        .iter()
        .chain(&fields)
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.clone());
    let Ok(manifest) = serde_json::from_str::<Value>(manifest) else {
        return text_page(422, "the manifest is not JSON");
    };
    let problems = manifest_problems(&manifest);
    if !problems.is_empty() {
        return text_page(422, &format!("Invalid manifest:\n{}", problems.join("\n")));
    }
    let mut w = shared.world();
    let Some(login) = w.oauth_user.clone() else {
        return text_page(
            403,
            "nobody is signed in to the emulated GitHub (sign_in_as)",
        );
    };
    let code = random_token().trim_start_matches("ghs_").to_string();
    let redirect = manifest["redirect_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    w.manifest_codes.insert(
        code.clone(),
        PendingManifest {
            manifest,
            owner: org.unwrap_or(login),
            issued_at: Utc::now(),
        },
    );
    drop(w);
    shared.changed();
    redirect_with_code(&redirect, &code, state.as_deref())
}

fn hex_token(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// `POST /app-manifests/{code}/conversions`.
pub(crate) fn convert(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let code = ctx.params["code"].as_str().unwrap_or_default().to_string();
    let pending = w
        .manifest_codes
        .remove(&code)
        .filter(|p| (ctx.now - p.issued_at).num_seconds() < CODE_TTL_SECS);
    let Some(pending) = pending else {
        return ctx.not_found(format!("no unused manifest code {code:?} of the last hour"));
    };
    let Some(pem) = ctx.shared.config.manifest_app_key.clone() else {
        return Answer::reject(
            501,
            "Not Implemented",
            ctx.docs,
            "EmulatorConfig::manifest_app_key is not set: the emulator has no key to give the new App".into(),
        );
    };
    let public_key_pem = match public_key_of(&pem) {
        Ok(k) => k,
        Err(e) => {
            return Answer::reject(
                500,
                "Server Error",
                ctx.docs,
                format!("manifest_app_key: {e}"),
            )
        }
    };
    let m = &pending.manifest;
    let id = w.next_id;
    w.next_id += 1;
    let name = m["name"]
        .as_str()
        .map_or_else(|| format!("app-{id}"), str::to_string);
    let slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let app = CreatedApp {
        id,
        slug: slug.trim_matches('-').to_string(),
        name: name.clone(),
        owner: pending.owner.clone(),
        client_id: format!("Iv23{}", hex_token(16)),
        client_secret: hex_token(40),
        webhook_secret: hex_token(40),
        manifest: m.clone(),
        public_key_pem,
    };
    w.oauth_apps
        .insert(app.client_id.clone(), app.client_secret.clone());
    let now = ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut body = template(CONVERSION, 201, "application/json", None);
    set_fields(
        &mut body,
        json!({
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("Integration", app.id),
            "owner": ctx.shared.user_json(&app.owner, 1, "User"),
            "name": app.name,
            "description": m["description"].as_str().unwrap_or_default(),
            "external_url": m["url"],
            "html_url": format!("{}/_web/apps/{}", ctx.shared.base, app.slug),
            "created_at": now,
            "updated_at": now,
            "permissions": m.get("default_permissions").cloned().unwrap_or_else(|| json!({})),
            "events": m.get("default_events").cloned().unwrap_or_else(|| json!([])),
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "webhook_secret": app.webhook_secret,
            "pem": pem,
        }),
    );
    w.apps.push(app);
    Answer::ok(201, body)
}

/// The public half of a PKCS#1 or PKCS#8 RSA private key, as PKCS#1 PEM.
fn public_key_of(pem: &str) -> Result<String, String> {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::DecodePrivateKey;
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|e| e.to_string())?;
    key.to_public_key()
        .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
        .map_err(|e| e.to_string())
}

/// For an App made through the flow, its JWT must be signed (RS256) with its key. JWTs
/// for other app ids (tests that configure an App by hand) keep the claims-only check.
pub(crate) fn check_signature(w: &World, token: &str) -> Result<(), String> {
    let claims = token
        .split('.')
        .nth(1)
        .and_then(base64url_decode)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or_default();
    let Some(app) = claims["iss"]
        .as_u64()
        .or_else(|| claims["iss"].as_str().and_then(|s| s.parse().ok()))
        .and_then(|iss| w.apps.iter().find(|a| a.id == iss))
    else {
        return Ok(());
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|e| format!("the App's key: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // The claims were checked as GitHub checks them; here only the signature.
    v.validate_exp = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|_| ())
        .map_err(|_| "A JSON web token could not be decoded".to_string())
}

impl EmulatorHandle {
    /// The Apps made through the manifest flow, oldest first.
    pub fn created_apps(&self) -> Vec<CreatedApp> {
        self.world().apps.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Value {
        json!({
            "name": "Paved test",
            "url": "https://paved.example.test",
            "hook_attributes": {"url": "https://paved.example.test/webhooks/github"},
            "redirect_url": "http://127.0.0.1:9/done",
            "callback_urls": ["https://paved.example.test/oauth/callback"],
            "public": false,
            "default_permissions": {"pull_requests": "write", "merge_queues": "read", "contents": "write"},
            "default_events": ["pull_request", "merge_group", "push"],
        })
    }

    #[test]
    fn a_manifest_is_taken_only_as_github_would_take_it() {
        assert!(
            manifest_problems(&good()).is_empty(),
            "{:?}",
            manifest_problems(&good())
        );
        let refused = |change: &dyn Fn(&mut Value), why: &str| {
            let mut m = good();
            change(&mut m);
            let p = manifest_problems(&m);
            assert!(p.iter().any(|x| x.contains(why)), "{why}: {p:?}");
        };
        refused(&|m| m["colour"] = json!("blue"), "unknown key \"colour\"");
        refused(
            &|m| m["hook_attributes"]["url"] = json!("not a url"),
            "hook_attributes.url",
        );
        refused(
            &|m| {
                m["default_permissions"]
                    .as_object_mut()
                    .map(|p| p.remove("merge_queues"));
            },
            "merge_group needs the merge_queues permission",
        );
        refused(
            &|m| m["default_permissions"]["checks"] = json!("admin"),
            "read or write",
        );
        refused(
            &|m| m["default_events"] = json!(["pull_requests"]),
            "unknown event",
        );
        refused(&|m| m["name"] = json!("x".repeat(35)), "1 to 34");
    }

    #[test]
    fn an_app_of_the_flow_takes_only_jwts_signed_with_its_key() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = include_str!("../../../tests/fixtures/app-private-key.pem");
        let mut w = World::default();
        w.apps.push(CreatedApp {
            id: 4242,
            slug: "paved-test".into(),
            name: "Paved test".into(),
            owner: "admin1".into(),
            client_id: "Iv23x".into(),
            client_secret: "s".into(),
            webhook_secret: "w".into(),
            manifest: good(),
            public_key_pem: public_key_of(key).expect("public key"),
        });
        let now = Utc::now().timestamp();
        let claims = json!({"iat": now - 60, "exp": now + 500, "iss": 4242});
        let sign = |pem: &str| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("key"),
            )
            .expect("jwt")
        };
        assert_eq!(check_signature(&w, &sign(key)), Ok(()));
        let other = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .expect("a key")
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .expect("pem");
        assert!(check_signature(&w, &sign(&other)).is_err());
    }
}
