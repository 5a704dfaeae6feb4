//! Evaluation of a change against governance, shared by the server and `paved check`.
//!
//! Rule zero: [`Governance`] is loaded from the base tree only (`.paved/`, `catalog/`,
//! workflows); the head tree gives the manifests (data) and nothing else. The
//! default-branch tree gives the team counts for quotas.
//!
//! ```text
//! let gov = Governance::load(&base);                       // once per base .paved/+catalog/
//! let planned = planned_checks(&gov, &head, &changes);     // post `pending` for these
//! let report = evaluate(&gov, &head, &default_branch, &changes, &ctx);
//! for c in report.contexts() { /* one commit status per context */ }
//! ```
//!
//! Which checks run for an environment is its type's workflow (an unknown type, an
//! unreadable manifest and a deletion get the `default` workflow). Deleted manifests are
//! reported as deletions and pass. A change under `environments/` that is not
//! `environments/<team>/<name>.yaml` fails the schema check. Errors in governance itself
//! (a broken `platform.yaml`, a broken workflow file, a policy that does not compile) fail
//! every check they affect, with their own message.

mod render;

pub use crate::workflow::CheckKind;
pub use render::{render_markdown, render_text, ContextVerdict};

use crate::diag::Diagnostic;
use crate::manifest::definition::{self, LoadedDefinition, DEFINITION_FILE};
use crate::manifest::names::{self, ManifestPath};
use crate::manifest::platform::{self, Platform, PLATFORM_PATH};
use crate::manifest::{environment, read_text, FieldPath, ParsedManifest, YamlDoc};
use crate::policy::rego::PolicyData;
use crate::policy::{self, quota, RegoPolicies};
use crate::tree::{DirTree, TreeReader};
use crate::workflow::{self, WorkflowSet, DEFAULT_WORKFLOW};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

/// Folder of the ADE catalog.
pub const CATALOG_DIR: &str = "catalog";
/// Folder of the manifests.
pub const ENVIRONMENTS_DIR: &str = "environments";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// A file the pull request touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// Who opened and who approved the pull request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrContext {
    /// GitHub login of the author; empty when unknown (`paved check`).
    pub author: String,
    pub approvers: Vec<String>,
    /// Environments the inventory holds as live (not deleted), by team. The quota counts
    /// them with the default branch's manifests: an environment whose manifest is gone but
    /// whose teardown failed still uses the team's quota.
    #[serde(default)]
    pub live: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// One check's verdict for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub check: CheckKind,
    pub verdict: Verdict,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl CheckOutcome {
    fn new(check: CheckKind, errors: Vec<Diagnostic>, warnings: Vec<Diagnostic>) -> Self {
        CheckOutcome {
            check,
            verdict: if errors.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            errors,
            warnings,
        }
    }
}

/// The checks of one touched environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentReport {
    pub path: String,
    pub name: Option<String>,
    pub team: Option<String>,
    /// The environment type, when the manifest could be read.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub env_type: Option<String>,
    pub workflow: String,
    pub change: ChangeKind,
    pub checks: Vec<CheckOutcome>,
}

impl EnvironmentReport {
    /// `team/name` when known, else the path.
    pub fn label(&self) -> String {
        match (&self.team, &self.name) {
            (Some(t), Some(n)) => format!("{t}/{n}"),
            _ => self.path.clone(),
        }
    }

    pub fn outcome(&self, check: CheckKind) -> Option<&CheckOutcome> {
        self.checks.iter().find(|c| c.check == check)
    }
}

/// Everything the checks found for a pull request (or a local checkout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub environments: Vec<EnvironmentReport>,
}

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

/// The contexts that [`evaluate`] will report for these changes, known before evaluating
/// (so the server can post `pending` first). Reads and parses the touched manifests of
/// `head` to find their types; nothing else.
pub fn planned_checks(
    gov: &Governance,
    head: &dyn TreeReader,
    changes: &[Change],
) -> Vec<CheckKind> {
    let mut set = BTreeSet::new();
    for change in changes
        .iter()
        .filter(|c| names::is_under_environments(&c.path))
    {
        let env_type = if change.kind == ChangeKind::Deleted {
            None
        } else {
            manifest_type(head, &change.path)
        };
        set.extend(gov.resolve_workflow(env_type.as_deref()).checks);
    }
    set.into_iter().collect()
}

fn manifest_type(head: &dyn TreeReader, path: &str) -> Option<String> {
    names::parse_manifest_path(path).ok()?;
    let text = read_text(head, path).ok()??;
    environment::parse_manifest(path, &text)
        .ok()
        .map(|m| m.manifest.spec.env_type)
}

