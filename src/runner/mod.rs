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

pub mod ade_context;
mod arm;
pub mod command;
mod dir;
pub mod identity;
mod output;
mod outputs;
pub mod sandbox;
pub mod storage;
pub mod terraform;

pub use dir::{copy_tree, RunDir};
pub use identity::{AzureRun, GcpRun, RunIdentity};
pub use output::{Capped, Redactor};
pub use outputs::parse_outputs;
pub use sandbox::{Bubblewrap, Mount, Sandbox};

use dir::{contract_env, prepare};
use output::read_capped_file;
use outputs::read_outputs_file;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// A schedule's stop (`stop.sh`; command runner only).
    Stop,
    /// A schedule's start (`start.sh`; command runner only).
    Start,
    /// A drift check: `status.sh` (exit 0 in sync, 2 drifted), or Terraform's
    /// `plan -detailed-exitcode`. Changes nothing.
    Status,
    /// A preview on a pull request (SPEC 14): `plan.sh` (exit 0 no changes, 2 changes), or
    /// Terraform's `plan -out` (with `-destroy` for a deletion). Changes nothing; what it
    /// previews is [`RunSpec::plan`]'s [`PlanInput::Preview`].
    Plan,
}

impl Operation {
    /// The ADE operation name (`ADE_OPERATION_NAME`), also the script's base name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Deploy => "deploy",
            Operation::Delete => "delete",
            Operation::Stop => "stop",
            Operation::Start => "start",
            Operation::Status => "status",
            Operation::Plan => "plan",
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
    /// ADE's built-in ARM and Bicep runners: `az deployment group create` (SPEC 15).
    Arm,
}

impl RunnerKind {
    /// Reads a definition's `runner:` value: `command` (or absent/empty) and ADE custom-runner
    /// image references run the scripts; `terraform`, `tofu` and `opentofu` run Terraform.
    /// `arm` and `bicep` run ADE's built-in runners with the Azure CLI. `None` for values the
    /// runner cannot run.
    pub fn parse(runner: &str) -> Option<RunnerKind> {
        let r = runner.trim();
        match r.to_ascii_lowercase().as_str() {
            "" | "command" => Some(RunnerKind::Command),
            "terraform" | "tofu" | "opentofu" => Some(RunnerKind::Terraform),
            "arm" | "bicep" => Some(RunnerKind::Arm),
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
            Runner::Arm | Runner::Bicep => RunnerKind::Arm,
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
    /// Outside Paved's data folder: with a sandbox, the runner's user must reach it.
    pub work_root: PathBuf,
    /// How the run is isolated (SPEC 12; [`sandbox`]).
    pub sandbox: Sandbox,
    /// Whether the run shares the host's network (`false`: the type says `network: none`).
    pub network: bool,
    /// The definition's folder name under `catalog/` (ADE's `environmentDefinitionName`).
    pub definition: String,
    /// Who the environment belongs to (ADE's environment `user`).
    pub owner: String,
    /// The environment type's deploy identity (SPEC 13), resolved; `None`: the type names
    /// none.
    pub identity: Option<RunIdentity>,
    /// The program the run finds as `ade` on its `PATH` (Paved's own binary); `None`: no
    /// `ade` command.
    pub ade_program: Option<PathBuf>,
    /// What a preview previews, or the approved preview a deploy applies (SPEC 14).
    pub plan: Option<PlanInput>,
}

/// A run's part in previews (SPEC 14).
#[derive(Clone)]
pub enum PlanInput {
    /// [`Operation::Plan`]: preview this operation (`deploy` or `delete`). `plan.sh` reads
    /// it in `PAVED_PLAN_OPERATION` and may write its changes to `ADE_PLAN`.
    Preview(Operation),
    /// A deploy of a `plan.sh` definition: the approved preview's change list (JSON), in
    /// the file `ADE_PLAN` names, so the script can refuse to do more.
    Changes(Vec<u8>),
    /// A Terraform deploy: the approved plan file, applied as it is (`apply <plan>`).
    TerraformPlan(Vec<u8>),
}

impl std::fmt::Debug for PlanInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanInput::Preview(op) => write!(f, "Preview({op})"),
            PlanInput::Changes(b) => write!(f, "Changes({} bytes)", b.len()),
            PlanInput::TerraformPlan(b) => write!(f, "TerraformPlan({} bytes)", b.len()),
        }
    }
}

