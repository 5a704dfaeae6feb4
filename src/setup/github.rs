//! `paved setup github`: registers Paved as a GitHub App through GitHub's App manifest flow
//! and writes the `paved.toml` that uses it. A page served on this machine posts the App's
//! manifest (its webhook, callback, permissions and events: exactly what Paved uses) to
//! GitHub; GitHub, once the person confirms, redirects back with a one-time code; Paved
//! trades the code for the App's id, private key, webhook secret and OAuth client
//! (`POST /app-manifests/{code}/conversions`) and writes them: the key in a file of its own,
//! both files readable by their owner only. Nothing is written over an existing file.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The repository permissions Paved's App asks for, and why (the README's table).
pub const PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "checks",
        "write",
        "verdicts as check runs, with annotations on the manifests' lines",
    ),
    (
        "statuses",
        "write",
        "verdicts as commit statuses (`paved/schema`, `paved/policy`…)",
    ),
    (
        "contents",
        "write",
        "reads governance and manifests; pushes request branches and audit notes",
    ),
    (
        "pull_requests",
        "write",
        "reads a PR's files and reviews; opens the portal's request PRs",
    ),
    (
        "issues",
        "write",
        "the PR comment, and one issue per drifted environment",
    ),
    (
        "deployments",
        "write",
        "a deployment and its statuses per environment",
    ),
    (
        "merge_queues",
        "read",
        "needed by GitHub to send `merge_group` events",
    ),
    (
        "members",
        "read",
        "team membership, for approvals by a GitHub team",
    ),
    ("metadata", "read", "always granted to an App"),
];

/// The events Paved's App subscribes to, and what Paved does with each.
pub const EVENTS: &[(&str, &str)] = &[
    ("pull_request", "checks a PR; provisions on merge"),
    ("pull_request_review", "checks approvals again"),
    (
        "push",
        "pushes to the default branch: governance and manifests changed without a PR",
    ),
    (
        "issue_comment",
        "comment commands (`/paved plan`, `/paved retry`…)",
    ),
    ("check_run", "a re-run asked for from GitHub's Checks tab"),
    (
        "merge_group",
        "checks a merge queue's group before it merges",
    ),
];

/// What `paved setup github` is told.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Where GitHub reaches Paved (`public_url`): webhooks and the portal's sign-in.
    pub public_url: String,
    /// An organization to own the App (default: the person's own account).
    pub org: Option<String>,
    /// The App's name on GitHub (at most 34 characters; unique on GitHub).
    pub name: String,
    /// GitHub's web address (`github.web_url`).
    pub web_url: String,
    /// GitHub's API (`github.api_url`).
    pub api_url: String,
    /// The configuration file to write.
    pub config_path: PathBuf,
    /// The private key's file.
    pub key_path: PathBuf,
    /// The repositories Paved serves (`github.repositories`), if known now.
    pub repositories: Vec<String>,
    /// Where this machine serves the page that starts the flow.
    pub listen: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}: exists; paved setup github writes nothing over a file")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("GitHub did not turn the code into an App: {0}")]
    Conversion(String),
}

/// What the flow made.
#[derive(Debug, Clone)]
pub struct SetupDone {
    pub app_id: u64,
    pub slug: String,
    pub html_url: String,
    pub config_path: PathBuf,
    pub key_path: PathBuf,
}

fn web(url: &str, what: &str) -> Result<url::Url, SetupError> {
    url::Url::parse(url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| SetupError::Invalid(format!("{what}: {url:?} is not an http(s) URL")))
}

