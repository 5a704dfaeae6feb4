//! Runs one operation (deploy or delete) of an environment definition and reports what
//! happened (SPEC §4, the ADE-compatible runner contract).
//!
//! [`run`] is the whole API used by the provisioning orchestration: it prepares a private
//! run directory under [`RunSpec::work_root`], restores `ADE_STORAGE` from the previous
//! operation, runs the definition (its `deploy.sh`/`delete.sh`, see [`command`], or
//! `terraform`/`tofu`, see [`terraform`]) and collects the log, `ADE_ERROR_LOG`,
//! `ADE_OUTPUTS` and the new `ADE_STORAGE` archive. Nothing here returns an error: every
//! way a run can go wrong is a [`RunOutcome`], because the caller records it either way.
//!
//! The script is untrusted input from a repository, so:
//! - it gets an argv and an environment, never a shell string built from data;
//! - its environment is built from scratch (`env_clear`), so the server's own secrets
//!   (tokens, database URLs) never reach it unless the service config allows them;
//! - it runs in its own process group, so a timeout or a crash kills everything it started;
//! - its output is capped and secrets (and its own sensitive outputs) are redacted before
//!   any text leaves this module.

pub mod command;
pub mod storage;
pub mod terraform;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes of `ADE_OUTPUTS` (or of `terraform output -json`) read at most.
pub const OUTPUTS_LIMIT: usize = 1024 * 1024;

/// Secrets shorter than this are not redacted: replacing every `abc` in a log hides
/// nothing worth hiding and makes the log unreadable.
pub const MIN_SECRET_LEN: usize = 4;

/// The text that replaces a secret in logs.
pub const REDACTED: &str = "[redacted]";

/// The operation being run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Deploy,
    Delete,
}

