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

impl Mirror {
    /// How many commits `to` has that `from` has not (`git rev-list --count from..to`).
    pub fn count_between(&self, from: &CommitSha, to: &CommitSha) -> Result<usize, RepoError> {
        let mut walk = self.repo.revwalk()?;
        walk.push(Oid::from_str(to.as_str())?)?;
        walk.hide(Oid::from_str(from.as_str())?)?;
        let mut n = 0;
        for oid in walk {
            oid?;
            n += 1;
        }
        Ok(n)
    }

    /// The commit `n` steps back along first parents (`sha~n`), if the history is that long
    /// and every step has exactly one parent.
    pub fn nth_single_parent(
        &self,
        sha: &CommitSha,
        n: usize,
    ) -> Result<Option<CommitSha>, RepoError> {
        let mut commit = self.repo.find_commit(Oid::from_str(sha.as_str())?)?;
        for _ in 0..n {
            if commit.parent_count() != 1 {
                return Ok(None);
            }
            commit = commit.parent(0)?;
        }
        Ok(CommitSha::parse(&commit.id().to_string()).ok())
    }
}
