//! `[portal]` in `paved.toml`: the GitHub OAuth app people sign in to the portal with, and
//! the key that signs their session cookies.

use super::{duration, ConfigError, Env, Secret, MIN_SECRET_LEN};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePortal {
    client_id: Option<String>,
    client_secret: Option<String>,
    github_url: Option<String>,
    session_key: Option<String>,
    session_ttl: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The OAuth app's client id; without it (and its secret) the portal's sign-in page says
    /// how to register one.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Where GitHub's web flow is (`https://github.com`; GitHub Enterprise's host).
    pub github_url: String,
    /// Signs session cookies and CSRF tokens. Unset: a random key per process, so a restart
    /// signs everyone out and replicas do not share sign-ins (set it when running several).
    pub session_key: Option<Secret>,
    /// How long a sign-in lasts (`8h`).
    pub session_ttl: Duration,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            client_id: None,
            client_secret: None,
            github_url: "https://github.com".into(),
            session_key: None,
            session_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

impl PortalConfig {
    /// The OAuth app, when both halves are configured.
    pub fn oauth_app(&self) -> Option<(&str, &Secret)> {
        Some((self.client_id.as_deref()?, self.client_secret.as_ref()?))
    }
}

/// `[portal]`, each key replaced by `PAVED_PORTAL_<KEY>` when set.
pub(super) fn load_portal(mut file: FilePortal, env: Env) -> Result<PortalConfig, ConfigError> {
    for (var, slot) in [
        ("PAVED_PORTAL_CLIENT_ID", &mut file.client_id),
        ("PAVED_PORTAL_CLIENT_SECRET", &mut file.client_secret),
        ("PAVED_PORTAL_GITHUB_URL", &mut file.github_url),
        ("PAVED_PORTAL_SESSION_KEY", &mut file.session_key),
        ("PAVED_PORTAL_SESSION_TTL", &mut file.session_ttl),
    ] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            *slot = Some(v);
        }
    }
    let mut p = PortalConfig::default();
    if file.client_id.is_some() != file.client_secret.is_some() {
        return Err(ConfigError::Invalid(
            "portal: set both client_id and client_secret (the GitHub OAuth app), or neither"
                .into(),
        ));
    }
    p.client_id = file.client_id;
    p.client_secret = file.client_secret.map(Secret::new);
    if let Some(u) = file.github_url {
        url::Url::parse(&u).map_err(|e| {
            ConfigError::Invalid(format!("portal.github_url {u:?}: not a URL ({e})"))
        })?;
        p.github_url = u.trim_end_matches('/').to_string();
    }
    if let Some(k) = file.session_key {
        if k.len() < 32 {
            return Err(ConfigError::Invalid(
                "portal.session_key: at least 32 characters (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        p.session_key = Some(Secret::new(k));
    }
    if let Some(t) = &file.session_ttl {
        p.session_ttl = duration("portal.session_ttl", t)?;
    }
    if p.client_secret
        .as_ref()
        .is_some_and(|s| s.expose().len() < MIN_SECRET_LEN)
    {
        return Err(ConfigError::Invalid(format!(
            "portal.client_secret: at least {MIN_SECRET_LEN} characters"
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, vars: &[(&str, &str)]) -> Result<PortalConfig, ConfigError> {
        let file: FilePortal = toml::from_str(file).expect("toml");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        load_portal(file, &env)
    }

    #[test]
    fn the_oauth_app_comes_whole_from_the_file_or_the_environment() {
        let p = load("", &[]).expect("defaults");
        assert!(p.oauth_app().is_none());
        assert_eq!(p.github_url, "https://github.com");
        assert_eq!(p.session_ttl, Duration::from_secs(8 * 3600));
        let p = load(
            "client_id = \"Iv1.x\"\nclient_secret = \"from-the-file\"\n",
            &[("PAVED_PORTAL_CLIENT_SECRET", "from-the-environment")],
        )
        .expect("app");
        let (id, secret) = p.oauth_app().expect("configured");
        assert_eq!((id, secret.expose()), ("Iv1.x", "from-the-environment"));
        assert!(format!("{p:?}").contains("[redacted]") && !format!("{p:?}").contains("from-the"));
        let half = load("client_id = \"Iv1.x\"\n", &[]).expect_err("half an app");
        assert!(
            half.to_string()
                .contains("both client_id and client_secret"),
            "{half}"
        );
        let short = load("session_key = \"short\"\n", &[]).expect_err("a short key");
        assert!(short.to_string().contains("portal.session_key"), "{short}");
        let ttl = load("", &[("PAVED_PORTAL_SESSION_TTL", "30m")]).expect("ttl");
        assert_eq!(ttl.session_ttl, Duration::from_secs(1800));
        assert!(load("github_url = \"not a url\"\n", &[]).is_err());
    }
}
