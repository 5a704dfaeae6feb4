//! The command runner (`runner: command`, the default): runs the definition's
//! `deploy.sh`/`delete.sh` (or the ADE layout `scripts/deploy.sh`), and the process
//! machinery shared with the Terraform runner ([`exec`]).
//!
//! The script runs in the run's copy of the definition folder (see
//! [`super::RunDir::definition`]), as an argv: the file itself when it is executable and
//! starts with `#!`, else `/bin/sh <file>`. Nothing from the repository or the parameters is
//! ever pasted into a shell command line; parameters travel in `ADE_OPERATION_PARAMETERS`.

use super::{Capped, Jail, Operation, RunDir, RunOutcome, RunSpec};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// After a timeout, how long the process group gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// After the main process exited, how long its output pipes may stay open (held by
/// background children) before the group is killed.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);

/// After killing the group, how long to keep reading what is left in the pipes.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// What the command runner did.
pub(crate) struct Ran {
    pub outcome: RunOutcome,
    pub pid: Option<u32>,
}

/// Finds the operation's script, relative to the definition folder: `<op>.sh`, then the
/// ADE layout `scripts/<op>.sh`.
pub fn find_script(definition_dir: &Path, operation: Operation) -> Option<PathBuf> {
    let name = format!("{}.sh", operation.as_str());
    [PathBuf::from(&name), Path::new("scripts").join(&name)]
        .into_iter()
        .find(|rel| std::fs::metadata(definition_dir.join(rel)).is_ok_and(|m| m.is_file()))
}

/// The argv for a script: the file itself when it is executable and has a `#!` line (so
/// its interpreter is honoured), else `/bin/sh <file>` (Git checkouts without the exec
/// bit, or scripts without a `#!` line, which `execve` would refuse).
pub fn script_argv(script: &Path) -> Vec<OsString> {
    use std::os::unix::fs::PermissionsExt;
    let executable = std::fs::metadata(script).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let mut magic = [0u8; 2];
    let shebang = std::fs::File::open(script)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"#!";
    if executable && shebang {
        vec![script.as_os_str().to_owned()]
    } else {
        vec!["/bin/sh".into(), script.as_os_str().to_owned()]
    }
}

pub(crate) async fn run_script<F, Fut>(
    spec: &RunSpec,
    dir: &RunDir,
    env: &[(OsString, OsString)],
    jail: Option<&Jail<'_>>,
    log: &mut Capped,
    on_spawn: &mut Option<F>,
) -> Ran
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = spec.operation.as_str();
    let Some(rel) = find_script(&dir.definition, spec.operation) else {
        let name = spec
            .definition_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.definition_dir.display().to_string());
        return Ran {
            outcome: RunOutcome::NotRunnable(format!(
                "no {op}.sh or scripts/{op}.sh in definition {name}"
            )),
            pid: None,
        };
    };
    let step = Step {
        argv: script_argv(&dir.definition.join(&rel)),
        cwd: &dir.definition,
        env,
        deadline: Instant::now() + spec.timeout,
        jail,
    };
    let report = exec(
        step,
        Capture {
            log,
            stdout: None,
            stderr: None,
        },
        on_spawn,
    )
    .await;
    Ran {
        outcome: report.outcome(spec.timeout, &rel.display().to_string()),
        pid: report.pid,
    }
}

/// One process to run.
pub(crate) struct Step<'a> {
    pub argv: Vec<OsString>,
    pub cwd: &'a Path,
    pub env: &'a [(OsString, OsString)],
    /// When the step (and its whole process group) is killed.
    pub deadline: Instant,
    /// The sandbox it runs in (`None`: `runner.sandbox = "none"`).
    pub jail: Option<&'a Jail<'a>>,
}

/// Where a step's output goes.
pub(crate) struct Capture<'a> {
    /// Combined stdout and stderr (stdout only when `stdout` is `None`).
    pub log: &'a mut Capped,
    /// Stdout kept apart from the log (e.g. `terraform output -json`, which holds
    /// sensitive values).
    pub stdout: Option<&'a mut Capped>,
    /// A copy of stderr.
    pub stderr: Option<&'a mut Capped>,
}

