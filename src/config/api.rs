//! `[api]` in `paved.toml`: who may call `/api/v1` besides GitHub users (service tokens),
//! and how long a GitHub token's login is trusted before GitHub is asked again.

use super::{duration, ConfigError, Env};
use serde::Deserialize;
use std::time::Duration;

/// The longest a GitHub token's login is cached: a revoked token stops working within it.
pub const MAX_IDENTITY_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileApi {
    #[serde(default)]
    pub(super) tokens: Vec<FileServiceToken>,
    pub(super) identity_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServiceToken {
    name: String,
    sha256: String,
    #[serde(default = "reader")]
    role: String,
}

fn reader() -> String {
    "reader".into()
}

/// A service token (Backstage, dashboards, scripts): only its SHA-256 is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceToken {
    pub name: String,
    pub sha256: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `[[api.tokens]]`: every one has the `reader` role (reads everything, acts on nothing).
    pub tokens: Vec<ServiceToken>,
    /// How long a GitHub token's login is cached (`identity_ttl`, default and at most 5m).
    pub identity_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens: Vec::new(),
            identity_ttl: MAX_IDENTITY_TTL,
        }
    }
}

/// `[api]`, with `PAVED_API_TOKENS` (`name=sha256,name=sha256`) adding service tokens and
/// `PAVED_API_IDENTITY_TTL` replacing `identity_ttl`.
pub(super) fn load_api(mut file: FileApi, env: Env) -> Result<ApiConfig, ConfigError> {
    if let Some(v) = env("PAVED_API_TOKENS").filter(|v| !v.trim().is_empty()) {
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((name, sha256)) = item.split_once('=') else {
                return Err(ConfigError::Invalid(
                    "PAVED_API_TOKENS: write name=sha256, separated by commas".into(),
                ));
            };
            file.tokens.push(FileServiceToken {
                name: name.trim().to_string(),
                sha256: sha256.trim().to_string(),
                role: reader(),
            });
        }
    }
    if let Some(v) = env("PAVED_API_IDENTITY_TTL").filter(|v| !v.is_empty()) {
        file.identity_ttl = Some(v);
    }
    let mut api = ApiConfig::default();
    if let Some(v) = &file.identity_ttl {
        api.identity_ttl = duration("api.identity_ttl", v)?;
        if api.identity_ttl > MAX_IDENTITY_TTL {
            return Err(ConfigError::Invalid(format!(
                "api.identity_ttl {v:?}: at most 5m (a revoked GitHub token must stop working within 5 minutes)"
            )));
        }
    }
    for (i, t) in file.tokens.into_iter().enumerate() {
        let at = format!("api.tokens[{i}]");
        if t.name.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "{at}.name: must not be empty"
            )));
        }
        if t.role != "reader" {
            return Err(ConfigError::Invalid(format!(
                "{at}.role {:?}: service tokens have the role \"reader\" only",
                t.role
            )));
        }
        let sha256 = hex32(&t.sha256).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{at}.sha256: 64 hexadecimal characters, the SHA-256 of the token (e.g. `printf %s \"$TOKEN\" | sha256sum`)"
            ))
        })?;
        if api
            .tokens
            .iter()
            .any(|o| o.name == t.name || o.sha256 == sha256)
        {
            return Err(ConfigError::Invalid(format!(
                "{at}: name or token repeated"
            )));
        }
        api.tokens.push(ServiceToken {
            name: t.name,
            sha256,
        });
    }
    Ok(api)
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
