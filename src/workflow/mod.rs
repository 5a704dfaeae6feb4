//! Workflows as data: which checks run (each posts a `paved/<check>` status) for an
//! environment type. Provisioning steps will be added as a `provision:` section.
//!
//! Built-in workflows live in the repository's `workflows/` folder and are embedded in
//! the binary: `default` and `production`. An environments repository may add workflows, or
//! override a built-in one, with `.paved/workflows/<name>.yaml` — always read from the base
//! branch. An environment type names its workflow in `platform.yaml` (`workflow:`, default
//! `default`).
//!
//! ```yaml
//! # .paved/workflows/<name>.yaml
//! name: sandbox                  # must equal the file stem
//! description: Sandboxes only need the schema and quota checks.
//! checks: [schema, quota]        # each runs and posts status paved/<check>
//! ```
//! Known checks: `schema`, `policy`, `quota`, `approval`, `plan`. Unknown names, duplicates,
//! unknown fields and an empty list are errors. `approval` runs for every environment whose
//! type has `approvals` in `platform.yaml`, listed or not; listed, it also runs for types
//! without approvals, which pass it.

use crate::diag::Diagnostic;
use crate::manifest::names;
use crate::manifest::yaml::{self, FieldPath};
use crate::tree::TreeReader;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Folder of a repository's own workflows.
pub const WORKFLOWS_DIR: &str = ".paved/workflows";
/// The workflow of environment types that name none, and of unknown types.
pub const DEFAULT_WORKFLOW: &str = "default";

const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../workflows/default.yaml")),
    (
        "production",
        include_str!("../../workflows/production.yaml"),
    ),
];

/// A check a workflow can run; each posts one commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Manifest format, naming, team/type/definition exist, parameters.
    Schema,
    /// Type rules (definitions, tags, TTL, owner) and the repository's Rego policies.
    Policy,
    /// The team's environment quota.
    Quota,
    /// The reviews the type's `approvals` in `platform.yaml` ask for. Always runs for a type
    /// with approvals, whatever its workflow lists; a workflow may list it for others (which
    /// then pass with "no approval required").
    Approval,
    /// The preview of what the change would do (SPEC 14): `plan.sh` or `terraform plan`.
    /// Always runs for a type with `requirePlan: true`; a definition without a preview
    /// passes it ("no preview for …").
    Plan,
}

impl CheckKind {
    pub const ALL: [CheckKind; 5] = [
        CheckKind::Schema,
        CheckKind::Policy,
        CheckKind::Quota,
        CheckKind::Approval,
        CheckKind::Plan,
    ];

    /// The commit status context, e.g. `paved/schema`.
    pub fn context(&self) -> &'static str {
        match self {
            CheckKind::Schema => "paved/schema",
            CheckKind::Policy => "paved/policy",
            CheckKind::Quota => "paved/quota",
            CheckKind::Approval => "paved/approval",
            CheckKind::Plan => "paved/plan",
        }
    }

    /// The name used in workflow files, e.g. `schema`.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Schema => "schema",
            CheckKind::Policy => "policy",
            CheckKind::Quota => "quota",
            CheckKind::Approval => "approval",
            CheckKind::Plan => "plan",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workflow file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Checks run on pull requests, in this order.
    pub checks: Vec<CheckKind>,
}

/// Parse and check one workflow file. `stem` is the file name without `.yaml`.
pub fn parse_workflow(file: &str, stem: &str, text: &str) -> Result<Workflow, Vec<Diagnostic>> {
    let (doc, wf) = yaml::parse_typed::<Workflow>(file, text).map_err(|d| vec![d])?;
    let mut errs = Vec::new();
    if wf.name != stem {
        errs.push(doc.diag(
            &FieldPath::parse("name"),
            format!("{:?} must equal the file name {stem:?}", wf.name),
        ));
    }
    if wf.checks.is_empty() {
        errs.push(doc.diag(&FieldPath::parse("checks"), "must name at least one check"));
    }
    for (i, c) in wf.checks.iter().enumerate() {
        if wf.checks[..i].contains(c) {
            errs.push(doc.diag(
                &FieldPath::parse("checks").index(i),
                format!("check {c} is listed twice"),
            ));
        }
    }
    if errs.is_empty() {
        Ok(wf)
    } else {
        Err(errs)
    }
}

/// The workflows known at one base commit: built-ins, then the repository's own.
#[derive(Debug, Clone)]
pub struct WorkflowSet {
    workflows: BTreeMap<String, Result<Workflow, Vec<Diagnostic>>>,
}

