//! What the `ade` command of a run reads (SPEC 13): the definition and the environment as
//! ADE prints them, written into the run's folder before the script starts, and the `ade`
//! program itself on the run's `PATH`.

use super::{RunDir, RunSpec, Sandbox};
use crate::manifest::definition::{Definition, DEFINITION_FILE};
use std::path::{Path, PathBuf};

/// The file under `PAVED_ADE_CONTEXT` where `ade operation-result` leaves the failure.
pub const OPERATION_RESULT_FILE: &str = "operation-result.json";
/// The definition as `ade definitions list` prints it.
pub const DEFINITION_JSON: &str = "definition.json";
/// The environment as `ade environment` prints it.
pub const ENVIRONMENT_JSON: &str = "environment.json";

/// What `ade operation-result` left in `context` (a run's `PAVED_ADE_CONTEXT`): the code
/// and message of the failure the script reported.
pub fn operation_result(context: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string(context.join(OPERATION_RESULT_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let field = |k: &str| v[k].as_str().unwrap_or_default().trim().to_string();
    Some((field("code"), field("message")))
}

/// The files `ade definitions list` and `ade environment` print, and where `ade` comes
/// from.
pub(super) struct AdeContext {
    definition: serde_json::Value,
    environment: serde_json::Value,
    /// The program to expose as `ade`, and whether it is bound in a sandbox (then the run's
    /// `bin/ade` is only a mount point) or linked.
    program: Option<(PathBuf, bool)>,
}

impl AdeContext {
    pub(super) fn of(spec: &RunSpec) -> AdeContext {
        let parsed: Option<Definition> =
            std::fs::read_to_string(spec.definition_dir.join(DEFINITION_FILE))
                .ok()
                .and_then(|t| serde_yaml::from_str(&t).ok());
        let catalog = "catalog";
        let project = spec.repository.replace('/', "-");
        let content = format!("{catalog}/{}", spec.definition);
        let parameters: Vec<serde_json::Value> = parsed
            .as_ref()
            .map(|d| {
                d.parameters
                    .iter()
                    .map(|p| {
                        let mut v = serde_json::json!({
                            "id": p.id,
                            "name": p.name.clone().unwrap_or_else(|| p.id.clone()),
                            "description": p.description.clone().unwrap_or_default(),
                            "type": p.param_type.to_string(),
                            "readOnly": p.read_only,
                            "required": p.required,
                            "allowed": p.allowed.clone().unwrap_or_default(),
                        });
                        if let Some(d) = &p.default {
                            v["default"] = d.clone();
                        }
                        v
                    })
                    .collect()
            })
            .unwrap_or_default();
        let definition = serde_json::json!({
            "id": format!("/projects/{project}/catalogs/{catalog}/environmentDefinitions/{}", spec.definition),
            "name": parsed.as_ref().map_or(spec.definition.clone(), |d| d.name.clone()),
            "catalogName": catalog,
            "description": parsed.as_ref().and_then(|d| d.description.clone().or(d.summary.clone())).unwrap_or_default(),
            "parameters": parameters,
            "templatePath": spec.template_path.as_ref().map(|t| format!("{content}/{t}")),
            "contentSourcePath": content,
        });
        let azure = spec.identity.as_ref().and_then(|i| i.azure.as_ref());
        let resource_group_id = azure.and_then(|a| {
            Some(format!(
                "/subscriptions/{}/resourceGroups/{}",
                a.subscription_id.as_ref()?,
                a.resource_group.as_ref()?
            ))
        });
        let environment = serde_json::json!({
            "name": spec.environment_name,
            "environmentType": spec.environment_type,
            "user": spec.owner,
            "provisioningState": "Running",
            "resourceGroupId": resource_group_id,
            "catalogName": catalog,
            "environmentDefinitionName": spec.definition,
            "parameters": spec.parameters,
            "location": azure.and_then(|a| a.location.clone()),
        });
        AdeContext {
            definition,
            environment,
            program: spec
                .ade_program
                .clone()
                .map(|p| (p, !matches!(spec.sandbox, Sandbox::None))),
        }
    }

    /// Writes the two files and puts `ade` in the run's `bin` folder.
    pub(super) fn write(&self, dir: &RunDir) -> Result<(), String> {
        let write = |name: &str, v: &serde_json::Value| {
            let path = dir.ade.join(name);
            let text = serde_json::to_string_pretty(v).unwrap_or_default();
            std::fs::write(&path, text)
                .map_err(|e| format!("could not write {}: {e}", path.display()))
        };
        write(DEFINITION_JSON, &self.definition)?;
        write(ENVIRONMENT_JSON, &self.environment)?;
        if let Some((program, bound)) = &self.program {
            let target = dir.bin.join("ade");
            let made = if *bound {
                // The sandbox binds the program here, read-only.
                std::fs::write(&target, b"")
            } else {
                std::os::unix::fs::symlink(program, &target)
            };
            made.map_err(|e| format!("could not put ade on the run's PATH: {e}"))?;
        }
        Ok(())
    }
}
