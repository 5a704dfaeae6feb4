//! `paved/governance`: a pull request that changes `.paved/` or `catalog/` is itself
//! governed.
//!
//! - **Approval** decides the verdict: the pull request needs the approvals that the BASE
//!   `platform.yaml` names under `governance.approvers` (rule zero: a pull request cannot
//!   change who approves it). No `governance.approvers` means such changes cannot be
//!   approved, and the check fails.
//! - **What-if** informs the reviewers: every environment live on the default branch is
//!   evaluated under the base governance and under the pull request's, and those that pass
//!   today but would fail with the change are listed. It never changes the verdict.
//!
//! ```text
//! let outcome = evaluate_governance(&base_gov, &head, &default_branch, &changed, &ctx);
//! report.governance = Some(outcome);   // report.contexts() then holds paved/governance
//! ```

use super::report::{GovernanceOutcome, WhatIf};
use super::{
    evaluate_at, local_changes, Change, ChangeKind, CheckKind, Governance, PrContext, Verdict,
    CATALOG_DIR,
};
use crate::diag::Diagnostic;
use crate::manifest::names;
use crate::manifest::platform::PLATFORM_PATH;
use crate::tree::TreeReader;
use chrono::Utc;

/// The commit status context of governance changes.
pub const GOVERNANCE_CONTEXT: &str = "paved/governance";

/// Most manifests of the default branch the what-if evaluates (the first ones, by path).
pub const WHAT_IF_MAX: usize = 2_000;

/// Folder of governance files other than the catalog.
const PAVED_DIR: &str = ".paved";

/// Whether a changed path is governance: under `.paved/` or `catalog/`.
pub fn is_governance_path(path: &str) -> bool {
    [PAVED_DIR, CATALOG_DIR].iter().any(|dir| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    })
}

/// Decide `paved/governance` for a pull request that changes `changed` (paths under
/// `.paved/` and `catalog/`; others are ignored).
///
/// `base` is the governance at the pull request's base, `head_tree` the pull request's
/// head (only its governance is read, for the what-if), `default_branch` the tree whose
/// manifests are live, `ctx` the pull request's author, reviews and head commit.
pub fn evaluate_governance(
    base: &Governance,
    head_tree: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changed: &[String],
    ctx: &PrContext,
) -> GovernanceOutcome {
    evaluate_governance_with(
        base,
        head_tree,
        default_branch,
        changed,
        ctx,
        None,
        crate::clock::wall(),
    )
}

