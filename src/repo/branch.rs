//! Branches Paved writes itself: a request's change committed on top of the default branch
//! and pushed as a new branch, for a pull request to be opened from it.

use super::notes::Pushed;
use super::{Mirror, RepoError};
use crate::config::Secret;
use crate::ids::CommitSha;
use git2::build::TreeUpdateBuilder;
use git2::{ErrorClass, ErrorCode, FileMode, Oid, Signature};

/// Who Paved's own commits are by (the requester is named in a `Requested-by:` trailer).
pub const COMMITTER: (&str, &str) = ("Paved", "paved@users.noreply.github.com");

/// One file changed on top of a commit, as a new branch.
pub struct BranchChange<'a> {
    pub base: &'a CommitSha,
    pub branch: &'a str,
    pub path: &'a str,
    /// `None`: the file is deleted.
    pub content: Option<&'a [u8]>,
    pub message: &'a str,
}

impl Mirror {
    /// Commits `change.content` at `change.path` on top of `change.base`, and pushes the
    /// commit to the origin at `url` as the new branch `change.branch` (never forced: an
    /// existing branch of that name is refused). Returns the commit.
    pub fn commit_and_push_branch(
        &self,
        url: &str,
        token: Option<&Secret>,
        change: &BranchChange<'_>,
    ) -> Result<CommitSha, RepoError> {
        let BranchChange {
            base,
            branch,
            path,
            content,
            message,
        } = *change;
        let parent = self.repo.find_commit(Oid::from_str(base.as_str())?)?;
        let mut update = TreeUpdateBuilder::new();
        match content {
            Some(bytes) => {
                let blob = self.repo.blob(bytes)?;
                update.upsert(path, blob, FileMode::Blob);
            }
            None => {
                update.remove(path);
            }
        }
        let tree_id = update.create_updated(&self.repo, &parent.tree()?)?;
        let tree = self.repo.find_tree(tree_id)?;
        let sig = Signature::now(COMMITTER.0, COMMITTER.1)?;
        let local = format!("refs/paved/requests/{branch}");
        let commit = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &[&parent])?;
        self.repo
            .reference(&local, commit, true, "request branch")?;
        let refspec = format!("{local}:refs/heads/{branch}");
        if let Pushed::Rejected(reason) = self.push_ref(url, token, &refspec)? {
            return Err(RepoError::Git(git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Reference,
                format!("the origin refused the branch: {reason}"),
            )));
        }
        CommitSha::parse(&commit.to_string()).map_err(|e| {
            RepoError::Git(git2::Error::new(
                ErrorCode::GenericError,
                ErrorClass::Object,
                e.to_string(),
            ))
        })
    }
}

/// `paved/<kind>/<name>-<16 random hex digits>`: a branch Paved pushes, named so that no
/// one can push it first and have Paved open a pull request from their commit (SPEC 12).
pub fn unguessable_branch(kind: &str, name: &str) -> String {
    format!("paved/{kind}/{name}-{:016x}", rand::random::<u64>())
}
