//! Who is asking (SPEC 8). A caller proves who they are with `Authorization: Bearer
//! <token>`: a GitHub token (personal or OAuth user token), whose login Paved learns from
//! `GET /user` and caches by the token's SHA-256 for at most `api.identity_ttl` (5 minutes,
//! so a revoked token stops working within that time); or a service token from
//! `[[api.tokens]]`, of which only the SHA-256 is configured, with the `reader` role.
//!
//! What a caller may see and do in a repository is [`roles`]: teams, platform admins and
//! auditors from the default branch's `platform.yaml`.
//!
//! Tokens never reach a log: only their hashes are kept, and errors never quote them.
//!
//! Made-up tokens cost GitHub calls, so they are bounded (issue 19, item 7): a refusal is
//! remembered by the token's hash for [`REFUSAL_TTL`]; at most [`MAX_LOOKUPS`] `GET /user`
//! calls run at once; and a client (by address) whose tokens GitHub refused
//! [`MAX_STRIKES`] times within [`STRIKE_WINDOW`] is answered 429 with `Retry-After`
//! instead of being looked up again until the window ends.

pub mod roles;

use crate::config::{ApiConfig, Secret, ServiceToken};
use crate::forge::Forge;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub use roles::{Access, Directory, RepoRoles, TeamSnapshot, WithTeams};

/// At most this many GitHub tokens' logins are cached (expired ones go first).
const MAX_CACHED: usize = 10_000;

/// How long a token GitHub refused is refused without asking again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(60);

/// `GET /user` calls running at once, whatever the number of callers.
pub const MAX_LOOKUPS: usize = 8;

/// Refused lookups a client may cause within [`STRIKE_WINDOW`] before it is answered 429.
pub const MAX_STRIKES: u32 = 10;

/// The window [`MAX_STRIKES`] counts in.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60);

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A GitHub user, by login.
    User(String),
    /// A service token, by its configured name (role `reader`).
    Service(String),
}

impl Caller {
    /// The GitHub login, for a person.
    pub fn login(&self) -> Option<&str> {
        match self {
            Caller::User(l) => Some(l),
            Caller::Service(_) => None,
        }
    }
}

/// Why a caller was not identified.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send Authorization: Bearer <a GitHub token or a Paved service token>")]
    Missing,
    #[error("the token was not accepted: GitHub does not know it (expired or revoked?) and it is not a service token")]
    Refused,
    #[error("GitHub could not be asked who the token belongs to; try again")]
    Unavailable,
    /// This client sent too many tokens GitHub refused: it may try again after this long.
    #[error("too many unknown tokens from this client; try again later")]
    TooMany { retry_after: Duration },
}

/// Identifies callers (see the module documentation).
pub struct Identities {
    service: Vec<ServiceToken>,
    ttl: Duration,
    forge: Forge,
    cache: Mutex<HashMap<[u8; 32], (Instant, String)>>,
    /// Tokens GitHub refused, by hash, and when.
    refused: Mutex<HashMap<[u8; 32], Instant>>,
    /// Refused lookups per client address: (window start, count).
    strikes: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
    lookups: tokio::sync::Semaphore,
}

impl Identities {
    pub fn new(config: &ApiConfig, forge: Forge) -> Identities {
        Identities {
            service: config.tokens.clone(),
            ttl: config.identity_ttl,
            forge,
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            strikes: Mutex::new(HashMap::new()),
            lookups: tokio::sync::Semaphore::new(MAX_LOOKUPS),
        }
    }

    /// The caller whose `Authorization` header value this is, for a client at `client`
    /// (`None`: not known, and not limited).
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<Caller, AuthError> {
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every configured hash is compared, in constant time, so timing says nothing of
        // which (or whether one) matched.
        let mut found = None;
        for t in &self.service {
            if bool::from(t.sha256.ct_eq(&hash)) {
                found = Some(t.name.clone());
            }
        }
        if let Some(name) = found {
            return Ok(Caller::Service(name));
        }
        if let Some(login) = self.cached(&hash) {
            return Ok(Caller::User(login));
        }
        if self.refused_lately(&hash) {
            return Err(AuthError::Refused);
        }
        if let Some(retry_after) = client.and_then(|c| self.limited(c)) {
            return Err(AuthError::TooMany { retry_after });
        }
        let _permit = self
            .lookups
            .acquire()
            .await
            .map_err(|_| AuthError::Unavailable)?;
        match self.forge.user_login(&Secret::new(token)).await {
            Ok(Some(login)) => {
                self.remember(hash, &login);
                Ok(Caller::User(login))
            }
            Ok(None) => {
                self.refuse(hash);
                if let Some(c) = client {
                    self.strike(c);
                }
                Err(AuthError::Refused)
            }
            Err(e) => {
                tracing::warn!(error = %e, "GET /user failed; the caller is not identified");
                Err(AuthError::Unavailable)
            }
        }
    }

    fn refused_lately(&self, hash: &[u8; 32]) -> bool {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        refused
            .get(hash)
            .is_some_and(|at| at.elapsed() < REFUSAL_TTL)
    }

    fn refuse(&self, hash: [u8; 32]) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.len() >= MAX_CACHED {
            refused.retain(|_, at| at.elapsed() < REFUSAL_TTL);
            if refused.len() >= MAX_CACHED {
                refused.clear();
            }
        }
        refused.insert(hash, Instant::now());
    }

    /// How long `client` must wait, when it has used up its refused lookups.
    fn limited(&self, client: std::net::IpAddr) -> Option<Duration> {
        let strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        let (since, count) = strikes.get(&client)?;
        let left = STRIKE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_STRIKES).then_some(left.max(Duration::from_secs(1)))
    }

    fn strike(&self, client: std::net::IpAddr) {
        let mut strikes = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        if strikes.len() >= MAX_CACHED {
            strikes.retain(|_, (since, _)| since.elapsed() < STRIKE_WINDOW);
            if strikes.len() >= MAX_CACHED {
                strikes.clear();
            }
        }
        let entry = strikes.entry(client).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= STRIKE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(hash)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, login)| login.clone())
    }

    fn remember(&self, hash: [u8; 32], login: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(hash, (Instant::now(), login.to_string()));
    }
}

/// The token of `Bearer <token>` (`token <token>` too, as GitHub accepts both).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    let ok = (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        && !token.is_empty()
        && !token.contains(char::is_whitespace);
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn only_bearer_and_token_schemes_carry_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("token abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("abc"), None);
    }
}
