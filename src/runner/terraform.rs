//! The Terraform runner (`runner: terraform`): `terraform` or `tofu` in the definition's
//! `templatePath`.
//!
//! Steps, each a separate process run like a script (own process group, scrubbed
//! environment plus `TF_IN_AUTOMATION=1`, `TF_INPUT=0`, `CHECKPOINT_DISABLE=1`, one deadline
//! for all):
//! 1. `init -input=false -no-color`
//! 2. deploy: `apply -auto-approve -input=false -no-color -var-file=<run dir>/parameters.tfvars.json`;
//!    delete: `destroy` with the same flags
//! 3. deploy only, after a successful apply: `output -json`, whose stdout is kept out of the
//!    log (it holds sensitive values in clear) and becomes the run's outputs.
//!
//! # State
//! Terraform runs in the run's copy of the definition (so `.terraform/`, the lock file and
//! the state never touch the materialised definition or a concurrent run). A template
//! without a `backend` block uses the local backend, whose state is `terraform.tfstate` in
//! the working directory: before `init`, `ADE_STORAGE/terraform.tfstate` from the previous
//! operation is copied there, and after the last step (also after a failure or a timeout,
//! since a half-applied state is exactly what the next `destroy` needs) it is copied back
//! into `ADE_STORAGE`, which Paved keeps per environment. This uses only the default local
//! backend behaviour, so it works the same with Terraform 1.x and OpenTofu, without the
//! legacy `-state` flags. A template that declares its own backend (azurerm, s3, …) keeps
//! its state there; nothing is copied then.

use super::command::{exec, Capture, Step, StepEnd};
use super::{
    Capped, Jail, Operation, Output, PlanArtifacts, PlanInput, RunDir, RunOutcome, RunSpec,
    OUTPUTS_LIMIT,
};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use tokio::time::Instant;

/// The state file of the local backend, in the working directory and in `ADE_STORAGE`.
pub const STATE_FILE: &str = "terraform.tfstate";

/// The message when neither binary is found.
pub const MISSING_BINARY: &str = "runner terraform needs `terraform` or `tofu` on PATH";

pub(crate) struct TfRan {
    pub outcome: RunOutcome,
    pub pid: Option<u32>,
    pub outputs: BTreeMap<String, Output>,
    pub outputs_error: Option<String>,
    /// Stderr of the step that failed, for `error_log` when `ADE_ERROR_LOG` is empty.
    pub failed_step_stderr: Option<Capped>,
    /// A preview's plan file and its `show -json`.
    pub plan: PlanArtifacts,
}

impl TfRan {
    fn not_runnable(why: String) -> TfRan {
        TfRan {
            outcome: RunOutcome::NotRunnable(why),
            pid: None,
            outputs: BTreeMap::new(),
            outputs_error: None,
            failed_step_stderr: None,
            plan: PlanArtifacts::default(),
        }
    }
}

pub(super) fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Looks up `terraform`, then `tofu`, on a `PATH` value. Empty entries (which would mean
/// the current directory, i.e. the repository's files) are skipped.
pub fn find_binary(path: &str) -> Option<PathBuf> {
    ["terraform", "tofu"].into_iter().find_map(|name| {
        path.split(':')
            .filter(|dir| !dir.is_empty() && Path::new(dir).is_absolute())
            .map(|dir| Path::new(dir).join(name))
            .find(|candidate| is_executable_file(candidate))
    })
}

/// The folder Terraform runs in: `templatePath` inside the definition copy (its parent when
/// it names a file such as `main.tf`), refusing paths that leave the definition.
fn working_dir(
    definition: &Path,
    template_path: Option<&str>,
    def_name: &str,
) -> Result<PathBuf, String> {
    let Some(tp) = template_path.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(definition.to_path_buf());
    };
    let rel = Path::new(tp);
    let inside = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(format!(
            "templatePath {tp:?} of definition {def_name} must be a path inside the definition folder"
        ));
    }
    let full = definition.join(rel);
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => Ok(full),
        Ok(_) => Ok(full
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| definition.to_path_buf())),
        Err(_) => Err(format!(
            "templatePath {tp:?} not found in definition {def_name}"
        )),
    }
}

/// Terraform's `output -json`: `{"name": {"sensitive": bool, "type": <type>, "value": …}}`.
#[derive(serde::Deserialize)]
struct TfOutput {
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    r#type: serde_json::Value,
    #[serde(default)]
    value: serde_json::Value,
}

