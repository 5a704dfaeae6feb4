//! The events Paved handles, parsed once from a delivery's `X-GitHub-Event` and body into
//! [`Event`]. Intake classifies with it (is it ours, under which queue key), and the worker
//! dispatches on it: the table of handled events exists here and only here.
//!
//! | event | actions | [`Event`] | queue key |
//! |---|---|---|---|
//! | `pull_request` | `opened`, `synchronize`, `reopened`, `edited` with a changed base | `PullRequest` | `owner/repo#<number>` |
//! | `pull_request` | `closed` with `merged: true` | `Merged` | `owner/repo#<number>` (after the PR's own checks) |
//! | `pull_request_review` | `submitted`, `dismissed` | `Review` | `owner/repo#<number>` |
//! | `issue_comment` | `created`, on a pull request, body starting with `/paved` | `Command` | `owner/repo#<number>` |
//! | `check_run` | `rerequested` | `Rerun` | `owner/repo#<number>` of its first pull request, else `owner/repo@<head_sha>` |
//! | `push` | to `refs/heads/<default branch>` | `Push` | `owner/repo@push` |
//!
//! A merge shares its pull request's key so it runs after every check of that PR already
//! queued. Pushes get their own key: a push waits (retrying) for the merge that explains
//! it, and must not hold back that very merge.
//!
//! Everything else (`ping`, other events, other actions, an `edited` that kept its base, a
//! PR closed unmerged, comments that are not commands) is `Ok(None)`: acknowledged, not
//! stored. The body of an event outside the table is not parsed at all. A handled event
//! whose body is not JSON, or lacks the fields Paved needs, is an error (answered 400, not
//! stored).

mod payload;
mod pr;

pub use payload::*;
pub use pr::{PrInfo, Queue};

use crate::ids::{CommitSha, RepoName};

/// The prefix of a pull request comment that is a command to Paved (`/paved recheck`).
pub const COMMAND_PREFIX: &str = "/paved";

/// What a `/paved …` comment asks for (its first word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentCommand {
    /// `/paved recheck` on a pull request: the checks again, the kept previews shown.
    Recheck,
    /// `/paved plan` on a pull request: the checks and the previews made again.
    Plan,
    /// `/paved reconcile` on a drift issue: the environment deployed again.
    Reconcile,
    /// Any other word: nothing to do (said in the log).
    Other(String),
}

impl CommentCommand {
    /// The command of the text after `/paved`.
    pub fn parse(rest: &str) -> CommentCommand {
        match rest.split_whitespace().next().unwrap_or_default() {
            "recheck" => CommentCommand::Recheck,
            "plan" => CommentCommand::Plan,
            "reconcile" => CommentCommand::Reconcile,
            _ => CommentCommand::Other(rest.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            CommentCommand::Recheck => "recheck",
            CommentCommand::Plan => "plan",
            CommentCommand::Reconcile => "reconcile",
            CommentCommand::Other(s) => s,
        }
    }
}

impl PartialEq<&str> for CommentCommand {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for CommentCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery Paved handles.
#[derive(Debug, Clone)]
pub enum Event {
    /// A pull request opened, updated, reopened, or moved to another base: run its checks.
    PullRequest(PullRequestEvent),
    /// A pull request merged: provision what it changed.
    Merged(PullRequestEvent),
    /// A review submitted or dismissed: run the checks again (approvals changed).
    Review(PullRequestEvent),
    /// `/paved <command>` commented on a pull request or an issue.
    Command {
        command: CommentCommand,
        number: u64,
        /// On a pull request (`recheck`), not an issue (`reconcile`, on a drift issue).
        on_pull_request: bool,
        /// Who commented.
        commenter: Option<String>,
        repository: Repository,
        installation: Option<Installation>,
    },
    /// "Re-run" on a check run; `number` is its pull request, when it has one.
    Rerun {
        number: Option<u64>,
        head_sha: Option<CommitSha>,
        repository: Repository,
        installation: Option<Installation>,
    },
    /// A push to the default branch.
    Push(PushEvent),
    /// GitHub's merge queue asks for the checks of its commit (`merge_group`
    /// `checks_requested`); `number` is the pull request it was made for.
    MergeGroup { number: u64, event: MergeGroupEvent },
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON for this event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payload has an invalid {0}")]
    Invalid(&'static str),
}

/// What intake keeps of a delivery Paved handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The repository the delivery is about (Paved serves only those it is configured for).
    pub repo: RepoName,
    /// The payload's `action`, if it has one (`push` has none).
    pub action: Option<String>,
    /// Deliveries with the same key are processed one at a time, in arrival order.
    pub queue_key: String,
}

/// Alias kept for the callers that classify: parsing errors.
pub type ClassifyError = EventError;

/// Decides whether Paved handles a delivery, from its `X-GitHub-Event` and body, and under
/// which queue key (see the table in the module documentation).
pub fn classify(event: &str, body: &[u8]) -> Result<Option<Classified>, EventError> {
    Ok(Event::parse(event, body)?.map(|e| e.classified()))
}

impl Event {
    /// Parses a delivery (see the module documentation for the table).
    pub fn parse(event: &str, body: &[u8]) -> Result<Option<Event>, EventError> {
        Ok(match event {
            "pull_request" => {
                let ev: PullRequestEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                match ev.action.as_str() {
                    "closed" if ev.pull_request.merged => Some(Event::Merged(ev)),
                    "opened" | "synchronize" | "reopened" => Some(Event::PullRequest(ev)),
                    // Only a change of base branch changes what the checks see.
                    "edited" if ev.changes.as_ref().and_then(|c| c.base.as_ref()).is_some() => {
                        Some(Event::PullRequest(ev))
                    }
                    _ => None,
                }
            }
            "pull_request_review" => {
                let ev: PullRequestEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                matches!(ev.action.as_str(), "submitted" | "dismissed").then_some(Event::Review(ev))
            }
            "issue_comment" => {
                let ev: IssueCommentEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                let command = ev.comment.body.as_deref().and_then(command_of);
                match command {
                    Some(command) if ev.action == "created" => Some(Event::Command {
                        command: CommentCommand::parse(&command),
                        number: ev.issue.number,
                        on_pull_request: ev.issue.pull_request.is_some(),
                        commenter: ev.comment.user.map(|u| u.login.to_string()),
                        repository: ev.repository,
                        installation: ev.installation,
                    }),
                    _ => None,
                }
            }
            "check_run" => {
                let ev: CheckRunEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                if ev.action != "rerequested" {
                    return Ok(None);
                }
                let number = ev.check_run.pull_requests.first().map(|p| p.number);
                let head_sha = match (&number, ev.check_run.head_sha.as_deref()) {
                    (_, Some(s)) => Some(
                        CommitSha::parse(s)
                            .map_err(|_| EventError::Invalid("check_run.head_sha"))?,
                    ),
                    (Some(_), None) => None,
                    (None, None) => return Err(EventError::Invalid("check_run.head_sha")),
                };
                Some(Event::Rerun {
                    number,
                    head_sha,
                    repository: ev.repository,
                    installation: ev.installation,
                })
            }
            "merge_group" => {
                let ev: MergeGroupEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                if ev.action != "checks_requested" {
                    return Ok(None);
                }
                let g = &ev.merge_group;
                for sha in [&g.head_sha, &g.base_sha] {
                    CommitSha::parse(sha).map_err(|_| EventError::Invalid("merge_group sha"))?;
                }
                payload::valid_branch(g.head_ref.trim_start_matches("refs/heads/"))
                    .map_err(|_| EventError::Invalid("merge_group.head_ref"))?;
                let number = g
                    .pull_request()
                    .ok_or(EventError::Invalid("merge_group.head_ref"))?;
                Some(Event::MergeGroup { number, event: ev })
            }
            "push" => {
                let ev: PushEvent = serde_json::from_slice(body)?;
                repo_of(&ev.repository)?;
                let default = &ev.repository.default_branch;
                (ev.git_ref.strip_prefix("refs/heads/") == Some(default.as_str()))
                    .then_some(Event::Push(ev))
            }
            _ => None,
        })
    }