pub(crate) enum StepEnd {
    Exited(ExitStatus),
    TimedOut,
    SpawnFailed(String),
}

pub(crate) struct StepReport {
    pub end: StepEnd,
    pub pid: Option<u32>,
}

impl StepReport {
    pub fn outcome(&self, timeout: Duration, what: &str) -> RunOutcome {
        match &self.end {
            StepEnd::Exited(status) if status.success() => RunOutcome::Succeeded,
            StepEnd::Exited(status) => RunOutcome::Failed {
                exit_code: status.code(),
                signal: status.signal(),
            },
            StepEnd::TimedOut => RunOutcome::TimedOut { after: timeout },
            StepEnd::SpawnFailed(e) => {
                RunOutcome::NotRunnable(format!("could not start {what}: {e}"))
            }
        }
    }
}

/// Sends `sig` to a whole process group. Failure (the group is already gone) is fine.
fn kill_group(pgid: i32, sig: libc::c_int) {
    if pgid > 1 {
        // Safety: kill(2) with a negative pid signals a process group; no memory involved.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Kills the process group if the step future is dropped (the caller cancelled the run):
/// no script outlives its run.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Blocks until `pid` has exited, without reaping it. The leader stays a zombie until
/// `Child::wait` reaps it, which keeps its pid (the process group id) from being reused by
/// an unrelated process while we still send signals to the group.
fn wait_exited_without_reaping(pid: i32) {
    loop {
        // Safety: `info` is a plain C struct that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    r: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Runs one process in its own process group, with a scrubbed environment, and captures its
/// output until it and everything it started are gone.
///
/// Why a process group: a script starts children (`terraform`, `az`, `sleep`, background
/// jobs). Killing only the script on a timeout would leave them running, holding cloud
/// locks and the output pipes. Signalling `-pgid` reaches them all.
///
/// The sequence: on the deadline SIGTERM the group, after [`TERM_GRACE`] SIGKILL it. When
/// the main process exits, background children may still hold the pipes open; after
/// [`PIPE_GRACE`] the group is killed and reading stops shortly after. In every case the
/// group gets a final SIGKILL before the leader is reaped, so nothing it started survives
/// the run (except processes that deliberately left the group with `setsid`, which
/// [`super::kill_orphan`] can still find by their `PAVED_RUN_ID`).
pub(crate) async fn exec<F, Fut>(
    step: Step<'_>,
    capture: Capture<'_>,
    on_spawn: &mut Option<F>,
) -> StepReport
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (mut child, pid) = match spawn(&step) {
        Ok(spawned) => spawned,
        Err(why) => {
            return StepReport {
                end: StepEnd::SpawnFailed(why),
                pid: None,
            }
        }
    };
    let pgid = pid as i32;
    let mut guard = GroupGuard { pgid, armed: true };
    // Before anything waits on the process: whoever records the pid has done so (durably)
    // by the time the run can outlive this server, so an orphan is always found.
    if let Some(f) = on_spawn.take() {
        f(pid).await;
    }
    let Capture {
        log,
        stdout,
        stderr,
    } = capture;
    let sinks = Capture {
        log: &mut *log,
        stdout,
        stderr,
    };
    let ended = pump(&mut child, pgid, step.deadline, sinks).await;
    if ended.timed_out {
        log.note(&format!(
            "timed out: the process group was sent SIGTERM{}",
            if ended.killed { ", then SIGKILL" } else { "" }
        ));
    } else if ended.pipe_killed {
        log.note(
            "background processes kept the output open after the script exited; their process group was killed",
        );
    }
    // Anything still running in the group (background jobs that closed their output) dies
    // with the run. The leader is not reaped yet, so the group id cannot have been reused.
    kill_group(pgid, libc::SIGKILL);
    let status = child.wait().await;
    guard.armed = false;
    drop(guard);
    let end = if ended.timed_out {
        StepEnd::TimedOut
    } else {
        match status {
            Ok(status) => StepEnd::Exited(status),
            Err(e) => StepEnd::SpawnFailed(format!("could not wait for the process: {e}")),
        }
    };
    StepReport {
        end,
        pid: Some(pid),
    }
}

/// Starts the step in a process group of its own, with exactly the given environment and
/// no stdin; its pid (also the group's id). In a sandbox, the process started is `bwrap`
/// (as the runner's user when Paved is root): killing its group kills the whole sandbox,
/// since everything in it dies with its PID namespace (`--die-with-parent`).
fn spawn(step: &Step<'_>) -> Result<(tokio::process::Child, u32), String> {
    if step.argv.is_empty() {
        return Err("empty command".into());
    }
    let argv = match step.jail {
        Some(j) => j.bwrap.argv(&j.mounts, step.cwd, &step.argv),
        None => step.argv.clone(),
    };
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    match step.jail {
        Some(j) => {
            cmd.current_dir("/");
            if j.bwrap.user.switch {
                cmd.uid(j.bwrap.user.uid).gid(j.bwrap.user.gid);
            }
        }
        None => {
            cmd.current_dir(step.cwd);
        }
    }
    cmd.args(args)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child
        .id()
        .ok_or_else(|| "the process exited before its pid was known".to_string())?;
    Ok((child, pid))
}

/// How watching a process ended.
struct Ended {
    /// The deadline passed: SIGTERM was sent to the group...
    timed_out: bool,
    /// ...and SIGKILL after the grace.
    killed: bool,
    /// It exited, but its group kept the output open past the grace and was killed.
    pipe_killed: bool,
}

/// Copies the process's output into the capture until it has exited and its output is
/// closed: SIGTERM to the group at the deadline, SIGKILL [`TERM_GRACE`] later; once the
/// leader exited, background processes holding the output open get [`PIPE_GRACE`], then
/// SIGKILL.
async fn pump(
    child: &mut tokio::process::Child,
    pgid: i32,
    deadline: Instant,
    capture: Capture<'_>,
) -> Ended {
    let Capture {
        log,
        mut stdout,
        mut stderr,
    } = capture;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut exit_task = tokio::task::spawn_blocking(move || wait_exited_without_reaping(pgid));
    let mut exited = false;
    let mut ended = Ended {
        timed_out: false,
        killed: false,
        pipe_killed: false,
    };
    let mut term_sent: Option<Instant> = None;
    let mut pipe_deadline: Option<Instant> = None;
    let mut out_buf = vec![0u8; 16 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];
    loop {
        if exited && out.is_none() && err.is_none() {
            break;
        }
        let timer = if !exited {
            match term_sent {
                None => Some(deadline),
                Some(at) if !ended.killed => Some(at + TERM_GRACE),
                Some(_) => None,
            }
        } else {
            pipe_deadline
        };
        tokio::select! {
            r = read_some(&mut out, &mut out_buf) => match r {
                Ok(n) if n > 0 => match stdout.as_deref_mut() {
                    Some(sink) => sink.push(&out_buf[..n]),
                    None => log.push(&out_buf[..n]),
                },
                _ => out = None,
            },
            r = read_some(&mut err, &mut err_buf) => match r {
                Ok(n) if n > 0 => {
                    log.push(&err_buf[..n]);
                    if let Some(sink) = stderr.as_deref_mut() {
                        sink.push(&err_buf[..n]);
                    }
                }
                _ => err = None,
            },
            _ = &mut exit_task, if !exited => {
                exited = true;
                pipe_deadline = Some(Instant::now() + PIPE_GRACE);
            }
            _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                if !exited {
                    if term_sent.is_none() {
                        ended.timed_out = true;
                        term_sent = Some(Instant::now());
                        kill_group(pgid, libc::SIGTERM);
                    } else {
                        ended.killed = true;
                        kill_group(pgid, libc::SIGKILL);
                    }
                } else if !ended.pipe_killed {
                    ended.pipe_killed = true;
                    kill_group(pgid, libc::SIGKILL);
                    pipe_deadline = Some(Instant::now() + DRAIN_GRACE);
                } else {
                    break;
                }
            }
        }
    }
    ended
}
