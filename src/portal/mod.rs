//! The portal (SPEC 10): server-rendered pages for people, on top of the API's own code
//! paths ([`crate::api::ApiState`]: the same scoping, the same Orchestrator), so a page
//! shows what the API would answer and a form opens the request the API would.
//!
//! Sign-in is GitHub's OAuth web flow; the login GitHub vouches for is kept in a signed
//! cookie ([`session`]) with the CSRF token every form of the session carries. Pages work
//! without JavaScript.

pub mod session;

mod forms;
mod git;
mod graph;
mod operations;
mod pages;

use crate::api::ApiState;
use crate::config::PortalConfig;
use crate::identity::Caller;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use session::{Keys, OauthState, Session};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the pages read.
#[derive(Clone)]
pub struct PortalState {
    api: ApiState,
    keys: Keys,
    config: Arc<PortalConfig>,
    http: reqwest::Client,
    /// What pages read from GitHub and Git, kept a short while (issue 19, item 8): a page
    /// view, or a request page refreshing every 3 s, does not fetch each time.
    cache: Arc<ReadCache>,
}

/// How long the portal reuses a repository's fetched default branch.
pub const DEFAULT_BRANCH_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// How long the portal reuses a request's status read from GitHub.
pub const REQUEST_STATUS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The portal's short-lived reads, per repository and per request.
#[derive(Default)]
pub(crate) struct ReadCache {
    /// When each repository's default branch was last fetched.
    fetched: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Each request's last status, and when it was read.
    requests: std::sync::Mutex<
        std::collections::HashMap<i64, (std::time::Instant, crate::orchestrator::RequestStatus)>,
    >,
}

impl ReadCache {
    fn fresh_fetch(&self, repo: &str) -> bool {
        let f = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        f.get(repo)
            .is_some_and(|at| at.elapsed() < DEFAULT_BRANCH_TTL)
    }

    fn fetched_now(&self, repo: &str) {
        let mut f = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        f.insert(repo.to_string(), std::time::Instant::now());
    }

    fn request(&self, id: i64) -> Option<crate::orchestrator::RequestStatus> {
        let r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        r.get(&id)
            .filter(|(at, _)| at.elapsed() < REQUEST_STATUS_TTL)
            .map(|(_, st)| st.clone())
    }

    fn remember_request(&self, id: i64, status: &crate::orchestrator::RequestStatus) {
        let mut r = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() > 10_000 {
            r.retain(|_, (at, _)| at.elapsed() < REQUEST_STATUS_TTL);
        }
        r.insert(id, (std::time::Instant::now(), status.clone()));
    }
}

impl PortalState {
    /// Cookies get `Secure` when Paved is published over HTTPS.
    fn secure(&self) -> bool {
        self.api.public_url.starts_with("https://")
    }

    /// Where GitHub sends people back: Paved's public URL, else the host they reached
    /// (GitHub only redirects to the callback registered for the app, whatever this says).
    fn callback(&self, headers: &HeaderMap) -> String {
        let base = if self.api.public_url.is_empty() {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        } else {
            self.api.public_url.trim_end_matches('/').to_string()
        };
        format!("{base}/oauth/callback")
    }

    /// The signed-in session, if its cookie is genuine and unexpired.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let s: Session = self.keys.open(
            session::SESSION,
            session::cookie(headers, session::SESSION)?,
        )?;
        (s.expires > crate::clock::wall().timestamp()).then_some(s)
    }
}

pub fn router(api: ApiState, config: &PortalConfig) -> Router {
    let state = PortalState {
        keys: Keys::new(config.session_key.as_ref()),
        config: Arc::new(config.clone()),
        api,
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .unwrap_or_default(),
        cache: Arc::default(),
    };
    Router::new()
        .route("/", get(pages::environments))
        .route("/portal.css", get(stylesheet))
        .route("/portal.js", get(script))
        .route("/login", get(login))
        .route("/oauth/callback", get(callback))
        .route("/logout", post(logout))
        .route("/templates", get(forms::templates))
        .route("/graph", get(graph::page))
        .route("/operations", get(operations::page))
        .route("/requests", post(forms::submit))
        .route("/requests/{id}", get(pages::request))
        .route(
            "/environments/{owner}/{repo}/{name}",
            get(pages::environment),
        )
        .route(
            "/environments/{owner}/{repo}/{name}/reconcile",
            post(pages::reconcile),
        )
        .fallback(missing)
        .with_state(state)
}