/// Maps `terraform output -json` to ADE outputs. Terraform types are JSON (`"string"`,
/// `["list", "string"]`); a non-string type is kept as its JSON text.
pub fn parse_terraform_outputs(bytes: &[u8]) -> Result<BTreeMap<String, Output>, String> {
    let raw: BTreeMap<String, TfOutput> = serde_json::from_slice(bytes)
        .map_err(|e| format!("terraform output -json could not be read: {e}"))?;
    Ok(raw
        .into_iter()
        .map(|(name, o)| {
            let r#type = match o.r#type {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "string".to_string(),
                other => other.to_string(),
            };
            (
                name,
                Output {
                    r#type,
                    value: o.value,
                    sensitive: o.sensitive,
                },
            )
        })
        .collect())
}

/// What a Terraform run works with, once the binary, the working folder, the parameters
/// file and the restored state are in place.
struct Prepared {
    binary: PathBuf,
    /// `terraform` or `tofu`, for the log.
    tool: String,
    workdir: PathBuf,
    var_file: PathBuf,
    stored_state: PathBuf,
    work_state: PathBuf,
}

/// Finds the binary and the working folder, writes the parameters file and restores the
/// state from `ADE_STORAGE`; `Err`: why the run cannot start.
async fn prepare(spec: &RunSpec, dir: &RunDir) -> Result<Prepared, String> {
    let def_name = spec
        .definition_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| spec.definition_dir.display().to_string());
    let binary = match &spec.terraform_binary {
        Some(p) if is_executable_file(p) => p.clone(),
        Some(p) => {
            return Err(format!(
                "terraform binary {} is not an executable file",
                p.display()
            ))
        }
        None => find_binary(&spec.path).ok_or_else(|| MISSING_BINARY.to_string())?,
    };
    let tool = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "terraform".into());
    let workdir = working_dir(&dir.definition, spec.template_path.as_deref(), &def_name)?;
    let parameters = match &spec.parameters {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        p @ serde_json::Value::Object(_) => p.clone(),
        _ => return Err("parameters must be a JSON object".to_string()),
    };
    let var_file = dir.root.join("parameters.tfvars.json");
    tokio::fs::write(&var_file, parameters.to_string())
        .await
        .map_err(|e| format!("could not write the parameters file: {e}"))?;
    let stored_state = dir.storage.join(STATE_FILE);
    let work_state = workdir.join(STATE_FILE);
    if tokio::fs::metadata(&stored_state)
        .await
        .is_ok_and(|m| m.is_file())
    {
        tokio::fs::copy(&stored_state, &work_state)
            .await
            .map_err(|e| format!("could not restore the Terraform state from ADE_STORAGE: {e}"))?;
    }
    Ok(Prepared {
        binary,
        tool,
        workdir,
        var_file,
        stored_state,
        work_state,
    })
}

/// The scripts' environment plus what makes Terraform run unattended.
fn terraform_env(env: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    let mut env = env.to_vec();
    for (k, v) in [
        ("TF_IN_AUTOMATION", "1"),
        ("TF_INPUT", "0"),
        // No calls home to HashiCorp's version checkpoint from a provisioning run.
        ("CHECKPOINT_DISABLE", "1"),
    ] {
        env.retain(|(name, _)| name != k);
        env.push((k.into(), v.into()));
    }
    env
}

