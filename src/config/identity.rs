//! `[runner.identities.<name>]` and `[oidc]`: the deploy identity each environment type's
//! runs get (SPEC 13), and how Paved's own OpenID Connect issuer rotates its keys.

use super::{duration, ConfigError, Env, Secret, MIN_SECRET_LEN};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `[runner.identities.<name>]` as an operator writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdentity {
    env: Option<BTreeMap<String, String>>,
    vars: Option<BTreeMap<String, String>>,
    oidc: Option<FileOidcIdentity>,
    azure: Option<AzureIdentity>,
    aws: Option<AwsIdentity>,
    gcp: Option<GcpIdentity>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidcIdentity {
    audience: String,
}

/// `[oidc]` as an operator writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileOidc {
    rotate_every: Option<String>,
}

/// What one environment type's runs get (SPEC 13). Its `Debug` shows no secret.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: String,
    /// Secret variables (redacted from every log, like `[runner.env]`).
    pub env: Vec<(String, Secret)>,
    /// Plain variables.
    pub vars: Vec<(String, String)>,
    /// Present: each run gets a token Paved signs, with this `aud`.
    pub oidc_audience: Option<String>,
    pub azure: Option<AzureIdentity>,
    pub aws: Option<AwsIdentity>,
    pub gcp: Option<GcpIdentity>,
}

/// An Entra application (or managed identity) and where ADE would deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureIdentity {
    pub client_id: String,
    pub tenant_id: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    /// A template: `{team}`, `{name}` and `{type}` are the environment's.
    #[serde(default)]
    pub resource_group: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
}

/// An IAM role assumed with the run's token (`AssumeRoleWithWebIdentity`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIdentity {
    pub role_arn: String,
}

/// A Google workload identity pool provider, and the service account to impersonate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpIdentity {
    pub audience: String,
    #[serde(default)]
    pub service_account: Option<String>,
}

impl AzureIdentity {
    /// The resource group of an environment: the template with `{team}`, `{name}` and
    /// `{type}` replaced (names are validated DNS labels, so the result is plain text).
    pub fn resource_group_of(&self, team: &str, name: &str, env_type: &str) -> Option<String> {
        self.resource_group.as_ref().map(|t| {
            t.replace("{team}", team)
                .replace("{name}", name)
                .replace("{type}", env_type)
        })
    }
}

/// Paved's issuer (`[oidc]`).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// How long a signing key signs before the next one takes over (`rotate_every`,
    /// `PAVED_OIDC_ROTATE_EVERY`; default 30 days).
    pub rotate_every: Duration,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            rotate_every: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

pub(super) fn load_oidc(file: FileOidc, env: Env) -> Result<OidcConfig, ConfigError> {
    let mut oidc = OidcConfig::default();
    if let Some(v) = env("PAVED_OIDC_ROTATE_EVERY").or(file.rotate_every) {
        oidc.rotate_every = duration("oidc.rotate_every", &v)?;
        if oidc.rotate_every < Duration::from_secs(3600) {
            return Err(ConfigError::Invalid(format!(
                "oidc.rotate_every {v:?}: at least 1h (a key must outlive the tokens it signs)"
            )));
        }
    }
    Ok(oidc)
}

pub use crate::manifest::names::is_identity_name;

pub(super) fn load_identities(
    file: BTreeMap<String, FileIdentity>,
) -> Result<BTreeMap<String, Identity>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, f) in file {
        let at = format!("runner.identities.{name}");
        if !is_identity_name(&name) {
            return Err(ConfigError::Invalid(format!(
                "{at}: an identity's name is 1 to 63 lower-case letters, digits, '-' and '_'"
            )));
        }
        let mut identity = Identity {
            name: name.clone(),
            ..Identity::default()
        };
        for (k, v) in f.env.unwrap_or_default() {
            super::runner::check_variable_name(&k)?;
            identity.env.push((k, Secret::new(v)));
        }
        for (k, v) in f.vars.unwrap_or_default() {
            super::runner::check_variable_name(&k)?;
            identity.vars.push((k, v));
        }
        if let Some(o) = f.oidc {
            if o.audience.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{at}.oidc.audience must not be empty"
                )));
            }
            identity.oidc_audience = Some(o.audience);
        }
        let needs_token = |cloud: &str| {
            ConfigError::Invalid(format!(
                "{at}.{cloud} needs {at}.oidc: the cloud trusts the token Paved signs for each run, and there is none without it"
            ))
        };
        if f.aws.is_some() && identity.oidc_audience.is_none() {
            return Err(needs_token("aws"));
        }
        if f.gcp.is_some() && identity.oidc_audience.is_none() {
            return Err(needs_token("gcp"));
        }
        identity.azure = f.azure;
        identity.aws = f.aws;
        identity.gcp = f.gcp;
        out.insert(name, identity);
    }
    Ok(out)
}

/// Identity secrets too short to redact, as `runner.identities.<name>.env.<KEY>`.
pub(super) fn short_secrets(identities: &BTreeMap<String, Identity>) -> Vec<String> {
    let mut short = Vec::new();
    for (name, identity) in identities {
        for (k, v) in &identity.env {
            if v.expose().chars().count() < MIN_SECRET_LEN {
                short.push(format!("runner.identities.{name}.env.{k}"));
            }
        }
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<BTreeMap<String, Identity>, ConfigError> {
        #[derive(Deserialize)]
        struct Wrap {
            identities: BTreeMap<String, FileIdentity>,
        }
        let w: Wrap = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        load_identities(w.identities)
    }

    #[test]
    fn reads_the_spec_example() {
        let ids = load(
            r#"
[identities.dev-deployer]
env  = { CLOUD_API_KEY = "0123456789abcdef" }
vars = { REGION = "eu" }
oidc = { audience = "api://AzureADTokenExchange" }
azure = { client_id = "c", tenant_id = "t", subscription_id = "s", resource_group = "paved-{team}-{name}", location = "westeurope" }
aws = { role_arn = "arn:aws:iam::123456789012:role/paved-dev" }
gcp = { audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/paved", service_account = "sa@p.iam.gserviceaccount.com" }
"#,
        )
        .expect("valid");
        let d = &ids["dev-deployer"];
        assert_eq!(
            d.oidc_audience.as_deref(),
            Some("api://AzureADTokenExchange")
        );
        assert_eq!(d.env[0].0, "CLOUD_API_KEY");
        assert_eq!(
            d.azure
                .as_ref()
                .unwrap()
                .resource_group_of("web", "pr-1", "dev"),
            Some("paved-web-pr-1".to_string())
        );
        // Secrets never show in Debug.
        assert!(!format!("{d:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn refuses_what_cannot_work() {
        let aws_without_token = load(
            r#"[identities.x]
aws = { role_arn = "arn:aws:iam::1:role/r" }"#,
        );
        assert!(
            matches!(&aws_without_token, Err(ConfigError::Invalid(m)) if m.contains("needs runner.identities.x.oidc")),
            "{aws_without_token:?}"
        );
        assert!(load("[identities.Bad]\n").is_err());
        assert!(load("[identities.x]\nenv = { ADE_CLIENT_ID = \"0123456789\" }\n").is_err());
        assert!(load("[identities.x]\nunknown = 1\n").is_err());
    }
}
