//! ADE environment definitions: `catalog/<definition>/environment.yaml`.

use super::yaml::{self, FieldPath, YamlDoc};
use crate::diag::Diagnostic;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The file name of a definition inside its catalog folder.
pub const DEFINITION_FILE: &str = "environment.yaml";

/// An ADE `environment.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Definition {
    pub name: String,
    #[serde(
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub runner: Runner,
    /// Path of the template inside the definition folder (Terraform: its folder or main file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_path: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a version string, found {other}"
        ))),
    }
}

/// How a definition is provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Runner {
    /// Run the definition's scripts (`deploy.sh`, `delete.sh`, optionally `plan.sh`).
    #[default]
    Command,
    /// Run `terraform` / `tofu` in `templatePath`.
    Terraform,
    /// An ADE custom-runner image reference: its scripts run as with `command`.
    Image(String),
    /// ADE's built-in ARM runner: `templatePath` is an ARM template, deployed with the
    /// Azure CLI (SPEC 15).
    Arm,
    /// ADE's built-in Bicep runner: `templatePath` is a Bicep file, deployed the same way.
    Bicep,
}

impl TryFrom<String> for Runner {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "command" => Ok(Runner::Command),
            "terraform" | "opentofu" | "tofu" => Ok(Runner::Terraform),
            "arm" => Ok(Runner::Arm),
            "bicep" => Ok(Runner::Bicep),
            _ if s.contains('/') && !s.contains(char::is_whitespace) => Ok(Runner::Image(s)),
            _ => Err(format!(
                "unknown runner {s:?}: use command, terraform, ARM or Bicep"
            )),
        }
    }
}

impl Runner {
    /// What runs a definition, in one word for people (the API, the Graph): `script`,
    /// `terraform` or `image`.
    pub fn kind(&self) -> &'static str {
        match self {
            Runner::Command => "script",
            Runner::Terraform => "terraform",
            Runner::Image(_) => "image",
            Runner::Arm => "arm",
            Runner::Bicep => "bicep",
        }
    }
}

