//! Service configuration: `paved.toml`, overridden by `PAVED_*` environment variables,
//! overridden by command-line flags. The key names are a contract with operators and
//! their scripts; see the README's configuration reference.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_API_URL: &str = "https://api.github.com";

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

/// The file as written by an operator. Unknown keys are errors, so a typo never silently
/// falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    workers: Option<usize>,
    #[serde(default)]
    github: FileGithub,
    #[serde(default)]
    git: FileGit,
    #[serde(default)]
    runner: FileRunner,
    #[serde(default)]
    provision: FileProvision,
    #[serde(default)]
    checks: FileChecks,
    #[serde(default)]
    intake: FileIntake,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileChecks {
    max_manifests: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIntake {
    header_timeout: Option<String>,
    request_timeout: Option<String>,
    max_body_bytes_in_flight: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRunner {
    concurrency: Option<usize>,
    output_limit: Option<usize>,
    default_timeout: Option<String>,
    path: Option<String>,
    pass_env: Option<Vec<String>>,
    env: Option<std::collections::BTreeMap<String, String>>,
    vars: Option<std::collections::BTreeMap<String, String>>,
    terraform_binary: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvision {
    push_grace: Option<String>,
    lease: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGithub {
    webhook_secrets: Option<Vec<String>>,
    api_url: Option<String>,
    token: Option<String>,
    app_id: Option<u64>,
    private_key_path: Option<PathBuf>,
    repositories: Option<Vec<String>>,
    allow_any_repository: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGit {
    clone_url_template: Option<String>,
}

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

/// How Paved authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GithubAuth {
    Token(Secret),
    /// A GitHub App: installation tokens are minted from the app's private key.
    App {
        app_id: u64,
        private_key_path: PathBuf,
    },
}

/// How provisioning scripts run (`[runner]` in `paved.toml`).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Operations on different environments that may run at once (`concurrency`,
    /// `PAVED_RUNNER_CONCURRENCY`; default 4).
    pub concurrency: usize,
    /// Bytes of a script's combined output kept per run (`output_limit`; default 1 MiB).
    pub output_limit: usize,
    /// Timeout of a run when the environment type sets none (`default_timeout`; 30m).
    pub default_timeout: std::time::Duration,
    /// `PATH` given to scripts (`path`; default `/usr/local/bin:/usr/bin:/bin`).
    pub path: String,
    /// Variables of the service's own environment passed to scripts by name
    /// (`pass_env`, `PAVED_RUNNER_PASS_ENV` comma-separated), with the values they had
    /// when the configuration was loaded. Nothing else leaks through. Their values are
    /// secrets: redacted from every log, comment, note and status.
    pub pass_env: Vec<(String, Secret)>,
    /// Names in `pass_env` that were not set in the service's environment (warned about
    /// at start; such a variable is simply not passed).
    pub pass_env_missing: Vec<String>,
    /// Fixed secret variables given to every script (`[runner.env]`), e.g. the PostgreSQL
    /// the `postgres-db` example creates databases in. Their values are redacted.
    pub env: Vec<(String, Secret)>,
    /// Fixed variables that are not secret (`[runner.vars]`, e.g. a region or a path):
    /// given to every script and shown as they are.
    pub vars: Vec<(String, String)>,
    /// `terraform` or `tofu` binary (`terraform_binary`; default: looked up on `path`).
    pub terraform_binary: Option<PathBuf>,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 4,
            output_limit: 1 << 20,
            default_timeout: std::time::Duration::from_secs(30 * 60),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            pass_env: Vec::new(),
            pass_env_missing: Vec::new(),
            env: Vec::new(),
            vars: Vec::new(),
            terraform_binary: None,
        }
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

/// Secrets shorter than this are refused at start: a short value cannot be redacted from
/// logs reliably (replacing every `abc` hides nothing and mangles the log), and silently
/// skipping it would let it leak.
pub const MIN_SECRET_LEN: usize = 8;

/// Which repositories Paved serves: `owner/name` patterns where `*` matches any run of
/// characters within a part and `?` one character, compared case-insensitively (GitHub's
/// names are). `allow_any` serves every repository (only when set explicitly).
#[derive(Debug, Clone, Default)]
pub struct RepoFilter {
    patterns: Vec<String>,
    allow_any: bool,
}

impl RepoFilter {
    /// A filter from patterns, checked to be `owner/name` globs.
    pub fn new(patterns: &[String], allow_any: bool) -> Result<RepoFilter, ConfigError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let ok = p.split_once('/').is_some_and(|(o, n)| {
                let part = |s: &str| {
                    !s.is_empty()
                        && s.bytes().all(|b| {
                            b.is_ascii_alphanumeric()
                                || matches!(b, b'-' | b'_' | b'.' | b'*' | b'?')
                        })
                };
                part(o) && part(n)
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "github.repositories: {p:?} is not an owner/name pattern (letters, digits, -, _, ., and the globs * and ?)"
                )));
            }
            out.push(p.to_ascii_lowercase());
        }
        Ok(RepoFilter {
            patterns: out,
            allow_any,
        })
    }

    /// Every repository (`github.allow_any_repository = true`).
    pub fn any() -> RepoFilter {
        RepoFilter {
            patterns: Vec::new(),
            allow_any: true,
        }
    }

    /// Exactly these repositories.
    pub fn only<'a>(names: impl IntoIterator<Item = &'a str>) -> RepoFilter {
        RepoFilter {
            patterns: names.into_iter().map(|n| n.to_ascii_lowercase()).collect(),
            allow_any: false,
        }
    }

    /// Whether no repository is named and any is not allowed either.
    pub fn is_unset(&self) -> bool {
        self.patterns.is_empty() && !self.allow_any
    }

    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether Paved serves `repo`.
    pub fn allows(&self, repo: &crate::ids::RepoName) -> bool {
        if self.allow_any {
            return true;
        }
        let full = repo.to_string().to_ascii_lowercase();
        let (owner, name) = full.split_once('/').unwrap_or((full.as_str(), ""));
        self.patterns.iter().any(|p| {
            let (po, pn) = p.split_once('/').unwrap_or((p.as_str(), ""));
            glob(po.as_bytes(), owner.as_bytes()) && glob(pn.as_bytes(), name.as_bytes())
        })
    }
}