impl SetupOptions {
    fn check(&self) -> Result<(), SetupError> {
        web(&self.public_url, "--public-url")?;
        web(&self.web_url, "--web-url")?;
        web(&self.api_url, "--api-url")?;
        if self.name.trim().is_empty() || self.name.chars().count() > 34 {
            return Err(SetupError::Invalid(
                "--name: 1 to 34 characters (GitHub's limit)".into(),
            ));
        }
        if let Some(org) = &self.org {
            if !crate::ids::is_github_login(org) {
                return Err(SetupError::Invalid(format!(
                    "--org: {org:?} is not an organization's login"
                )));
            }
        }
        for r in &self.repositories {
            crate::ids::RepoName::parse(r)
                .map_err(|e| SetupError::Invalid(format!("--repository {r:?}: {e}")))?;
        }
        for p in [&self.config_path, &self.key_path] {
            if p.exists() {
                return Err(SetupError::Exists(p.clone()));
            }
        }
        Ok(())
    }
}

/// The App manifest for `o`, GitHub sending the code to `redirect_url`.
pub fn manifest(o: &SetupOptions, redirect_url: &str) -> Value {
    let public = o.public_url.trim_end_matches('/');
    let permissions: serde_json::Map<String, Value> = PERMISSIONS
        .iter()
        .map(|(p, level, _)| ((*p).to_string(), json!(level)))
        .collect();
    json!({
        "name": o.name,
        "url": public,
        "description": "Developer environments by pull request, under the platform team's governance.",
        "hook_attributes": { "url": format!("{public}/webhooks/github"), "active": true },
        "redirect_url": redirect_url,
        "callback_urls": [format!("{public}/oauth/callback")],
        "public": false,
        "default_permissions": permissions,
        "default_events": EVENTS.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Where the form goes: the person's or the organization's new-App page.
fn new_app_url(o: &SetupOptions, state: &str) -> String {
    let web = o.web_url.trim_end_matches('/');
    let path = match &o.org {
        Some(org) => format!("{web}/organizations/{org}/settings/apps/new"),
        None => format!("{web}/settings/apps/new"),
    };
    format!("{path}?state={state}")
}

/// The page that starts the flow: what will be made, and the button that posts it.
fn start_page(o: &SetupOptions, manifest: &Value, state: &str) -> String {
    let rows: String = PERMISSIONS
        .iter()
        .map(|(p, l, why)| {
            format!(
                "<tr><td><code>{p}</code></td><td>{l}</td><td>{}</td></tr>",
                escape(why)
            )
        })
        .collect();
    let events: String = EVENTS
        .iter()
        .map(|(e, why)| format!("<li><code>{e}</code>: {}</li>", escape(why)))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Register Paved's GitHub App</title></head>\
         <body><main><h1>Register Paved as a GitHub App</h1>\
         <p>This makes a private GitHub App named <strong>{name}</strong> for {owner}, whose webhook is \
         <code>{hook}</code>. GitHub shows it to you and asks you to confirm.</p>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\
         <button type=\"submit\">Create the GitHub App on GitHub</button></form>\
         <h2>Permissions</h2><table><thead><tr><th scope=\"col\">Permission</th><th scope=\"col\">Access</th><th scope=\"col\">Why</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>Events</h2><ul>{events}</ul></main></body></html>",
        name = escape(&o.name),
        owner = o.org.as_deref().map_or_else(|| "your account".to_string(), |org| format!("the organization {}", escape(org))),
        hook = escape(manifest["hook_attributes"]["url"].as_str().unwrap_or_default()),
        action = escape(&new_app_url(o, state)),
        manifest = escape(&manifest.to_string()),
    )
}

/// The App GitHub made, as the conversion answers.
#[derive(Debug, serde::Deserialize)]
struct Converted {
    id: u64,
    slug: String,
    html_url: String,
    pem: String,
    webhook_secret: Option<String>,
    client_id: String,
    client_secret: String,
}

/// Trades `code` for the App.
async fn convert(api_url: &str, code: &str) -> Result<Converted, SetupError> {
    let ok = !code.is_empty()
        && code.len() <= 100
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(SetupError::Conversion(
            "the code GitHub sent back is not a code".into(),
        ));
    }
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        api_url.trim_end_matches('/')
    );
    let res = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "paved-setup")
        .header("x-github-api-version", "2022-11-28")
        .send()
        .await
        .map_err(|e| SetupError::Conversion(e.to_string()))?;
    let status = res.status();
    if !status.is_success() {
        let text = res.text().await.unwrap_or_default();
        return Err(SetupError::Conversion(format!(
            "{status}: {}",
            text.chars().take(300).collect::<String>()
        )));
    }
    res.json::<Converted>()
        .await
        .map_err(|e| SetupError::Conversion(format!("its answer: {e}")))
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), SetupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| SetupError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SetupError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// `paved.toml` for the App.
fn config_text(o: &SetupOptions, app: &Converted, key_path: &Path) -> String {
    let mut t = format!(
        "# Written by `paved setup github` for the GitHub App {slug} ({html}).\n\
         # It holds secrets: keep it readable by Paved's user only. Reference: docs/configuration.md.\n\
         public_url = {public}\n\n\
         [github]\n\
         app_id = {id}\n\
         private_key_path = {key}\n",
        // GitHub's words in a comment: no control character can end the comment early.
        slug = printable(&app.slug),
        html = printable(&app.html_url),
        public = toml_str(o.public_url.trim_end_matches('/')),
        id = app.id,
        key = toml_str(&key_path.to_string_lossy()),
    );
    if let Some(secret) = &app.webhook_secret {
        t.push_str(&format!("webhook_secrets = [{}]\n", toml_str(secret)));
    }
    t.push_str(&format!(
        "oauth_client_id = {}\noauth_client_secret = {}\n",
        toml_str(&app.client_id),
        toml_str(&app.client_secret)
    ));
    if o.api_url.trim_end_matches('/') != crate::config::DEFAULT_API_URL {
        t.push_str(&format!("api_url = {}\n", toml_str(&o.api_url)));
    }
    if o.web_url.trim_end_matches('/') != crate::config::DEFAULT_WEB_URL {
        t.push_str(&format!("web_url = {}\n", toml_str(&o.web_url)));
    }
    if o.repositories.is_empty() {
        t.push_str("# The environments repositories Paved serves (owner/name, globs allowed):\n# repositories = [\"acme/environments\"]\n");
    } else {
        let list: Vec<String> = o.repositories.iter().map(|r| toml_str(r)).collect();
        t.push_str(&format!("repositories = [{}]\n", list.join(", ")));
    }
    t
}