/// What a preview left (SPEC 14), read after the run.
#[derive(Debug, Clone, Default)]
pub struct PlanArtifacts {
    /// The file `ADE_PLAN` named, when `plan.sh` wrote it (at most [`OUTPUTS_LIMIT`]).
    pub changes: Option<Vec<u8>>,
    /// Terraform: the plan file (`plan -out`), to apply at merge.
    pub terraform_plan: Option<Vec<u8>>,
    /// Terraform: `show -json` of the plan file (kept out of the log: it holds values in
    /// clear).
    pub terraform_show: Option<Vec<u8>>,
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
            .field("sandbox", &!self.sandbox.is_none())
            .field("network", &self.network)
            .field("definition", &self.definition)
            .field("identity", &self.identity)
            .field("ade_program", &self.ade_program)
            .field("plan", &self.plan)
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
    /// What the script reported with `ade operation-result` (code, message; redacted):
    /// the operation failed, for this reason, whatever its exit code.
    pub operation_result: Option<(String, String)>,
    /// What a preview left ([`Operation::Plan`] only).
    pub plan: PlanArtifacts,
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
    let started_at = crate::clock::wall();
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
                operation_result: None,
                plan: PlanArtifacts::default(),
                storage: previous_storage,
                pid: None,
                started_at,
                finished_at: crate::clock::wall(),
            };
        }
    };

    let env = contract_env(&spec, &dir);
    let jail = jail(&spec, &dir);
    if let Some(j) = &jail {
        if let Err(why) = j.bwrap.give(&dir.root) {
            let result = RunResult {
                outcome: RunOutcome::NotRunnable(redactor.redact(&why)),
                log: String::new(),
                error_log: String::new(),
                outputs: BTreeMap::new(),
                outputs_error: None,
                operation_result: None,
                plan: PlanArtifacts::default(),
                storage: previous_storage,
                pid: None,
                started_at,
                finished_at: crate::clock::wall(),
            };
            dir.remove().await;
            return result;
        }
    }
    let mut on_spawn = Some(on_spawn);
    let mut error_text = None;
    let mut plan = PlanArtifacts::default();
    let (outcome, pid, outputs, mut outputs_error) = match spec.runner {
        RunnerKind::Command => {
            let ran =
                command::run_script(&spec, &dir, &env, jail.as_ref(), &mut log, &mut on_spawn)
                    .await;
            let (outputs, outputs_error) = match read_outputs_file(&dir.outputs) {
                Ok(o) => (o, None),
                Err(e) => (BTreeMap::new(), Some(e)),
            };
            if spec.operation == Operation::Plan {
                plan.changes = read_small_file(&dir.plan).await;
            }
            (ran.outcome, ran.pid, outputs, outputs_error)
        }
        RunnerKind::Terraform => {
            let ran =
                terraform::run_terraform(&spec, &dir, &env, jail.as_ref(), &mut log, &mut on_spawn)
                    .await;
            error_text = ran.failed_step_stderr;
            plan = ran.plan;
            (ran.outcome, ran.pid, ran.outputs, ran.outputs_error)
        }
        RunnerKind::Arm => {
            let ran = arm::run_arm(&spec, &dir, &env, jail.as_ref(), &mut log, &mut on_spawn).await;
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

    let operation_result = ade_context::operation_result(&dir.ade)
        .map(|(code, message)| (redactor.redact(&code), redactor.redact(&message)));
    // A preview changes nothing: its copy of the storage is thrown away, not packed.
    let storage = if script_ran && spec.operation != Operation::Plan {
        pack_storage(&dir, &mut log, previous_storage).await
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
        operation_result,
        plan,
        storage,
        pid,
        started_at,
        finished_at: crate::clock::wall(),
    };
    dir.remove().await;
    result
}

/// A file a run left, when it is there and at most [`OUTPUTS_LIMIT`] bytes.
async fn read_small_file(path: &std::path::Path) -> Option<Vec<u8>> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if !meta.is_file() || meta.len() > OUTPUTS_LIMIT as u64 {
        return None;
    }
    tokio::fs::read(path).await.ok()
}

