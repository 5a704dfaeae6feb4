//! Environment manifests, `platform.yaml` and ADE environment definitions: strict parsing
//! with diagnostics that name the file, the field path and the line.
//!
//! Every file is read through [`crate::tree::TreeReader`] with [`read_text`], which turns
//! an over-size file, an unreadable one or one that is not UTF-8 into a [`Diagnostic`].
//! YAML is read by [`yaml`]: anchors and aliases are refused before parsing (so a YAML bomb
//! fails at once), duplicate keys and tags are errors, and unknown fields are errors.
//!
//! # File formats
//!
//! The formats below are what users write; this block is kept ready to paste into the README.
//!
//! ## `environments/<team>/<name>.yaml`: an environment
//!
//! ```yaml
//! apiVersion: paved/v1
//! kind: Environment
//! metadata:
//!   name: checkout-preview      # DNS label, 3-40 chars [a-z0-9-], equals the file stem, unique in the repo
//!   team: payments              # equals the folder under environments/; a team from platform.yaml
//!   owner: octocat              # optional GitHub login; defaults to the PR author; must be a team member
//! spec:
//!   type: dev                   # an environment type from platform.yaml
//!   definition: postgres-db     # catalog/<definition>/environment.yaml
//!   parameters:                 # checked against the definition's parameters
//!     size: small
//!   expiresAt: 2026-12-31T00:00:00Z   # RFC 3339; required when the type has maxTtl
//!   tags: { cost-center: cc-1234 }    # string values
//! ```
//! Unknown fields, YAML anchors/aliases, tags (`!!x`) and duplicate keys are errors. Files
//! over 1 MiB are refused. Only `environments/<team>/<name>.yaml` files may live under
//! `environments/` (no `.yml`, no deeper folders, no other files).
//!
//! ## `.paved/platform.yaml`: governance
//!
//! ```yaml
//! teams:
//!   payments:
//!     members: [octocat, hubot]        # GitHub logins (compared case-insensitively)
//!     quota: { environments: 5 }       # optional; no quota = no limit
//!   platform:
//!     members: [admin1, admin2]
//! governance:
//!   approvers: { team: platform, count: 1 }   # approvals for PRs changing .paved/ or catalog/
//! environmentTypes:
//!   dev:
//!     description: Short-lived environments   # optional
//!     workflow: default              # optional, default "default"; built-in: default, production
//!     maxTtl: 168h                   # optional; units s, m, h, d, w (e.g. 30m, 7d, 1h30m);
//!                                    # then expiresAt is required and at most maxTtl from now
//!     definitions: [postgres-db]     # optional; absent = every catalog definition is allowed
//!     requiredTags: [cost-center]    # optional; tags every manifest of this type must set
//!     timeout: 30m                   # optional; longest provisioning run
//!   prod:
//!     workflow: production
//!     approvals: { team: platform, count: 2 }  # optional; approvals PRs adding, changing or
//!                                    # deleting an environment of this type need; or a list
//!                                    # of alternatives, any one enough:
//!                                    # [{ team: platform, count: 2 }, { team: security }]
//!     dismissStale: true             # optional, default true: only approvals of the PR's
//!                                    # head commit count; false: approvals survive pushes
//!     definitions: [postgres-db]
//! ```
//! Team and type names are DNS labels; unknown fields are errors; a team named by
//! `approvals`/`approvers` (either form) must exist; `count` defaults to 1 and is at least 1.
//! Members of the `governance.approvers` teams are the platform approvers: besides
//! approving governance changes, they may change or delete any environment.
//!
//! ## `catalog/<definition>/environment.yaml`: an ADE environment definition
//!
//! ```yaml
//! name: postgres-db
//! version: 1.0.0
//! summary: A PostgreSQL database
//! description: Deploys a PostgreSQL database for one environment.
//! runner: command          # command (default): the folder's deploy.sh/delete.sh;
//!                          # terraform: terraform/tofu in templatePath;
//!                          # an ADE custom-runner image reference runs the scripts like command
//! templatePath: main.tf    # optional, relative to the definition folder
//! parameters:
//!   - id: size
//!     name: Size
//!     description: Instance size
//!     type: string         # string | number | integer | boolean | array | object
//!     default: small
//!     required: false      # required without a default: the manifest must set it
//!     allowed: [small, large]
//!     readOnly: false      # read-only: a manifest may only repeat the default
//! ```

pub mod change;
pub mod definition;
pub mod environment;
pub mod names;
pub mod platform;
pub mod schedule;
pub mod schema;
pub mod yaml;

pub use definition::{Definition, LoadedDefinition, ParamType, Parameter, Runner};
pub use environment::{parse_manifest, Manifest, ParsedManifest};
pub use names::ManifestPath;
pub use platform::{
    ApprovalRules, Approvals, EnvironmentType, HumanDuration, Platform, Quota, Team,
};
pub use yaml::{FieldPath, YamlDoc};

