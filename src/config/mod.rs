//! Service configuration: `paved.toml`, overridden by `PAVED_*` environment variables,
//! overridden by command-line flags. The key names are a contract with operators and
//! their scripts; see the README's configuration reference.

mod api;
mod file;
mod github;
mod identity;
mod lifecycle;
mod log;
mod portal;
mod repos;
mod runner;

pub use api::{ApiConfig, ServiceToken, MAX_IDENTITY_TTL};
pub use github::{GithubAuth, ReportMode};
pub use identity::{
    is_identity_name, AwsIdentity, AzureIdentity, GcpIdentity, Identity, OidcConfig,
};
pub use lifecycle::LifecycleConfig;
pub use log::LogFormat;
pub use portal::PortalConfig;
pub use repos::RepoFilter;
pub use runner::{RunnerConfig, SandboxMode};

use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// GitHub's web address (`github.web_url`): its sign-in and new-App pages.
pub const DEFAULT_WEB_URL: &str = "https://github.com";

/// GitHub caps webhook payloads at 25 MB: the largest body intake reads.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Secrets shorter than this are refused at start: a short value cannot be redacted from
/// logs reliably (replacing every `abc` hides nothing and mangles the log), and silently
/// skipping it would let it leak.
pub const MIN_SECRET_LEN: usize = 8;

/// A secret value: never printed by `Debug`, so configs can be logged safely.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Base URL under which Paved's API is reachable, used for statuses' `target_url`.
    /// `None`: `http://` plus the address actually bound.
    pub public_url: Option<String>,
    /// How many deliveries are processed at once (different pull requests only).
    pub workers: usize,
    pub webhook_secrets: Vec<Secret>,
    pub api_url: String,
    pub auth: Option<GithubAuth>,
    pub clone_url_template: Option<String>,
    pub runner: RunnerConfig,
    /// How long a push to the default branch that changes `environments/` waits for the
    /// merge event that explains it before it is flagged ungoverned (`[provision]
    /// push_grace`, `PAVED_PUSH_GRACE`; default 10m).
    pub push_grace: std::time::Duration,
    /// How long a replica's claim on a delivery, and its lock on an environment, last
    /// without renewal (`[provision] lease`, `PAVED_LEASE`; default 60s). Renewed every
    /// third of it while the work goes on; a replica that dies loses its work to another
    /// after this long.
    pub lease: std::time::Duration,
    /// The repositories Paved serves (`github.repositories`, `PAVED_GITHUB_REPOSITORIES`).
    /// A delivery for any other is acknowledged and ignored.
    pub repositories: RepoFilter,
    /// Limits on what one pull request may ask for (`[checks]`).
    pub checks: ChecksConfig,
    /// Timeouts and memory bounds of the webhook receiver (`[intake]`).
    pub intake: IntakeConfig,
    /// Where PR verdicts go (`github.report`); `None`: check runs for a GitHub App,
    /// commit statuses with a token.
    pub report: Option<ReportMode>,
    /// How long processing records are kept, and when mirrors are repacked (`[store]`).
    pub store: StoreConfig,
    /// Service tokens and the identity cache (`[api]`).
    pub api: ApiConfig,
    /// `[portal]`: sign-in to the web portal.
    pub portal: PortalConfig,
    /// `[lifecycle]`: expiry warnings, drift checks, the scheduler and its clock.
    pub lifecycle: LifecycleConfig,
    /// Paved's OpenID Connect issuer (`[oidc]`, SPEC 13).
    pub oidc: OidcConfig,
    /// `[log]`: text for people or JSON for collectors.
    pub log_format: LogFormat,
}

/// `[store]` in `paved.toml`: what keeps the database and the mirrors from growing without
/// end.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Deliveries, check runs and operation logs older than this are pruned (`retention`,
    /// default 30d, at least 3d: GitHub redelivers for 3 days). Inventory, operations'
    /// outcomes and the audit notes are kept forever.
    pub retention: std::time::Duration,
    /// A mirror with more loose objects than this is repacked (`repack_loose_objects`,
    /// default 2000).
    pub repack_loose_objects: usize,
    /// A mirror with more pack files than this is repacked into one (`repack_packs`,
    /// default 20).
    pub repack_packs: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: std::time::Duration::from_secs(30 * 24 * 3600),
            repack_loose_objects: 2000,
            repack_packs: 20,
        }
    }
}

/// `[checks]` in `paved.toml`.
#[derive(Debug, Clone)]
pub struct ChecksConfig {
    /// Manifests one pull request may touch (`max_manifests`, default 200). Beyond it the PR
    /// gets one failing `paved/schema` status and nothing is evaluated or provisioned.
    pub max_manifests: usize,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig { max_manifests: 200 }
    }
}

