//! Team quotas: how many environments a team has once this pull request is merged.
//!
//! The count starts from the `*.yaml` files in `environments/<team>/` of the default branch
//! (a listing, not parsing: O(team size), not O(repository)), removes the team's manifests
//! this pull request deletes and adds the ones it adds that are not there yet. An added
//! environment fails the quota check when that count is over the team's
//! `quota.environments`; a change to an existing environment never does (it does not grow
//! the count), even when a lowered quota is already exceeded.

use crate::diag::Diagnostic;
use crate::manifest::change::ChangeKind;
use crate::tree::TreeReader;
use std::collections::BTreeSet;

/// File stems of the team's manifests on the default branch.
pub fn names_on_branch(tree: &dyn TreeReader, team: &str) -> Result<BTreeSet<String>, Diagnostic> {
    let dir = format!("environments/{team}");
    let entries = tree
        .list(&dir)
        .map_err(|e| Diagnostic::new(&dir, format!("cannot list the team's environments: {e}")))?;
    Ok(entries
        .into_iter()
        .filter_map(|e| e.strip_suffix(".yaml").map(str::to_string))
        .collect())
}

/// The team's environment count after the pull request, given the names on the default
/// branch and the pull request's changes to this team's manifests (name, kind).
pub fn count_after<'a>(
    on_branch: &BTreeSet<String>,
    changes: impl IntoIterator<Item = (&'a str, ChangeKind)>,
) -> usize {
    let mut names: BTreeSet<&str> = on_branch.iter().map(String::as_str).collect();
    for (name, kind) in changes {
        match kind {
            ChangeKind::Deleted => {
                names.remove(name);
            }
            ChangeKind::Added | ChangeKind::Modified => {
                names.insert(name);
            }
        }
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_default_branch_plus_pull_request() {
        let on: BTreeSet<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(count_after(&on, [("c", ChangeKind::Added)]), 3);
        assert_eq!(count_after(&on, [("a", ChangeKind::Added)]), 2);
        assert_eq!(
            count_after(&on, [("a", ChangeKind::Deleted), ("c", ChangeKind::Added)]),
            2
        );
        assert_eq!(count_after(&on, [("b", ChangeKind::Modified)]), 2);
    }
}
