//! The Environment manifest: `environments/<team>/<name>.yaml`.

use super::names::{self, ManifestPath};
use super::yaml::{self, FieldPath, YamlDoc};
use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const API_VERSION: &str = "paved/v1";
pub const KIND: &str = "Environment";

/// An environment manifest as written by a developer. Unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "Paved environment manifest")]
pub struct Manifest {
    /// Always `paved/v1`.
    #[schemars(extend("const" = "paved/v1"))]
    pub api_version: String,
    /// Always `Environment`.
    #[schemars(extend("const" = "Environment"))]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// DNS label, 3-40 characters, equal to the file stem.
    #[schemars(
        length(min = 3, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A team from `platform.yaml`, equal to the folder under `environments/`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub team: String,
    /// GitHub login; defaults to the pull request's author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// An environment type from `platform.yaml`.
    #[serde(rename = "type")]
    pub env_type: String,
    /// A folder under `catalog/`.
    pub definition: String,
    /// Values for the definition's parameters, by parameter id.
    #[serde(default)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// RFC 3339 time after which the environment may be torn down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When the environment stops and starts again (SPEC 11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<super::schedule::Schedule>,
}

/// A manifest read from the repository: the typed form, the document itself (the Rego
/// input) and the text for locating fields.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub path: String,
    pub doc: YamlDoc,
    pub manifest: Manifest,
}

impl ParsedManifest {
    /// A diagnostic about a field of this manifest, with its line.
    pub fn diag(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        self.doc.diag(&FieldPath::parse(field), message)
    }

    pub fn diag_path(&self, field: &FieldPath, message: impl Into<String>) -> Diagnostic {
        self.doc.diag(field, message)
    }

    /// `expiresAt` as a time, when present and valid.
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.manifest
            .spec
            .expires_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// Parse the text of a manifest. Only format errors here (YAML, unknown fields, types);
/// [`check_manifest`] does the rest.
pub fn parse_manifest(path: &str, text: &str) -> Result<ParsedManifest, Diagnostic> {
    let (doc, manifest) = yaml::parse_typed::<Manifest>(path, text)?;
    Ok(ParsedManifest {
        path: path.to_string(),
        doc,
        manifest,
    })
}

/// Checks that need only the manifest and its path: apiVersion, kind, naming, file stem,
/// team folder, owner and expiresAt format. Returns every problem found.
pub fn check_manifest(m: &ParsedManifest, path: Option<&ManifestPath>) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    let man = &m.manifest;
    if man.api_version != API_VERSION {
        errs.push(m.diag(
            "apiVersion",
            format!("must be {API_VERSION}, not {:?}", man.api_version),
        ));
    }
    if man.kind != KIND {
        errs.push(m.diag("kind", format!("must be {KIND}, not {:?}", man.kind)));
    }
    if let Err(e) = names::check_environment_name(&man.metadata.name) {
        errs.push(m.diag("metadata.name", e));
    }
    if let Err(e) = names::check_team_name(&man.metadata.team) {
        errs.push(m.diag("metadata.team", e));
    }
    if let Some(p) = path {
        if p.name != man.metadata.name {
            errs.push(m.diag(
                "metadata.name",
                format!(
                    "{:?} must equal the file name {:?} (without .yaml)",
                    man.metadata.name, p.name
                ),
            ));
        }
        if p.team != man.metadata.team {
            errs.push(m.diag(
                "metadata.team",
                format!(
                    "{:?} must equal the team folder {:?}",
                    man.metadata.team, p.team
                ),
            ));
        }
    }
    if let Some(owner) = &man.metadata.owner {
        if !names::is_github_login(owner) {
            errs.push(m.diag("metadata.owner", format!("{owner:?} is not a GitHub login")));
        }
    }
    if man.spec.env_type.is_empty() {
        errs.push(m.diag("spec.type", "must not be empty"));
    }
    if let Err(e) = names::check_definition_name(&man.spec.definition) {
        errs.push(m.diag("spec.definition", e));
    }
    if let Some(exp) = &man.spec.expires_at {
        if chrono::DateTime::parse_from_rfc3339(exp).is_err() {
            errs.push(m.diag(
                "spec.expiresAt",
                format!("{exp:?} is not an RFC 3339 time such as 2026-12-31T00:00:00Z"),
            ));
        }
    }
    if let Some(schedule) = &man.spec.schedule {
        if let Err(problems) = super::schedule::check(schedule) {
            for (field, message) in problems {
                errs.push(m.diag(&format!("spec.schedule.{field}"), message));
            }
        }
    }
    for key in man.spec.tags.keys() {
        if errs.len() >= super::MAX_ERRORS_PER_FILE {
            errs.push(super::too_many(&m.path));
            break;
        }
        if key.is_empty()
            || key.len() > 128
            || key.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            errs.push(m.diag_path(
                &FieldPath::parse("spec.tags").key(key.clone()),
                format!("{key:?} is not a valid tag name"),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: paved/v1
kind: Environment
metadata:
  name: checkout-preview
  team: payments
  owner: octocat
spec:
  type: dev
  definition: postgres-db
  parameters:
    size: small
  expiresAt: 2026-12-31T00:00:00Z
  tags: { cost-center: cc-1234 }
";

    #[test]
    fn parses_the_spec_example() {
        let m = parse_manifest("environments/payments/checkout-preview.yaml", GOOD).expect("valid");
        assert_eq!(m.manifest.metadata.name, "checkout-preview");
        assert_eq!(m.manifest.spec.tags["cost-center"], "cc-1234");
        assert!(m.expires_at().is_some());
        let p = names::parse_manifest_path(&m.path).expect("path");
        assert!(check_manifest(&m, Some(&p)).is_empty());
        assert_eq!(m.doc.json["spec"]["expiresAt"], "2026-12-31T00:00:00Z");
    }

    #[test]
    fn unknown_fields_name_field_and_line() {
        let text = GOOD.replace("  owner: octocat\n", "  owner: octocat\n  color: blue\n");
        let d = parse_manifest("f.yaml", &text).expect_err("unknown");
        assert_eq!(d.field.as_deref(), Some("metadata.color"));
        assert_eq!(d.line, Some(7));
        assert!(d.message.contains("unknown field `color`"), "{d}");
    }

    #[test]
    fn name_must_match_stem_and_team_folder() {
        let m = parse_manifest("environments/billing/other.yaml", GOOD).expect("valid");
        let p = names::parse_manifest_path(&m.path).expect("path");
        let errs = check_manifest(&m, Some(&p));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, Some(4));
        assert_eq!(errs[1].field.as_deref(), Some("metadata.team"));
    }
}
