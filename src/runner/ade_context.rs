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
/// from. Made from the spec on the async side; the definition file is read in
/// [`AdeContext::write`], on the blocking thread that prepares the run.
pub(super) struct AdeContext {
    /// The definition's `environment.yaml`: its name, description and parameters.
    definition_file: PathBuf,
    /// What the spec says of the definition (id, catalog, paths, a fallback name).
    definition: serde_json::Value,
    environment: serde_json::Value,
    /// The program to expose as `ade`, and whether it is bound in a sandbox (then the run's
    /// `bin/ade` is only a mount point) or linked.
    program: Option<(PathBuf, bool)>,
}

/// A parameter as ADE prints it.
fn ade_parameter(p: &crate::manifest::definition::Parameter) -> serde_json::Value {
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
}

impl AdeContext {
    pub(super) fn of(spec: &RunSpec) -> AdeContext {
        let catalog = "catalog";
        let project = spec.repository.replace('/', "-");
        let content = format!("{catalog}/{}", spec.definition);
        let definition = serde_json::json!({
            "id": format!("/projects/{project}/catalogs/{catalog}/environmentDefinitions/{}", spec.definition),
            "name": spec.definition,
            "catalogName": catalog,
            "description": "",
            "parameters": [],
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
            definition_file: spec.definition_dir.join(DEFINITION_FILE),
            definition,
            environment,
            program: spec
                .ade_program
                .clone()
                .map(|p| (p, !matches!(spec.sandbox, Sandbox::None))),
        }
    }

    /// The definition as ADE prints it: what the spec says, with the name, description
    /// and parameters of its `environment.yaml` when that reads.
    fn definition(&self) -> serde_json::Value {
        let mut out = self.definition.clone();
        let parsed: Option<Definition> = std::fs::read_to_string(&self.definition_file)
            .ok()
            .and_then(|t| serde_yaml::from_str(&t).ok());
        if let Some(d) = parsed {
            out["name"] = d.name.clone().into();
            out["description"] = d.description.or(d.summary).unwrap_or_default().into();
            out["parameters"] = d.parameters.iter().map(ade_parameter).collect();
        }
        out
    }

    /// Writes the two files and puts `ade` in the run's `bin` folder.
    pub(super) fn write(&self, dir: &RunDir) -> Result<(), String> {
        let write = |name: &str, v: &serde_json::Value| {
            let path = dir.ade.join(name);
            let text = serde_json::to_string_pretty(v).unwrap_or_default();
            std::fs::write(&path, text)
                .map_err(|e| format!("could not write {}: {e}", path.display()))
        };
        write(DEFINITION_JSON, &self.definition())?;
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
