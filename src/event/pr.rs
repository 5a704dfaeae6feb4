//! What the checks and provisioning need to know about a pull request, validated once.

use super::{Installation, PullRequest, PullRequestEvent, Repository};
use crate::ids::{CommitSha, InstallationId, Login, PrNumber, RepoName};

/// A pull request, as the checks and provisioning see it. Every field was validated when
/// it was made: names into newtypes, branch names as Git refs.
#[derive(Debug, Clone)]
pub struct PrInfo {
    pub repo: RepoName,
    pub number: PrNumber,
    pub head_sha: CommitSha,
    pub base_sha: CommitSha,
    pub base_ref: String,
    pub default_branch: String,
    pub clone_url: String,
    pub author: Login,
    pub installation: Option<InstallationId>,
    /// The head lives in another repository (a fork).
    pub from_fork: bool,
    /// Checks asked for by GitHub's merge queue: `head_sha` and `base_sha` are then the
    /// queue's commit and the default branch it builds on.
    pub queue: Option<Queue>,
}

/// A merge queue's commit made for a pull request (`merge_group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The queue's branch (`refs/heads/gh-readonly-queue/…`), fetched for its commit.
    pub head_ref: String,
    /// The pull request's own head: what its reviews approved.
    pub pr_head: CommitSha,
}

impl PrInfo {
    /// The commit the pull request's reviews are about: its own head (not a queue's
    /// commit made from it).
    pub fn reviewed_head(&self) -> &CommitSha {
        self.queue.as_ref().map_or(&self.head_sha, |q| &q.pr_head)
    }
}

impl PrInfo {
    /// From a `pull_request` (or `pull_request_review`) payload. The error says which field
    /// is unusable.
    pub fn from_event(ev: &PullRequestEvent) -> Result<PrInfo, String> {
        let p = |e: crate::ids::IdError| e.to_string();
        let repo = RepoName::parse(&ev.repository.full_name).map_err(p)?;
        let pr = &ev.pull_request;
        // Fail closed: a head repository GitHub no longer names (`null`: the fork was
        // deleted) is a fork too, so nothing it wrote is ever run.
        let from_fork = pr
            .head
            .repo
            .as_ref()
            .is_none_or(|r| !r.full_name.eq_ignore_ascii_case(&ev.repository.full_name));
        Ok(PrInfo {
            repo,
            number: PrNumber(ev.number.max(pr.number)),
            head_sha: CommitSha::parse(&pr.head.sha).map_err(p)?,
            base_sha: CommitSha::parse(&pr.base.sha).map_err(p)?,
            base_ref: super::valid_branch(&pr.base.ref_name)?,
            default_branch: super::valid_branch(&ev.repository.default_branch)?,
            clone_url: ev.repository.clone_url.clone(),
            author: pr.user.login.clone(),
            installation: ev.installation.map(|i| InstallationId(i.id)),
            from_fork,
            queue: None,
        })
    }

    /// From a `GET /repos/{owner}/{repo}/pulls/{number}` answer (a recheck asks the API for
    /// the PR's current head).
    pub fn from_pull(
        pull: &serde_json::Value,
        repository: &Repository,
        installation: Option<InstallationId>,
    ) -> Result<PrInfo, String> {
        let pr: PullRequest =
            serde_json::from_value(pull.clone()).map_err(|e| format!("pull request: {e}"))?;
        let ev = PullRequestEvent {
            action: "recheck".into(),
            number: pr.number,
            pull_request: pr,
            repository: repository.clone(),
            installation: installation.map(|id| Installation { id: id.0 }),
            changes: None,
        };
        PrInfo::from_event(&ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(head_repo: serde_json::Value) -> PullRequestEvent {
        let repo = serde_json::json!({
            "full_name": "acme/environments",
            "clone_url": "https://github.com/acme/environments.git",
            "default_branch": "main"
        });
        serde_json::from_value(serde_json::json!({
            "action": "opened",
            "number": 5,
            "repository": repo,
            "pull_request": {
                "number": 5,
                "user": {"login": "octocat"},
                "head": {"ref": "x", "sha": "a".repeat(40), "repo": head_repo},
                "base": {"ref": "main", "sha": "b".repeat(40), "repo": repo},
            }
        }))
        .expect("event")
    }

    #[test]
    fn a_deleted_fork_counts_as_a_fork() {
        let same = serde_json::json!({
            "full_name": "ACME/environments",
            "clone_url": "https://github.com/acme/environments.git",
            "default_branch": "main"
        });
        let other = serde_json::json!({
            "full_name": "mallory/environments",
            "clone_url": "https://github.com/mallory/environments.git",
            "default_branch": "main"
        });
        assert!(!PrInfo::from_event(&event(same)).expect("pr").from_fork);
        assert!(PrInfo::from_event(&event(other)).expect("pr").from_fork);
        assert!(
            PrInfo::from_event(&event(serde_json::Value::Null))
                .expect("pr")
                .from_fork,
            "head.repo null (the fork was deleted) must count as a fork"
        );
    }
}