/// `[intake]` in `paved.toml`: what keeps the webhook receiver from being a memory or
/// connection sink.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// A connection must have sent a request's whole header within this (`header_timeout`,
    /// default 10s), or it is closed.
    pub header_timeout: std::time::Duration,
    /// A request must be read and answered within this (`request_timeout`, default 30s);
    /// a body that trickles in is cut off with 408.
    pub request_timeout: std::time::Duration,
    /// Bytes of webhook bodies held in memory at once, across all requests
    /// (`max_body_bytes_in_flight`, default 64 MiB). A body waits for room (within the
    /// request timeout) before it is read.
    pub max_body_bytes_in_flight: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(30),
            max_body_bytes_in_flight: 64 * 1024 * 1024,
        }
    }
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_path: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// How configuration reads the environment: a lookup, so tests need not touch the
/// process environment.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The flag, else the (non-empty) variable, else the file's value.
fn pick(env: Env, flag: Option<String>, var: &str, file: Option<String>) -> Option<String> {
    flag.or_else(|| env(var).filter(|v| !v.is_empty())).or(file)
}

/// A duration setting (`30s`, `10m`, `6h`, `7d`).
fn duration(what: &str, v: &str) -> Result<std::time::Duration, ConfigError> {
    crate::manifest::platform::HumanDuration::parse(v)
        .map(|d| d.as_std())
        .map_err(|e| ConfigError::Invalid(format!("{what} {v:?}: {e}")))
}

fn parse_bool(what: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::Invalid(format!(
            "{what}: not true or false: {v}"
        ))),
    }
}

impl Config {
    /// Loads the file (if any), then the environment given by `env`, then `flags`.
    /// `env` is a lookup so tests need not touch the process environment.
    pub fn load(flags: &Overrides, env: Env) -> Result<Config, ConfigError> {
        let path = flags
            .config_path
            .clone()
            .or_else(|| env("PAVED_CONFIG").map(PathBuf::from));
        let mut file = match &path {
            Some(p) => file::read_file(p, true)?,
            None => file::read_file(Path::new("paved.toml"), false)?,
        };
        let listen = pick(env, flags.listen.clone(), "PAVED_LISTEN", file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("PAVED_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("paved-data"));
        let database_url = pick(
            env,
            flags.database_url.clone(),
            "PAVED_DATABASE_URL",
            file.database_url,
        )
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("paved.sqlite").display()));
        let public_url = pick(env, None, "PAVED_PUBLIC_URL", file.public_url)
            .map(|u| u.trim_end_matches('/').to_string());
        let workers = match env("PAVED_WORKERS") {
            Some(v) => v
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("PAVED_WORKERS: not a number: {v}")))?,
            None => file.workers.unwrap_or(4),
        };
        if workers == 0 {
            return Err(ConfigError::Invalid("workers must be at least 1".into()));
        }
        let oauth = portal::FileOauth {
            client_id: file.github.oauth_client_id.take(),
            client_secret: file.github.oauth_client_secret.take(),
            web_url: file.github.web_url.take(),
        };
        let gh = github::load_github(file.github, file.git, env)?;
        let push_grace = match pick(env, None, "PAVED_PUSH_GRACE", file.provision.push_grace) {
            Some(v) => duration("provision.push_grace", &v)?,
            None => std::time::Duration::from_secs(600),
        };
        let lease = match pick(env, None, "PAVED_LEASE", file.provision.lease) {
            Some(v) => duration("provision.lease", &v)?,
            None => std::time::Duration::from_secs(60),
        };
        let mut runner = runner::load_runner(file.runner, env)?;
        // Paved's own files, masked in every sandbox wherever a visible folder holds them.
        let config_file = path.clone().unwrap_or_else(|| PathBuf::from("paved.toml"));
        runner.hidden.push(absolute(&config_file));
        if let Some(GithubAuth::App {
            private_key_path, ..
        }) = &gh.auth
        {
            runner.hidden.push(absolute(private_key_path));
        }
        Ok(Config {
            report: gh.report,
            store: load_store(&file.store)?,
            api: api::load_api(file.api, env)?,
            portal: portal::load_portal(file.portal, oauth, env)?,
            lifecycle: lifecycle::load_lifecycle(file.lifecycle, env)?,
            oidc: identity::load_oidc(file.oidc, env)?,
            log_format: log::load_log(file.log, env)?,
            repositories: gh.repositories,
            checks: load_checks(&file.checks)?,
            intake: load_intake(&file.intake)?,
            runner,
            push_grace,
            lease,
            listen,
            data_dir,
            database_url,
            public_url,
            workers,
            webhook_secrets: gh.webhook_secrets,
            api_url: gh.api_url,
            auth: gh.auth,
            clone_url_template: gh.clone_url_template,
        })
    }

    /// Where PR verdicts go, `github.report` or the default for the authentication.
    pub fn report_mode(&self) -> ReportMode {
        self.report
            .unwrap_or_else(|| ReportMode::default_for(self.auth.as_ref()))
    }

    /// What `paved serve` refuses to start with, whichever way the config was made (file,
    /// environment, or built in code by `demo` and tests):
    /// - `github.report = "checks"` without a GitHub App;
    /// - no `github.repositories` and no explicit `github.allow_any_repository = true`;
    /// - a secret shorter than [`MIN_SECRET_LEN`]: webhook secrets, the GitHub token,
    ///   `[runner.env]` values and the values of `runner.pass_env` variables are all
    ///   redacted from logs, and a short one cannot be redacted reliably.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.report == Some(ReportMode::Checks)
            && !matches!(self.auth, Some(GithubAuth::App { .. }))
        {
            return Err(ConfigError::Invalid(
                "github.report = \"checks\" needs a GitHub App (github.app_id and github.private_key_path): GitHub opens the Checks API to apps only".into(),
            ));
        }
        if self.repositories.is_unset() {
            return Err(ConfigError::Invalid(
                "no repositories to serve: set github.repositories (owner/name, globs allowed; PAVED_GITHUB_REPOSITORIES) to the environments repositories Paved serves, or set github.allow_any_repository = true to serve any repository whose webhook reaches it".into(),
            ));
        }
        let mut short = Vec::new();
        for (i, s) in self.webhook_secrets.iter().enumerate() {
            if s.expose().chars().count() < MIN_SECRET_LEN {
                short.push(format!("github.webhook_secrets[{i}]"));
            }
        }
        if let Some(GithubAuth::Token(t)) = &self.auth {
            if t.expose().chars().count() < MIN_SECRET_LEN {
                short.push("github.token".to_string());
            }
        }
        for (k, v) in &self.runner.env {
            if v.expose().chars().count() < MIN_SECRET_LEN {
                short.push(format!("runner.env.{k}"));
            }
        }
        for (k, v) in &self.runner.pass_env {
            if v.expose().chars().count() < MIN_SECRET_LEN {
                short.push(format!(
                    "runner.pass_env {k} (from the service's environment)"
                ));
            }
        }
        short.extend(identity::short_secrets(&self.runner.identities));
        if !short.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "secrets shorter than {MIN_SECRET_LEN} characters cannot be redacted from logs reliably: {}. Use longer secrets; put values that are not secret under [runner.vars]",
                short.join(", ")
            )));
        }
        if self.public_url.is_none() {
            if let Some(i) = self
                .runner
                .identities
                .values()
                .find(|i| i.oidc_audience.is_some())
            {
                return Err(ConfigError::Invalid(format!(
                    "runner.identities.{}.oidc needs public_url: it is the issuer clouds trust, and where they fetch its keys (/.well-known/openid-configuration)",
                    i.name
                )));
            }
        }
        let data_dir = absolute(&self.data_dir);
        let work_dir = absolute(&self.runner.work_dir);
        if work_dir.starts_with(&data_dir) || data_dir.starts_with(&work_dir) {
            return Err(ConfigError::Invalid(format!(
                "runner.work_dir {} must be outside the data folder {} (and not hold it): a run must never reach Paved's data",
                work_dir.display(),
                data_dir.display()
            )));
        }
        for (m, _) in &self.runner.mounts {
            if absolute(m).starts_with(&data_dir) {
                return Err(ConfigError::Invalid(format!(
                    "runner.mounts: {} is inside the data folder {}, which runs never see",
                    m.display(),
                    data_dir.display()
                )));
            }
        }
        Ok(())
    }
}