/// `*` (any run) and `?` (one byte) matching, iterative with one backtrack point: linear
/// in practice and never recursive, whatever the pattern.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_path: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

impl Config {
    /// Loads the file (if any), then the environment given by `env`, then `flags`.
    /// `env` is a lookup so tests need not touch the process environment.
    pub fn load(
        flags: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let path = flags
            .config_path
            .clone()
            .or_else(|| env("PAVED_CONFIG").map(PathBuf::from));
        let file = match &path {
            Some(p) => read_file(p, true)?,
            None => read_file(Path::new("paved.toml"), false)?,
        };
        let pick = |flag: Option<String>, var: &str, file: Option<String>| {
            flag.or_else(|| env(var).filter(|v| !v.is_empty())).or(file)
        };

        let listen = pick(flags.listen.clone(), "PAVED_LISTEN", file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let data_dir = flags
            .data_dir
            .clone()
            .or_else(|| env("PAVED_DATA_DIR").map(PathBuf::from))
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("paved-data"));
        let database_url = pick(
            flags.database_url.clone(),
            "PAVED_DATABASE_URL",
            file.database_url,
        )
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("paved.sqlite").display()));
        let public_url = pick(None, "PAVED_PUBLIC_URL", file.public_url)
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

        let webhook_secrets: Vec<Secret> = match env("PAVED_WEBHOOK_SECRET") {
            Some(v) => split_secrets(&v),
            None => file
                .github
                .webhook_secrets
                .unwrap_or_default()
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(Secret)
                .collect(),
        };
        let api_url = pick(None, "PAVED_GITHUB_API_URL", file.github.api_url)
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        url::Url::parse(&api_url)
            .map_err(|e| ConfigError::Invalid(format!("github.api_url {api_url:?}: {e}")))?;
        let token = pick(None, "PAVED_GITHUB_TOKEN", file.github.token);
        let app_id = match env("PAVED_GITHUB_APP_ID") {
            Some(v) => Some(v.parse().map_err(|_| {
                ConfigError::Invalid(format!("PAVED_GITHUB_APP_ID: not a number: {v}"))
            })?),
            None => file.github.app_id,
        };
        let key = env("PAVED_GITHUB_PRIVATE_KEY_PATH")
            .map(PathBuf::from)
            .or(file.github.private_key_path);
        let auth = match (token, app_id, key) {
            (Some(t), _, _) => Some(GithubAuth::Token(Secret(t))),
            (None, Some(app_id), Some(private_key_path)) => Some(GithubAuth::App {
                app_id,
                private_key_path,
            }),
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "github.app_id and github.private_key_path go together".into(),
                ))
            }
            (None, None, None) => None,
        };
        let clone_url_template = pick(
            None,
            "PAVED_GIT_CLONE_URL_TEMPLATE",
            file.git.clone_url_template,
        );
        let mut runner = RunnerConfig::default();
        let duration = |what: &str, v: &str| {
            crate::manifest::platform::HumanDuration::parse(v)
                .map(|d| d.as_std())
                .map_err(|e| ConfigError::Invalid(format!("{what} {v:?}: {e}")))
        };
        if let Some(v) = env("PAVED_RUNNER_CONCURRENCY") {
            runner.concurrency = v.parse().map_err(|_| {
                ConfigError::Invalid(format!("PAVED_RUNNER_CONCURRENCY: not a number: {v}"))
            })?;
        } else if let Some(c) = file.runner.concurrency {
            runner.concurrency = c;
        }
        if runner.concurrency == 0 {
            return Err(ConfigError::Invalid(
                "runner.concurrency must be at least 1".into(),
            ));
        }
        if let Some(v) = file.runner.output_limit {
            runner.output_limit = v.max(1024);
        }
        if let Some(v) = &file.runner.default_timeout {
            runner.default_timeout = duration("runner.default_timeout", v)?;
        }
        if let Some(v) = file.runner.path {
            runner.path = v;
        }
        let pass_env: Vec<String> = match env("PAVED_RUNNER_PASS_ENV") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            None => file.runner.pass_env.unwrap_or_default(),
        };
        for (k, v) in file.runner.env.unwrap_or_default() {
            runner.env.push((k, Secret(v)));
        }
        for (k, v) in file.runner.vars.unwrap_or_default() {
            runner.vars.push((k, v));
        }
        for name in pass_env
            .iter()
            .chain(runner.env.iter().map(|(k, _)| k))
            .chain(runner.vars.iter().map(|(k, _)| k))
        {
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || name.starts_with("ADE_")
                || name.starts_with("PAVED_")
            {
                return Err(ConfigError::Invalid(format!(
                    "runner variable {name:?}: names are letters, digits and _, and ADE_*/PAVED_* are Paved's own"
                )));
            }
        }
        // Values are read now, once, so every script of this process sees the same ones and
        // every one of them is known to the redactor.
        for name in pass_env {
            match env(&name) {
                Some(v) => runner.pass_env.push((name, Secret(v))),
                None => runner.pass_env_missing.push(name),
            }
        }
        runner.terraform_binary = env("PAVED_TERRAFORM_BINARY")
            .map(PathBuf::from)
            .or(file.runner.terraform_binary);
        let push_grace = match pick(None, "PAVED_PUSH_GRACE", file.provision.push_grace) {
            Some(v) => duration("provision.push_grace", &v)?,
            None => std::time::Duration::from_secs(600),
        };
        let lease = match pick(None, "PAVED_LEASE", file.provision.lease) {
            Some(v) => duration("provision.lease", &v)?,
            None => std::time::Duration::from_secs(60),
        };
        let patterns: Vec<String> = match env("PAVED_GITHUB_REPOSITORIES") {
            Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
            None => file.github.repositories.unwrap_or_default(),
        };
        let allow_any = match env("PAVED_GITHUB_ALLOW_ANY_REPOSITORY") {
            Some(v) => parse_bool("PAVED_GITHUB_ALLOW_ANY_REPOSITORY", &v)?,
            None => file.github.allow_any_repository.unwrap_or(false),
        };
        let repositories = RepoFilter::new(&patterns, allow_any)?;
        let mut checks = ChecksConfig::default();
        if let Some(n) = file.checks.max_manifests {
            if n == 0 {
                return Err(ConfigError::Invalid(
                    "checks.max_manifests must be at least 1".into(),
                ));
            }
            checks.max_manifests = n;
        }
        let mut intake = IntakeConfig::default();
        if let Some(v) = &file.intake.header_timeout {
            intake.header_timeout = duration("intake.header_timeout", v)?;
        }
        if let Some(v) = &file.intake.request_timeout {
            intake.request_timeout = duration("intake.request_timeout", v)?;
        }
        if let Some(n) = file.intake.max_body_bytes_in_flight {
            if n < MAX_BODY_BYTES {
                return Err(ConfigError::Invalid(format!(
                    "intake.max_body_bytes_in_flight must be at least {} (one webhook body at GitHub's 25 MiB cap)",
                    MAX_BODY_BYTES
                )));
            }
            intake.max_body_bytes_in_flight = n;
        }
        Ok(Config {
            repositories,
            checks,
            intake,
            runner,
            push_grace,
            lease,
            listen,
            data_dir,
            database_url,
            public_url,
            workers,
            webhook_secrets,
            api_url: api_url.trim_end_matches('/').to_string(),
            auth,
            clone_url_template,
        })
    }

    /// The URL Paved fetches a repository from: the template with `{owner}` and `{repo}`
    /// filled in, or the clone URL GitHub sent.
    pub fn clone_url(&self, repo: &crate::ids::RepoName, payload_clone_url: &str) -> String {
        match &self.clone_url_template {
            Some(t) => t
                .replace("{owner}", repo.owner())
                .replace("{repo}", repo.name()),
            None => payload_clone_url.to_string(),
        }
    }
}

