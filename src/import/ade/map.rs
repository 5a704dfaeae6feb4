//! From an ADE project to Paved's files (SPEC 15): each environment a manifest
//! `environments/<team>/<name>.yaml`, each definition used a folder `catalog/<name>/`, and
//! what cannot be mapped a reason, with nothing written for it.

use super::read::{AdeDefinition, AdeEnvironment, AdeProject};
use crate::manifest::definition::{self, Definition, ParamType, Parameter, Runner};
use crate::manifest::names;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// How to map: the flags of `paved import ade`.
#[derive(Debug, Clone, Default)]
pub struct MapOptions {
    pub team: String,
    /// Entra object id → GitHub login (`--users`).
    pub users: HashMap<String, String>,
    /// `--tag`, on every manifest.
    pub tags: BTreeMap<String, String>,
    /// `--type-map ADE=paved`: an ADE environment type (lower-cased) → the Paved type its
    /// environments get; unmapped types keep their name, lower-cased.
    pub type_map: HashMap<String, String>,
    /// `--catalog`: a checkout of the ADE catalog repository.
    pub catalog: Option<PathBuf>,
}

/// An environment that will be adopted.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub name: String,
    pub path: String,
    pub manifest: String,
    pub env_type: String,
    pub definition: String,
    pub owner: String,
    pub parameters: serde_json::Map<String, Value>,
    /// ADE's address of the environment.
    pub source: String,
    pub outputs: BTreeMap<String, Value>,
}

/// An environment left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// A definition folder to write.
#[derive(Debug, Clone)]
pub struct DefinitionFolder {
    pub name: String,
    /// Paths relative to the repository, with their bytes.
    pub files: Vec<(String, Vec<u8>)>,
    /// Made from the API's parameters (no scripts), not copied from `--catalog`.
    pub from_api: bool,
}

/// The whole mapping.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub adopted: Vec<Adopted>,
    pub skipped: Vec<Skipped>,
    pub definitions: Vec<DefinitionFolder>,
    /// The Paved type names the adopted environments use (ADE's, lower-cased).
    pub types: BTreeSet<String>,
}

/// Reads the `--users` file: `<object id>,<login>` lines (`#` comments and blank lines
/// skipped). Errors name the line.
pub fn parse_users(file: &str, text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, login)) = line.split_once(',') else {
            return Err(format!(
                "{file}:{}: write <object id>,<GitHub login>",
                i + 1
            ));
        };
        let (id, login) = (id.trim(), login.trim());
        if !names::is_github_login(login) {
            return Err(format!("{file}:{}: {login:?} is not a GitHub login", i + 1));
        }
        out.insert(id.to_ascii_lowercase(), login.to_string());
    }
    Ok(out)
}

/// Maps `project` (see the module documentation).
pub fn map(project: &AdeProject, opts: &MapOptions) -> Result<Mapping, String> {
    names::check_team_name(&opts.team).map_err(|e| format!("--team: {e}"))?;
    let mut out = Mapping::default();
    let mut folders: BTreeMap<String, (Definition, DefinitionFolder)> = BTreeMap::new();
    for env in &project.environments {
        match map_one(project, env, opts, &mut folders) {
            Ok(adopted) => {
                out.types.insert(adopted.env_type.clone());
                out.adopted.push(adopted);
            }
            Err(reason) => out.skipped.push(Skipped {
                name: env.name.clone(),
                reason,
            }),
        }
    }
    let used: BTreeSet<&str> = out.adopted.iter().map(|a| a.definition.as_str()).collect();
    out.definitions = folders
        .into_iter()
        .filter(|(name, _)| used.contains(name.as_str()))
        .map(|(_, (_, folder))| folder)
        .collect();
    Ok(out)
}