/// Runs the flow: serves the start page on `o.listen`, calls `ready` with its URL, and
/// returns once GitHub sent the code back and the files are written (or the flow failed).
pub async fn run(o: SetupOptions, ready: impl FnOnce(&str)) -> Result<SetupDone, SetupError> {
    use axum::extract::{Query, State};
    use axum::response::{Html, IntoResponse};
    use std::collections::HashMap;
    use std::sync::Arc;
    o.check()?;
    let listener = tokio::net::TcpListener::bind(&o.listen)
        .await
        .map_err(|e| SetupError::Invalid(format!("--listen {}: {e}", o.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SetupError::Invalid(format!("--listen: {e}")))?;
    let local = format!("http://{addr}");
    let state = crate::portal::session::random_token();
    let manifest = manifest(&o, &format!("{local}/done"));
    let page = start_page(&o, &manifest, &state);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<SetupDone, SetupError>>(1);

    struct Flow {
        o: SetupOptions,
        state: String,
        page: String,
        tx: tokio::sync::mpsc::Sender<Result<SetupDone, SetupError>>,
    }
    async fn done(
        State(f): State<Arc<Flow>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let given = q.get("state").map_or("", String::as_str);
        if !crate::portal::session::same_token(given, &f.state) {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                "This answer is not from the flow this page started: open the start page again.",
            )
                .into_response();
        }
        let outcome = async {
            let app = convert(&f.o.api_url, q.get("code").map_or("", String::as_str)).await?;
            write_private(&f.o.key_path, &app.pem)?;
            write_private(&f.o.config_path, &config_text(&f.o, &app, &f.o.key_path))?;
            Ok::<_, SetupError>(SetupDone {
                app_id: app.id,
                slug: app.slug,
                html_url: app.html_url,
                config_path: f.o.config_path.clone(),
                key_path: f.o.key_path.clone(),
            })
        }
        .await;
        let page = match &outcome {
            Ok(d) => format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Paved's GitHub App</title></head><body><main><h1>Done</h1><p>GitHub made the App <strong>{}</strong> (id {}); its settings are in <code>{}</code>.</p><p>Next, <a href=\"{}/installations/new\">install it</a> on the environments repositories, then start Paved: <code>paved serve</code>.</p></main></body></html>",
                escape(&d.slug),
                d.app_id,
                escape(&d.config_path.to_string_lossy()),
                escape(&d.html_url)
            ),
            Err(e) => format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Paved's GitHub App</title></head><body><main><h1>Not done</h1><p>{}</p></main></body></html>",
                escape(&e.to_string())
            ),
        };
        let status = if outcome.is_ok() {
            axum::http::StatusCode::OK
        } else {
            axum::http::StatusCode::BAD_GATEWAY
        };
        let _ = f.tx.send(outcome).await;
        (status, Html(page)).into_response()
    }
    async fn start(State(f): State<Arc<Flow>>) -> Html<String> {
        Html(f.page.clone())
    }

    let flow = Arc::new(Flow { o, state, page, tx });
    let app = axum::Router::new()
        .route("/", axum::routing::get(start))
        .route("/done", axum::routing::get(done))
        .with_state(flow);
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await
    });
    ready(&format!("{local}/"));
    let outcome = rx
        .recv()
        .await
        .unwrap_or_else(|| Err(SetupError::Conversion("the page stopped".into())));
    // The browser has its answer (sent before the outcome): the page can stop.
    stop.cancel();
    let _ = server.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SetupOptions {
        SetupOptions {
            public_url: "https://paved.example.com/".into(),
            org: Some("acme".into()),
            name: "Paved paved.example.com".into(),
            web_url: crate::config::DEFAULT_WEB_URL.into(),
            api_url: crate::config::DEFAULT_API_URL.into(),
            config_path: PathBuf::from("/nonexistent/paved.toml"),
            key_path: PathBuf::from("/nonexistent/paved-app.pem"),
            repositories: vec!["acme/platform".into()],
            listen: "127.0.0.1:0".into(),
        }
    }

    #[test]
    fn the_config_written_is_toml_whatever_github_answers() {
        let app = Converted {
            id: 7,
            slug: "paved\n[github]\ntoken = \"stolen\"".into(),
            html_url: "https://github.com/apps/paved".into(),
            pem: "-----BEGIN RSA PRIVATE KEY-----".into(),
            webhook_secret: Some("s\"e\\c".into()),
            client_id: "Iv23abc".into(),
            client_secret: "shh".into(),
        };
        let text = config_text(&options(), &app, Path::new("/etc/paved/key.pem"));
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["github"]["app_id"].as_integer(), Some(7));
        assert!(parsed["github"].get("token").is_none(), "{text}");
        assert_eq!(
            parsed["github"]["webhook_secrets"][0].as_str(),
            Some("s\"e\\c")
        );
        assert_eq!(
            parsed["public_url"].as_str(),
            Some("https://paved.example.com")
        );
        assert_eq!(
            parsed["github"]["repositories"][0].as_str(),
            Some("acme/platform")
        );
        // The defaults are left to the defaults.
        assert!(parsed["github"].get("api_url").is_none());
    }

    #[test]
    fn the_manifest_asks_for_the_organizations_new_app_page() {
        let o = options();
        let m = manifest(&o, "http://127.0.0.1:1/done");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://paved.example.com/webhooks/github"
        );
        assert_eq!(m["public"], false);
        assert!(new_app_url(&o, "st")
            .starts_with("https://github.com/organizations/acme/settings/apps/new?state=st"));
        let bad = SetupOptions {
            org: Some("no such/org".into()),
            ..options()
        };
        assert!(bad.check().is_err());
    }
}
