//! Which checks a change gets, known before evaluating it (so the server can post
//! `pending` first).

use super::{Change, ChangeKind, Governance};
use crate::manifest::{environment, names, read_text};
use crate::tree::TreeReader;
use crate::workflow::CheckKind;
use std::collections::BTreeSet;

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
        let types = [env_type, old_type];
        if types
            .iter()
            .flatten()
            .any(|t| gov.approval_type(t).is_some())
        {
            set.insert(CheckKind::Approval);
        }
        let requires_plan = |t: &String| {
            gov.platform()
                .and_then(|p| p.environment_types.get(t))
                .is_some_and(|ty| ty.require_plan)
        };
        if types.iter().flatten().any(requires_plan) {
            set.insert(CheckKind::Plan);
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