fn map_one(
    project: &AdeProject,
    env: &AdeEnvironment,
    opts: &MapOptions,
    folders: &mut BTreeMap<String, (Definition, DefinitionFolder)>,
) -> Result<Adopted, String> {
    match env.state.as_str() {
        "Succeeded" => {}
        "Failed" => {
            return Err("its last ADE operation failed: fix or delete it in ADE first".into())
        }
        "Deleting" => return Err("ADE is deleting it".into()),
        other => {
            return Err(format!(
                "its ADE state is {other:?}, not Succeeded: import it once ADE is done with it"
            ))
        }
    }
    names::check_environment_name(&env.name).map_err(|_| {
        format!(
            "{:?} is not a DNS label of 3-40 characters (lower-case letters, digits, '-'), as Paved's names are",
            env.name
        )
    })?;
    let owner = opts
        .users
        .get(&env.user.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| {
            format!(
                "its owner {} is not in --users (add a line {},<GitHub login>)",
                env.user, env.user
            )
        })?;
    let env_type = env.env_type.to_ascii_lowercase();
    let env_type = opts.type_map.get(&env_type).cloned().unwrap_or(env_type);
    names::check_team_name(&env_type)
        .map_err(|_| format!("its type {:?} is not a name Paved can use", env.env_type))?;
    if !folders.contains_key(&env.definition) {
        let found = project
            .definitions
            .iter()
            .find(|d| d.name == env.definition && d.catalog == env.catalog)
            .ok_or_else(|| {
                format!(
                    "its definition {}/{} is not in the project's catalogs",
                    env.catalog, env.definition
                )
            })?;
        let folder = definition_folder(found, opts.catalog.as_deref())?;
        folders.insert(env.definition.clone(), folder);
    }
    let (def, _) = &folders[&env.definition];
    let parameters = check_parameters(def, &env.parameters)?;
    let expires = env.expiration.as_deref().map(normalise_time).transpose()?;
    let manifest = render_manifest(
        env,
        opts,
        &owner,
        &env_type,
        &parameters,
        expires.as_deref(),
    );
    Ok(Adopted {
        name: env.name.clone(),
        path: format!("environments/{}/{}.yaml", opts.team, env.name),
        manifest,
        env_type,
        definition: env.definition.clone(),
        owner,
        parameters,
        source: env.uri.clone(),
        outputs: env.outputs.clone(),
    })
}

/// ADE's parameters, typed as the definition says (the data plane may give numbers and
/// booleans as strings); a parameter the definition does not have, or a value it refuses,
/// is a reason not to map.
fn check_parameters(
    def: &Definition,
    given: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut out = serde_json::Map::new();
    for (id, value) in given {
        let p = def
            .parameters
            .iter()
            .find(|p| &p.id == id)
            .ok_or_else(|| format!("parameter {id} is not one definition {} has", def.name))?;
        let typed = coerce(p.param_type, value);
        p.check_value(&typed)
            .map_err(|e| format!("definition {} refuses parameter {id}: {e}", def.name))?;
        out.insert(id.clone(), typed);
    }
    Ok(out)
}

fn coerce(t: ParamType, v: &Value) -> Value {
    let Value::String(s) = v else {
        return v.clone();
    };
    let parsed = match t {
        ParamType::Integer => s.parse::<i64>().ok().map(Value::from),
        ParamType::Number => s.parse::<f64>().ok().map(Value::from),
        ParamType::Boolean => s.parse::<bool>().ok().map(Value::from),
        ParamType::Array | ParamType::Object => serde_json::from_str(s).ok(),
        ParamType::String => None,
    };
    parsed.unwrap_or_else(|| v.clone())
}

fn normalise_time(t: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        })
        .map_err(|e| format!("its expirationDate {t:?} is not RFC 3339: {e}"))
}

/// YAML text of a manifest (values quoted as JSON, which YAML reads as they are).
fn render_manifest(
    env: &AdeEnvironment,
    opts: &MapOptions,
    owner: &str,
    env_type: &str,
    parameters: &serde_json::Map<String, Value>,
    expires: Option<&str>,
) -> String {
    let mut y = format!(
        "# Adopted from Azure Deployment Environments by `paved import ade`:\n# {}\napiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: {}\n  team: {}\n  owner: {owner}\nspec:\n  type: {env_type}\n  definition: {}\n",
        env.uri, env.name, opts.team, env.definition
    );
    if !parameters.is_empty() {
        y.push_str("  parameters:\n");
        for (k, v) in parameters {
            y.push_str(&format!("    {k}: {v}\n"));
        }
    }
    if let Some(e) = expires {
        y.push_str(&format!("  expiresAt: {e}\n"));
    }
    if !opts.tags.is_empty() {
        y.push_str("  tags:\n");
        for (k, v) in &opts.tags {
            y.push_str(&format!("    {k}: {}\n", Value::from(v.as_str())));
        }
    }
    y
}

