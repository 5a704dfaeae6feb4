//! Governance as read at one base commit: `platform.yaml`, the compiled Rego policies, the
//! workflows and the catalog. Loaded from the base tree only (rule zero), never from a
//! pull request's head; errors found while loading are kept and fail the checks they
//! affect.

use super::CATALOG_DIR;
use crate::diag::Diagnostic;
use crate::manifest::definition::{self, LoadedDefinition, DEFINITION_FILE};
use crate::manifest::names;
use crate::manifest::platform::{self, Approvals, EnvironmentType, Platform, PLATFORM_PATH};
use crate::manifest::{read_text, FieldPath, YamlDoc};
use crate::policy::RegoPolicies;
use crate::tree::TreeReader;
use crate::workflow::{self, CheckKind, WorkflowSet, DEFAULT_WORKFLOW};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Governance at one base commit: platform, compiled policies, workflows and catalog.
/// Errors found while loading are kept and fail the checks they affect.
#[derive(Debug)]
pub struct Governance {
    platform: Result<Platform, Vec<Diagnostic>>,
    /// The text of `platform.yaml`, to locate fields in messages about it.
    platform_doc: Option<YamlDoc>,
    policies: Arc<RegoPolicies>,
    workflows: WorkflowSet,
    catalog: Catalog,
    catalog_errors: Vec<Diagnostic>,
}

impl Governance {
    /// Load governance from the base tree. Never fails: problems are kept as diagnostics.
    pub fn load(base: &dyn TreeReader) -> Governance {
        let mut platform_doc = None;
        let platform = match read_text(base, PLATFORM_PATH) {
            Ok(Some(text)) => platform::parse_platform(PLATFORM_PATH, &text).map(|(doc, p)| {
                platform_doc = Some(doc);
                p
            }),
            Ok(None) => Err(vec![Diagnostic::new(
                PLATFORM_PATH,
                "not found at the base branch: every environments repository needs .paved/platform.yaml",
            )]),
            Err(d) => Err(vec![d]),
        };
        let (catalog, catalog_errors) = load_catalog(base);
        Governance {
            platform,
            platform_doc,
            policies: Arc::new(RegoPolicies::load(base)),
            workflows: WorkflowSet::load(base),
            catalog,
            catalog_errors,
        }
    }

    /// The platform settings, when `platform.yaml` loaded.
    pub fn platform(&self) -> Option<&Platform> {
        self.platform.as_ref().ok()
    }

    pub fn policies(&self) -> &Arc<RegoPolicies> {
        &self.policies
    }

    pub fn workflows(&self) -> &WorkflowSet {
        &self.workflows
    }

    /// Definitions in the catalog, by folder name.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Errors that fail every check: `platform.yaml` missing or invalid, catalog unreadable.
    pub fn errors(&self) -> Vec<Diagnostic> {
        let mut v = self.platform.as_ref().err().cloned().unwrap_or_default();
        v.extend(self.catalog_errors.iter().cloned());
        v
    }

    /// Every problem found in governance, for `paved check` and the API.
    pub fn all_errors(&self) -> Vec<Diagnostic> {
        let mut v = self.errors();
        v.extend(self.policies.errors().iter().cloned());
        v.extend(self.workflows.errors());
        for d in self.catalog.values().filter_map(|d| d.as_ref().err()) {
            v.extend(d.iter().cloned());
        }
        v
    }

    /// An environment type that asks for approvals, with them.
    pub(super) fn approval_type(&self, env_type: &str) -> Option<(&str, &EnvironmentType)> {
        self.platform()?
            .environment_types
            .get_key_value(env_type)
            .filter(|(_, t)| t.approvals.is_some())
            .map(|(k, t)| (k.as_str(), t))
    }

    /// The platform approvers' rules (`governance.approvers`); their members may change any
    /// environment.
    pub fn platform_approvers(&self) -> &[Approvals] {
        self.platform()
            .and_then(|p| p.governance.as_ref())
            .map(|g| g.approvers.alternatives())
            .unwrap_or_default()
    }

    /// The workflow for an environment type (`None`: unknown type or unreadable manifest).
    pub fn resolve_workflow(&self, env_type: Option<&str>) -> ResolvedWorkflow {
        let builtin_checks = |name: &str| match WorkflowSet::builtin().get(name) {
            Some(Ok(wf)) => wf.checks.clone(),
            _ => workflow::builtin_default().checks,
        };
        let ty = env_type.and_then(|t| {
            self.platform()
                .and_then(|p| p.environment_types.get(t).map(|ty| (t, ty)))
        });
        let name = ty
            .map(|(_, ty)| ty.workflow.clone())
            .unwrap_or_else(|| DEFAULT_WORKFLOW.to_string());
        match self.workflows.get(&name) {
            Some(Ok(wf)) => ResolvedWorkflow {
                name,
                checks: wf.checks.clone(),
                errors: Vec::new(),
            },
            Some(Err(errs)) => ResolvedWorkflow {
                checks: builtin_checks(&name),
                name,
                errors: errs.clone(),
            },
            None => {
                let known: Vec<&str> = self.workflows.names().collect();
                let msg = format!(
                    "workflow {name:?} is not defined (known: {})",
                    known.join(", ")
                );
                let d = match (ty, &self.platform_doc) {
                    (Some((t, _)), Some(doc)) => doc.diag(
                        &FieldPath::parse("environmentTypes").key(t).key("workflow"),
                        msg,
                    ),
                    (Some((t, _)), None) => Diagnostic::new(PLATFORM_PATH, msg)
                        .field(format!("environmentTypes.{t}.workflow")),
                    (None, _) => Diagnostic::new(workflow::WORKFLOWS_DIR, msg),
                };
                ResolvedWorkflow {
                    checks: builtin_checks(DEFAULT_WORKFLOW),
                    name,
                    errors: vec![d],
                }
            }
        }
    }
}

/// The workflow an environment runs.
#[derive(Debug, Clone)]
pub struct ResolvedWorkflow {
    pub name: String,
    pub checks: Vec<CheckKind>,
    /// Problems with the workflow itself; they fail every check.
    pub errors: Vec<Diagnostic>,
}

/// Definitions by folder name; a broken one keeps its errors.
pub type Catalog = BTreeMap<String, Result<LoadedDefinition, Vec<Diagnostic>>>;

fn load_catalog(base: &dyn TreeReader) -> (Catalog, Vec<Diagnostic>) {
    let mut catalog = BTreeMap::new();
    let entries = match base.list(CATALOG_DIR) {
        Ok(e) => e,
        Err(e) => {
            return (
                catalog,
                vec![Diagnostic::new(
                    CATALOG_DIR,
                    format!("cannot list the catalog: {e}"),
                )],
            )
        }
    };
    for entry in entries {
        if entry.starts_with('.') {
            continue;
        }
        let dir = format!("{CATALOG_DIR}/{entry}");
        if !base.is_dir(&dir).unwrap_or(false) {
            continue;
        }
        if let Err(e) = names::check_definition_name(&entry) {
            catalog.insert(entry.clone(), Err(vec![Diagnostic::new(&dir, e)]));
            continue;
        }
        let file = format!("{dir}/{DEFINITION_FILE}");
        let result = match read_text(base, &file) {
            Ok(Some(text)) => definition::parse_definition(&entry, &file, &text),
            Ok(None) => continue, // a folder without a definition
            Err(d) => Err(vec![d]),
        };
        catalog.insert(entry, result);
    }
    (catalog, Vec::new())
}
