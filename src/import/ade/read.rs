//! What an ADE project holds, read through the data plane: its environment types, its
//! catalogs' definitions, and its environments with their outputs.

use super::client::{AdeError, Client};
use serde_json::Value;
use std::collections::BTreeMap;

/// A definition as the data plane describes it.
#[derive(Debug, Clone)]
pub struct AdeDefinition {
    pub catalog: String,
    pub name: String,
    /// `EnvironmentDefinitionParameter`s.
    pub parameters: Vec<Value>,
    pub template_path: Option<String>,
}

/// An environment as the data plane describes it.
#[derive(Debug, Clone)]
pub struct AdeEnvironment {
    pub name: String,
    pub env_type: String,
    pub catalog: String,
    pub definition: String,
    pub parameters: serde_json::Map<String, Value>,
    /// The owner's Entra object id.
    pub user: String,
    /// `provisioningState` (`Succeeded`, `Failed`, `Deleting`, …).
    pub state: String,
    pub expiration: Option<String>,
    pub uri: String,
    /// Name → `{type, value, sensitive}`; read for the environments that can be adopted.
    pub outputs: BTreeMap<String, Value>,
}

/// One project's contents.
#[derive(Debug, Clone, Default)]
pub struct AdeProject {
    pub name: String,
    pub environment_types: Vec<String>,
    pub definitions: Vec<AdeDefinition>,
    pub environments: Vec<AdeEnvironment>,
}

/// Whether `s` is a name ADE gives projects, catalogs and environments (so that it is safe
/// in a path).
pub fn is_ade_name(s: &str) -> bool {
    let b = s.as_bytes();
    (3..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_user_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|c| c.is_ascii_alphanumeric()))
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Reads `project`; `progress` is told each step and each environment read.
pub async fn read(
    client: &Client,
    project: &str,
    progress: &dyn Fn(&str, usize, usize),
) -> Result<AdeProject, AdeError> {
    if !is_ade_name(project) {
        return Err(AdeError::BadInput(format!(
            "--project {project:?} is not an ADE project name (3-63 letters, digits, '-', '_', '.')"
        )));
    }
    let base = format!("/projects/{project}");
    client.get(&format!("project {project}"), &base).await?;
    progress("environment types", 0, 1);
    let types = client
        .list("environment types", &format!("{base}/environmentTypes"))
        .await?;
    progress("environment definitions", 0, 1);
    let definitions = client
        .list(
            "environment definitions",
            &format!("{base}/environmentDefinitions"),
        )
        .await?;
    progress("environments", 0, 1);
    let environments = client
        .list("environments", &format!("{base}/environments"))
        .await?;
    let mut out = AdeProject {
        name: project.to_string(),
        environment_types: types.iter().map(|t| text(t, "name")).collect(),
        definitions: definitions
            .iter()
            .map(|d| AdeDefinition {
                catalog: text(d, "catalogName"),
                name: text(d, "name"),
                parameters: d["parameters"].as_array().cloned().unwrap_or_default(),
                template_path: d["templatePath"].as_str().map(str::to_string),
            })
            .collect(),
        environments: Vec::new(),
    };
    let total = environments.len();
    for (i, e) in environments.iter().enumerate() {
        let mut env = AdeEnvironment {
            name: text(e, "name"),
            env_type: text(e, "environmentType"),
            catalog: text(e, "catalogName"),
            definition: text(e, "environmentDefinitionName"),
            parameters: e["parameters"].as_object().cloned().unwrap_or_default(),
            user: text(e, "user"),
            state: text(e, "provisioningState"),
            expiration: e["expirationDate"].as_str().map(str::to_string),
            uri: text(e, "uri"),
            outputs: BTreeMap::new(),
        };
        // Outputs are read only for what can be adopted: a live environment whose name
        // and owner can be put in a path.
        if env.state == "Succeeded" && is_ade_name(&env.name) && is_user_id(&env.user) {
            let outputs = client
                .get(
                    &format!("outputs of environment {}", env.name),
                    &format!(
                        "{base}/users/{}/environments/{}/outputs",
                        env.user, env.name
                    ),
                )
                .await?;
            if let Some(o) = outputs["outputs"].as_object() {
                env.outputs = o.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            }
        }
        out.environments.push(env);
        progress("environments", i + 1, total);
    }
    Ok(out)
}
