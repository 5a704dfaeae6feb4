//! GitHub's OAuth web flow, for a portal signing people in: `GET /login/oauth/authorize`
//! redirects back with a one-time `code` (as if the user signed in with
//! [`EmulatorHandle::sign_in_as`] had clicked "Authorize"), and
//! `POST /login/oauth/access_token` exchanges it for a user token that `GET /user` knows.
//! As on GitHub, the exchange answers 200 with an `error` field for bad credentials or a
//! bad code, and form-encoded unless JSON is asked for (`Accept: application/json`).

#![allow(clippy::wildcard_imports)]
use super::*;
use axum::extract::{Query, RawQuery};
use std::collections::HashMap;

/// A code is good for this long, once (GitHub: 10 minutes).
const CODE_TTL_SECS: i64 = 600;

#[derive(Debug, Clone)]
pub(crate) struct OauthCode {
    client_id: String,
    login: String,
    redirect_uri: Option<String>,
    issued_at: DateTime<Utc>,
}

/// `GET /login/oauth/authorize?client_id=&redirect_uri=&state=&scope=`.
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    let mut w = shared.world();
    if !w.oauth_apps.contains_key(&client_id) {
        return text_page(404, "no OAuth app with this client_id (register_oauth_app)");
    }
    let Some(login) = w.oauth_user.clone() else {
        return text_page(
            403,
            "nobody is signed in to the emulated GitHub (sign_in_as)",
        );
    };
    let Some(redirect) = q.get("redirect_uri").cloned() else {
        return text_page(400, "redirect_uri is required by this emulator");
    };
    let code = random_token();
    w.oauth_codes.insert(
        code.clone(),
        OauthCode {
            client_id,
            login,
            redirect_uri: Some(redirect.clone()),
            issued_at: Utc::now(),
        },
    );
    drop(w);
    shared.changed();
    redirect_with_code(&redirect, &code, q.get("state").map(String::as_str))
}

/// `POST /login/oauth/access_token` with `client_id`, `client_secret`, `code` (and
/// `redirect_uri`) in the query, a form or a JSON body.
pub(crate) async fn access_token(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut p: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&body) {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                p.insert(k, v.to_string());
            }
        }
    } else {
        p.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("json"));
    let answer = |fields: Vec<(&str, String)>| {
        let (ctype, text) = if json {
            let m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect();
            ("application/json", Value::Object(m).to_string())
        } else {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                s.append_pair(k, &v);
            }
            ("application/x-www-form-urlencoded", s.finish())
        };
        Response::builder()
            .status(200)
            .header("content-type", ctype)
            .body(Body::from(text))
            .unwrap_or_default()
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let mut w = shared.world();
    if w.oauth_apps.get(&get("client_id")) != Some(&get("client_secret")) {
        return answer(vec![("error", "incorrect_client_credentials".into())]);
    }
    let code = w.oauth_codes.remove(&get("code"));
    let good = code.filter(|c| {
        c.client_id == get("client_id")
            && (Utc::now() - c.issued_at).num_seconds() < CODE_TTL_SECS
            && (!p.contains_key("redirect_uri")
                || c.redirect_uri.as_deref() == p.get("redirect_uri").map(String::as_str))
    });
    let Some(code) = good else {
        return answer(vec![("error", "bad_verification_code".into())]);
    };
    let token = format!("gho_{}", random_token());
    w.user_tokens.insert(token.clone(), code.login);
    drop(w);
    shared.changed();
    answer(vec![
        ("access_token", token),
        ("scope", "read:user".into()),
        ("token_type", "bearer".into()),
    ])
}

impl EmulatorHandle {
    /// Registers an OAuth app (its `client_id` and `client_secret`).
    pub fn register_oauth_app(&self, client_id: &str, client_secret: &str) {
        self.mutate(|w| {
            w.oauth_apps
                .insert(client_id.to_string(), client_secret.to_string());
        });
    }

    /// The GitHub user who authorizes the next OAuth sign-ins.
    pub fn sign_in_as(&self, login: &str) {
        self.mutate(|w| w.oauth_user = Some(login.to_string()));
    }
}
