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

/// One commit of a branch Paved writes: its message and the files it changes (`None`:
/// deleted).
pub struct CommitChange<'a> {
    pub message: &'a str,
    pub files: &'a [(String, Option<Vec<u8>>)],
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
        let files = [(change.path.to_string(), change.content.map(<[u8]>::to_vec))];
        self.commits_and_push_branch(
            url,
            token,
            change.base,
            change.branch,
            &[CommitChange {
                message: change.message,
                files: &files,
            }],
        )
    }

    /// Commits `commits` one after the other on top of `base`, and pushes the last as the
    /// new branch `branch` (never forced). Returns the last commit.
    pub fn commits_and_push_branch(
        &self,
        url: &str,
        token: Option<&Secret>,
        base: &CommitSha,
        branch: &str,
        commits: &[CommitChange<'_>],
    ) -> Result<CommitSha, RepoError> {
        let mut parent = self.repo.find_commit(Oid::from_str(base.as_str())?)?;
        let sig = Signature::now(COMMITTER.0, COMMITTER.1)?;
        for c in commits {
            let mut update = TreeUpdateBuilder::new();
            for (path, content) in c.files {
                match content {
                    Some(bytes) => {
                        let blob = self.repo.blob(bytes)?;
                        // Scripts keep their execute bit.
                        let mode = if path.ends_with(".sh") {
                            FileMode::BlobExecutable
                        } else {
                            FileMode::Blob
                        };
                        update.upsert(path, blob, mode);
                    }
                    None => {
                        update.remove(path);
                    }
                }
            }
            let tree_id = update.create_updated(&self.repo, &parent.tree()?)?;
            let tree = self.repo.find_tree(tree_id)?;
            let id = self
                .repo
                .commit(None, &sig, &sig, c.message, &tree, &[&parent])?;
            parent = self.repo.find_commit(id)?;
        }
        let commit = parent.id();
        let local = format!("refs/paved/requests/{branch}");
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
