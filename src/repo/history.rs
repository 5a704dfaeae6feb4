//! Commit ancestry questions the merge handler asks.

use super::{Mirror, RepoError};
use crate::ids::CommitSha;
use git2::Oid;

impl Mirror {
    /// The first parent of `sha` (`None` for a root commit).
    pub fn first_parent(&self, sha: &CommitSha) -> Result<Option<CommitSha>, RepoError> {
        let commit = self.repo.find_commit(Oid::from_str(sha.as_str())?)?;
        Ok(commit
            .parent_ids()
            .next()
            .and_then(|id| CommitSha::parse(&id.to_string()).ok()))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor_or_same(
        &self,
        ancestor: &CommitSha,
        descendant: &CommitSha,
    ) -> Result<bool, RepoError> {
        if ancestor == descendant {
            return Ok(true);
        }
        Ok(self.repo.graph_descendant_of(
            Oid::from_str(descendant.as_str())?,
            Oid::from_str(ancestor.as_str())?,
        )?)
    }
}
