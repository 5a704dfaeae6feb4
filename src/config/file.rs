//! `paved.toml` as an operator writes it. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use super::ConfigError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file as written by an operator. Unknown keys are errors, so a typo never silently
/// falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) database_url: Option<String>,
    pub(super) public_url: Option<String>,
    pub(super) workers: Option<usize>,
    #[serde(default)]
    pub(super) github: FileGithub,
    #[serde(default)]
    pub(super) git: FileGit,
    #[serde(default)]
    pub(super) runner: FileRunner,
    #[serde(default)]
    pub(super) provision: FileProvision,
    #[serde(default)]
    pub(super) checks: FileChecks,
    #[serde(default)]
    pub(super) intake: FileIntake,
    #[serde(default)]
    pub(super) store: FileStore,
    #[serde(default)]
    pub(super) api: super::api::FileApi,
    #[serde(default)]
    pub(super) portal: super::portal::FilePortal,
    #[serde(default)]
    pub(super) lifecycle: super::lifecycle::FileLifecycle,
    #[serde(default)]
    pub(super) oidc: super::identity::FileOidc,
    #[serde(default)]
    pub(super) log: super::log::FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileStore {
    pub(super) retention: Option<String>,
    pub(super) repack_loose_objects: Option<usize>,
    pub(super) repack_packs: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileChecks {
    pub(super) max_manifests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIntake {
    pub(super) header_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_body_bytes_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRunner {
    pub(super) concurrency: Option<usize>,
    pub(super) output_limit: Option<usize>,
    pub(super) default_timeout: Option<String>,
    pub(super) path: Option<String>,
    pub(super) pass_env: Option<Vec<String>>,
    pub(super) env: Option<std::collections::BTreeMap<String, String>>,
    pub(super) vars: Option<std::collections::BTreeMap<String, String>>,
    pub(super) terraform_binary: Option<PathBuf>,
    pub(super) sandbox: Option<String>,
    pub(super) user: Option<String>,
    pub(super) bubblewrap: Option<String>,
    pub(super) work_dir: Option<PathBuf>,
    pub(super) mounts: Option<Vec<FileMount>>,
    pub(super) identities:
        Option<std::collections::BTreeMap<String, super::identity::FileIdentity>>,
    pub(super) ade_program: Option<PathBuf>,
}

/// `[[runner.mounts]]`: a host folder every run sees.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMount {
    pub(super) path: PathBuf,
    #[serde(default)]
    pub(super) writable: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileProvision {
    pub(super) push_grace: Option<String>,
    pub(super) lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGithub {
    pub(super) webhook_secrets: Option<Vec<String>>,
    pub(super) api_url: Option<String>,
    pub(super) token: Option<String>,
    pub(super) app_id: Option<u64>,
    pub(super) private_key_path: Option<PathBuf>,
    pub(super) repositories: Option<Vec<String>>,
    pub(super) allow_any_repository: Option<bool>,
    pub(super) report: Option<String>,
    /// The portal's OAuth app (SPEC 8), and where GitHub's web flow is.
    pub(super) oauth_client_id: Option<String>,
    pub(super) oauth_client_secret: Option<String>,
    pub(super) web_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGit {
    pub(super) clone_url_template: Option<String>,
}

/// Reads `path`; a missing file is an empty one unless `required`.
pub(super) fn read_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default())
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
