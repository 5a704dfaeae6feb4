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

/// A commit and its parents, first parent first.
pub type CommitWithParents = (CommitSha, Vec<CommitSha>);

impl Mirror {
    /// The parents of `sha`, first parent first.
    pub fn parents(&self, sha: &CommitSha) -> Result<Vec<CommitSha>, RepoError> {
        let commit = self.repo.find_commit(Oid::from_str(sha.as_str())?)?;
        Ok(commit
            .parent_ids()
            .filter_map(|id| CommitSha::parse(&id.to_string()).ok())
            .collect())
    }

    /// The commits `to` has that `from` has not, each with its parents, newest first, at
    /// most `limit` (`None` when there are more).
    pub fn commits_between(
        &self,
        from: &CommitSha,
        to: &CommitSha,
        limit: usize,
    ) -> Result<Option<Vec<CommitWithParents>>, RepoError> {
        let mut walk = self.repo.revwalk()?;
        walk.push(Oid::from_str(to.as_str())?)?;
        walk.hide(Oid::from_str(from.as_str())?)?;
        let mut out = Vec::new();
        for oid in walk {
            if out.len() == limit {
                return Ok(None);
            }
            let oid = oid?;
            let sha = CommitSha::parse(&oid.to_string())
                .map_err(|e| RepoError::Git(git2::Error::from_str(&e.to_string())))?;
            out.push((sha.clone(), self.parents(&sha)?));
        }
        Ok(Some(out))
    }

    /// The id of the blob at `path` in `sha`'s tree (`None`: no file there).
    pub fn blob_id(&self, sha: &CommitSha, path: &str) -> Result<Option<String>, RepoError> {
        let tree = self
            .repo
            .find_commit(Oid::from_str(sha.as_str())?)?
            .tree()?;
        match tree.get_path(std::path::Path::new(path)) {
            Ok(e) if e.kind() == Some(git2::ObjectType::Blob) => Ok(Some(e.id().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
