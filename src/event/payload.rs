//! The fields of GitHub's webhook payloads that Paved reads; serde skips the rest. Every
//! string that reaches Git or a URL is validated later, into [`crate::ids`] newtypes and by
//! [`valid_branch`].

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    /// Absent from `pull_request_review` events; `pull_request.number` is used then.
    #[serde(default)]
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    #[serde(default)]
    pub changes: Option<Changes>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Changes {
    #[serde(default)]
    pub base: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// Closed events: whether it was merged, as what, by whom.
    #[serde(default)]
    pub merged: bool,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub merged_by: Option<User>,
    pub user: User,
    pub head: GitRef,
    pub base: GitRef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    /// `null` when the head's repository (a fork) was deleted.
    #[serde(default)]
    pub repo: Option<Repository>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Repository {
    pub full_name: String,
    pub clone_url: String,
    pub default_branch: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Checked as it is read: a payload naming no GitHub login is refused whole.
    pub login: crate::ids::Login,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRunEvent {
    pub action: String,
    pub check_run: CheckRun,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    #[serde(default)]
    pub head_sha: Option<String>,
    #[serde(default)]
    pub pull_requests: Vec<Numbered>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Numbered {
    pub number: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: IssueComment,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: u64,
    /// Present (an object) when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssueComment {
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
}

/// `merge_group` (GitHub's merge queue): `checks_requested` for the queue's commit.
#[derive(Debug, Clone, Deserialize)]
pub struct MergeGroupEvent {
    pub action: String,
    pub merge_group: MergeGroup,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MergeGroup {
    /// The queue's commit: the default branch at `base_sha` with the queued pull requests.
    pub head_sha: String,
    /// `refs/heads/gh-readonly-queue/<base>/pr-<number>-<sha>`.
    pub head_ref: String,
    pub base_sha: String,
    pub base_ref: String,
}

impl MergeGroup {
    /// The pull request the queue's commit was made for, from `head_ref`
    /// (`…/pr-<number>-<sha>`).
    pub fn pull_request(&self) -> Option<u64> {
        let last = self.head_ref.rsplit('/').next()?;
        let rest = last.strip_prefix("pr-")?;
        let (number, _) = rest.split_once('-')?;
        number.parse().ok().filter(|n| *n > 0)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    #[serde(default)]
    pub pusher: Option<Pusher>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pusher {
    #[serde(default)]
    pub name: String,
}

/// Branch names go into refspecs: refuse anything Git itself would not accept as a ref.
pub fn valid_branch(name: &str) -> Result<String, String> {
    if name.is_empty()
        || name.starts_with('-')
        || name.contains("..")
        || name.contains(':')
        || name
            .bytes()
            .any(|b| b <= b' ' || b"~^?*[\\".contains(&b) || b == 0x7f)
        || !git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
    {
        return Err(format!("not a valid branch name: {name:?}"));
    }
    Ok(name.to_string())
}