    /// The repository the event is about.
    pub fn repository(&self) -> &Repository {
        match self {
            Event::PullRequest(ev) | Event::Merged(ev) | Event::Review(ev) => &ev.repository,
            Event::Command { repository, .. } | Event::Rerun { repository, .. } => repository,
            Event::Push(ev) => &ev.repository,
            Event::MergeGroup { event, .. } => &event.repository,
        }
    }

    /// The GitHub App installation the delivery came through, if any.
    pub fn installation(&self) -> Option<u64> {
        match self {
            Event::PullRequest(ev) | Event::Merged(ev) | Event::Review(ev) => {
                ev.installation.as_ref().map(|i| i.id)
            }
            Event::Command { installation, .. } | Event::Rerun { installation, .. } => {
                installation.as_ref().map(|i| i.id)
            }
            Event::Push(ev) => ev.installation.as_ref().map(|i| i.id),
            Event::MergeGroup { event, .. } => event.installation.as_ref().map(|i| i.id),
        }
    }

    /// The repository as a validated name (checked when parsed).
    pub fn repo(&self) -> RepoName {
        // Validated in `parse`; a fallback keeps this total.
        repo_of(self.repository())
            .unwrap_or_else(|_| RepoName::parse("invalid/invalid").expect("a valid name"))
    }

    /// What intake records: repository, action and queue key.
    pub fn classified(&self) -> Classified {
        let repo = self.repo();
        let (action, queue_key) = match self {
            Event::PullRequest(ev) | Event::Merged(ev) | Event::Review(ev) => (
                Some(ev.action.clone()),
                format!("{repo}#{}", ev.number.max(ev.pull_request.number)),
            ),
            Event::Command { number, .. } => (Some("created".into()), format!("{repo}#{number}")),
            Event::Rerun {
                number, head_sha, ..
            } => (
                Some("rerequested".into()),
                match (number, head_sha) {
                    (Some(n), _) => format!("{repo}#{n}"),
                    (None, Some(sha)) => format!("{repo}@{sha}"),
                    (None, None) => format!("{repo}@rerun"),
                },
            ),
            Event::Push(_) => (None, format!("{repo}@push")),
            // With the pull request's own deliveries: one at a time, in order.
            Event::MergeGroup { number, .. } => {
                (Some("checks_requested".into()), format!("{repo}#{number}"))
            }
        };
        Classified {
            repo,
            action,
            queue_key,
        }
    }
}

fn repo_of(r: &Repository) -> Result<RepoName, EventError> {
    RepoName::parse(&r.full_name).map_err(|_| EventError::Invalid("repository.full_name"))
}

/// The command of a comment (`recheck` of `/paved recheck`), when it is one: the first
/// line, starting with `/paved` and a space or its end.
fn command_of(body: &str) -> Option<String> {
    let first = body.trim_start().lines().next()?.trim_end();
    let rest = first.strip_prefix(COMMAND_PREFIX)?;
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    Some(rest.trim().to_string())
}

#[cfg(test)]
mod tests;
