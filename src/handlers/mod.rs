//! What each event does: one module per kind of work, each a set of functions taking
//! their dependencies explicitly ([`Deps`]), as rust-lang/bors does. The worker claims a
//! delivery, parses it into an [`crate::event::Event`] and calls one of them:
//! - [`pr`]: a pull request's checks (opened, updated, reviewed, rechecked);
//! - [`merge`]: a merge provisions what it changed (planning, then [`crate::provision`],
//!   then its verdict);
//! - [`push`]: a push to the default branch that no merge explains is flagged ungoverned;
//!
//! and [`commands`], [`queue`], [`reviews`]: `/paved` comments, merge queues, reviews.
//!
//! Dependencies point down: handlers use checks, identity, runner, store, forge and repo; nothing
//! below imports a handler.

pub mod commands;
pub mod comment;
pub mod feedback;
pub mod merge;
pub mod pr;
pub(crate) mod preview;
pub mod push;
pub mod queue;
mod reviews;

pub use reviews::{approvers_in, as_logins, reviews_of};

use crate::checks::{Change, ChangeKind};
use crate::identity::{TeamSnapshot, WithTeams};
use crate::ids::CommitSha;
use crate::repo::{Mirror, PathStatus, RepoError};
use crate::work::{Deps, Target, WorkError};

/// The status description for a change whose evaluation panicked.
pub const INTERNAL_ERROR: &str =
    "internal error while evaluating this change; nothing else happened (see Paved's log)";

/// Paths under `.paved/` and `catalog/` that differ from `from` to `to`.
pub fn governance_changes(
    mirror: &Mirror,
    from: &CommitSha,
    to: &CommitSha,
) -> Result<Vec<String>, RepoError> {
    let mut out = Vec::new();
    for dir in [".paved/", "catalog/"] {
        out.extend(
            mirror
                .changes_under(from, to, dir)?
                .into_iter()
                .map(|c| c.path),
        );
    }
    Ok(out)
}

/// What changed under `environments/` from `from` to `to`.
pub fn environment_changes(
    mirror: &Mirror,
    from: &CommitSha,
    to: &CommitSha,
) -> Result<Vec<Change>, RepoError> {
    Ok(mirror
        .changes_under(from, to, "environments/")?
        .into_iter()
        .map(|c| Change {
            path: c.path,
            kind: match c.status {
                PathStatus::Added => ChangeKind::Added,
                PathStatus::Modified => ChangeKind::Modified,
                PathStatus::Deleted => ChangeKind::Deleted,
            },
        })
        .collect())
}

/// A pull request Paved opened for a request counts as the requester's: they are its
/// author for ownership and for "no self-approval" (SPEC 9). Only a PR from the repository
/// itself (Paved pushes its branches there), recorded as a request's, and only while its
/// head is the commit Paved pushed (SPEC 12): a commit someone else added to the branch is
/// judged as its real author's.
pub(crate) async fn with_requester(
    deps: &Deps,
    mut pr: crate::event::PrInfo,
) -> Result<crate::event::PrInfo, WorkError> {
    if pr.from_fork {
        return Ok(pr);
    }
    let recorded = match deps.store.request_for_pr(&pr.repo, pr.number.0).await? {
        Some(req) => Some(req),
        // Opened a moment ago: GitHub's event came before the number was written down.
        None => {
            deps.store
                .request_awaiting_pr(&pr.repo, pr.head_sha.as_str())
                .await?
        }
    };
    if let Some(req) = recorded {
        if req.head_sha.as_deref() == Some(pr.head_sha.as_str()) {
            tracing::debug!(pr = %pr.number, requester = %req.requester, "a request's pull request");
            pr.author = req.requester;
        } else {
            tracing::info!(pr = %pr.number, head = %pr.head_sha,
                "a request's pull request whose head is no longer Paved's commit: judged as its author's");
        }
    }
    Ok(pr)
}

/// Evaluates `changes` against `gov`, counting the members of the GitHub teams
/// `platform.yaml` names (as listed in `teams`) as team members, for ownership, approvals
/// and governance approvals alike. `now` is the lifecycle's clock (`expiresAt` rules).
pub(crate) fn judge(
    gov: &crate::checks::Governance,
    teams: &TeamSnapshot,
    head: &dyn crate::tree::TreeReader,
    base: &dyn crate::tree::TreeReader,
    changes: &[crate::checks::Change],
    ctx: &crate::checks::PrContext,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::checks::Report {
    match gov.platform() {
        Some(platform) => {
            let membership = WithTeams { platform, teams };
            crate::checks::evaluate_with_membership(gov, head, base, changes, ctx, now, &membership)
        }
        None => crate::checks::evaluate_at(gov, head, base, changes, ctx, now),
    }
}

/// [`crate::checks::evaluate_governance`] with GitHub teams' members counted (see [`judge`]).
pub(crate) fn judge_governance(
    gov: &crate::checks::Governance,
    teams: &TeamSnapshot,
    head: &dyn crate::tree::TreeReader,
    base: &dyn crate::tree::TreeReader,
    changed: &[String],
    ctx: &crate::checks::PrContext,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::checks::GovernanceOutcome {
    match gov.platform() {
        Some(platform) => {
            let membership = WithTeams { platform, teams };
            crate::checks::evaluate_governance_with(
                gov,
                head,
                base,
                changed,
                ctx,
                Some(&membership),
                now,
            )
        }
        None => crate::checks::evaluate_governance_with(gov, head, base, changed, ctx, None, now),
    }
}
