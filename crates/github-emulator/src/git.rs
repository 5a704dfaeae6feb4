//! Git over HTTP, as GitHub serves it to apps: the smart HTTP protocol (`git http-backend`,
//! run as a CGI program with an argv and an environment, never a shell) behind Basic
//! authentication with `x-access-token:<installation token>`.
//!
//! Served under `/git/<owner>/<repo>.git/...` from [`EmulatorConfig::git_root`] when it is
//! set. A request without credentials gets 401 with `WWW-Authenticate` (so Git asks its
//! credential callback, as with GitHub); one whose password is not an unexpired token the
//! emulator issued (or one of [`EmulatorConfig::static_tokens`]) gets 401 too. Every
//! request is recorded as a [`GitRequest`].

#![allow(clippy::wildcard_imports)]
use super::*;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// The path prefix Git is served under.
pub const GIT_PREFIX: &str = "/git/";

/// One Git request as the emulator saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GitRequest {
    /// e.g. `/octo-org/environments.git/info/refs`.
    pub path: String,
    /// `git-upload-pack` (fetch) or `git-receive-pack` (push), when named.
    pub service: Option<String>,
    /// The password of the Basic credentials, if any were sent.
    pub token: Option<String>,
    pub status: u16,
}

fn unauthorized(why: &str) -> Response {
    Response::builder()
        .status(401)
        .header("www-authenticate", "Basic realm=\"GitHub\"")
        .body(Body::from(why.to_string()))
        .unwrap_or_default()
}

/// The password of `Authorization: Basic base64(user:password)`.
fn basic_password(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64url_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_string())
}

pub(crate) async fn serve(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().strip_prefix("/git").unwrap_or("").to_string();
    let query = uri.query().unwrap_or("").to_string();
    let service = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.into_owned())
        .or_else(|| {
            path.rsplit('/')
                .next()
                .filter(|s| s.starts_with("git-"))
                .map(str::to_string)
        });
    let token = basic_password(&headers);
    let answer = answer(
        &shared,
        &method,
        &path,
        &query,
        &headers,
        body,
        token.as_deref(),
    )
    .await;
    let record = GitRequest {
        path,
        service,
        token,
        status: answer.status().as_u16(),
    };
    let mut w = lock(&shared.world);
    w.git_requests.push(record);
    drop(w);
    shared.changes.send_modify(|n| *n += 1);
    answer
}

async fn answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    token: Option<&str>,
) -> Response {
    let Some(root) = &shared.config.git_root else {
        return Response::builder()
            .status(404)
            .body(Body::from("Git is not served by this emulator"))
            .unwrap_or_default();
    };
    let Some(token) = token else {
        return unauthorized("Authentication required");
    };
    let now = Utc::now();
    let issued = {
        let w = lock(&shared.world);
        w.tokens
            .iter()
            .any(|t| t.token == token && t.expires_at > now)
    };
    if !issued && !shared.config.static_tokens.iter().any(|t| t == token) {
        return unauthorized("Invalid username or token. Password authentication is not supported for Git operations.");
    }
    if path.contains("..") {
        return Response::builder()
            .status(400)
            .body(Body::empty())
            .unwrap_or_default();
    }
    match http_backend(root, method, path, query, headers, body).await {
        Ok(r) => r,
        Err(e) => Response::builder()
            .status(500)
            .body(Body::from(format!("git http-backend: {e}")))
            .unwrap_or_default(),
    }
}

/// Runs `git http-backend` for one request (CGI: the request in the environment and on
/// stdin, the answer's headers and body on stdout).
async fn http_backend(
    root: &std::path::Path,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<Response> {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header(header::CONTENT_ENCODING))
        .env(
            "GIT_PROTOCOL",
            headers
                .get("git-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        )
        // Authenticated: receive-pack (push) is allowed.
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting git http-backend")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let out = child.wait_with_output().await?;
    let _ = feed.await;
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .ok_or_else(|| {
            anyhow!(
                "no header in its output; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split.0]).into_owned();
    let mut builder = Response::builder().status(200);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().unwrap_or("200");
            builder = builder.status(code.parse::<u16>().unwrap_or(500));
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    Ok(builder.body(Body::from(raw[split.0 + split.1..].to_vec()))?)
}