impl Operation {
    /// The ADE operation name (`ADE_OPERATION_NAME`), also the script's base name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Deploy => "deploy",
            Operation::Delete => "delete",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a definition is run (the definition's `runner:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunnerKind {
    /// The definition's `deploy.sh`/`delete.sh` (the default, and ADE custom-runner images).
    #[default]
    Command,
    /// `terraform` or `tofu` in the definition's `templatePath`.
    Terraform,
}

impl RunnerKind {
    /// Reads a definition's `runner:` value: `command` (or absent/empty) and ADE custom-runner
    /// image references run the scripts; `terraform`, `tofu` and `opentofu` run Terraform.
    /// `None` for values the runner cannot run (`arm`, `bicep`, anything else).
    pub fn parse(runner: &str) -> Option<RunnerKind> {
        let r = runner.trim();
        match r.to_ascii_lowercase().as_str() {
            "" | "command" => Some(RunnerKind::Command),
            "terraform" | "tofu" | "opentofu" => Some(RunnerKind::Terraform),
            _ if r.contains('/') && !r.contains(char::is_whitespace) => Some(RunnerKind::Command),
            _ => None,
        }
    }
}

impl From<&crate::manifest::definition::Runner> for RunnerKind {
    fn from(r: &crate::manifest::definition::Runner) -> Self {
        use crate::manifest::definition::Runner;
        match r {
            Runner::Command | Runner::Image(_) => RunnerKind::Command,
            Runner::Terraform => RunnerKind::Terraform,
        }
    }
}

/// Everything one run needs. Built by the orchestration from the definition at the merge
/// commit, the environment's stored state and the service config. Its `Debug` shows
/// neither the secrets nor the values of `env`, so logging a spec leaks nothing.
#[derive(Clone)]
pub struct RunSpec {
    pub run_id: i64,
    pub operation: Operation,
    pub environment_name: String,
    pub environment_type: String,
    pub team: String,
    /// `owner/repo`.
    pub repository: String,
    /// The merge commit sha.
    pub commit: String,
    /// The definition folder, already materialised from Git (files and exec bits). It is
    /// not modified: the run works on a copy (see [`command`]).
    pub definition_dir: PathBuf,
    pub runner: RunnerKind,
    /// The definition's `templatePath`, relative to `definition_dir` (Terraform only).
    pub template_path: Option<String>,
    /// `None`: look up `terraform`, then `tofu`, on [`RunSpec::path`].
    pub terraform_binary: Option<PathBuf>,
    /// A JSON object.
    pub parameters: serde_json::Value,
    /// Tar archive of `ADE_STORAGE` from the previous operation of this environment.
    pub storage: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Bytes of combined stdout+stderr kept (head and tail).
    pub output_limit: usize,
    /// Extra variables the service config allows (already resolved).
    pub env: Vec<(String, String)>,
    /// `PATH` given to the script.
    pub path: String,
    /// Values redacted from log and error text; empty and very short ones are ignored.
    pub secrets: Vec<String>,
    /// Folder for run directories (`<work_root>/run-<run_id>-<random>/`, removed afterwards).
    pub work_root: PathBuf,
}

impl std::fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSpec")
            .field("run_id", &self.run_id)
            .field("operation", &self.operation)
            .field("environment_name", &self.environment_name)
            .field("environment_type", &self.environment_type)
            .field("team", &self.team)
            .field("repository", &self.repository)
            .field("commit", &self.commit)
            .field("definition_dir", &self.definition_dir)
            .field("runner", &self.runner)
            .field("template_path", &self.template_path)
            .field("terraform_binary", &self.terraform_binary)
            .field(
                "storage",
                &self.storage.as_ref().map(|s| format!("{} bytes", s.len())),
            )
            .field("timeout", &self.timeout)
            .field("output_limit", &self.output_limit)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("path", &self.path)
            .field("secrets", &format!("{} values", self.secrets.len()))
            .field("work_root", &self.work_root)
            .finish_non_exhaustive()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded,
    /// The process exited with a non-zero code, or was killed by a signal.
    Failed {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// The timeout expired; the process group was killed.
    TimedOut {
        after: Duration,
    },
    /// Nothing ran: no script, a bad definition, a spawn error, Terraform missing, or
    /// unusable stored state.
    NotRunnable(String),
}

impl RunOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Succeeded)
    }

    /// One line for check runs and PR comments, e.g. "exited with code 3",
    /// "killed after 2s timeout".
    pub fn describe(&self) -> String {
        match self {
            RunOutcome::Succeeded => "succeeded".to_string(),
            RunOutcome::Failed {
                exit_code: Some(code),
                ..
            } => format!("exited with code {code}"),
            RunOutcome::Failed {
                signal: Some(sig), ..
            } => match signal_name(*sig) {
                Some(name) => format!("killed by signal {sig} ({name})"),
                None => format!("killed by signal {sig}"),
            },
            RunOutcome::Failed { .. } => "failed".to_string(),
            RunOutcome::TimedOut { after } => {
                format!("killed after {} timeout", format_duration(*after))
            }
            RunOutcome::NotRunnable(why) => format!("could not run: {}", one_line(why)),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

fn format_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One ADE output: `{"type": "string", "value": "…", "sensitive": false}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub r#type: String,
    pub value: serde_json::Value,
    #[serde(default)]
    pub sensitive: bool,
}

/// What a run produced. All text is capped and redacted.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: RunOutcome,
    /// Combined stdout+stderr (head and tail kept, with a "[… N bytes omitted …]" line),
    /// followed by `[paved] …` notes from the runner itself.
    pub log: String,
    /// Contents of `ADE_ERROR_LOG` (Terraform: the failing step's stderr when the file is
    /// empty).
    pub error_log: String,
    pub outputs: BTreeMap<String, Output>,
    /// `ADE_OUTPUTS` was present but malformed (or `terraform output` failed): the caller
    /// should treat the operation as failed. The outcome itself is left as the process
    /// ended.
    pub outputs_error: Option<String>,
    /// Tar archive of `ADE_STORAGE` after the run, also after a failure. When the script
    /// never ran, or the new storage could not be kept, this is the previous archive.
    pub storage: Vec<u8>,
    /// Pid of the first process started (the script, or `terraform init`).
    pub pid: Option<u32>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Runs one operation. Never panics on bad input and never returns early without
/// removing its run directory. `on_spawn` is called with the pid of the first process
/// right after it is spawned, and awaited before the run waits on that process, so the
/// caller records it durably first and can always find an orphan with [`kill_orphan`]
/// after a crash.
///
/// Dropping the returned future kills the process group and removes the run directory.
pub async fn run<F, Fut>(spec: RunSpec, on_spawn: F) -> RunResult
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started_at = Utc::now();
    let previous_storage = spec.storage.clone().unwrap_or_default();
    let mut redactor = Redactor::new(spec.secrets.iter().map(String::as_str));
    let mut log = Capped::new(spec.output_limit);

    let dir = match prepare(&spec).await {
        Ok(dir) => dir,
        Err(why) => {
            return RunResult {
                outcome: RunOutcome::NotRunnable(redactor.redact(&why)),
                log: String::new(),
                error_log: String::new(),
                outputs: BTreeMap::new(),
                outputs_error: None,
                storage: previous_storage,
                pid: None,
                started_at,
                finished_at: Utc::now(),
            };
        }
    };

    let env = contract_env(&spec, &dir);
    let mut on_spawn = Some(on_spawn);
    let mut error_text = None;
    let (outcome, pid, outputs, mut outputs_error) = match spec.runner {
        RunnerKind::Command => {
            let ran = command::run_script(&spec, &dir, &env, &mut log, &mut on_spawn).await;
            let (outputs, outputs_error) = match read_outputs_file(&dir.outputs) {
                Ok(o) => (o, None),
                Err(e) => (BTreeMap::new(), Some(e)),
            };
            (ran.outcome, ran.pid, outputs, outputs_error)
        }
        RunnerKind::Terraform => {
            let ran = terraform::run_terraform(&spec, &dir, &env, &mut log, &mut on_spawn).await;
            error_text = ran.failed_step_stderr;
            (ran.outcome, ran.pid, ran.outputs, ran.outputs_error)
        }
    };
    let script_ran = pid.is_some();

    // Sensitive outputs are secrets too, wherever the script printed them. One too short to
    // redact reliably is named (not shown) in the log, not skipped silently.
    for (name, output) in outputs.iter().filter(|(_, o)| o.sensitive) {
        redactor.add_value(&output.value);
        let text = match &output.value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if !text.trim().is_empty() && text.trim().chars().count() < MIN_SECRET_LEN {
            log.note(&format!(
                "sensitive output {name} is shorter than {MIN_SECRET_LEN} characters: it could not be redacted from this log"
            ));
        }
    }
    // Output names and types are not secret, but a malformed file's error text may quote it.
    if let Some(e) = outputs_error.as_mut() {
        *e = redactor.redact(e);
    }

    let mut error_log = read_capped_file(&dir.error_log, spec.output_limit);
    if error_log.is_empty_text() {
        if let Some(stderr) = error_text {
            error_log = stderr;
        }
    }

    // Pack ADE_STORAGE, on a blocking thread: it reads up to 50 MiB of files.
    let storage = if script_ran {
        let storage_dir = dir.storage.clone();
        let packed = tokio::task::spawn_blocking(move || {
            storage::pack(&storage_dir, storage::STORAGE_LIMIT)
        })
        .await;
        match packed {
            Ok(Ok(packed)) => {
                for skipped in &packed.skipped {
                    log.note(&format!(
                        "ADE_STORAGE entry {skipped} was not kept (only files and folders are)"
                    ));
                }
                packed.archive
            }
            Ok(Err(storage::StorageError::TooLarge { .. })) => {
                log.note_raw("[ADE_STORAGE over 50 MiB was not kept]");
                previous_storage
            }
            Ok(Err(e)) => {
                log.note(&format!(
                    "ADE_STORAGE could not be saved, kept the previous one: {e}"
                ));
                previous_storage
            }
            Err(e) => {
                log.note(&format!(
                    "ADE_STORAGE could not be saved, kept the previous one: {e}"
                ));
                previous_storage
            }
        }
    } else {
        previous_storage
    };

    let outcome = match outcome {
        RunOutcome::NotRunnable(why) => RunOutcome::NotRunnable(redactor.redact(&why)),
        other => other,
    };
    let result = RunResult {
        outcome,
        log: log.render(&redactor),
        error_log: error_log.render(&redactor),
        outputs,
        outputs_error,
        storage,
        pid,
        started_at,
        finished_at: Utc::now(),
    };
    dir.remove().await;
    result
}

/// Kills what is left of a run after a server crash: the process group led by `pid`, but
/// only if that process still carries `PAVED_RUN_ID=<run_id>` in its environment (so a
/// reused pid is never killed). It also kills any other process carrying the same marker:
/// Terraform runs several processes one after the other, and only the first pid is
/// recorded. Returns whether it killed something.
pub fn kill_orphan(pid: i64, run_id: i64) -> bool {
    let marker = format!("PAVED_RUN_ID={run_id}");
    let own = std::process::id() as i64;
    let mut killed = false;
    if pid > 1 && pid <= i64::from(i32::MAX) && pid != own && environ_has(pid, &marker) {
        // Safety: kill(2) with a negative pid signals a process group; no memory involved.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        if pgid > 1
            && i64::from(pgid) != own_pgid()
            && unsafe { libc::kill(-pgid, libc::SIGKILL) } == 0
        {
            killed = true;
        }
        if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
            killed = true;
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(other) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if other <= 1 || other == own || other == pid || !environ_has(other, &marker) {
                continue;
            }
            // Safety: as above.
            if unsafe { libc::kill(other as libc::pid_t, libc::SIGKILL) } == 0 {
                killed = true;
            }
        }
    }
    killed
}

fn own_pgid() -> i64 {
    // Safety: getpgid(0) only reads the caller's process group.
    i64::from(unsafe { libc::getpgid(0) })
}

/// Whether `/proc/<pid>/environ` holds exactly the entry `marker`.
fn environ_has(pid: i64, marker: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    environ
        .split(|b| *b == 0)
        .any(|entry| entry == marker.as_bytes())
}

/// The private directory of one run, and the paths of the ADE contract inside it.
pub(crate) struct RunDir {
    pub root: PathBuf,
    pub home: PathBuf,
    pub storage: PathBuf,
    pub outputs: PathBuf,
    pub error_log: PathBuf,
    /// The copy of the definition the run works in.
    pub definition: PathBuf,
    removed: bool,
}

impl RunDir {
    fn create(work_root: &Path, run_id: i64) -> Result<RunDir, String> {
        use rand::Rng;
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(work_root).map_err(|e| {
            format!(
                "could not create the runner work folder {}: {e}",
                work_root.display()
            )
        })?;
        let mut last_err = None;
        for _ in 0..16 {
            let suffix: u64 = rand::thread_rng().gen();
            let root = work_root.join(format!("run-{run_id}-{suffix:016x}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&root) {
                Ok(()) => {
                    return Ok(RunDir {
                        home: root.join("home"),
                        storage: root.join("storage"),
                        outputs: root.join("outputs.json"),
                        error_log: root.join("error.log"),
                        definition: root.join("definition"),
                        root,
                        removed: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(format!(
                        "could not create a run folder in {}: {e}",
                        work_root.display()
                    ))
                }
            }
        }
        Err(format!(
            "could not create a run folder in {}: {}",
            work_root.display(),
            last_err.map(|e| e.to_string()).unwrap_or_default()
        ))
    }

    async fn remove(mut self) {
        self.removed = true;
        let root = self.root.clone();
        let _ = tokio::task::spawn_blocking(move || remove_tree(&root)).await;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Only on cancellation or an early return: the normal path removes it on a
        // blocking thread.
        if !self.removed {
            remove_tree(&self.root);
        }
    }
}

/// Removes a run directory, even when the script left read-only folders in it.
fn remove_tree(root: &Path) {
    if std::fs::remove_dir_all(root).is_ok() || !root.exists() {
        return;
    }
    fn make_writable(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_dir() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
    make_writable(root);
    if let Err(e) = std::fs::remove_dir_all(root) {
        tracing::warn!(path = %root.display(), error = %e, "could not remove a run directory");
    }
}

/// Creates the run directory, copies the definition into it and restores `ADE_STORAGE`.
async fn prepare(spec: &RunSpec) -> Result<RunDir, String> {
    let work_root = spec.work_root.clone();
    let run_id = spec.run_id;
    let definition_dir = spec.definition_dir.clone();
    let storage = spec.storage.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<RunDir, String> {
        let dir = RunDir::create(&work_root, run_id)?;
        for d in [&dir.home, &dir.storage] {
            std::fs::create_dir(d).map_err(|e| format!("could not create {}: {e}", d.display()))?;
        }
        let meta = std::fs::metadata(&definition_dir).map_err(|e| {
            format!(
                "definition folder {} is not readable: {e}",
                definition_dir.display()
            )
        })?;
        if !meta.is_dir() {
            return Err(format!(
                "definition folder {} is not a folder",
                definition_dir.display()
            ));
        }
        copy_tree(&definition_dir, &dir.definition).map_err(|e| {
            format!(
                "could not copy definition {}: {e}",
                definition_dir.display()
            )
        })?;
        if let Some(archive) = storage.as_deref() {
            storage::unpack(archive, &dir.storage, storage::STORAGE_LIMIT).map_err(|e| {
                format!("ADE_STORAGE from the previous operation could not be restored: {e}")
            })?;
        }
        Ok(dir)
    })
    .await;
    match prepared {
        Ok(r) => r,
        Err(e) => Err(format!("could not prepare the run: {e}")),
    }
}

/// Copies a definition folder: files (with their mode), folders and symlinks as they are.
/// Runs work on a copy so that files a script or Terraform writes next to the definition
/// (`.terraform/`, state, lock files, build output) never leak into the next run or into a
/// concurrent run of the same definition.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    let mut entries: Vec<_> = std::fs::read_dir(from)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        }
        // Sockets, fifos and devices cannot come from Git; skip them.
    }
    Ok(())
}

/// The script's whole environment. Built from nothing (the caller uses `env_clear`) so the
/// server's own variables (tokens, database URLs, cloud credentials) never reach a script
/// from a repository; only what the service config allows (`spec.env`) is added. The ADE
/// contract comes last so a config variable can never shadow it.
pub(crate) fn contract_env(spec: &RunSpec, dir: &RunDir) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: OsString| {
        env.retain(|(name, _)| name != k);
        env.push((k.into(), v));
    };
    set("LANG", "C.UTF-8".into());
    for (k, v) in &spec.env {
        let valid_name = !k.is_empty() && !k.contains('=') && !k.contains('\0');
        if valid_name && !v.contains('\0') {
            set(k, v.into());
        }
    }
    set("PATH", spec.path.clone().into());
    set("HOME", dir.home.clone().into_os_string());
    let parameters = match &spec.parameters {
        serde_json::Value::Null => "{}".to_string(),
        p => p.to_string(),
    };
    let contract: [(&str, OsString); 7] = [
        ("OPERATION_NAME", spec.operation.as_str().into()),
        ("OPERATION_PARAMETERS", parameters.into()),
        ("ENVIRONMENT_NAME", spec.environment_name.clone().into()),
        ("ENVIRONMENT_TYPE", spec.environment_type.clone().into()),
        ("STORAGE", dir.storage.clone().into_os_string()),
        ("OUTPUTS", dir.outputs.clone().into_os_string()),
        ("ERROR_LOG", dir.error_log.clone().into_os_string()),
    ];
    for (name, value) in contract {
        set(&format!("ADE_{name}"), value.clone());
        set(&format!("PAVED_{name}"), value);
    }
    set("PAVED_ENVIRONMENT_TEAM", spec.team.clone().into());
    set("PAVED_REPOSITORY", spec.repository.clone().into());
    set("PAVED_COMMIT", spec.commit.clone().into());
    set("PAVED_RUN_ID", spec.run_id.to_string().into());
    // A NUL in a value would make the spawn fail; drop the variable instead.
    env.retain(|(_, v)| !v.as_encoded_bytes().contains(&0));
    env
}

/// The ADE outputs file: `{"outputs": {"name": {"type", "value", "sensitive"}}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputsFile {
    outputs: BTreeMap<String, Output>,
}

/// Reads `ADE_OUTPUTS`: absent or empty means no outputs; anything else must be the ADE
/// format. Only the ADE wrapper is accepted, so a script that wrote something else learns
/// it from the error instead of silently having no outputs.
fn read_outputs_file(path: &Path) -> Result<BTreeMap<String, Output>, String> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("ADE_OUTPUTS could not be read: {e}")),
    };
    let mut bytes = Vec::new();
    file.take(OUTPUTS_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("ADE_OUTPUTS could not be read: {e}"))?;
    if bytes.len() > OUTPUTS_LIMIT {
        return Err(format!(
            "ADE_OUTPUTS is over {} MiB",
            OUTPUTS_LIMIT / (1024 * 1024)
        ));
    }
    parse_outputs(&bytes)
}