impl Config {
    /// What `paved serve` refuses to start with, whichever way the config was made (file,
    /// environment, or built in code by `demo` and tests):
    /// - no `github.repositories` and no explicit `github.allow_any_repository = true`;
    /// - a secret shorter than [`MIN_SECRET_LEN`]: webhook secrets, the GitHub token,
    ///   `[runner.env]` values and the values of `runner.pass_env` variables are all
    ///   redacted from logs, and a short one cannot be redacted reliably.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if !short.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "secrets shorter than {MIN_SECRET_LEN} characters cannot be redacted from logs reliably: {}. Use longer secrets; put values that are not secret under [runner.vars]",
                short.join(", ")
            )));
        }
        Ok(())
    }
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

fn split_secrets(v: &str) -> Vec<Secret> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Secret(s.to_string()))
        .collect()
}

fn read_file(path: &Path, required: bool) -> Result<FileConfig, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("paved.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"
listen = "127.0.0.1:9000"
data_dir = "/var/lib/paved"
[github]
webhook_secrets = ["one"]
api_url = "http://127.0.0.1:1"
token = "file-token"
[git]
clone_url_template = "file:///srv/{owner}/{repo}.git"
"#,
        );
        let flags = Overrides {
            config_path: Some(p.clone()),
            ..Default::default()
        };
        let c = Config::load(&flags, &env_of(&[])).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.database_url, "sqlite:///var/lib/paved/paved.sqlite");
        assert_eq!(c.webhook_secrets, vec![Secret::new("one")]);
        let repo = crate::ids::RepoName::parse("o/r").unwrap();
        assert_eq!(c.clone_url(&repo, "https://x"), "file:///srv/o/r.git");

        let env = env_of(&[
            ("PAVED_LISTEN", "127.0.0.1:9001"),
            ("PAVED_WEBHOOK_SECRET", "new, old"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9001");
        assert_eq!(
            c.webhook_secrets,
            vec![Secret::new("new"), Secret::new("old")]
        );

        let flags = Overrides {
            config_path: Some(p),
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        };
        assert_eq!(Config::load(&flags, &env).unwrap().listen, "127.0.0.1:9002");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[github]\nwebhook_secret = \"typo\"\n");
        let flags = Overrides {
            config_path: Some(p),
            ..Default::default()
        };
        let err = Config::load(&flags, &env_of(&[])).unwrap_err().to_string();
        assert!(err.contains("webhook_secret"), "{err}");
    }

    #[test]
    fn repository_patterns_match_case_insensitively_with_globs() {
        let f = RepoFilter::new(
            &[
                "acme/environments".into(),
                "Platform/env-*".into(),
                "*/sandbox-?".into(),
            ],
            false,
        )
        .unwrap();
        let r = |s: &str| crate::ids::RepoName::parse(s).unwrap();
        assert!(f.allows(&r("acme/environments")));
        assert!(f.allows(&r("ACME/Environments")));
        assert!(f.allows(&r("platform/env-prod")));
        assert!(f.allows(&r("platform/env-")));
        assert!(f.allows(&r("anyone/sandbox-1")));
        assert!(!f.allows(&r("anyone/sandbox-12")));
        assert!(!f.allows(&r("acme/environments-2")));
        assert!(!f.allows(&r("evil/environments")));
        assert!(!f.allows(&r("platform/prod-env")));
        assert!(RepoFilter::any().allows(&r("evil/anything")));
        assert!(RepoFilter::new(&["no-slash".into()], false).is_err());
        assert!(RepoFilter::new(&["a/b c".into()], false).is_err());
        assert!(RepoFilter::new(&[], false).unwrap().is_unset());
        // Many stars never blow up.
        let stars = RepoFilter::new(&[format!("{}/x", "*".repeat(60))], false).unwrap();
        assert!(!stars.allows(&r(&format!("{}/y", "a".repeat(90)))));
    }

    #[test]
    fn repositories_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[github]\nrepositories = [\"acme/envs\"]\nwebhook_secrets = [\"long-enough-secret\"]\n",
        );
        let flags = Overrides {
            config_path: Some(p),
            ..Default::default()
        };
        let c = Config::load(&flags, &env_of(&[])).unwrap();
        assert_eq!(c.repositories.patterns(), ["acme/envs"]);
        c.validate().unwrap();
        let c = Config::load(
            &flags,
            &env_of(&[("PAVED_GITHUB_REPOSITORIES", "a/b, c/*")]),
        )
        .unwrap();
        assert_eq!(c.repositories.patterns(), ["a/b", "c/*"]);
    }

    #[test]
    fn refuses_to_start_without_repositories_unless_any_is_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Overrides {
            config_path: Some(write(dir.path(), "")),
            ..Default::default()
        };
        let c = Config::load(&flags, &env_of(&[])).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("github.repositories"), "{err}");
        assert!(err.contains("allow_any_repository"), "{err}");
        let c = Config::load(
            &flags,
            &env_of(&[("PAVED_GITHUB_ALLOW_ANY_REPOSITORY", "true")]),
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.repositories.allows_any());
    }

    #[test]
    fn short_secrets_are_refused_at_start_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"
[github]
repositories = ["a/b"]
webhook_secrets = ["short"]
token = "tok"
[runner]
pass_env = ["API_TOKEN", "NOT_SET"]
[runner.env]
DB_PASSWORD = "pw"
[runner.vars]
REGION = "eu"
"#,
        );
        let flags = Overrides {
            config_path: Some(p),
            ..Default::default()
        };
        let c = Config::load(&flags, &env_of(&[("API_TOKEN", "abc")])).unwrap();
        assert_eq!(c.runner.pass_env_missing, ["NOT_SET"]);
        assert_eq!(c.runner.vars, [("REGION".to_string(), "eu".to_string())]);
        let err = c.validate().unwrap_err().to_string();
        for name in [
            "github.webhook_secrets[0]",
            "github.token",
            "runner.env.DB_PASSWORD",
            "runner.pass_env API_TOKEN",
        ] {
            assert!(err.contains(name), "{name} not named in: {err}");
        }
        assert!(!err.contains("REGION"), "{err}");
        // The values themselves are never in the message.
        assert!(!err.contains("\"pw\""), "{err}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
