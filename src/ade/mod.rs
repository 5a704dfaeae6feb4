//! The `ade` command a run finds on its `PATH` (SPEC 13, ADE's runner contract): Paved's own
//! binary called by that name, with ADE's documented subcommands and output shapes, so a
//! script written for an ADE custom image runs under Paved unchanged.
//!
//! It runs inside the run's sandbox, as the script's child, and works only on the run's own
//! folders, which the runner names in its environment: `ADE_STORAGE`, `ADE_OUTPUTS`,
//! `ADE_ERROR_LOG`, and `PAVED_ADE_CONTEXT` (the definition and environment as ADE prints
//! them, written by the runner; and where `operation-result` leaves the failure for the
//! runner to read). It has no network, no token and nothing of the server's.
//!
//! | command | what it does here |
//! |---|---|
//! | `definitions list` | the definition as ADE prints it |
//! | `definitions download [--folder-path P]` | copies the definition's files |
//! | `environment` | the environment as ADE prints it |
//! | `files list/upload/download` | files kept with the environment (in `ADE_STORAGE/.ade-files`); the `ADE_STORAGE` folder itself is `storage.zip`, which Paved already keeps and restores |
//! | `outputs upload --file F`, `outputs list` | checks F is in ADE's outputs format and makes it the run's `ADE_OUTPUTS` |
//! | `operation-result --code C --message M` | the operation fails with "C: M" as its error |
//! | `log --content C [--type T] [--file F]` | a line of the operation log |
//! | `execute --operation O --command C` | runs C (`sh -c`, the script's own command) |
//! | `init`, `upgrade` | nothing to do |

mod files;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::runner::ade_context::{DEFINITION_JSON, ENVIRONMENT_JSON, OPERATION_RESULT_FILE};

#[derive(Debug, Parser)]
#[command(
    name = "ade",
    about = "Azure Deployment Environments' runner commands, as Paved provides them",
    disable_version_flag = true
)]
struct Ade {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The environment definition being run.
    Definitions {
        #[command(subcommand)]
        command: Definitions,
    },
    /// The environment being operated on, as JSON.
    Environment,
    /// Files kept with the environment between operations.
    Files {
        #[command(subcommand)]
        command: Files,
    },
    /// The operation's outputs.
    Outputs {
        #[command(subcommand)]
        command: Outputs,
    },
    /// Fails the operation with this code and message.
    OperationResult {
        #[arg(long)]
        code: String,
        #[arg(long)]
        message: String,
    },
    /// Writes a line to the operation log.
    Log {
        #[arg(long)]
        content: String,
        #[arg(long = "type", default_value = "log")]
        kind: String,
        #[arg(long)]
        file: Option<String>,
    },
    /// Runs a command, its output part of the operation log.
    Execute {
        #[arg(long)]
        operation: Option<String>,
        #[arg(long)]
        command: String,
    },
    /// Nothing to initialise: Paved sets up the run before the script starts.
    Init,
    /// Nothing to upgrade.
    Upgrade,
}

#[derive(Debug, Subcommand)]
enum Definitions {
    List,
    Download {
        #[arg(long = "folder-path", default_value = "EnvironmentDefinition")]
        folder_path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum Files {
    List,
    Upload {
        #[arg(long = "file-path", conflicts_with = "folder_path")]
        file_path: Option<PathBuf>,
        #[arg(long = "folder-path")]
        folder_path: Option<PathBuf>,
    },
    Download {
        #[arg(long = "file-name")]
        file_name: String,
        #[arg(long = "folder-path", default_value = ".")]
        folder_path: PathBuf,
        #[arg(long)]
        unzip: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Outputs {
    Upload {
        #[arg(long)]
        file: PathBuf,
    },
    List,
}

/// Whether the program was called as `ade` (its `argv[0]`'s file name).
pub fn called_as_ade(argv0: &std::ffi::OsStr) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "ade")
}

/// Runs `ade` with the process's arguments.
pub fn main() -> ExitCode {
    let ade = Ade::parse();
    match run(ade.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ade: {e}");
            ExitCode::from(1)
        }
    }
}

/// A variable of the run's contract; its absence means `ade` runs outside a run.
fn var(name: &str) -> Result<PathBuf, String> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set: ade runs inside a Paved (or ADE) operation"))
}

fn print_file(path: &Path) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Definitions {
            command: Definitions::List,
        } => print_file(&var("PAVED_ADE_CONTEXT")?.join(DEFINITION_JSON)),
        Command::Definitions {
            command: Definitions::Download { folder_path },
        } => {
            // The run's folder holds its copy of the definition beside the context.
            let context = var("PAVED_ADE_CONTEXT")?;
            let from = context
                .parent()
                .map(|root| root.join("definition"))
                .ok_or("PAVED_ADE_CONTEXT has no parent folder")?;
            crate::runner::copy_tree(&from, &folder_path)
                .map_err(|e| format!("cannot copy the definition: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Environment => print_file(&var("PAVED_ADE_CONTEXT")?.join(ENVIRONMENT_JSON)),
        Command::Files { command } => {
            let storage = var("ADE_STORAGE")?;
            match command {
                Files::List => {
                    let names = files::list(&storage)?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&names).map_err(|e| e.to_string())?
                    );
                }
                Files::Upload {
                    file_path,
                    folder_path,
                } => files::upload(&storage, file_path.as_deref(), folder_path.as_deref())?,
                Files::Download {
                    file_name,
                    folder_path,
                    unzip,
                } => files::download(&storage, &file_name, &folder_path, unzip)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outputs {
            command: Outputs::Upload { file },
        } => {
            let bytes =
                std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            crate::runner::parse_outputs(&bytes)?;
            let outputs = var("ADE_OUTPUTS")?;
            let same = std::fs::canonicalize(&file).ok() == std::fs::canonicalize(&outputs).ok();
            if !same {
                std::fs::write(&outputs, &bytes)
                    .map_err(|e| format!("cannot write {}: {e}", outputs.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Outputs {
            command: Outputs::List,
        } => {
            let outputs = var("ADE_OUTPUTS")?;
            let bytes = std::fs::read(&outputs).unwrap_or_default();
            let parsed = crate::runner::parse_outputs(&bytes)?;
            let shown = serde_json::json!({ "outputs": parsed });
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::OperationResult { code, message } => {
            let path = var("PAVED_ADE_CONTEXT")?.join(OPERATION_RESULT_FILE);
            let body = serde_json::json!({ "code": code, "message": message });
            std::fs::write(&path, body.to_string())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Log {
            content,
            kind,
            file,
        } => {
            let line = match kind.to_ascii_lowercase().as_str() {
                "log" | "info" | "" => content.clone(),
                other => format!("{other}: {content}"),
            };
            match file {
                Some(name) => files::append_log(&var("ADE_STORAGE")?, &name, &line)?,
                None => eprintln!("{line}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Execute { command, .. } => {
            let status = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&command)
                .status()
                .map_err(|e| format!("cannot run sh: {e}"))?;
            Ok(match status.code() {
                Some(0) => ExitCode::SUCCESS,
                Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                None => ExitCode::from(1),
            })
        }
        Command::Init => Ok(ExitCode::SUCCESS),
        Command::Upgrade => {
            eprintln!("ade: nothing to upgrade (Paved provides this command)");
            Ok(ExitCode::SUCCESS)
        }
    }
}
