//! Paved as an OpenID Connect issuer (SPEC 13): each run of an environment type whose
//! identity has `oidc` gets a short-lived token Paved signs, which clouds trust through
//! workload identity federation, so no long-lived cloud key needs to exist.
//!
//! - The keys live in the database ([`crate::store::KeyStore`]): every replica signs with,
//!   and publishes, the same set.
//! - Rotation: when the newest key is `oidc.rotate_every` old, the next is made. It is
//!   published at once but signs only from [`PUBLISH_LEAD`] later, so every replica's
//!   published set (cached at most [`CACHE_TTL`]) holds it before a token it signed can be
//!   presented. The old key stays published until every token it signed has expired
//!   ([`MAX_TOKEN_LIFETIME`] after its successor took over, plus [`SKEW`]), then goes.
//! - Times are Paved's clock (the lifecycle's, which tests move).
//!
//! ```text
//! let token = issuer.mint(&claims, run_timeout).await?;   // at most 1 hour
//! GET /.well-known/openid-configuration   -> issuer.discovery()
//! GET /.well-known/jwks.json              -> issuer.jwks().await
//! ```

mod keys;

use crate::clock::Clock;
use crate::store::{SigningKeyRow, Store, StoreError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use keys::LoadedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a token lives, whatever the run's timeout.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a new key is published before it signs.
pub const PUBLISH_LEAD: Duration = Duration::from_secs(60);
/// How long a replica keeps the key set it read (and the JWKS it rendered).
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// Clock skew allowed for after a token's expiry before its key goes.
pub const SKEW: Duration = Duration::from_secs(300);
/// Where the JWKS is served, under the issuer's URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Where the discovery document is served, under the issuer's URL.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Key(String),
}

/// What one run's token says (SPEC 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunClaims {
    pub audience: String,
    /// `owner/repo`.
    pub repository: String,
    pub environment: String,
    pub team: String,
    pub env_type: String,
    pub definition: String,
    /// `deploy`, `delete`, `expire`, `stop`, `start`, `reconcile`, `drift`, `plan`.
    pub operation: String,
    pub run_id: i64,
    pub requester: String,
    pub approvers: Vec<String>,
    pub governance_sha: String,
    pub commit: String,
}

impl RunClaims {
    /// `repo:<owner>/<repo>:environment:<team>/<name>:type:<type>:operation:<operation>`:
    /// what a cloud's trust condition matches (names are validated, so no `:` can forge a
    /// field).
    pub fn subject(&self) -> String {
        format!(
            "repo:{}:environment:{}/{}:type:{}:operation:{}",
            self.repository, self.team, self.environment, self.env_type, self.operation
        )
    }
}