/// Parses the ADE outputs format (see [`read_outputs_file`]).
pub fn parse_outputs(bytes: &[u8]) -> Result<BTreeMap<String, Output>, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let file: OutputsFile = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "ADE_OUTPUTS is not in the ADE format {{\"outputs\": {{\"name\": {{\"type\": \"string\", \"value\": \"…\", \"sensitive\": false}}}}}}: {e}"
        )
    })?;
    let mut outputs = file.outputs;
    for o in outputs.values_mut() {
        // ADE's secure types are sensitive whatever the flag says.
        if o.r#type.eq_ignore_ascii_case("securestring")
            || o.r#type.eq_ignore_ascii_case("secureobject")
        {
            o.sensitive = true;
        }
    }
    Ok(outputs)
}

/// Replaces secrets in text with [`REDACTED`]. One pass over the text with all secrets
/// (longest first), so a secret that contains another is replaced whole.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
    regex: Option<regex::Regex>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Adds a secret (and its trimmed form); ignored when shorter than [`MIN_SECRET_LEN`].
    pub fn add(&mut self, secret: &str) {
        for s in [secret, secret.trim()] {
            if s.chars().count() >= MIN_SECRET_LEN && !self.needles.iter().any(|n| n == s) {
                self.needles.push(s.to_string());
            }
        }
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let pattern = self
            .needles
            .iter()
            .map(|n| regex::escape(n))
            .collect::<Vec<_>>()
            .join("|");
        self.regex = if self.needles.is_empty() {
            None
        } else {
            regex::RegexBuilder::new(&pattern)
                .size_limit(64 * 1024 * 1024)
                .build()
                .ok()
        };
    }

    /// Adds a sensitive output value: a string as is, a number by its text, and every
    /// string or number inside an array or object (plus the compact JSON of the whole).
    pub fn add_value(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s),
            serde_json::Value::Number(n) => self.add(&n.to_string()),
            serde_json::Value::Array(items) => {
                self.add(&value.to_string());
                for v in items {
                    self.add_value(v);
                }
            }
            serde_json::Value::Object(map) => {
                self.add(&value.to_string());
                for v in map.values() {
                    self.add_value(v);
                }
            }
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    pub fn redact(&self, text: &str) -> String {
        match &self.regex {
            Some(re) => re.replace_all(text, REDACTED).into_owned(),
            None if self.needles.is_empty() => text.to_string(),
            // The pattern failed to build (absurdly many secrets): replace one by one.
            None => {
                let mut t = text.to_string();
                for n in &self.needles {
                    t = t.replace(n.as_str(), REDACTED);
                }
                t
            }
        }
    }

    /// Redacts text on both sides of a cut (the head and the tail of a capped log): a
    /// secret split by the cut is redacted on each side as well.
    fn redact_around_cut(&self, head: &str, tail: &str) -> (String, String) {
        let mut head = self.redact(head);
        let mut tail = self.redact(tail);
        let mut head_cut = 0;
        let mut tail_cut = 0;
        for n in &self.needles {
            for k in (1..n.len()).rev() {
                if n.is_char_boundary(k) && head.ends_with(&n[..k]) {
                    head_cut = head_cut.max(k);
                    break;
                }
            }
            for k in 1..n.len() {
                if n.is_char_boundary(k) && tail.starts_with(&n[k..]) {
                    tail_cut = tail_cut.max(n.len() - k);
                    break;
                }
            }
        }
        if head_cut > 0 {
            head.truncate(head.len() - head_cut);
            head.push_str(REDACTED);
        }
        if tail_cut > 0 {
            tail.replace_range(..tail_cut, REDACTED);
        }
        (head, tail)
    }
}

