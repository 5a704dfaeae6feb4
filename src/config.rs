//! Service configuration: `paved.toml`, overridden by `PAVED_*` environment variables,
//! overridden by command-line flags. The key names are a contract with operators and
//! their scripts; see the README's configuration reference.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_API_URL: &str = "https://api.github.com";

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
    /// (`pass_env`, `PAVED_RUNNER_PASS_ENV` comma-separated). Nothing else leaks through.
    pub pass_env: Vec<String>,
    /// Fixed variables given to every script (`[runner.env]`), e.g. the PostgreSQL the
    /// `postgres-db` example creates databases in. Their values are redacted from logs.
    pub env: Vec<(String, Secret)>,
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
            env: Vec::new(),
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
        runner.pass_env = match env("PAVED_RUNNER_PASS_ENV") {
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
        for name in runner
            .pass_env
            .iter()
            .chain(runner.env.iter().map(|(k, _)| k))
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
        Ok(Config {
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
    fn secrets_are_not_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
    }
}
