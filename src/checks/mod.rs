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

mod governance;
mod render;

pub use crate::workflow::CheckKind;
pub use governance::{
    evaluate_governance, is_governance_path, GovernanceOutcome, WhatIf, GOVERNANCE_CONTEXT,
    WHAT_IF_MAX,
};
pub use render::{render_markdown, render_text, ContextVerdict};

use crate::diag::Diagnostic;
use crate::manifest::definition::{self, LoadedDefinition, DEFINITION_FILE};
use crate::manifest::names::{self, ManifestPath};
use crate::manifest::platform::{self, Approvals, EnvironmentType, Platform, PLATFORM_PATH};
use crate::manifest::{environment, read_text, FieldPath, ParsedManifest, YamlDoc};
use crate::policy::rego::PolicyData;
use crate::policy::{self, quota, Membership, NoMembers, RegoPolicies};
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
    /// The pull request's reviews, oldest first, as GitHub lists them (`paved/approval`
    /// counts each reviewer's latest one).
    #[serde(default)]
    pub reviews: Vec<Review>,
    /// The head commit the checks are for (reviews of other commits are stale).
    #[serde(default)]
    pub head_sha: Option<String>,
}

/// A review's state, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Dismissed,
    Commented,
    Pending,
}

impl ReviewState {
    /// GitHub's `state` of a review; `None` for a state Paved does not know.
    pub fn parse(s: &str) -> Option<ReviewState> {
        Some(match s {
            "APPROVED" => ReviewState::Approved,
            "CHANGES_REQUESTED" => ReviewState::ChangesRequested,
            "DISMISSED" => ReviewState::Dismissed,
            "COMMENTED" => ReviewState::Commented,
            "PENDING" => ReviewState::Pending,
            _ => return None,
        })
    }
}

