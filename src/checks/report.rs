//! What the checks found: one verdict per check and environment, and the context of the
//! pull request they were evaluated for.

use crate::diag::Diagnostic;
use crate::manifest::change::ChangeKind;
use crate::policy::approval::Review;
use crate::workflow::CheckKind;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// The deploy identities the server defines (`[runner.identities]`, SPEC 13); `None`
    /// when unknown (`paved check`, offline).
    #[serde(default)]
    pub identities: Option<BTreeSet<String>>,
    /// The previews of the head (SPEC 14): `paved/plan`'s verdicts, the digest approvals
    /// are bound to, what `approvals.onDestroy` looks at. `None`: not made (yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previews: Option<crate::preview::PreviewSet>,
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
    pub(super) fn new(
        check: CheckKind,
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
    ) -> Self {
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

    pub(super) fn with_summary(mut self, summary: impl Into<String>) -> Self {
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

/// The verdict on a pull request that changes governance, and what the change would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernanceOutcome {
    /// Decided by the approvals alone.
    pub verdict: Verdict,
    /// One line (at most 140 characters): the approval state, then the what-if.
    pub description: String,
    /// The approval state in words: who approved, or who is needed.
    pub approval: String,
    /// The changed paths under `.paved/` and `catalog/`, sorted.
    pub changed: Vec<String>,
    /// Reviewers whose approval counts (members of the approvers' team, not the author,
    /// latest review approving the head commit).
    pub approvers: Vec<String>,
    /// Environments on the default branch that pass every check with the base governance
    /// and would fail some check with the pull request's.
    pub newly_failing: Vec<WhatIf>,
    /// How many manifests of the default branch the what-if evaluated.
    #[serde(default)]
    pub examined: usize,
    /// The default branch holds more than [`WHAT_IF_MAX`](super::WHAT_IF_MAX) manifests: only the first were
    /// evaluated.
    #[serde(default)]
    pub truncated: bool,
    /// Why the approval could not be decided (`platform.yaml` unusable at the base).
    pub errors: Vec<Diagnostic>,
    /// Errors in the pull request's own governance that fail every environment whose
    /// checks they touch (a policy that does not parse, a broken `platform.yaml`), and that
    /// the base does not have. When set, renderers show one line for `newly_failing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head_errors: Vec<Diagnostic>,
    /// What the pull request's `platform.yaml` names that the server does not have (a
    /// deploy identity it does not define): these fail `paved/schema`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_errors: Vec<Diagnostic>,
}

/// One environment that would newly fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIf {
    /// `team/name`.
    pub label: String,
    pub path: String,
    /// Each failing check: (status context, its first message).
    pub checks: Vec<(String, String)>,
}
