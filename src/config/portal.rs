//! The portal's settings: the GitHub OAuth app people sign in with (`[github]`
//! `oauth_client_id`, `oauth_client_secret`, `web_url`, as SPEC 8 names them) and, under
//! `[portal]`, the key that signs their session cookies and how long a sign-in lasts.

use super::{duration, ConfigError, Env, Secret, MIN_SECRET_LEN};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePortal {
    session_key: Option<String>,
    session_ttl: Option<String>,
}

/// The OAuth keys of `[github]`.
#[derive(Debug, Default)]
pub(super) struct FileOauth {
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) web_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The OAuth app's client id; without it (and its secret) the portal's sign-in page says
    /// how to register one.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    /// Where GitHub's web flow is (`https://github.com`; GitHub Enterprise's host).
    pub web_url: String,
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
            web_url: super::DEFAULT_WEB_URL.into(),
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

/// `[portal]` and the OAuth keys of `[github]`, each replaced by its variable when set
/// (`PAVED_PORTAL_SESSION_KEY`, `PAVED_PORTAL_SESSION_TTL`, `PAVED_GITHUB_OAUTH_CLIENT_ID`,
/// `PAVED_GITHUB_OAUTH_CLIENT_SECRET`, `PAVED_GITHUB_WEB_URL`).
pub(super) fn load_portal(
    mut file: FilePortal,
    mut oauth: FileOauth,
    env: Env,
) -> Result<PortalConfig, ConfigError> {
    for (var, slot) in [
        ("PAVED_GITHUB_OAUTH_CLIENT_ID", &mut oauth.client_id),
        ("PAVED_GITHUB_OAUTH_CLIENT_SECRET", &mut oauth.client_secret),
        ("PAVED_GITHUB_WEB_URL", &mut oauth.web_url),
        ("PAVED_PORTAL_SESSION_KEY", &mut file.session_key),
        ("PAVED_PORTAL_SESSION_TTL", &mut file.session_ttl),
    ] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            *slot = Some(v);
        }
    }
    let mut p = PortalConfig::default();
    if oauth.client_id.is_some() != oauth.client_secret.is_some() {
        return Err(ConfigError::Invalid(
            "github: set both oauth_client_id and oauth_client_secret (the portal's OAuth app), or neither"
                .into(),
        ));
    }
    p.client_id = oauth.client_id;
    p.client_secret = oauth.client_secret.map(Secret::new);
    if let Some(u) = oauth.web_url {
        url::Url::parse(&u)
            .map_err(|e| ConfigError::Invalid(format!("github.web_url {u:?}: not a URL ({e})")))?;
        p.web_url = u.trim_end_matches('/').to_string();
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
            "github.oauth_client_secret: at least {MIN_SECRET_LEN} characters"
        )));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `github` holds the `[github]` OAuth keys as TOML, `file` the `[portal]` table.
    fn load2(github: &str, file: &str, vars: &[(&str, &str)]) -> Result<PortalConfig, ConfigError> {
        #[derive(serde::Deserialize, Default)]
        struct G {
            oauth_client_id: Option<String>,
            oauth_client_secret: Option<String>,
            web_url: Option<String>,
        }
        let g: G = toml::from_str(github).expect("toml");
        let oauth = FileOauth {
            client_id: g.oauth_client_id,
            client_secret: g.oauth_client_secret,
            web_url: g.web_url,
        };
        let file: FilePortal = toml::from_str(file).expect("toml");
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        load_portal(file, oauth, &env)
    }

    fn load(github: &str, vars: &[(&str, &str)]) -> Result<PortalConfig, ConfigError> {
        load2(github, "", vars)
    }

    #[test]
    fn the_oauth_app_comes_whole_from_the_file_or_the_environment() {
        let p = load("", &[]).expect("defaults");
        assert!(p.oauth_app().is_none());
        assert_eq!(p.web_url, "https://github.com");
        assert_eq!(p.session_ttl, Duration::from_secs(8 * 3600));
        let p = load(
            "oauth_client_id = \"Iv1.x\"\noauth_client_secret = \"from-the-file\"\n",
            &[("PAVED_GITHUB_OAUTH_CLIENT_SECRET", "from-the-environment")],
        )
        .expect("app");
        let (id, secret) = p.oauth_app().expect("configured");
        assert_eq!((id, secret.expose()), ("Iv1.x", "from-the-environment"));
        assert!(format!("{p:?}").contains("[redacted]") && !format!("{p:?}").contains("from-the"));
        let half = load("oauth_client_id = \"Iv1.x\"\n", &[]).expect_err("half an app");
        assert!(
            half.to_string()
                .contains("both oauth_client_id and oauth_client_secret"),
            "{half}"
        );
        let short = load2("", "session_key = \"short\"\n", &[]).expect_err("a short key");
        assert!(short.to_string().contains("portal.session_key"), "{short}");
        let ttl = load("", &[("PAVED_PORTAL_SESSION_TTL", "30m")]).expect("ttl");
        assert_eq!(ttl.session_ttl, Duration::from_secs(1800));
        assert!(load("web_url = \"not a url\"\n", &[]).is_err());
    }
}