/// The result of a run that was refused before anything started: `why` is its error.
pub fn not_run(why: String, storage: Vec<u8>) -> RunResult {
    let now = crate::clock::wall();
    RunResult {
        outcome: RunOutcome::NotRunnable(why),
        log: String::new(),
        error_log: String::new(),
        outputs: BTreeMap::new(),
        outputs_error: None,
        operation_result: None,
        plan: PlanArtifacts::default(),
        storage,
        pid: None,
        started_at: now,
        finished_at: now,
    }
}

/// A run in a sandbox: the sandbox and what this run mounts.
pub(crate) struct Jail<'a> {
    pub bwrap: &'a Bubblewrap,
    pub mounts: sandbox::RunMounts<'a>,
}

/// The run's sandbox, when the spec has one: its own folder writable, the definition in it
/// read-only (Terraform writes `.terraform` and its lock file beside the configuration, so
/// its private copy is writable), the `PATH` folders and a `terraform` binary read-only.
fn jail<'a>(spec: &'a RunSpec, dir: &'a RunDir) -> Option<Jail<'a>> {
    let Sandbox::Bubblewrap(bwrap) = &spec.sandbox else {
        return None;
    };
    let extra_ro = spec
        .terraform_binary
        .as_ref()
        .and_then(|b| b.parent())
        .map(|p| p.to_path_buf())
        .into_iter()
        .collect();
    Some(Jail {
        bwrap,
        mounts: sandbox::RunMounts {
            work: &dir.root,
            definition: &dir.definition,
            definition_writable: spec.runner == RunnerKind::Terraform,
            path: &spec.path,
            extra_ro,
            network: spec.network,
            ade: spec
                .ade_program
                .as_deref()
                .map(|p| (p, dir.bin.join("ade"))),
        },
    })
}

/// Packs `ADE_STORAGE` after a run, on a blocking thread (it reads up to 50 MiB of files);
/// the previous archive when the new one cannot be kept (the log says why).
async fn pack_storage(dir: &RunDir, log: &mut Capped, previous: Vec<u8>) -> Vec<u8> {
    let storage_dir = dir.storage.clone();
    let packed =
        tokio::task::spawn_blocking(move || storage::pack(&storage_dir, storage::STORAGE_LIMIT))
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
            previous
        }
        Ok(Err(e)) => {
            log.note(&format!(
                "ADE_STORAGE could not be saved, kept the previous one: {e}"
            ));
            previous
        }
        Err(e) => {
            log.note(&format!(
                "ADE_STORAGE could not be saved, kept the previous one: {e}"
            ));
            previous
        }
    }
}

/// The name a Paved instance gives its runs (`PAVED_INSTANCE`): a digest of its data
/// folder. Run ids are counted per database, so several Paved instances on one machine
/// (each with its own data folder) have runs with the same id; this tells them apart,
/// and a restart (same data folder) still knows its own.
pub fn instance_of(data_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let path = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Kills what is left of a run after a server crash: the process group led by `pid`, but
/// only if that process still carries `PAVED_RUN_ID=<run_id>` and
/// `PAVED_INSTANCE=<instance>` in its environment (so a reused pid, or another instance's
/// run with the same id, is never killed). It also kills any other process carrying the
/// same markers: Terraform runs several processes one after the other, and only the first
/// pid is recorded. Returns whether it killed something.
pub fn kill_orphan(pid: i64, run_id: i64, instance: &str) -> bool {
    let markers = [
        format!("PAVED_RUN_ID={run_id}"),
        format!("PAVED_INSTANCE={instance}"),
    ];
    let own = std::process::id() as i64;
    let mut killed = false;
    if pid > 1 && pid <= i64::from(i32::MAX) && pid != own && environ_has(pid, &markers) {
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
            if other <= 1 || other == own || other == pid || !environ_has(other, &markers) {
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

/// Whether `/proc/<pid>/environ` holds exactly each entry of `markers`.
fn environ_has(pid: i64, markers: &[String]) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let entries: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    markers.iter().all(|m| entries.contains(&m.as_bytes()))
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
        assert_eq!(RunnerKind::parse("Bicep"), Some(RunnerKind::Arm));
        assert_eq!(RunnerKind::parse("ARM"), Some(RunnerKind::Arm));
        assert_eq!(RunnerKind::parse("pulumi"), None);
    }
}