/// A byte buffer that keeps the first and the last `limit / 2` bytes of a stream and
/// counts the rest, so a script printing gigabytes costs a bounded amount of memory and
/// the log still shows both how it started and how it ended.
#[derive(Debug, Clone)]
pub struct Capped {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    last: Option<u8>,
}

impl Capped {
    pub fn new(limit: usize) -> Capped {
        let head_cap = limit / 2;
        Capped {
            head_cap,
            tail_cap: limit - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            last: None,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.last = data.last().copied();
        if self.head.len() < self.head_cap {
            let n = (self.head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            self.tail.extend(data);
            let excess = self.tail.len().saturating_sub(self.tail_cap);
            self.tail.drain(..excess);
        }
    }

    /// Appends a `[paved] …` line from the runner itself.
    pub fn note(&mut self, text: &str) {
        self.note_raw(&format!("[paved] {text}"));
    }

    fn note_raw(&mut self, line: &str) {
        if self.last.is_some_and(|b| b != b'\n') {
            self.push(b"\n");
        }
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// Bytes pushed in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes dropped between head and tail.
    pub fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    fn is_empty_text(&self) -> bool {
        self.head
            .iter()
            .chain(self.tail.iter())
            .all(u8::is_ascii_whitespace)
    }

    /// The kept bytes, as one contiguous buffer (only meaningful when nothing was omitted).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend(self.tail.iter());
        v
    }

    /// The text, with a "[… N bytes omitted …]" line where bytes were dropped, redacted.
    pub fn render(&self, redactor: &Redactor) -> String {
        let mut omitted = self.omitted();
        if omitted == 0 {
            return redactor.redact(&String::from_utf8_lossy(&self.bytes()));
        }
        // Do not cut a UTF-8 character in two at either side of the gap.
        let mut head: &[u8] = &self.head;
        if let Err(e) = std::str::from_utf8(head) {
            if e.error_len().is_none() {
                omitted += (head.len() - e.valid_up_to()) as u64;
                head = &head[..e.valid_up_to()];
            }
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let skip = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        omitted += skip as u64;
        let (head, tail) = redactor.redact_around_cut(
            &String::from_utf8_lossy(head),
            &String::from_utf8_lossy(&tail[skip..]),
        );
        let sep = if head.is_empty() || head.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!("{head}{sep}[… {omitted} bytes omitted …]\n{tail}")
    }
}

/// Reads a file written by the script (`ADE_ERROR_LOG`) into a [`Capped`] buffer without
/// reading what would be dropped anyway.
fn read_capped_file(path: &Path, limit: usize) -> Capped {
    let mut capped = Capped::new(limit);
    let Ok(mut file) = std::fs::File::open(path) else {
        return capped;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len <= limit as u64 {
        let mut bytes = Vec::new();
        let _ = (&mut file).take(limit as u64).read_to_end(&mut bytes);
        capped.push(&bytes);
        return capped;
    }
    let mut head = vec![0u8; capped.head_cap];
    if file.read_exact(&mut head).is_err() {
        return capped;
    }
    let mut tail = vec![0u8; capped.tail_cap];
    if file.seek(SeekFrom::End(-(capped.tail_cap as i64))).is_err()
        || file.read_exact(&mut tail).is_err()
    {
        capped.push(&head);
        return capped;
    }
    capped.head = head;
    capped.tail = tail.into_iter().collect();
    capped.total = len;
    capped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_keeps_head_and_tail() {
        let mut c = Capped::new(10);
        for chunk in b"0123456789abcdefghij".chunks(3) {
            c.push(chunk);
        }
        assert_eq!(c.omitted(), 10);
        let text = c.render(&Redactor::default());
        assert_eq!(text, "01234\n[… 10 bytes omitted …]\nfghij");
    }

    #[test]
    fn capped_under_limit_is_verbatim() {
        let mut c = Capped::new(100);
        c.push(b"hello ");
        c.push(b"world");
        assert_eq!(c.render(&Redactor::default()), "hello world");
    }

    #[test]
    fn redaction_longest_first_and_short_ignored() {
        let r = Redactor::new(["abc", "secret", "secret-token", ""]);
        assert_eq!(
            r.redact("a secret-token and a secret, abc"),
            "a [redacted] and a [redacted], abc"
        );
    }

    #[test]
    fn redaction_across_the_cut() {
        let r = Redactor::new(["hunter22"]);
        let mut c = Capped::new(8);
        c.push(b"xxhunt");
        c.push(&[b'y'; 50]);
        c.push(b"er22");
        let text = c.render(&r);
        assert!(!text.contains("hunt"), "{text}");
        assert!(!text.contains("er22"), "{text}");
    }

    #[test]
    fn outputs_format() {
        let o = parse_outputs(br#"{"outputs":{"url":{"type":"string","value":"https://x"},"k":{"type":"secureString","value":"v"}}}"#).unwrap();
        assert_eq!(o["url"].value, "https://x");
        assert!(!o["url"].sensitive);
        assert!(o["k"].sensitive);
        assert!(parse_outputs(br#"{"url":{"type":"string","value":"x"}}"#).is_err());
        assert!(parse_outputs(b"  \n").unwrap().is_empty());
    }

    #[test]
    fn describe() {
        assert_eq!(
            RunOutcome::Failed {
                exit_code: Some(3),
                signal: None
            }
            .describe(),
            "exited with code 3"
        );
        assert_eq!(
            RunOutcome::TimedOut {
                after: Duration::from_secs(2)
            }
            .describe(),
            "killed after 2s timeout"
        );
    }

    #[test]
    fn outcome_serde_round_trip() {
        for o in [
            RunOutcome::Succeeded,
            RunOutcome::Failed {
                exit_code: None,
                signal: Some(9),
            },
            RunOutcome::TimedOut {
                after: Duration::from_millis(1500),
            },
            RunOutcome::NotRunnable("no deploy.sh".into()),
        ] {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(
                serde_json::from_str::<RunOutcome>(&json).unwrap(),
                o,
                "{json}"
            );
        }
        assert_eq!(
            RunOutcome::Failed {
                exit_code: None,
                signal: Some(9)
            }
            .describe(),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn runner_kinds() {
        assert_eq!(RunnerKind::parse(""), Some(RunnerKind::Command));
        assert_eq!(RunnerKind::parse("tofu"), Some(RunnerKind::Terraform));
        assert_eq!(
            RunnerKind::parse("myacr.azurecr.io/runner:1"),
            Some(RunnerKind::Command)
        );
        assert_eq!(RunnerKind::parse("bicep"), None);
    }
}