/// One step of a Terraform run: its arguments and what its stdout is for.
struct TfStep {
    args: Vec<OsString>,
    /// Stdout is kept apart from the log (`output -json`, `show -json`: values in clear).
    captured: Option<Captured>,
    /// Exit 2 means "changes" (`plan -detailed-exitcode`), not a failure: go on.
    changes_exit: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Captured {
    Outputs,
    Show,
}

/// `init`, then `apply` or `destroy`, then (deploy) `output -json`; for a drift check,
/// `plan -detailed-exitcode` (exit 0 no changes, 2 changes); for a preview, `plan -out`
/// (`-destroy` for a deletion) then `show -json` of the plan; for a deploy of an approved
/// preview, `apply <plan file>`. `None`: Terraform has no such operation (a schedule's stop
/// and start are scripts).
fn steps(
    operation: Operation,
    plan: Option<&PlanInput>,
    var_file: &Path,
    tfplan: &Path,
) -> Option<Vec<TfStep>> {
    let mut var_file_arg = OsString::from("-var-file=");
    var_file_arg.push(var_file);
    let mut out_arg = OsString::from("-out=");
    out_arg.push(tfplan);
    let common = ["-input=false".into(), "-no-color".into()];
    let main_args: Vec<OsString> = match (operation, plan) {
        (Operation::Deploy, Some(PlanInput::TerraformPlan(_))) => ["apply".into()]
            .into_iter()
            .chain(common.clone())
            .chain([tfplan.as_os_str().to_owned()])
            .collect(),
        (Operation::Deploy, _) => vec!["apply".into(), "-auto-approve".into()],
        (Operation::Delete, _) => vec!["destroy".into(), "-auto-approve".into()],
        (Operation::Status, _) => vec!["plan".into(), "-detailed-exitcode".into()],
        (Operation::Plan, Some(PlanInput::Preview(Operation::Delete))) => vec![
            "plan".into(),
            "-destroy".into(),
            "-detailed-exitcode".into(),
            out_arg,
        ],
        (Operation::Plan, _) => vec!["plan".into(), "-detailed-exitcode".into(), out_arg],
        (Operation::Stop | Operation::Start, _) => return None,
    };
    let applies_file = matches!(plan, Some(PlanInput::TerraformPlan(_)));
    let main_args: Vec<OsString> = if applies_file && operation == Operation::Deploy {
        main_args
    } else {
        main_args
            .into_iter()
            .chain(common.clone())
            .chain([var_file_arg])
            .collect()
    };
    let step = |args: Vec<OsString>| TfStep {
        args,
        captured: None,
        changes_exit: false,
    };
    let mut steps = vec![
        step(vec![
            "init".into(),
            "-input=false".into(),
            "-no-color".into(),
        ]),
        TfStep {
            changes_exit: operation == Operation::Plan,
            ..step(main_args)
        },
    ];
    match operation {
        Operation::Deploy => steps.push(TfStep {
            captured: Some(Captured::Outputs),
            ..step(vec!["output".into(), "-json".into(), "-no-color".into()])
        }),
        Operation::Plan => steps.push(TfStep {
            captured: Some(Captured::Show),
            ..step(vec![
                "show".into(),
                "-json".into(),
                "-no-color".into(),
                tfplan.as_os_str().to_owned(),
            ])
        }),
        _ => {}
    }
    Some(steps)
}

pub(crate) async fn run_terraform<F, Fut>(
    spec: &RunSpec,
    dir: &RunDir,
    env: &[(OsString, OsString)],
    jail: Option<&Jail<'_>>,
    log: &mut Capped,
    on_spawn: &mut Option<F>,
) -> TfRan
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    if steps(spec.operation, None, Path::new(""), Path::new("")).is_none() {
        return TfRan::not_runnable(format!(
            "runner terraform has no {} operation: a schedule needs a definition with {}.sh",
            spec.operation, spec.operation
        ));
    }
    let prep = match prepare(spec, dir).await {
        Ok(p) => p,
        Err(why) => return TfRan::not_runnable(why),
    };
    // The parameters file and the restored state were written by Paved: the runner's user
    // must own them (Terraform rewrites its state in place).
    if let Some(j) = jail {
        if let Err(why) = j.bwrap.give(&dir.root) {
            return TfRan::not_runnable(why);
        }
    }
    let env = terraform_env(env);
    let ran = run_steps(spec, dir, &prep, &env, jail, log, on_spawn).await;
    // Keep the state whatever happened: after a failed or interrupted apply it records
    // what was created, which the next deploy or delete needs.
    if tokio::fs::metadata(&prep.work_state)
        .await
        .is_ok_and(|m| m.is_file())
    {
        if let Err(e) = tokio::fs::copy(&prep.work_state, &prep.stored_state).await {
            log.note(&format!(
                "the Terraform state could not be copied to ADE_STORAGE: {e}"
            ));
        }
    }
    ran
}