/// Evaluate the touched environments: governance from `gov` (the base), manifests from
/// `head`, team counts from `default_branch`.
pub fn evaluate(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changes: &[Change],
    ctx: &PrContext,
) -> Report {
    evaluate_at(gov, head, default_branch, changes, ctx, Utc::now())
}

/// [`evaluate`] with a given time (for `expiresAt` rules).
pub fn evaluate_at(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changes: &[Change],
    ctx: &PrContext,
    now: DateTime<Utc>,
) -> Report {
    let run = Run {
        gov,
        head,
        default_branch,
        ctx,
        now,
        branch_names: RefCell::new(HashMap::new()),
        counts: RefCell::new(HashMap::new()),
        policy_data: RefCell::new(HashMap::new()),
        by_team: changes_by_team(changes),
    };
    let mut environments = Vec::new();
    let mut seen = BTreeSet::new();
    for change in changes {
        if !names::is_under_environments(&change.path) || !seen.insert(change.path.as_str()) {
            continue;
        }
        environments.push(run.environment(change));
    }
    Report { environments }
}

/// `paved check PATH`: governance and manifests from the same directory; every manifest
/// under `environments/` counts as added; quotas count the manifests in the directory.
pub fn check_local(path: &Path) -> Report {
    let tree = DirTree::new(path);
    let gov = Governance::load(&tree);
    let changes = local_changes(&tree);
    evaluate(&gov, &tree, &tree, &changes, &PrContext::default())
}

/// Every file under `environments/` (two levels deep, and anything else found, which then
/// fails the schema check).
pub fn local_changes(tree: &dyn TreeReader) -> Vec<Change> {
    let mut changes = Vec::new();
    let added = |path: String| Change {
        path,
        kind: ChangeKind::Added,
    };
    for team in tree.list(ENVIRONMENTS_DIR).unwrap_or_default() {
        let team_path = format!("{ENVIRONMENTS_DIR}/{team}");
        if tree.is_dir(&team_path).unwrap_or(false) {
            for file in tree.list(&team_path).unwrap_or_default() {
                changes.push(added(format!("{team_path}/{file}")));
            }
        } else {
            changes.push(added(team_path));
        }
    }
    changes
}

/// Manifest changes grouped by team folder: (file stem, kind).
fn changes_by_team(changes: &[Change]) -> HashMap<&str, Vec<(&str, ChangeKind)>> {
    let mut by_team: HashMap<&str, Vec<(&str, ChangeKind)>> = HashMap::new();
    for c in changes {
        let Some(rest) = c.path.strip_prefix("environments/") else {
            continue;
        };
        let Some((team, file)) = rest.split_once('/') else {
            continue;
        };
        if let Some(name) = file.strip_suffix(".yaml").filter(|n| !n.contains('/')) {
            by_team.entry(team).or_default().push((name, c.kind));
        }
    }
    by_team
}

/// File stems of one team folder.
type Names = Rc<BTreeSet<String>>;

/// State for one evaluation: listings are cached so each team folder is listed once.
struct Run<'a> {
    gov: &'a Governance,
    head: &'a dyn TreeReader,
    default_branch: &'a dyn TreeReader,
    ctx: &'a PrContext,
    now: DateTime<Utc>,
    branch_names: RefCell<HashMap<String, Result<Names, Diagnostic>>>,
    counts: RefCell<HashMap<String, Result<usize, Diagnostic>>>,
    /// `data.paved` by (type, team): the same for every manifest of a team and type.
    policy_data: RefCell<HashMap<(String, String), Result<PolicyData, String>>>,
    /// The pull request's manifest changes by team: (name, kind).
    by_team: HashMap<&'a str, Vec<(&'a str, ChangeKind)>>,
}

/// What reading a manifest gave.
struct Read {
    path: Option<ManifestPath>,
    manifest: Option<ParsedManifest>,
    schema_errors: Vec<Diagnostic>,
}