/// `p` made absolute against the working folder (without touching the file system).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn load_checks(file: &file::FileChecks) -> Result<ChecksConfig, ConfigError> {
    let mut checks = ChecksConfig::default();
    if let Some(n) = file.max_manifests {
        if n == 0 {
            return Err(ConfigError::Invalid(
                "checks.max_manifests must be at least 1".into(),
            ));
        }
        checks.max_manifests = n;
    }
    Ok(checks)
}

fn load_intake(file: &file::FileIntake) -> Result<IntakeConfig, ConfigError> {
    let mut intake = IntakeConfig::default();
    if let Some(v) = &file.header_timeout {
        intake.header_timeout = duration("intake.header_timeout", v)?;
    }
    if let Some(v) = &file.request_timeout {
        intake.request_timeout = duration("intake.request_timeout", v)?;
    }
    if let Some(n) = file.max_body_bytes_in_flight {
        if n < MAX_BODY_BYTES {
            return Err(ConfigError::Invalid(format!(
                "intake.max_body_bytes_in_flight must be at least {MAX_BODY_BYTES} (one webhook body at GitHub's 25 MiB cap)"
            )));
        }
        intake.max_body_bytes_in_flight = n;
    }
    Ok(intake)
}

fn load_store(file: &file::FileStore) -> Result<StoreConfig, ConfigError> {
    let mut store = StoreConfig::default();
    if let Some(v) = &file.retention {
        store.retention = duration("store.retention", v)?;
        if store.retention < std::time::Duration::from_secs(3 * 24 * 3600) {
            return Err(ConfigError::Invalid(format!(
                "store.retention {v:?}: at least 3d (GitHub redelivers a webhook for 3 days, and a delivery id must be remembered to be recognised)"
            )));
        }
    }
    if let Some(n) = file.repack_loose_objects {
        store.repack_loose_objects = n;
    }
    if let Some(n) = file.repack_packs {
        store.repack_packs = n.max(2);
    }
    Ok(store)
}

#[cfg(test)]
mod tests;
