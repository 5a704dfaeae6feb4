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
//!
//! The rooms: `governance.rs` (loading), `plan.rs` (which checks), `run.rs` (one
//! evaluation), one file per check (`schema.rs`, `policy.rs`, `quota.rs`, `approval.rs`,
//! and `governance_check.rs` for `paved/governance`), `report.rs` (the verdicts) and
//! `render.rs` (statuses and comments).

mod approval;
mod evaluation;
mod governance;
mod governance_check;
mod identities;
mod plan;
mod policy;
mod preview;
mod quota;
mod render;
mod report;
mod schema;
mod text;

pub use crate::manifest::change::{Change, ChangeKind};
pub use crate::policy::approval::{Review, ReviewState};
pub use crate::workflow::CheckKind;
pub use governance::{Catalog, Governance, ResolvedWorkflow};
pub use governance_check::{
    evaluate_governance, evaluate_governance_with, is_governance_path, GOVERNANCE_CONTEXT,
    WHAT_IF_MAX,
};
pub use identities::{named_identities, named_identities_local, unknown_identities};
pub use plan::{planned_checks, planned_checks_with_branch};
pub use render::{render_markdown, render_text, ContextVerdict, Finding};
pub use report::{
    CheckOutcome, EnvironmentReport, GovernanceOutcome, PrContext, Report, Verdict, WhatIf,
};
pub use text::truncate_line;

use crate::manifest::names;
use crate::policy::{Membership, NoMembers};
use crate::tree::{DirTree, TreeReader};
use chrono::{DateTime, Utc};
use evaluation::Evaluation;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Folder of the ADE catalog.
pub const CATALOG_DIR: &str = "catalog";
/// Folder of the manifests.
pub const ENVIRONMENTS_DIR: &str = "environments";

/// Evaluate the touched environments: governance from `gov` (the base), manifests from
/// `head`, team counts from `default_branch`.
pub fn evaluate(
    gov: &Governance,
    head: &dyn TreeReader,
    default_branch: &dyn TreeReader,
    changes: &[Change],
    ctx: &PrContext,
) -> Report {
    evaluate_at(
        gov,
        head,
        default_branch,
        changes,
        ctx,
        crate::clock::wall(),
    )
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
    let run = Evaluation {
        gov,
        head,
        default_branch,
        ctx,
        now,
        membership,
        branch_names: RefCell::new(HashMap::new()),
        counts: RefCell::new(HashMap::new()),
        policy_data: RefCell::new(HashMap::new()),
        by_team: evaluation::changes_by_team(changes),
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