/// A path no route serves: the API's get problem details, the portal's a page.
async fn missing(
    State(s): State<PortalState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if crate::api::is_api_path(uri.path()) {
        crate::problem::Problem::new(StatusCode::NOT_FOUND, format!("no route {}", uri.path()))
            .into_response()
    } else {
        refused(
            s.session(&headers).as_ref(),
            StatusCode::NOT_FOUND,
            "No such page.",
        )
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("portal.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("portal.js"),
    )
        .into_response()
}

/// What every page's frame shows: who is signed in, and their forms' token.
pub(crate) struct Chrome {
    pub login: Option<String>,
    pub csrf: String,
}

impl Chrome {
    /// The frame of a page seen signed out: the brand only.
    fn signed_out() -> Chrome {
        Chrome {
            login: None,
            csrf: String::new(),
        }
    }

    fn of(s: &Session) -> Chrome {
        Chrome {
            login: Some(s.login.clone()),
            csrf: s.csrf.clone(),
        }
    }
}

/// A rendered template, or a plain 500 when it does not render (it always does: askama
/// checks templates when Paved is built).
fn html(page: Result<String, askama::Error>) -> Response {
    match page {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a portal page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

/// The sign-in page (`next`: where to go after).
fn sign_in_page(s: &PortalState, headers: &HeaderMap, next: &str) -> Response {
    use askama::Template;
    let page = pages::SignIn {
        chrome: Chrome::signed_out(),
        configured: s.config.oauth_app().is_some(),
        next: next.to_string(),
        callback: s.callback(headers),
    };
    html(page.render())
}

/// Only a path of this site: never another host (`//evil`, `https://…`, `/\\evil`, and
/// `/<tab>/evil`, which browsers read as `//evil` once they drop the tab), and never a
/// byte a `Location` header cannot carry.
fn local_path(next: &str) -> String {
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && next.chars().all(|c| c.is_ascii_graphic() && c != '\\');
    if safe {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// `GET /login`: to GitHub, with a `state` kept in a signed cookie.
async fn login(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let next = local_path(q.get("next").map_or("/", String::as_str));
    let Some((client_id, _)) = s.config.oauth_app() else {
        return sign_in_page(&s, &headers, &next);
    };
    let state = OauthState {
        state: session::random_token(),
        next,
        expires: crate::clock::wall().timestamp() + 600,
    };
    let mut url = match url::Url::parse(&format!("{}/login/oauth/authorize", s.config.web_url)) {
        Ok(u) => u,
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "github.web_url").into_response(),
    };
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &s.callback(&headers))
        .append_pair("state", &state.state)
        .append_pair("allow_signup", "false");
    let cookie = session::set_cookie(
        session::OAUTH_STATE,
        &s.keys.seal(session::OAUTH_STATE, &state),
        600,
        s.secure(),
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response()
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "portal/refused.html")]
struct RefusedPage<'a> {
    chrome: Chrome,
    heading: &'a str,
    why: &'a str,
}

/// A page that refuses, or says there is no such thing, inside the portal's frame: its
/// navigation bar stays, with the signed-in person's links (`sess`) where there is one.
fn refused(sess: Option<&Session>, status: StatusCode, why: &str) -> Response {
    use askama::Template;
    let page = RefusedPage {
        chrome: sess.map_or_else(Chrome::signed_out, Chrome::of),
        heading: if status == StatusCode::NOT_FOUND {
            "Not found"
        } else {
            "Refused"
        },
        why,
    };
    let mut r = html(page.render());
    if r.status() == StatusCode::OK {
        *r.status_mut() = status;
    }
    r
}

/// `GET /oauth/callback?code=&state=`: the state must be this browser's; the code becomes a
/// token, the token a login (`GET /user`), the login a session. The token is not kept.
async fn callback(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some((client_id, secret)) = s.config.oauth_app() else {
        return sign_in_page(&s, &headers, "/");
    };
    let pending: Option<OauthState> = session::cookie(&headers, session::OAUTH_STATE)
        .and_then(|c| s.keys.open(session::OAUTH_STATE, c));
    let (Some(pending), Some(state), Some(code)) = (pending, q.get("state"), q.get("code")) else {
        return refused(
            None,
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here, or it expired: sign in again.",
        );
    };
    if !session::same_token(state, &pending.state)
        || pending.expires < crate::clock::wall().timestamp()
    {
        return refused(
            None,
            StatusCode::BAD_REQUEST,
            "This sign-in was not started here, or it expired: sign in again.",
        );
    }
    let answer = s
        .http
        .post(format!("{}/login/oauth/access_token", s.config.web_url))
        .header(header::ACCEPT, "application/json")
        .form(&[
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("code", code.as_str()),
            ("redirect_uri", &s.callback(&headers)),
        ])
        .send()
        .await;
    let token = match answer {
        Ok(r) => match r.json::<TokenAnswer>().await {
            Ok(TokenAnswer {
                access_token: Some(t),
                ..
            }) => t,
            Ok(TokenAnswer { error, .. }) => {
                tracing::warn!(
                    error = error.as_deref().unwrap_or("none"),
                    "sign-in: GitHub refused the code"
                );
                return refused(
                    None,
                    StatusCode::BAD_REQUEST,
                    "GitHub did not accept this sign-in: sign in again.",
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "sign-in: GitHub's answer was not understood");
                return refused(
                    None,
                    StatusCode::BAD_GATEWAY,
                    "GitHub's answer was not understood.",
                );
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "sign-in: GitHub did not answer");
            return refused(
                None,
                StatusCode::BAD_GATEWAY,
                "GitHub did not answer: try again.",
            );
        }
    };
    let login = match s
        .api
        .identities
        .authenticate(Some(&format!("Bearer {token}")), None)
        .await
    {
        Ok(Caller::User(login)) => login,
        Ok(Caller::Service(_)) | Err(_) => {
            return refused(
                None,
                StatusCode::BAD_GATEWAY,
                "GitHub did not say who you are: try again.",
            );
        }
    };
    tracing::info!(login = %login, "signed in to the portal");
    let ttl = i64::try_from(s.config.session_ttl.as_secs()).unwrap_or(8 * 3600);
    let session = Session {
        login,
        csrf: session::random_token(),
        expires: crate::clock::wall().timestamp() + ttl,
    };
    let mut r = Redirect::to(&local_path(&pending.next)).into_response();
    let h = r.headers_mut();
    for c in [
        session::set_cookie(
            session::SESSION,
            &s.keys.seal(session::SESSION, &session),
            ttl,
            s.secure(),
        ),
        session::set_cookie(session::OAUTH_STATE, "", 0, s.secure()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// A form's CSRF token.
#[derive(serde::Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    pub(super) csrf: String,
}

/// The session a form post is made in, if its CSRF token is that session's.
fn form_session(
    s: &PortalState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Box<Response>> {
    match s.session(headers) {
        Some(sess) if session::same_token(csrf, &sess.csrf) => Ok(sess),
        Some(sess) => Err(Box::new(refused(
            Some(&sess),
            StatusCode::FORBIDDEN,
            "This form is not from your session (its CSRF token is missing or another's): reload the page and try again.",
        ))),
        None => Err(Box::new(refused(
            None,
            StatusCode::FORBIDDEN,
            "You are not signed in.",
        ))),
    }
}

/// `POST /logout`.
async fn logout(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if let Err(r) = form_session(&s, &headers, &f.csrf) {
        return *r;
    }
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(session::SESSION, "", 0, s.secure()),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn after_sign_in_only_paths_of_this_site_are_followed() {
        assert_eq!(local_path("/requests/7?x=1"), "/requests/7?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil",
            "/ok path",
            "evil",
            "",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }
}
