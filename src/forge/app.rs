//! GitHub App authentication: installation access tokens minted through
//! `POST /app/installations/{id}/access_tokens` with a JWT signed by the app's private key,
//! kept until shortly before they expire, and dropped when GitHub answers 401 so the next
//! request mints a fresh one. The same token serves the REST API and Git over HTTPS.

use super::client::{build_octocrab, Auth, ForgeError, GitHub};
use crate::config::Secret;
use crate::ids::InstallationId;
use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use std::collections::HashMap;
use std::time::Duration;

/// A token this close to its expiry is renewed before use: long enough for a fetch or a
/// provisioning run's API calls to finish with it (GitHub's tokens last an hour).
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// What [`AppTokens::current`] returns.
pub(super) type Current<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(Octocrab, Secret), ForgeError>> + Send + 'a>,
>;

/// One installation's current token and the client that sends it.
#[derive(Clone)]
struct Cached {
    token: Secret,
    expires_at: DateTime<Utc>,
    octo: Octocrab,
}

/// The installation tokens of one GitHub App.
pub struct AppTokens {
    /// Authenticated as the app itself (a fresh JWT per request, made by octocrab).
    app: GitHub,
    api_url: String,
    cache: tokio::sync::Mutex<HashMap<InstallationId, Cached>>,
}

/// Whether a token expiring at `expires_at` is still good to use at `now`.
pub fn still_fresh(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let margin = chrono::Duration::from_std(RENEW_BEFORE).unwrap_or(chrono::Duration::zero());
    expires_at - now > margin
}

impl AppTokens {
    pub(super) fn new(app: GitHub, api_url: &str) -> AppTokens {
        AppTokens {
            app,
            api_url: api_url.to_string(),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The installation's token and a client sending it, minted when there is none or the
    /// one held expires within [`RENEW_BEFORE`]. Minting holds the cache's lock, so many
    /// workers needing a token at once mint one, not one each.
    ///
    /// Boxed with its `Send` spelled out: minting sends a request through the same client
    /// code (as the app, so it never comes back here), and the compiler cannot see through
    /// that cycle by itself.
    pub(super) fn current(&self, installation: InstallationId) -> Current<'_> {
        Box::pin(self.current_inner(installation))
    }

    async fn current_inner(
        &self,
        installation: InstallationId,
    ) -> Result<(Octocrab, Secret), ForgeError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(&installation) {
            if still_fresh(c.expires_at, crate::clock::wall()) {
                return Ok((c.octo.clone(), c.token.clone()));
            }
        }
        let minted = self.app.create_installation_token(installation).await?;
        let octo = build_octocrab(&self.api_url, Auth::Token(minted.token.expose()))?;
        tracing::info!(installation = %installation.0, expires_at = %minted.expires_at,
            "minted a GitHub App installation token");
        self.app.metrics().github_token_minted();
        let c = Cached {
            token: minted.token,
            expires_at: minted.expires_at,
            octo,
        };
        cache.insert(installation, c.clone());
        Ok((c.octo, c.token))
    }

    /// Drops `token` if it is still the installation's current one (GitHub refused it:
    /// revoked, or expired earlier than it said). The next request mints another.
    pub(super) async fn forget(&self, installation: InstallationId, token: &Secret) {
        let mut cache = self.cache.lock().await;
        if cache
            .get(&installation)
            .is_some_and(|c| c.token.expose() == token.expose())
        {
            cache.remove(&installation);
        }
    }

    /// Drops the installation's token whatever it is (a Git fetch or push failed, maybe
    /// because the token was refused: Git does not say which).
    pub(super) async fn forget_any(&self, installation: InstallationId) {
        self.cache.lock().await.remove(&installation);
    }
}

/// A minted installation token.
pub(super) struct Minted {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_shortly_before_it_expires() {
        let now = crate::clock::wall();
        assert!(still_fresh(now + chrono::Duration::minutes(59), now));
        assert!(still_fresh(now + chrono::Duration::minutes(6), now));
        assert!(!still_fresh(now + chrono::Duration::minutes(4), now));
        assert!(!still_fresh(now - chrono::Duration::minutes(1), now));
    }
}