use crate::diag::Diagnostic;
use crate::tree::{TreeError, TreeReader};

/// Read a file as UTF-8 text. `Ok(None)` when there is no such file; over-size, unreadable
/// and non-UTF-8 files are diagnostics about that file.
pub fn read_text(tree: &dyn TreeReader, path: &str) -> Result<Option<String>, Diagnostic> {
    match tree.read(path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|e| {
            Diagnostic::new(
                path,
                format!(
                    "file is not valid UTF-8 (at byte {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        }),
        Err(TreeError::TooLarge { size, max, .. }) => Err(Diagnostic::new(
            path,
            format!(
                "file is {size} bytes, larger than the {max} byte limit ({} KiB)",
                max / 1024
            ),
        )),
        Err(TreeError::Io { message, .. }) => Err(Diagnostic::new(
            path,
            format!("cannot read file: {message}"),
        )),
    }
}

/// Errors reported per file and check before the rest are summed up in one line (locating
/// each error scans the file, so this also bounds the work a hostile file can cause).
pub const MAX_ERRORS_PER_FILE: usize = 20;

pub(crate) fn too_many(file: &str) -> Diagnostic {
    Diagnostic::new(
        file,
        format!("more problems not shown: fix the first {MAX_ERRORS_PER_FILE} and check again"),
    )
}

/// Check a manifest's parameters against its definition: unknown ids, types, allowed
/// values, required parameters without default, and read-only parameters.
pub fn check_parameters(m: &ParsedManifest, def: &LoadedDefinition) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    let params = &m.manifest.spec.parameters;
    let base = FieldPath::parse("spec.parameters");
    for (id, value) in params {
        if errs.len() >= MAX_ERRORS_PER_FILE {
            errs.push(too_many(&m.path));
            return errs;
        }
        let at = base.clone().key(id.clone());
        let Some(p) = def.definition.parameters.iter().find(|p| &p.id == id) else {
            let known: Vec<&str> = def
                .definition
                .parameters
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            let hint = if known.is_empty() {
                format!("definition {} has no parameters", def.id)
            } else {
                format!("definition {} has: {}", def.id, known.join(", "))
            };
            errs.push(m.diag_path(&at, format!("unknown parameter {id:?} ({hint})")));
            continue;
        };
        if let Err(e) = p.check_value(value) {
            errs.push(m.diag_path(&at, e));
            continue;
        }
        if p.read_only {
            let same = p
                .default
                .as_ref()
                .is_some_and(|d| definition::same_value(d, value));
            if !same {
                errs.push(m.diag_path(
                    &at,
                    format!(
                        "parameter {id:?} is read-only in definition {} and cannot be set",
                        def.id
                    ),
                ));
            }
        }
    }
    for p in &def.definition.parameters {
        if p.required && p.default.is_none() && !params.contains_key(&p.id) {
            errs.push(m.diag_path(
                &base,
                format!(
                    "required parameter {:?} of definition {} is missing",
                    p.id, def.id
                ),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::DirTree;

    #[test]
    fn read_text_turns_tree_errors_into_diagnostics() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("big.yaml"), vec![b'a'; 2 * 1024 * 1024]).expect("write");
        std::fs::write(dir.path().join("bin.yaml"), [0xff, 0xfe, 0x00]).expect("write");
        let tree = DirTree::new(dir.path());
        let d = read_text(&tree, "big.yaml").expect_err("too large");
        assert!(d.message.contains("larger than"), "{d}");
        assert!(read_text(&tree, "bin.yaml").is_err());
        assert_eq!(read_text(&tree, "none.yaml").ok(), Some(None));
    }

    #[test]
    fn parameters_are_checked_against_the_definition() {
        let def = definition::parse_definition(
            "postgres-db",
            "catalog/postgres-db/environment.yaml",
            "name: pg\nparameters:\n  - id: size\n    type: string\n    allowed: [small, large]\n    default: small\n  - id: version\n    type: integer\n    default: 16\n    readOnly: true\n  - id: owner\n    type: string\n    required: true\n",
        )
        .expect("definition");
        let text = "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: abc\n  team: t\nspec:\n  type: dev\n  definition: postgres-db\n  parameters:\n    size: huge\n    version: 15\n    color: red\n";
        let m = parse_manifest("environments/t/abc.yaml", text).expect("manifest");
        let errs = check_parameters(&m, &def);
        let msgs: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 4, "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains(":12:5: spec.parameters.color: unknown parameter")),
            "{msgs:#?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m
                    .contains(":10:5: spec.parameters.size: 'huge' is not one of small, large")),
            "{msgs:#?}"
        );
        assert!(msgs.iter().any(|m| m.contains("read-only")), "{msgs:#?}");
        assert!(
            msgs.iter()
                .any(|m| m.contains("required parameter \"owner\"")),
            "{msgs:#?}"
        );
    }
}