/// A signed token.
#[derive(Clone)]
pub struct Token {
    pub jwt: String,
    pub kid: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("kid", &self.kid)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

struct KeySet {
    read_at: Option<Instant>,
    rows: Vec<SigningKeyRow>,
    loaded: HashMap<String, Arc<LoadedKey>>,
}

struct RenderedJwks {
    at: Instant,
    clock_at: DateTime<Utc>,
    body: Bytes,
}

/// The issuer: one per process, shared by the runs and the API.
pub struct Issuer {
    store: Arc<dyn Store>,
    url: String,
    rotate_every: Duration,
    clock: Clock,
    keys: tokio::sync::Mutex<KeySet>,
    jwks: std::sync::RwLock<Option<RenderedJwks>>,
    discovery: Bytes,
}

impl Issuer {
    /// `url` is the issuer (`public_url`); `rotate_every` is `oidc.rotate_every`.
    pub fn new(store: Arc<dyn Store>, url: &str, rotate_every: Duration, clock: Clock) -> Issuer {
        let url = url.trim_end_matches('/').to_string();
        let discovery = serde_json::json!({
            "issuer": url,
            "jwks_uri": format!("{url}{JWKS_PATH}"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
            "claims_supported": [
                "iss", "aud", "sub", "exp", "iat", "nbf", "jti", "repository", "environment",
                "team", "type", "definition", "operation", "run_id", "requester", "approvers",
                "governance_sha", "commit"
            ],
        });
        Issuer {
            store,
            url,
            rotate_every,
            clock,
            keys: tokio::sync::Mutex::new(KeySet {
                read_at: None,
                rows: Vec::new(),
                loaded: HashMap::new(),
            }),
            jwks: std::sync::RwLock::new(None),
            discovery: Bytes::from(discovery.to_string()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> Bytes {
        self.discovery.clone()
    }

    /// The JWKS: every key that signs, will sign, or signed a token not yet expired. Read
    /// from the database at most every [`CACHE_TTL`] (an empty set is read every time, so
    /// the first key another replica makes is published at once).
    pub async fn jwks(&self) -> Result<Bytes, IssuerError> {
        let now = self.clock.now();
        if let Ok(guard) = self.jwks.read() {
            if let Some(r) = guard.as_ref() {
                let clock_moved = (now - r.clock_at).abs() > chrono::Duration::seconds(5);
                if r.at.elapsed() < CACHE_TTL && !clock_moved {
                    return Ok(r.body.clone());
                }
            }
        }
        let rows = self.store.signing_keys().await?;
        let published: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| is_published(&rows, *i, now))
            .filter_map(|(_, k)| serde_json::from_str(&k.public_jwk).ok())
            .collect();
        let body = Bytes::from(serde_json::json!({ "keys": published }).to_string());
        if !published.is_empty() {
            if let Ok(mut guard) = self.jwks.write() {
                *guard = Some(RenderedJwks {
                    at: Instant::now(),
                    clock_at: now,
                    body: body.clone(),
                });
            }
        }
        Ok(body)
    }

    /// Signs a token for a run: `exp` is `lifetime` (the run's timeout) from now, at most
    /// [`MAX_TOKEN_LIFETIME`].
    pub async fn mint(&self, claims: &RunClaims, lifetime: Duration) -> Result<Token, IssuerError> {
        let now = self.clock.now();
        let key = self.signing_key(now).await?;
        let lifetime = lifetime.clamp(Duration::from_secs(1), MAX_TOKEN_LIFETIME);
        let expires_at = now + chrono::Duration::from_std(lifetime).unwrap_or_default();
        let jti: u128 = rand::random();
        let body = serde_json::json!({
            "iss": self.url,
            "aud": claims.audience,
            "sub": claims.subject(),
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": expires_at.timestamp(),
            "jti": format!("{jti:032x}"),
            "repository": claims.repository,
            "environment": claims.environment,
            "team": claims.team,
            "type": claims.env_type,
            "definition": claims.definition,
            "operation": claims.operation,
            "run_id": claims.run_id.to_string(),
            "requester": claims.requester,
            "approvers": claims.approvers,
            "governance_sha": claims.governance_sha,
            "commit": claims.commit,
        });
        let jwt = key.sign(&body).map_err(IssuerError::Key)?;
        Ok(Token {
            jwt,
            kid: key.kid.clone(),
            expires_at,
        })
    }

    /// The key that signs now: the newest whose time has come. Makes the first key, and
    /// the next when the newest is due for rotation; removes keys no token needs.
    async fn signing_key(&self, now: DateTime<Utc>) -> Result<Arc<LoadedKey>, IssuerError> {
        let mut set = self.keys.lock().await;
        if set.read_at.is_none_or(|t| t.elapsed() >= CACHE_TTL) {
            set.rows = self.store.signing_keys().await?;
            set.read_at = Some(Instant::now());
        }
        if self.rotation_due(&set.rows, now) {
            self.make_next(&set.rows, now).await?;
            set.rows = self.store.signing_keys().await?;
            set.read_at = Some(Instant::now());
            if let Ok(mut j) = self.jwks.write() {
                *j = None;
            }
        }
        let retired: Vec<i64> = (0..set.rows.len())
            .filter(|i| !is_published(&set.rows, *i, now))
            .map(|i| set.rows[i].slot)
            .collect();
        if !retired.is_empty() {
            self.store.remove_signing_keys(&retired).await?;
            set.rows.retain(|k| !retired.contains(&k.slot));
        }
        let now_ms = now.timestamp_millis();
        let row = set
            .rows
            .iter()
            .rev()
            .find(|k| k.signs_from <= now_ms)
            .or(set.rows.first())
            .cloned()
            .ok_or_else(|| IssuerError::Key("no signing key".into()))?;
        if let Some(k) = set.loaded.get(&row.kid) {
            return Ok(k.clone());
        }
        let loaded =
            Arc::new(LoadedKey::load(&row.kid, &row.private_key).map_err(IssuerError::Key)?);
        set.loaded.insert(row.kid.clone(), loaded.clone());
        Ok(loaded)
    }

    fn rotation_due(&self, rows: &[SigningKeyRow], now: DateTime<Utc>) -> bool {
        let Some(newest) = rows.last() else {
            return true;
        };
        let due = newest.signs_from + millis(self.rotate_every) - millis(PUBLISH_LEAD);
        now.timestamp_millis() >= due
    }

    /// Makes the key of the next slot; when another replica made it first, that one stays.
    async fn make_next(
        &self,
        rows: &[SigningKeyRow],
        now: DateTime<Utc>,
    ) -> Result<(), IssuerError> {
        let made = tokio::task::spawn_blocking(keys::generate)
            .await
            .map_err(|e| IssuerError::Key(e.to_string()))?
            .map_err(IssuerError::Key)?;
        let now_ms = now.timestamp_millis();
        let first = rows.is_empty();
        let row = SigningKeyRow {
            slot: rows.last().map_or(1, |k| k.slot + 1),
            kid: made.kid,
            private_key: made.private_key,
            public_jwk: made.public_jwk,
            created_at: now_ms,
            // The first key signs at once: no token exists that another replica could be
            // asked to verify before it has read it (an empty set is never cached).
            signs_from: if first {
                now_ms
            } else {
                now_ms + millis(PUBLISH_LEAD)
            },
        };
        let slot = row.slot;
        if self.store.add_signing_key(row).await? {
            tracing::info!(slot, "made a new OIDC signing key");
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Whether key `i` of `rows` (oldest first) is published at `now`: the newest always; an
/// older one until its successor has signed for [`MAX_TOKEN_LIFETIME`] plus [`SKEW`].
fn is_published(rows: &[SigningKeyRow], i: usize, now: DateTime<Utc>) -> bool {
    match rows.get(i + 1) {
        None => true,
        Some(next) => {
            now.timestamp_millis() < next.signs_from + millis(MAX_TOKEN_LIFETIME) + millis(SKEW)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(slot: i64, signs_from: i64) -> SigningKeyRow {
        SigningKeyRow {
            slot,
            kid: format!("k{slot}"),
            private_key: String::new(),
            public_jwk: String::new(),
            created_at: signs_from,
            signs_from,
        }
    }

    #[test]
    fn an_old_key_is_published_until_its_tokens_expired() {
        let rows = [row(1, 0), row(2, 1_000_000)];
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
        let until = 1_000_000 + millis(MAX_TOKEN_LIFETIME) + millis(SKEW);
        assert!(is_published(&rows, 0, at(until - 1)));
        assert!(!is_published(&rows, 0, at(until)));
        assert!(
            is_published(&rows, 1, at(4_000_000_000_000)),
            "the newest always"
        );
    }
}