/// The definition's folder: copied from `--catalog` (the folder whose `environment.yaml`
/// names it), or made from the API's description of its parameters.
fn definition_folder(
    d: &AdeDefinition,
    catalog: Option<&Path>,
) -> Result<(Definition, DefinitionFolder), String> {
    names::check_definition_name(&d.name)
        .map_err(|e| format!("its definition cannot be a catalog folder: {e}"))?;
    if let Some(root) = catalog {
        if let Some((dir, def)) = find_in_checkout(root, &d.name)? {
            let mut files = Vec::new();
            collect(&dir, &dir, &format!("catalog/{}", d.name), &mut files)
                .map_err(|e| format!("--catalog {}: {e}", dir.display()))?;
            return Ok((
                def,
                DefinitionFolder {
                    name: d.name.clone(),
                    files,
                    from_api: false,
                },
            ));
        }
    }
    let def = Definition {
        name: d.name.clone(),
        version: None,
        summary: Some(format!("Imported from ADE catalog {}", d.catalog)),
        description: None,
        runner: Runner::Command,
        template_path: d.template_path.clone(),
        parameters: d.parameters.iter().filter_map(api_parameter).collect(),
    };
    let text = serde_yaml::to_string(&def).map_err(|e| e.to_string())?;
    let text = format!(
        "# Made by `paved import ade` from the data plane's description of {}/{}: it has no\n# scripts. Copy the definition's files here (or import again with --catalog).\n{text}",
        d.catalog, d.name
    );
    Ok((
        def,
        DefinitionFolder {
            name: d.name.clone(),
            files: vec![(
                format!("catalog/{}/{}", d.name, definition::DEFINITION_FILE),
                text.into_bytes(),
            )],
            from_api: true,
        },
    ))
}

/// An `EnvironmentDefinitionParameter` as a Paved parameter (`allowed` and `default` are
/// strings in the data plane: typed here).
fn api_parameter(p: &Value) -> Option<Parameter> {
    let param_type: ParamType = serde_json::from_value(p["type"].clone()).ok()?;
    let typed = |v: &Value| coerce(param_type, v);
    Some(Parameter {
        id: p["id"].as_str()?.to_string(),
        name: p["name"].as_str().map(str::to_string),
        description: p["description"].as_str().map(str::to_string),
        param_type,
        default: p.get("default").filter(|d| !d.is_null()).map(typed),
        required: p["required"].as_bool().unwrap_or(false),
        allowed: p["allowed"]
            .as_array()
            .map(|a| a.iter().map(typed).collect()),
        read_only: p["readOnly"].as_bool().unwrap_or(false),
    })
}

/// The folder of the checkout whose `environment.yaml` has `name: <name>`.
fn find_in_checkout(root: &Path, name: &str) -> Result<Option<(PathBuf, Definition)>, String> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("--catalog {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && entry.file_name() != ".git" {
                stack.push(path);
            } else if entry.file_name() == definition::DEFINITION_FILE {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let parsed = definition::parse_definition(name, &path.display().to_string(), &text);
                if let Ok(loaded) = parsed {
                    if loaded.definition.name == name {
                        return Ok(Some((dir.clone(), loaded.definition)));
                    }
                }
            }
        }
    }
    Ok(None)
}

fn collect(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, Vec<u8>)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let t = entry.file_type()?;
        if t.is_dir() {
            collect(root, &path, prefix, out)?;
        } else if t.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((format!("{prefix}/{}", rel.display()), std::fs::read(&path)?));
        }
    }
    out.sort();
    Ok(())
}