/// The built-in default workflow (what runs when nothing else can be known).
pub fn builtin_default() -> Workflow {
    Workflow {
        name: DEFAULT_WORKFLOW.to_string(),
        description: None,
        checks: vec![
            CheckKind::Schema,
            CheckKind::Policy,
            CheckKind::Quota,
            CheckKind::Plan,
        ],
    }
}

impl WorkflowSet {
    /// Only the built-in workflows.
    pub fn builtin() -> Self {
        let mut workflows = BTreeMap::new();
        for (name, text) in BUILTIN {
            let file = format!("workflows/{name}.yaml");
            workflows.insert(name.to_string(), parse_workflow(&file, name, text));
        }
        WorkflowSet { workflows }
    }

    /// Built-ins overridden or extended by `.paved/workflows/*.yaml` of `base`.
    pub fn load(base: &dyn TreeReader) -> Self {
        let mut set = Self::builtin();
        let entries = match base.list(WORKFLOWS_DIR) {
            Ok(e) => e,
            Err(e) => {
                // The folder cannot be listed: every workflow is unknowable.
                let d = Diagnostic::new(WORKFLOWS_DIR, format!("cannot list workflows: {e}"));
                for v in set.workflows.values_mut() {
                    *v = Err(vec![d.clone()]);
                }
                return set;
            }
        };
        for entry in entries {
            let file = format!("{WORKFLOWS_DIR}/{entry}");
            let Some(stem) = entry.strip_suffix(".yaml") else {
                if entry.starts_with('.') {
                    continue;
                }
                // Not a workflow file; say so once, under a name nothing uses.
                set.workflows.insert(
                    entry.clone(),
                    Err(vec![Diagnostic::new(
                        &file,
                        "workflow files are named <name>.yaml",
                    )]),
                );
                continue;
            };
            if !names::is_dns_label(stem, 1, 63) {
                set.workflows.insert(
                    stem.to_string(),
                    Err(vec![Diagnostic::new(
                        &file,
                        format!("{stem:?} is not a valid workflow name: use lower-case letters, digits and '-'"),
                    )]),
                );
                continue;
            }
            let result = match crate::manifest::read_text(base, &file) {
                Ok(Some(text)) => parse_workflow(&file, stem, &text),
                Ok(None) => continue, // a folder
                Err(d) => Err(vec![d]),
            };
            set.workflows.insert(stem.to_string(), result);
        }
        set
    }

    /// The workflow named `name`: `None` if there is none, `Some(Err)` if its file is broken.
    pub fn get(&self, name: &str) -> Option<&Result<Workflow, Vec<Diagnostic>>> {
        self.workflows.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.workflows.keys().map(String::as_str)
    }

    /// Errors of every workflow file that failed to load.
    pub fn errors(&self) -> Vec<Diagnostic> {
        self.workflows
            .values()
            .filter_map(|w| w.as_ref().err())
            .flatten()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::DirTree;

    #[test]
    fn builtins_parse() {
        let set = WorkflowSet::builtin();
        let checks = |name: &str| {
            set.get(name)
                .and_then(|r| r.as_ref().ok())
                .expect(name)
                .checks
                .clone()
        };
        assert_eq!(checks("default"), builtin_default().checks);
        assert_eq!(checks("production"), CheckKind::ALL.to_vec());
        let approval = parse_workflow("w.yaml", "w", "name: w\nchecks: [schema, approval]\n")
            .expect("approval is a check");
        assert_eq!(approval.checks[1].context(), "paved/approval");
    }

    #[test]
    fn repository_workflows_override_and_fail_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wdir = dir.path().join(WORKFLOWS_DIR);
        std::fs::create_dir_all(&wdir).expect("mkdir");
        std::fs::write(
            wdir.join("default.yaml"),
            "name: default\nchecks: [schema]\n",
        )
        .expect("write");
        std::fs::write(
            wdir.join("broken.yaml"),
            "name: broken\nchecks:\n  - schema\n  - lint\n",
        )
        .expect("write");
        let set = WorkflowSet::load(&DirTree::new(dir.path()));
        let wf = set
            .get("default")
            .and_then(|r| r.as_ref().ok())
            .expect("default");
        assert_eq!(wf.checks, vec![CheckKind::Schema]);
        let errs = set
            .get("broken")
            .and_then(|r| r.as_ref().err())
            .expect("broken");
        assert_eq!(errs[0].field.as_deref(), Some("checks[1]"));
        assert_eq!(errs[0].line, Some(4));
        assert!(errs[0].message.contains("lint"), "{}", errs[0]);
    }
}
