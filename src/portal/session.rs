//! Signed cookies: the session (who signed in, until when, and the CSRF token of their
//! forms) and the OAuth `state` of a sign-in under way. A cookie is its JSON, hex-encoded,
//! then `.` and an HMAC-SHA256 over what it is for and the JSON; nothing in it is secret
//! (no GitHub token is kept: the login, checked once with GitHub at sign-in, is enough).

use crate::config::Secret;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION: &str = "paved_session";
/// The cookie holding the OAuth `state` while GitHub asks the user.
pub const OAUTH_STATE: &str = "paved_oauth";

/// Who is signed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub login: String,
    /// Every form of this session carries it; a post without it, or with another
    /// session's, is refused.
    pub csrf: String,
    /// Unix seconds.
    pub expires: i64,
}

/// A sign-in under way: the `state` GitHub must send back, and where to go after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OauthState {
    pub state: String,
    pub next: String,
    pub expires: i64,
}

/// The signing key.
#[derive(Clone)]
pub struct Keys {
    key: [u8; 32],
}

impl Keys {
    /// From the configured key, else a random one (sign-ins then end with the process).
    pub fn new(secret: Option<&Secret>) -> Keys {
        let key = match secret {
            Some(s) => Sha256::digest(s.expose().as_bytes()).into(),
            None => {
                let mut k = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                k
            }
        };
        Keys { key }
    }

    fn mac(&self, purpose: &str, payload: &[u8]) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(purpose.as_bytes());
        m.update(&[0]);
        m.update(payload);
        m
    }

    /// `value` as a cookie value for `purpose`.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).unwrap_or_default();
        let tag = self.mac(purpose, &json).finalize().into_bytes();
        format!("{}.{}", hex::encode(&json), hex::encode(tag))
    }

    /// The value of a cookie sealed for `purpose`, if its tag is right (compared in
    /// constant time).
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, cookie: &str) -> Option<T> {
        let (payload, tag) = cookie.split_once('.')?;
        let json = hex::decode(payload).ok()?;
        let tag = hex::decode(tag).ok()?;
        self.mac(purpose, &json).verify_slice(&tag).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// A random token: 32 hexadecimal characters.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Whether `given` is `expected`, in constant time.
pub fn same_token(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// `name`'s value among a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when served over
/// HTTPS; `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_session_opens_only_unchanged_with_its_key_and_purpose() {
        let keys = Keys::new(Some(&Secret::new("k".repeat(32))));
        let s = Session {
            login: "octocat".into(),
            csrf: random_token(),
            expires: 10,
        };
        let sealed = keys.seal(SESSION, &s);
        assert_eq!(keys.open::<Session>(SESSION, &sealed), Some(s.clone()));
        assert_eq!(
            keys.open::<Session>(OAUTH_STATE, &sealed),
            None,
            "another purpose"
        );
        let other = Keys::new(Some(&Secret::new("x".repeat(32))));
        assert_eq!(other.open::<Session>(SESSION, &sealed), None, "another key");
        // Someone else's login in the payload, the old tag: refused.
        let (_, tag) = sealed.split_once('.').expect("tag");
        let forged = serde_json::to_vec(&Session {
            login: "admin1".into(),
            ..s
        })
        .expect("json");
        let forged = format!("{}.{tag}", hex::encode(forged));
        assert_eq!(keys.open::<Session>(SESSION, &forged), None);
        assert_eq!(keys.open::<Session>(SESSION, "garbage"), None);
    }

    #[test]
    fn cookies_are_found_by_name_and_set_with_their_attributes() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; paved_session=xyz".parse().expect("header"),
        );
        assert_eq!(cookie(&h, SESSION), Some("xyz"));
        assert_eq!(cookie(&h, "paved"), None);
        let c = set_cookie(SESSION, "v", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION, "v", 60, false).contains("Secure"));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("ab", "abc"));
    }
}