impl Run<'_> {
    fn environment(&self, change: &Change) -> EnvironmentReport {
        let global = self.gov.errors();
        if change.kind == ChangeKind::Deleted {
            let mp = names::parse_manifest_path(&change.path).ok();
            let wf = self.gov.resolve_workflow(None);
            let mut errors = global;
            errors.extend(wf.errors.iter().cloned());
            return EnvironmentReport {
                path: change.path.clone(),
                name: mp.as_ref().map(|p| p.name.clone()),
                team: mp.as_ref().map(|p| p.team.clone()),
                env_type: None,
                workflow: wf.name,
                change: change.kind,
                checks: wf
                    .checks
                    .iter()
                    .map(|c| CheckOutcome::new(*c, errors.clone(), Vec::new()))
                    .collect(),
            };
        }

        let read = self.read(change);
        let env_type = read
            .manifest
            .as_ref()
            .map(|m| m.manifest.spec.env_type.clone());
        let wf = self.gov.resolve_workflow(env_type.as_deref());
        let mut base_errors = global;
        base_errors.extend(wf.errors.iter().cloned());
        let runs_schema = wf.checks.contains(&CheckKind::Schema);

        let checks = wf
            .checks
            .iter()
            .map(|check| {
                if !base_errors.is_empty() {
                    return CheckOutcome::new(*check, base_errors.clone(), Vec::new());
                }
                match check {
                    CheckKind::Schema => {
                        CheckOutcome::new(*check, read.schema_errors.clone(), Vec::new())
                    }
                    CheckKind::Policy => self.policy(change, &read, runs_schema),
                    CheckKind::Quota => self.quota(change, &read, runs_schema),
                }
            })
            .collect();
        EnvironmentReport {
            path: change.path.clone(),
            name: read
                .manifest
                .as_ref()
                .map(|m| m.manifest.metadata.name.clone())
                .or(read.path.as_ref().map(|p| p.name.clone())),
            team: read
                .manifest
                .as_ref()
                .map(|m| m.manifest.metadata.team.clone())
                .or(read.path.as_ref().map(|p| p.team.clone())),
            env_type,
            workflow: wf.name,
            change: change.kind,
            checks,
        }
    }

    /// Read, parse and schema-check a manifest of the head tree.
    fn read(&self, change: &Change) -> Read {
        let mut out = Read {
            path: None,
            manifest: None,
            schema_errors: Vec::new(),
        };
        let mp = match names::parse_manifest_path(&change.path) {
            Ok(p) => p,
            Err(e) => {
                out.schema_errors.push(Diagnostic::new(&change.path, e));
                return out;
            }
        };
        out.path = Some(mp.clone());
        let text = match read_text(self.head, &change.path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                out.schema_errors.push(Diagnostic::new(
                    &change.path,
                    "file not found in the pull request's head",
                ));
                return out;
            }
            Err(d) => {
                out.schema_errors.push(d);
                return out;
            }
        };
        let m = match environment::parse_manifest(&change.path, &text) {
            Ok(m) => m,
            Err(d) => {
                out.schema_errors.push(d);
                return out;
            }
        };
        out.schema_errors
            .extend(environment::check_manifest(&m, Some(&mp)));
        if let Some(platform) = self.gov.platform() {
            out.schema_errors
                .extend(policy::schema_rules(&m, platform, self.gov.catalog()));
            // Names are unique across the repository. One lookup per team, so the cost
            // follows the number of teams, not of environments.
            for team in platform.teams.keys().filter(|t| **t != mp.team) {
                let other = format!("environments/{team}/{}.yaml", mp.name);
                if self.head.exists(&other).unwrap_or(false) {
                    out.schema_errors.push(m.diag(
                        "metadata.name",
                        format!(
                            "environment name {:?} is already used by environments/{team}/{}.yaml",
                            mp.name, mp.name
                        ),
                    ));
                }
            }
        }
        out.manifest = Some(m);
        out
    }

    fn branch_team_names(&self, team: &str) -> Result<Names, Diagnostic> {
        if let Some(v) = self.branch_names.borrow().get(team) {
            return v.clone();
        }
        let names = quota::names_on_branch(self.default_branch, team).map(|mut names| {
            if let Some(live) = self.ctx.live.get(team) {
                names.extend(live.iter().cloned());
            }
            Rc::new(names)
        });
        self.branch_names
            .borrow_mut()
            .insert(team.to_string(), names.clone());
        names
    }

    /// The message for a check that cannot run because the manifest is unusable.
    fn not_evaluated(
        &self,
        change: &Change,
        read: &Read,
        runs_schema: bool,
        why: &str,
    ) -> Vec<Diagnostic> {
        if runs_schema || read.schema_errors.is_empty() {
            vec![Diagnostic::new(
                &change.path,
                format!("not evaluated: {why} (see paved/schema)"),
            )]
        } else {
            read.schema_errors.clone()
        }
    }

    fn policy(&self, change: &Change, read: &Read, runs_schema: bool) -> CheckOutcome {
        let check = CheckKind::Policy;
        let policies = self.gov.policies();
        if !policies.errors().is_empty() {
            return CheckOutcome::new(check, policies.errors().to_vec(), Vec::new());
        }
        let Some(m) = &read.manifest else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(change, read, runs_schema, "the manifest could not be read"),
                Vec::new(),
            );
        };
        let Some(platform) = self.gov.platform() else {
            return CheckOutcome::new(check, self.gov.errors(), Vec::new());
        };
        let spec = &m.manifest.spec;
        let team_name = &m.manifest.metadata.team;
        let (Some(ty), Some(team)) = (
            platform.environment_types.get(&spec.env_type),
            platform.teams.get(team_name),
        ) else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    "the manifest's type or team is not defined",
                ),
                Vec::new(),
            );
        };
        let (mut errors, mut warnings) =
            policy::policy_rules(m, &spec.env_type, ty, team, &self.ctx.author, self.now);
        let key = (spec.env_type.clone(), team_name.clone());
        let cached = self.policy_data.borrow().get(&key).cloned();
        let data = match cached {
            Some(d) => d,
            None => {
                let count = self.count_after(team_name).unwrap_or(0);
                let ctx = policy::paved_context(
                    &spec.env_type,
                    ty,
                    team_name,
                    team,
                    count,
                    &self.ctx.author,
                    &self.ctx.approvers,
                );
                let d = PolicyData::new(&ctx);
                self.policy_data.borrow_mut().insert(key, d.clone());
                d
            }
        };
        match data.and_then(|d| policies.evaluate_prepared(&m.doc.json, &d)) {
            Ok(out) => {
                errors.extend(
                    out.denials
                        .into_iter()
                        .map(|f| Diagnostic::new(&change.path, f.message)),
                );
                warnings.extend(
                    out.warnings
                        .into_iter()
                        .map(|f| Diagnostic::new(&change.path, f.message)),
                );
            }
            Err(e) => errors.push(Diagnostic::new(
                &change.path,
                format!("policy evaluation failed: {e}"),
            )),
        }
        CheckOutcome::new(check, errors, warnings)
    }

    /// The team's count after this pull request.
    fn count_after(&self, team: &str) -> Result<usize, Diagnostic> {
        if let Some(c) = self.counts.borrow().get(team) {
            return c.clone();
        }
        let count = self.branch_team_names(team).map(|on_branch| {
            let changes = self
                .by_team
                .get(team)
                .map(Vec::as_slice)
                .unwrap_or_default();
            quota::count_after(&on_branch, changes.iter().copied())
        });
        self.counts
            .borrow_mut()
            .insert(team.to_string(), count.clone());
        count
    }

    fn quota(&self, change: &Change, read: &Read, runs_schema: bool) -> CheckOutcome {
        let check = CheckKind::Quota;
        let Some(mp) = &read.path else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    "not an environments/<team>/<name>.yaml path",
                ),
                Vec::new(),
            );
        };
        let Some(platform) = self.gov.platform() else {
            return CheckOutcome::new(check, self.gov.errors(), Vec::new());
        };
        let Some(team) = platform.teams.get(&mp.team) else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    &format!("team {:?} is not defined", mp.team),
                ),
                Vec::new(),
            );
        };
        let Some(quota) = team.quota else {
            return CheckOutcome::new(check, Vec::new(), Vec::new());
        };
        let on_branch = match self.branch_team_names(&mp.team) {
            Ok(n) => n,
            Err(d) => return CheckOutcome::new(check, vec![d], Vec::new()),
        };
        let grows = match change.kind {
            ChangeKind::Added => true,
            ChangeKind::Modified => !on_branch.contains(&mp.name),
            ChangeKind::Deleted => false,
        };
        let count = self.count_after(&mp.team).unwrap_or(on_branch.len());
        let limit = quota.environments as usize;
        if grows && count > limit {
            let msg = format!(
                "team {} would have {count} environments, over its quota of {limit} (.paved/platform.yaml teams.{}.quota.environments)",
                mp.team, mp.team
            );
            let d = match &read.manifest {
                Some(m) => m.diag_path(&FieldPath::parse("metadata.team"), msg),
                None => Diagnostic::new(&change.path, msg),
            };
            return CheckOutcome::new(check, vec![d], Vec::new());
        }
        CheckOutcome::new(check, Vec::new(), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governance_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Governance>();
        assert_send_sync::<Report>();
    }

    #[test]
    fn contexts_are_named() {
        assert_eq!(CheckKind::Schema.context(), "paved/schema");
        assert_eq!(CheckKind::Quota.context(), "paved/quota");
    }
}