impl From<Runner> for String {
    fn from(r: Runner) -> String {
        match r {
            Runner::Command => "command".into(),
            Runner::Terraform => "terraform".into(),
            Runner::Image(i) => i,
            Runner::Arm => "ARM".into(),
            Runner::Bicep => "Bicep".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Integer => "integer",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Parameter {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub param_type: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub read_only: bool,
}

/// JSON equality where `1` and `1.0` are the same number.
pub fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

/// A short rendering of a value for messages: strings quoted with '', others as JSON.
pub fn show_value(v: &serde_json::Value) -> String {
    let s = match v {
        serde_json::Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn show_plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Parameter {
    /// Whether `v` has this parameter's type.
    pub fn type_matches(&self, v: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self.param_type, v) {
            (ParamType::String, J::String(_)) => true,
            (ParamType::Number, J::Number(_)) => true,
            (ParamType::Integer, J::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            (ParamType::Boolean, J::Bool(_)) => true,
            (ParamType::Array, J::Array(_)) => true,
            (ParamType::Object, J::Object(_)) => true,
            _ => false,
        }
    }

    /// Check a value given for this parameter: type and allowed values.
    pub fn check_value(&self, v: &serde_json::Value) -> Result<(), String> {
        if !self.type_matches(v) {
            return Err(format!(
                "{} is not of type {}",
                show_value(v),
                self.param_type
            ));
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.is_empty() && !allowed.iter().any(|a| same_value(a, v)) {
                let list: Vec<String> = allowed.iter().map(show_plain).collect();
                return Err(format!(
                    "{} is not one of {}",
                    show_value(v),
                    list.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A definition read from the catalog.
#[derive(Debug, Clone)]
pub struct LoadedDefinition {
    /// The folder name under `catalog/`.
    pub id: String,
    pub path: String,
    pub definition: Definition,
}

/// Parse and check a definition file.
pub fn parse_definition(
    id: &str,
    file: &str,
    text: &str,
) -> Result<LoadedDefinition, Vec<Diagnostic>> {
    let (doc, def) = yaml::parse_typed::<Definition>(file, text).map_err(|d| vec![d])?;
    let errs = check_definition(&doc, &def);
    if errs.is_empty() {
        Ok(LoadedDefinition {
            id: id.to_string(),
            path: file.to_string(),
            definition: def,
        })
    } else {
        Err(errs)
    }
}

fn check_definition(doc: &YamlDoc, def: &Definition) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    if def.name.trim().is_empty() {
        errs.push(doc.diag(&FieldPath::parse("name"), "must not be empty"));
    }
    if let Some(tp) = &def.template_path {
        let bad = tp.starts_with('/')
            || tp.contains('\\')
            || tp.split('/').any(|c| c == "..")
            || tp.chars().any(char::is_control);
        if bad {
            errs.push(doc.diag(
                &FieldPath::parse("templatePath"),
                format!("{tp:?} must be a relative path inside the definition folder"),
            ));
        }
    }
    if matches!(def.runner, Runner::Arm | Runner::Bicep) && def.template_path.is_none() {
        errs.push(doc.diag(
            &FieldPath::parse("runner"),
            "runner ARM and Bicep need templatePath: the template (.json) or Bicep (.bicep) file to deploy",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in def.parameters.iter().enumerate() {
        let at = FieldPath::root().key("parameters").index(i);
        if p.id.trim().is_empty() {
            errs.push(doc.diag(&at.clone().key("id"), "must not be empty"));
        }
        if !seen.insert(p.id.clone()) {
            errs.push(doc.diag(
                &at.clone().key("id"),
                format!("duplicate parameter id {:?}", p.id),
            ));
        }
        if let Some(allowed) = &p.allowed {
            for (j, a) in allowed.iter().enumerate() {
                if !p.type_matches(a) {
                    errs.push(doc.diag(
                        &at.clone().key("allowed").index(j),
                        format!("{} is not of type {}", show_value(a), p.param_type),
                    ));
                }
            }
        }
        if let Some(d) = &p.default {
            if let Err(e) = p.check_value(d) {
                errs.push(doc.diag(&at.clone().key("default"), format!("default {e}")));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG: &str = "\
name: postgres-db
version: 1.0.0
summary: A PostgreSQL database
description: Deploys a database.
runner: command
parameters:
  - id: size
    name: Size
    type: string
    default: small
    allowed: [small, large]
  - id: version
    type: integer
    default: 16
    readOnly: true
";

    /// ADE's built-in runners: ARM and Bicep are read, and need their template.
    #[test]
    fn arm_and_bicep_definitions_need_a_template() {
        let arm = "name: web\nrunner: ARM\ntemplatePath: azuredeploy.json\n";
        let d = parse_definition("web", "catalog/web/environment.yaml", arm).expect("valid");
        assert_eq!(d.definition.runner, Runner::Arm);
        let bicep = "name: web\nrunner: Bicep\n";
        let errs = parse_definition("web", "catalog/web/environment.yaml", bicep).unwrap_err();
        assert!(errs[0].message.contains("need templatePath"), "{errs:?}");
        assert_eq!(errs[0].line, Some(2));
    }

    #[test]
    fn parses_ade_definitions() {
        let d = parse_definition("postgres-db", "catalog/postgres-db/environment.yaml", PG)
            .expect("valid");
        assert_eq!(d.definition.parameters.len(), 2);
        let size = &d.definition.parameters[0];
        assert!(size.check_value(&serde_json::json!("small")).is_ok());
        assert_eq!(
            size.check_value(&serde_json::json!("huge")).unwrap_err(),
            "'huge' is not one of small, large"
        );
        assert!(d.definition.parameters[1]
            .check_value(&serde_json::json!(16.0))
            .is_ok());
        assert!(d.definition.parameters[1]
            .check_value(&serde_json::json!("16"))
            .is_err());
    }

    #[test]
    fn ade_runners() {
        assert_eq!(
            Runner::try_from("Terraform".to_string()),
            Ok(Runner::Terraform)
        );
        assert_eq!(Runner::try_from("Bicep".to_string()), Ok(Runner::Bicep));
        assert_eq!(Runner::try_from("ARM".to_string()), Ok(Runner::Arm));
        assert!(Runner::try_from("pulumi".to_string()).is_err());
        assert!(matches!(
            Runner::try_from("myacr.azurecr.io/runner:1".to_string()),
            Ok(Runner::Image(_))
        ));
        let text = PG.replace("version: 1.0.0", "version: 1.0");
        assert!(parse_definition("x", "f", &text).is_ok());
    }

    #[test]
    fn bad_defaults_are_errors() {
        let text = PG.replace("default: small", "default: medium");
        let errs = parse_definition("x", "f", &text).expect_err("bad default");
        assert_eq!(errs[0].field.as_deref(), Some("parameters[0].default"));
        assert_eq!(errs[0].line, Some(10));
    }
}