/// Runs the steps in order until one fails, within the run's one deadline.
async fn run_steps<F, Fut>(
    spec: &RunSpec,
    dir: &RunDir,
    prep: &Prepared,
    env: &[(OsString, OsString)],
    jail: Option<&Jail<'_>>,
    log: &mut Capped,
    on_spawn: &mut Option<F>,
) -> TfRan
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    let tool = &prep.tool;
    let deadline = Instant::now() + spec.timeout;
    let mut first_pid = None;
    let mut ran = TfRan {
        outcome: RunOutcome::Succeeded,
        pid: None,
        outputs: BTreeMap::new(),
        outputs_error: None,
        failed_step_stderr: None,
        plan: PlanArtifacts::default(),
    };
    let all = steps(
        spec.operation,
        spec.plan.as_ref(),
        &prep.var_file,
        &dir.tfplan,
    );
    for step in all.unwrap_or_default() {
        // The server's run directory path means nothing to a reader of the log.
        let root = dir.root.to_string_lossy().into_owned();
        let shown: Vec<String> = step
            .args
            .iter()
            .map(|a| a.to_string_lossy().replace(&root, "<run dir>"))
            .collect();
        log.note(&format!("$ {tool} {}", shown.join(" ")));
        let mut argv = vec![prep.binary.clone().into_os_string()];
        argv.extend(step.args);
        let mut stderr = Capped::new(spec.output_limit);
        let mut stdout = Capped::new(OUTPUTS_LIMIT);
        let report = exec(
            Step {
                argv,
                cwd: &prep.workdir,
                env,
                deadline,
                jail,
            },
            Capture {
                log: &mut *log,
                stdout: step.captured.is_some().then_some(&mut stdout),
                stderr: Some(&mut stderr),
            },
            on_spawn,
        )
        .await;
        if first_pid.is_none() {
            first_pid = report.pid;
        }
        let outcome = report.outcome(spec.timeout, tool);
        match step.captured {
            Some(Captured::Outputs) => {
                // The apply succeeded: a broken `output` step is an outputs problem,
                // reported as such, not a failed apply.
                ran.outputs_error = match (&report.end, outcome.is_success()) {
                    (_, true) if stdout.omitted() > 0 => Some(format!(
                        "{tool} output -json is over {} MiB",
                        OUTPUTS_LIMIT / (1024 * 1024)
                    )),
                    (_, true) => match parse_terraform_outputs(&stdout.bytes()) {
                        Ok(outputs) => {
                            ran.outputs = outputs;
                            None
                        }
                        Err(e) => Some(e),
                    },
                    (StepEnd::TimedOut, _) => {
                        ran.outcome = outcome.clone();
                        Some(format!("{tool} output -json {}", outcome.describe()))
                    }
                    (_, false) => Some(format!("{tool} output -json {}", outcome.describe())),
                };
                break;
            }
            Some(Captured::Show) => {
                if !outcome.is_success() || stdout.omitted() > 0 {
                    ran.outcome = outcome;
                    ran.failed_step_stderr = Some(stderr);
                    ran.plan = PlanArtifacts::default();
                    break;
                }
                ran.plan.terraform_show = Some(stdout.bytes());
                ran.plan.terraform_plan = tokio::fs::read(&dir.tfplan).await.ok();
                break;
            }
            None => {}
        }
        let changes = step.changes_exit
            && matches!(
                outcome,
                RunOutcome::Failed {
                    exit_code: Some(2),
                    ..
                }
            );
        if changes {
            // The preview's verdict ("changes"), kept while `show` runs.
            ran.outcome = outcome;
            continue;
        }
        if !outcome.is_success() {
            ran.outcome = outcome;
            ran.failed_step_stderr = Some(stderr);
            break;
        }
    }
    ran.pid = first_pid;
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_outputs_mapping() {
        let o = parse_terraform_outputs(
            br#"{"url":{"sensitive":false,"type":"string","value":"https://x"},
                 "ids":{"sensitive":true,"type":["list","string"],"value":["a"]}}"#,
        )
        .unwrap();
        assert_eq!(o["url"].r#type, "string");
        assert_eq!(o["ids"].r#type, r#"["list","string"]"#);
        assert!(o["ids"].sensitive);
    }

    #[test]
    fn template_path_must_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        assert!(working_dir(d.path(), Some("../x"), "def").is_err());
        assert!(working_dir(d.path(), Some("/etc"), "def").is_err());
        assert_eq!(working_dir(d.path(), None, "def").unwrap(), d.path());
        std::fs::write(d.path().join("main.tf"), "").unwrap();
        assert_eq!(
            working_dir(d.path(), Some("main.tf"), "def").unwrap(),
            d.path()
        );
    }

    #[test]
    fn binary_lookup_skips_empty_and_relative_entries() {
        assert_eq!(find_binary(""), None);
        assert_eq!(find_binary("::."), None);
    }
}
