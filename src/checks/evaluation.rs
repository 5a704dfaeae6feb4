//! One evaluation: the touched environments, each through its workflow's checks. The
//! state ([`Evaluation`]) caches listings and policy data so each team folder is read once; each
//! check is a file of its own (`schema.rs`, `policy.rs`, `quota.rs`, `approval.rs`).

use super::{
    Change, ChangeKind, CheckKind, CheckOutcome, EnvironmentReport, Governance, PrContext, Verdict,
};
use crate::diag::Diagnostic;
use crate::manifest::names::{self, ManifestPath};
use crate::manifest::{environment, read_text, ParsedManifest};
use crate::policy::rego::PolicyData;
use crate::policy::{quota, Membership};
use crate::tree::TreeReader;
use chrono::{DateTime, Utc};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// Manifest changes grouped by team folder: (file stem, kind).
pub(super) fn changes_by_team(changes: &[Change]) -> HashMap<&str, Vec<(&str, ChangeKind)>> {
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
pub(super) type Names = Rc<BTreeSet<String>>;

/// State for one evaluation: listings are cached so each team folder is listed once.
pub(super) struct Evaluation<'a> {
    pub(super) gov: &'a Governance,
    pub(super) head: &'a dyn TreeReader,
    pub(super) default_branch: &'a dyn TreeReader,
    pub(super) ctx: &'a PrContext,
    pub(super) now: DateTime<Utc>,
    /// Who is in which team (approvals and ownership).
    pub(super) membership: &'a dyn Membership,
    pub(super) branch_names: RefCell<HashMap<String, Result<Names, Diagnostic>>>,
    pub(super) counts: RefCell<HashMap<String, Result<usize, Diagnostic>>>,
    /// `data.paved` by (type, team): the same for every manifest of a team and type.
    pub(super) policy_data: RefCell<HashMap<(String, String), Result<PolicyData, String>>>,
    /// The pull request's manifest changes by team: (name, kind).
    pub(super) by_team: HashMap<&'a str, Vec<(&'a str, ChangeKind)>>,
}

/// What reading a manifest gave.
pub(super) struct Read {
    pub(super) path: Option<ManifestPath>,
    pub(super) manifest: Option<ParsedManifest>,
    pub(super) schema_errors: Vec<Diagnostic>,
}

impl Evaluation<'_> {
    /// The report of one touched environment: its workflow's checks, each decided.
    pub(super) fn environment(&self, change: &Change) -> EnvironmentReport {
        // The environment as it is now, when the pull request changes or deletes an existing
        // one: its owner and team decide who may, and its type's approvals apply.
        let existing = match change.kind {
            ChangeKind::Added => None,
            ChangeKind::Modified | ChangeKind::Deleted => self.existing(&change.path),
        };
        if change.kind == ChangeKind::Deleted {
            self.deleted(change, existing)
        } else {
            self.present(change, existing)
        }
    }

    /// A deleted manifest: ownership and approvals of what it was; the rest passes.
    fn deleted(
        &self,
        change: &Change,
        existing: Option<Result<ParsedManifest, Diagnostic>>,
    ) -> EnvironmentReport {
        let old_type = type_of(existing.as_ref());
        let mp = names::parse_manifest_path(&change.path).ok();
        let wf = self.gov.resolve_workflow(None);
        let mut errors = self.gov.errors();
        errors.extend(wf.errors.iter().cloned());
        let mut checks = wf.checks.clone();
        if self.needs_approval([None, old_type.as_deref()])
            && !checks.contains(&CheckKind::Approval)
        {
            checks.push(CheckKind::Approval);
        }
        if self.needs_plan([old_type.as_deref()]) && !checks.contains(&CheckKind::Plan) {
            checks.push(CheckKind::Plan);
        }
        let decide = |c: &CheckKind| {
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
                CheckKind::Plan => self.plan(change, old_type.as_deref()),
                _ => CheckOutcome::new(*c, Vec::new(), Vec::new()),
            }
        };
        EnvironmentReport {
            path: change.path.clone(),
            name: mp.as_ref().map(|p| p.name.to_string()),
            team: mp.as_ref().map(|p| p.team.to_string()),
            env_type: old_type.clone(),
            workflow: wf.name.clone(),
            change: change.kind,
            checks: checks.iter().map(decide).collect(),
        }
    }

    /// An added or changed manifest: read from the head, then every check of its workflow.
    fn present(
        &self,
        change: &Change,
        existing: Option<Result<ParsedManifest, Diagnostic>>,
    ) -> EnvironmentReport {
        let old_type = type_of(existing.as_ref());
        let read = self.read(change);
        let env_type = read
            .manifest
            .as_ref()
            .map(|m| m.manifest.spec.env_type.clone());
        let wf = self.gov.resolve_workflow(env_type.as_deref());
        let mut base_errors = self.gov.errors();
        base_errors.extend(wf.errors.iter().cloned());
        let runs_schema = wf.checks.contains(&CheckKind::Schema);
        let mut planned = wf.checks.clone();
        if self.needs_approval([env_type.as_deref(), old_type.as_deref()])
            && !planned.contains(&CheckKind::Approval)
        {
            planned.push(CheckKind::Approval);
        }
        if self.needs_plan([env_type.as_deref(), old_type.as_deref()])
            && !planned.contains(&CheckKind::Plan)
        {
            planned.push(CheckKind::Plan);
        }
        let decide = |check: &CheckKind| {
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
                CheckKind::Plan => self.plan(change, env_type.as_deref()),
            }
        };
        let checks = planned.iter().map(decide).collect();
        let manifest = read.manifest.as_ref().map(|m| &m.manifest.metadata);
        EnvironmentReport {
            path: change.path.clone(),
            name: manifest
                .map(|m| m.name.clone())
                .or(read.path.as_ref().map(|p| p.name.to_string())),
            team: manifest
                .map(|m| m.team.clone())
                .or(read.path.as_ref().map(|p| p.team.to_string())),
            env_type,
            workflow: wf.name,
            change: change.kind,
            checks,
        }
    }

    /// The manifest on the default branch (`None`: there is none there).
    pub(super) fn existing(&self, path: &str) -> Option<Result<ParsedManifest, Diagnostic>> {
        names::parse_manifest_path(path).ok()?;
        match read_text(self.default_branch, path) {
            Ok(Some(text)) => Some(environment::parse_manifest(path, &text)),
            Ok(None) => None,
            Err(d) => Some(Err(d)),
        }
    }

    /// Whether any of these types asks for approvals.
    pub(super) fn needs_approval<'t>(
        &self,
        types: impl IntoIterator<Item = Option<&'t str>>,
    ) -> bool {
        types
            .into_iter()
            .flatten()
            .any(|t| self.gov.approval_type(t).is_some())
    }

    /// Some of these types say `requirePlan: true`: `paved/plan` runs whatever the workflow.
    pub(super) fn needs_plan<'t>(&self, types: impl IntoIterator<Item = Option<&'t str>>) -> bool {
        types.into_iter().flatten().any(|t| self.requires_plan(t))
    }

    pub(super) fn branch_team_names(&self, team: &str) -> Result<Names, Diagnostic> {
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
    pub(super) fn not_evaluated(
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

    /// The team's count after this pull request.
    pub(super) fn count_after(&self, team: &str) -> Result<usize, Diagnostic> {
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
}

/// The type of an environment as the default branch has it.
fn type_of(existing: Option<&Result<ParsedManifest, Diagnostic>>) -> Option<String> {
    existing
        .and_then(|e| e.as_ref().ok())
        .map(|m| m.manifest.spec.env_type.clone())
}