/// [`evaluate_governance`] with team membership from `membership` (e.g. with GitHub teams
/// resolved) instead of `platform.yaml`'s member lists alone, at `now` (the service's
/// clock: the what-if judges `expiresAt` rules at the same instant the checks do).
pub fn evaluate_governance_with(
    base: &Governance,
    head_tree: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changed: &[String],
    ctx: &PrContext,
    membership: Option<&dyn crate::policy::Membership>,
    now: chrono::DateTime<Utc>,
) -> GovernanceOutcome {
    let mut changed: Vec<String> = changed
        .iter()
        .filter(|p| is_governance_path(p))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();

    let approval = match base.platform() {
        None => Approval::Unusable(base.errors()),
        Some(p) => match &p.governance {
            None => Approval::NotConfigured,
            // Governance approvals always count on the head commit only.
            Some(g) => Approval::Counted(crate::policy::evaluate_approvals(
                g.approvers.alternatives(),
                &ctx.reviews,
                &ctx.author,
                ctx.head_sha.as_deref(),
                true,
                membership.unwrap_or(p),
            )),
        },
    };
    let what_if = what_if(base, head_tree, default_branch, ctx, now);

    let (verdict, approval, approvers, errors) = match approval {
        Approval::Unusable(errors) => {
            let first = errors
                .first()
                .map(|d| d.to_string())
                .unwrap_or_else(|| format!("{PLATFORM_PATH} could not be read"));
            (
                Verdict::Fail,
                format!("cannot decide who approves: {first}"),
                Vec::new(),
                errors,
            )
        }
        Approval::NotConfigured => (
            Verdict::Fail,
            "platform.yaml names no governance.approvers: changes to .paved/ and catalog/ cannot be approved"
                .to_string(),
            Vec::new(),
            Vec::new(),
        ),
        Approval::Counted(state) => {
            let verdict = if state.pass {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            (verdict, state.description, state.approvers, Vec::new())
        }
    };
    let description = format!("{approval}; {}", what_if.summary());

    GovernanceOutcome {
        verdict,
        description: super::text::truncate(&description, super::text::DESCRIPTION_MAX),
        approval,
        approvers,
        newly_failing: what_if.newly_failing,
        examined: what_if.examined,
        truncated: what_if.truncated,
        schema_errors: super::identities::for_governance(head_tree, &changed, ctx),
        changed,
        errors,
        head_errors: what_if.head_errors,
    }
}

enum Approval {
    /// `platform.yaml` did not load at the base.
    Unusable(Vec<Diagnostic>),
    /// No `governance.approvers`.
    NotConfigured,
    Counted(crate::policy::ApprovalOutcome),
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

struct WhatIfResult {
    newly_failing: Vec<WhatIf>,
    examined: usize,
    truncated: bool,
    head_errors: Vec<Diagnostic>,
}

impl WhatIfResult {
    fn summary(&self) -> String {
        let n = self.newly_failing.len();
        let mut s = if n == 0 {
            "no live environment would newly fail".to_string()
        } else {
            format!(
                "{} would newly fail",
                plural(n, "live environment", "live environments")
            )
        };
        if !self.head_errors.is_empty() {
            s.push_str(" (the PR's governance has errors)");
        }
        if self.truncated {
            s.push_str(&format!(" (first {} checked)", self.examined));
        }
        s
    }
}

/// Whether a check judges the environment itself. `paved/approval` judges who reviewed a
/// pull request: live environments have none, so it is left out of the what-if.
fn about_the_environment(check: CheckKind) -> bool {
    check != CheckKind::Approval
}

/// Errors of a governance that fail the checks of every environment they touch.
fn global_errors(gov: &Governance) -> Vec<Diagnostic> {
    let mut v = gov.errors();
    v.extend(gov.policies().errors().iter().cloned());
    v
}

/// Evaluate the default branch's manifests under the base and the head governance.
fn what_if(
    base: &Governance,
    head_tree: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    ctx: &PrContext,
    now: chrono::DateTime<Utc>,
) -> WhatIfResult {
    let head = Governance::load(head_tree);
    let base_errors = global_errors(base);
    let head_errors: Vec<Diagnostic> = global_errors(&head)
        .into_iter()
        .filter(|d| !base_errors.contains(d))
        .collect();

    let mut manifests: Vec<Change> = local_changes(default_branch)
        .into_iter()
        .filter(|c| names::parse_manifest_path(&c.path).is_ok())
        .map(|c| Change {
            path: c.path,
            kind: ChangeKind::Modified,
        })
        .collect();
    let truncated = manifests.len() > WHAT_IF_MAX;
    manifests.truncate(WHAT_IF_MAX);

    // Live environments, not this pull request: no author, no reviews; the same context
    // and the same instant for both governances, so only the governance differs.
    let live_ctx = PrContext {
        live: ctx.live.clone(),
        ..PrContext::default()
    };
    let before = evaluate_at(
        base,
        default_branch,
        default_branch,
        &manifests,
        &live_ctx,
        now,
    );
    let passing: Vec<Change> = before
        .environments
        .iter()
        .filter(|e| {
            e.checks
                .iter()
                .all(|c| c.verdict.is_pass() || !about_the_environment(c.check))
        })
        .map(|e| Change {
            path: e.path.clone(),
            kind: ChangeKind::Modified,
        })
        .collect();
    // Only those passing today can newly fail; the quota still counts every manifest of
    // the default branch (it lists the team folders, not the changes).
    let after = evaluate_at(
        &head,
        default_branch,
        default_branch,
        &passing,
        &live_ctx,
        now,
    );
    let newly_failing = after
        .environments
        .iter()
        .filter_map(|e| {
            let checks: Vec<(String, String)> = e
                .checks
                .iter()
                .filter(|c| !c.verdict.is_pass() && about_the_environment(c.check))
                .map(|c| {
                    let first = c
                        .errors
                        .first()
                        .map(|d| match &d.field {
                            Some(f) => format!("{f}: {}", d.message),
                            None => d.message.clone(),
                        })
                        .unwrap_or_else(|| "failed".to_string());
                    (c.check.context().to_string(), first)
                })
                .collect();
            (!checks.is_empty()).then(|| WhatIf {
                label: e.label(),
                path: e.path.clone(),
                checks,
            })
        })
        .collect();
    WhatIfResult {
        newly_failing,
        examined: manifests.len(),
        truncated,
        head_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn governance_paths() {
        assert!(is_governance_path(".paved/platform.yaml"));
        assert!(is_governance_path(".paved/policies/x.rego"));
        assert!(is_governance_path("catalog/postgres-db/deploy.sh"));
        assert!(!is_governance_path("catalog"));
        assert!(!is_governance_path(".paved/"));
        assert!(!is_governance_path("catalogue/x"));
        assert!(!is_governance_path(".pavedx/y"));
        assert!(!is_governance_path("environments/payments/a.yaml"));
    }
}