/// One review of the pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// GitHub login of the reviewer.
    pub user: String,
    pub state: ReviewState,
    /// The commit the review was made on.
    #[serde(default)]
    pub commit_id: Option<String>,
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
    /// One line saying why it passed, when that says more than "passes" (e.g. `paved/approval`:
    /// "approved by admin1, admin2"); the status description uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
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
            summary: None,
        }
    }

    fn with_summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = Some(summary.into());
        self
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
    /// `paved/governance`, when the pull request changes `.paved/` or `catalog/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub governance: Option<GovernanceOutcome>,
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

    /// An environment type that asks for approvals, with them.
    fn approval_type(&self, env_type: &str) -> Option<(&str, &EnvironmentType)> {
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

/// The contexts that [`evaluate`] will report for these changes, known before evaluating
/// (so the server can post `pending` first). Reads and parses the touched manifests of
/// `head` to find their types; nothing else. Without the default branch the type of a
/// deleted (or replaced) environment is unknown: prefer [`planned_checks_with_branch`].
pub fn planned_checks(
    gov: &Governance,
    head: &dyn TreeReader,
    changes: &[Change],
) -> Vec<CheckKind> {
    planned(gov, head, None, changes)
}

/// [`planned_checks`], also reading the touched manifests of the default branch (the tree
/// given to [`evaluate`]): a change to or deletion of an environment whose type there has
/// approvals gets `paved/approval` too.
pub fn planned_checks_with_branch(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changes: &[Change],
) -> Vec<CheckKind> {
    planned(gov, head, Some(default_branch), changes)
}

fn planned(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: Option<&dyn TreeReader>,
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
        let old_type = default_branch
            .filter(|_| change.kind != ChangeKind::Added)
            .and_then(|t| manifest_type(t, &change.path));
        set.extend(gov.resolve_workflow(env_type.as_deref()).checks);
        if [env_type, old_type]
            .iter()
            .flatten()
            .any(|t| gov.approval_type(t).is_some())
        {
            set.insert(CheckKind::Approval);
        }
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
    let membership: &dyn Membership = match gov.platform() {
        Some(p) => p,
        None => &NoMembers,
    };
    evaluate_with_membership(gov, head, default_branch, changes, ctx, now, membership)
}

/// [`evaluate_at`] with team membership from `membership` (approvals and ownership) rather
/// than from `platform.yaml`'s member lists.
pub fn evaluate_with_membership(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changes: &[Change],
    ctx: &PrContext,
    now: DateTime<Utc>,
    membership: &dyn Membership,
) -> Report {
    let run = Run {
        gov,
        head,
        default_branch,
        ctx,
        now,
        membership,
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
    Report {
        environments,
        governance: None,
    }
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
    /// Who is in which team (approvals and ownership).
    membership: &'a dyn Membership,
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
        // The environment as it is now, when the pull request changes or deletes an existing
        // one: its owner and team decide who may, and its type's approvals apply.
        let existing = match change.kind {
            ChangeKind::Added => None,
            ChangeKind::Modified | ChangeKind::Deleted => self.existing(&change.path),
        };
        let old_type = existing
            .as_ref()
            .and_then(|e| e.as_ref().ok())
            .map(|m| m.manifest.spec.env_type.clone());
        if change.kind == ChangeKind::Deleted {
            let mp = names::parse_manifest_path(&change.path).ok();
            let wf = self.gov.resolve_workflow(None);
            let mut errors = global;
            errors.extend(wf.errors.iter().cloned());
            let mut checks = wf.checks.clone();
            if self.needs_approval([None, old_type.as_deref()])
                && !checks.contains(&CheckKind::Approval)
            {
                checks.push(CheckKind::Approval);
            }
            return EnvironmentReport {
                path: change.path.clone(),
                name: mp.as_ref().map(|p| p.name.clone()),
                team: mp.as_ref().map(|p| p.team.clone()),
                env_type: old_type.clone(),
                workflow: wf.name,
                change: change.kind,
                checks: checks
                    .iter()
                    .map(|c| {
                        if !errors.is_empty() {
                            return CheckOutcome::new(*c, errors.clone(), Vec::new());
                        }
                        match c {
                            CheckKind::Policy => CheckOutcome::new(
                                *c,
                                self.ownership(change, None, existing.as_ref())
                                    .into_iter()
                                    .collect(),
                                Vec::new(),
                            ),
                            CheckKind::Approval => self.approval(change, None, old_type.as_deref()),
                            _ => CheckOutcome::new(*c, Vec::new(), Vec::new()),
                        }
                    })
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
        let mut planned = wf.checks.clone();
        if self.needs_approval([env_type.as_deref(), old_type.as_deref()])
            && !planned.contains(&CheckKind::Approval)
        {
            planned.push(CheckKind::Approval);
        }

        let checks = planned
            .iter()
            .map(|check| {
                if !base_errors.is_empty() {
                    return CheckOutcome::new(*check, base_errors.clone(), Vec::new());
                }
                match check {
                    CheckKind::Schema => {
                        CheckOutcome::new(*check, read.schema_errors.clone(), Vec::new())
                    }
                    CheckKind::Policy => {
                        let mut outcome = self.policy(change, &read, runs_schema);
                        if let Some(d) =
                            self.ownership(change, read.manifest.as_ref(), existing.as_ref())
                        {
                            outcome.errors.push(d);
                            outcome.verdict = Verdict::Fail;
                        }
                        outcome
                    }
                    CheckKind::Quota => self.quota(change, &read, runs_schema),
                    CheckKind::Approval => match &read.manifest {
                        Some(_) => self.approval(change, env_type.as_deref(), old_type.as_deref()),
                        None => CheckOutcome::new(
                            *check,
                            self.not_evaluated(
                                change,
                                &read,
                                runs_schema,
                                "the manifest could not be read",
                            ),
                            Vec::new(),
                        ),
                    },
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

    /// The manifest on the default branch (`None`: there is none there).
    fn existing(&self, path: &str) -> Option<Result<ParsedManifest, Diagnostic>> {
        names::parse_manifest_path(path).ok()?;
        match read_text(self.default_branch, path) {
            Ok(Some(text)) => Some(environment::parse_manifest(path, &text)),
            Ok(None) => None,
            Err(d) => Some(Err(d)),
        }
    }

    /// Whether any of these types asks for approvals.
    fn needs_approval<'t>(&self, types: impl IntoIterator<Item = Option<&'t str>>) -> bool {
        types
            .into_iter()
            .flatten()
            .any(|t| self.gov.approval_type(t).is_some())
    }

    /// Ownership: an existing environment may be changed or deleted only by its owner, a
    /// member of its team or a platform approver (owner and team as the default branch has
    /// them: a pull request cannot make itself the owner). The error, if any, names the
    /// manifest's `metadata.owner`: of the pull request's version when it changes the file,
    /// of the default branch's when it deletes it.
    fn ownership(
        &self,
        change: &Change,
        head: Option<&ParsedManifest>,
        existing: Option<&Result<ParsedManifest, Diagnostic>>,
    ) -> Option<Diagnostic> {
        let author = self.ctx.author.as_str();
        let existing = existing?;
        let old = existing.as_ref().ok();
        let team = match old {
            Some(m) => m.manifest.metadata.team.clone(),
            None => names::parse_manifest_path(&change.path).ok()?.team,
        };
        let owner = old.and_then(|m| m.manifest.metadata.owner.as_deref());
        let approvers = self.gov.platform_approvers();
        if policy::may_change(author, owner, &team, approvers, self.membership) {
            return None;
        }
        let verb = if change.kind == ChangeKind::Deleted {
            "delete"
        } else {
            "change"
        };
        let mut who = Vec::new();
        if let Some(o) = owner {
            who.push(format!("its owner {o}"));
        }
        who.push(format!("members of team {team}"));
        let teams: Vec<&str> = approvers.iter().map(|a| a.team.as_str()).collect();
        if !teams.is_empty() {
            let mut uniq: Vec<&str> = Vec::new();
            for t in teams {
                if !uniq.contains(&t) {
                    uniq.push(t);
                }
            }
            who.push(format!(
                "platform approvers (team {})",
                uniq.join(", team ")
            ));
        }
        let who = match who.len() {
            1 => who.remove(0),
            _ => {
                let last = who.pop().unwrap_or_default();
                format!("{} or {last}", who.join(", "))
            }
        };
        let msg = format!(
            "{author} may not {verb} this existing environment: only {who} may (owner and team as on the default branch)"
        );
        let field = if owner.is_some() {
            "metadata.owner"
        } else {
            "metadata.team"
        };
        Some(match head.or(old) {
            Some(m) => m.diag(field, msg),
            None => Diagnostic::new(&change.path, msg).field(field),
        })
    }

    /// `paved/approval`: the reviews against the approvals of the environment's type in
    /// the pull request (`env_type`) and, when different, of its type on the default branch
    /// (`old_type`): changing a `prod` environment into a `dev` one needs `prod`'s approvals.
    fn approval(
        &self,
        change: &Change,
        env_type: Option<&str>,
        old_type: Option<&str>,
    ) -> CheckOutcome {
        let check = CheckKind::Approval;
        let mut types: Vec<(&str, &EnvironmentType)> = Vec::new();
        for t in [env_type, old_type].into_iter().flatten() {
            if let Some((name, ty)) = self.gov.approval_type(t) {
                if !types.iter().any(|(n, _)| *n == name) {
                    types.push((name, ty));
                }
            }
        }
        if types.is_empty() {
            return CheckOutcome::new(check, Vec::new(), Vec::new())
                .with_summary("no approval required");
        }
        let where_ = |name: &str| format!("environmentTypes.{name}.approvals in {PLATFORM_PATH}");
        if self.ctx.author.is_empty() {
            // `paved check`: there is no pull request whose reviews could count.
            let warnings = types
                .iter()
                .map(|(name, ty)| {
                    let rules = ty
                        .approvals
                        .as_ref()
                        .map(|a| a.alternatives())
                        .unwrap_or_default();
                    let need =
                        policy::evaluate_approvals(rules, &[], "", None, false, self.membership);
                    Diagnostic::new(
                        &change.path,
                        format!(
                            "approvals are counted on the pull request: it {} ({})",
                            need.description,
                            where_(name)
                        ),
                    )
                })
                .collect();
            return CheckOutcome::new(check, Vec::new(), warnings)
                .with_summary("approvals are counted on the pull request");
        }
        let mut errors = Vec::new();
        let mut summaries: Vec<String> = Vec::new();
        for (name, ty) in &types {
            let rules = ty
                .approvals
                .as_ref()
                .map(|a| a.alternatives())
                .unwrap_or_default();
            let out = policy::evaluate_approvals(
                rules,
                &self.ctx.reviews,
                &self.ctx.author,
                self.ctx.head_sha.as_deref(),
                ty.dismiss_stale,
                self.membership,
            );
            if out.pass {
                if !summaries.contains(&out.description) {
                    summaries.push(out.description);
                }
            } else {
                let on_branch = if Some(*name) != env_type {
                    " on the default branch"
                } else {
                    ""
                };
                errors.push(Diagnostic::new(
                    &change.path,
                    format!(
                        "{} (type {name}{on_branch}: {})",
                        out.description,
                        where_(name)
                    ),
                ));
            }
        }
        let outcome = CheckOutcome::new(check, errors, Vec::new());
        if outcome.verdict.is_pass() {
            outcome.with_summary(summaries.join("; "))
        } else {
            outcome
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
