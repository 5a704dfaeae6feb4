//! What a run gets of its environment type's deploy identity (SPEC 13): its variables, its
//! token in a file, and the variables the clouds' own SDKs and CLIs read to find that file.
//! The values come resolved from the server's configuration; this module only lays them
//! out for the run.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The identity of one run. Its `Debug` shows names, never values.
#[derive(Clone, Default)]
pub struct RunIdentity {
    /// The identity's name (`[runner.identities.<name>]`).
    pub name: String,
    /// Its `env` (secret: also in the spec's secrets) and `vars`.
    pub vars: Vec<(String, String)>,
    /// The token Paved signed for this run, when the identity has `oidc`.
    pub token: Option<String>,
    pub aws_role_arn: Option<String>,
    pub azure: Option<AzureRun>,
    pub gcp: Option<GcpRun>,
}

/// The Azure settings of a run, the resource group already filled in.
#[derive(Debug, Clone, Default)]
pub struct AzureRun {
    pub client_id: String,
    pub tenant_id: String,
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    pub location: Option<String>,
}

/// A Google workload identity pool provider and the service account to impersonate.
#[derive(Debug, Clone, Default)]
pub struct GcpRun {
    pub audience: String,
    pub service_account: Option<String>,
}

impl std::fmt::Debug for RunIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunIdentity")
            .field("name", &self.name)
            .field(
                "vars",
                &self
                    .vars
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("token", &self.token.is_some())
            .field("aws_role_arn", &self.aws_role_arn)
            .field("azure", &self.azure)
            .field("gcp", &self.gcp)
            .finish()
    }
}

/// Where the identity's files go in a run's folder.
pub(super) struct IdentityFiles {
    pub token: PathBuf,
    pub google: PathBuf,
}

impl IdentityFiles {
    pub(super) fn under(root: &Path) -> IdentityFiles {
        let dir = root.join("identity");
        IdentityFiles {
            token: dir.join("token"),
            google: dir.join("google-credentials.json"),
        }
    }

    /// Writes the token and (for Google) the `external_account` credentials file.
    pub(super) fn write(&self, identity: &RunIdentity) -> std::io::Result<()> {
        let Some(token) = &identity.token else {
            return Ok(());
        };
        if let Some(dir) = self.token.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_private(&self.token, token.as_bytes())?;
        if let Some(gcp) = &identity.gcp {
            let mut creds = serde_json::json!({
                "type": "external_account",
                "audience": gcp.audience,
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": "https://sts.googleapis.com/v1/token",
                "credential_source": { "file": self.token },
            });
            if let Some(sa) = &gcp.service_account {
                creds["service_account_impersonation_url"] = serde_json::Value::String(format!(
                    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"
                ));
            }
            write_private(&self.google, creds.to_string().as_bytes())?;
        }
        Ok(())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// The identity's variables for the run: its own `env` and `vars`, then what the clouds'
/// SDKs read (SPEC 13), then ADE's identity variables. `set` replaces earlier values.
pub(super) fn identity_env(
    identity: &RunIdentity,
    files: &IdentityFiles,
    run_id: i64,
    set: &mut dyn FnMut(&str, OsString),
) {
    for (k, v) in &identity.vars {
        set(k, v.into());
    }
    let has_token = identity.token.is_some();
    if has_token {
        set("PAVED_OIDC_TOKEN_FILE", files.token.clone().into());
    }
    if let Some(role) = identity.aws_role_arn.as_ref().filter(|_| has_token) {
        set("AWS_ROLE_ARN", role.into());
        set("AWS_WEB_IDENTITY_TOKEN_FILE", files.token.clone().into());
        set(
            "AWS_ROLE_SESSION_NAME",
            format!("paved-run-{run_id}").into(),
        );
    }
    if let Some(az) = &identity.azure {
        set("AZURE_CLIENT_ID", az.client_id.clone().into());
        set("AZURE_TENANT_ID", az.tenant_id.clone().into());
        set("ARM_CLIENT_ID", az.client_id.clone().into());
        set("ARM_TENANT_ID", az.tenant_id.clone().into());
        set("ADE_CLIENT_ID", az.client_id.clone().into());
        set("ADE_TENANT_ID", az.tenant_id.clone().into());
        if let Some(s) = &az.subscription_id {
            set("AZURE_SUBSCRIPTION_ID", s.into());
            set("ARM_SUBSCRIPTION_ID", s.into());
            set("ADE_SUBSCRIPTION_ID", s.into());
        }
        if let Some(rg) = &az.resource_group {
            set("ADE_RESOURCE_GROUP_NAME", rg.into());
        }
        if let Some(l) = &az.location {
            set("ADE_ENVIRONMENT_LOCATION", l.into());
        }
        if has_token {
            set("AZURE_FEDERATED_TOKEN_FILE", files.token.clone().into());
            set("ARM_USE_OIDC", "true".into());
            set("ARM_OIDC_TOKEN_FILE_PATH", files.token.clone().into());
        }
    }
    if identity.gcp.is_some() && has_token {
        set(
            "GOOGLE_APPLICATION_CREDENTIALS",
            files.google.clone().into(),
        );
    }
}
