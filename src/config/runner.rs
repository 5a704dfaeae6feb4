//! `[runner]`: how provisioning scripts run.

use super::file::FileRunner;
use super::{duration, ConfigError, Env, Secret};
use std::path::PathBuf;

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
    /// How runs are isolated (`sandbox`, `PAVED_RUNNER_SANDBOX`): `bubblewrap` (the
    /// default) or `none`.
    pub sandbox: SandboxMode,
    /// The unprivileged user runs are started as (`user`, `PAVED_RUNNER_USER`; default
    /// `nobody`).
    pub user: String,
    /// The `bwrap` program (`bubblewrap`, `PAVED_RUNNER_BUBBLEWRAP`; default `bwrap`,
    /// looked up on `/usr/bin:/bin:/usr/local/bin`).
    pub bubblewrap: String,
    /// Where runs get their folders (`work_dir`, `PAVED_RUNNER_WORK_DIR`): outside the data
    /// folder, which the runner's user must never reach. Default
    /// `<temporary folder>/paved-runs-<uid>`.
    pub work_dir: PathBuf,
    /// Host folders every run sees (`[[runner.mounts]]`, `path` and `writable`).
    pub mounts: Vec<(PathBuf, bool)>,
    /// Files of Paved's own named in its configuration (the configuration file, key files):
    /// masked in every sandbox, wherever a visible folder holds them. Filled by the loader.
    pub hidden: Vec<PathBuf>,
    /// The deploy identities environment types name (`[runner.identities.<name>]`, SPEC 13).
    pub identities: std::collections::BTreeMap<String, super::Identity>,
    /// The program runs find as `ade` on their `PATH` (ADE's runner contract): Paved's own
    /// binary, which acts as `ade` when called by that name. Default: the running
    /// executable (tests name the built `paved`).
    pub ade_program: Option<PathBuf>,
}

/// `runner.sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Every run in a bubblewrap sandbox (SPEC 12).
    #[default]
    Bubblewrap,
    /// No sandbox: warned about at every start, in `/readyz` and as a gauge.
    None,
}

/// The default `runner.work_dir`: a folder of this user's in the temporary folder.
pub fn default_work_dir() -> PathBuf {
    // Safety: geteuid only reads the process's credentials.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("paved-runs-{uid}"))
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
            sandbox: SandboxMode::Bubblewrap,
            user: "nobody".into(),
            bubblewrap: "bwrap".into(),
            work_dir: default_work_dir(),
            mounts: Vec::new(),
            hidden: Vec::new(),
            identities: Default::default(),
            ade_program: None,
        }
    }
}

/// `[runner]` from the file and `PAVED_RUNNER_*`/`PAVED_TERRAFORM_BINARY`. The values of
/// `pass_env` variables are read now, once, so every script of this process sees the same
/// ones and every one of them is known to the redactor.
pub(super) fn load_runner(file: FileRunner, env: Env) -> Result<RunnerConfig, ConfigError> {
    let mut runner = RunnerConfig::default();
    if let Some(v) = env("PAVED_RUNNER_CONCURRENCY") {
        runner.concurrency = v.parse().map_err(|_| {
            ConfigError::Invalid(format!("PAVED_RUNNER_CONCURRENCY: not a number: {v}"))
        })?;
    } else if let Some(c) = file.concurrency {
        runner.concurrency = c;
    }
    if runner.concurrency == 0 {
        return Err(ConfigError::Invalid(
            "runner.concurrency must be at least 1".into(),
        ));
    }
    if let Some(v) = file.output_limit {
        runner.output_limit = v.max(1024);
    }
    if let Some(v) = &file.default_timeout {
        runner.default_timeout = duration("runner.default_timeout", v)?;
    }
    if let Some(v) = file.path {
        runner.path = v;
    }
    let pass_env: Vec<String> = match env("PAVED_RUNNER_PASS_ENV") {
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => file.pass_env.unwrap_or_default(),
    };
    for (k, v) in file.env.unwrap_or_default() {
        runner.env.push((k, Secret::new(v)));
    }
    for (k, v) in file.vars.unwrap_or_default() {
        runner.vars.push((k, v));
    }
    for name in pass_env
        .iter()
        .chain(runner.env.iter().map(|(k, _)| k))
        .chain(runner.vars.iter().map(|(k, _)| k))
    {
        check_variable_name(name)?;
    }
    for name in pass_env {
        match env(&name) {
            Some(v) => runner.pass_env.push((name, Secret::new(v))),
            None => runner.pass_env_missing.push(name),
        }
    }
    runner.terraform_binary = env("PAVED_TERRAFORM_BINARY")
        .map(PathBuf::from)
        .or(file.terraform_binary);
    match env("PAVED_RUNNER_SANDBOX")
        .or(file.sandbox)
        .as_deref()
        .map(str::trim)
    {
        None | Some("bubblewrap") | Some("bwrap") => runner.sandbox = SandboxMode::Bubblewrap,
        Some("none") => runner.sandbox = SandboxMode::None,
        Some(other) => {
            return Err(ConfigError::Invalid(format!(
                "runner.sandbox: {other:?} is not \"bubblewrap\" or \"none\""
            )))
        }
    }
    if let Some(u) = env("PAVED_RUNNER_USER").or(file.user) {
        runner.user = u;
    }
    if let Some(b) = env("PAVED_RUNNER_BUBBLEWRAP").or(file.bubblewrap) {
        runner.bubblewrap = b;
    }
    if let Some(w) = env("PAVED_RUNNER_WORK_DIR")
        .map(PathBuf::from)
        .or(file.work_dir)
    {
        runner.work_dir = w;
    }
    for m in file.mounts.unwrap_or_default() {
        if !m.path.is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "runner.mounts: {} is not an absolute path",
                m.path.display()
            )));
        }
        runner.mounts.push((m.path, m.writable));
    }
    runner.identities = super::identity::load_identities(file.identities.unwrap_or_default())?;
    runner.ade_program = file.ade_program;
    Ok(runner)
}

pub(super) fn check_variable_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || name.starts_with("ADE_")
        || name.starts_with("PAVED_")
    {
        return Err(ConfigError::Invalid(format!(
            "runner variable {name:?}: names are letters, digits and _, and ADE_*/PAVED_* are Paved's own"
        )));
    }
    Ok(())
}
