//! GitHub's merge queue (`merge_group` `checks_requested`): the checks, previews included,
//! of the queue's commit (`merge_group.head_sha`), with governance at the default branch it
//! builds on (`merge_group.base_sha`), reported on that commit, so a repository that
//! requires Paved's checks can use a merge queue. The pull request's reviews are those of
//! the pull request the commit was made for (`head_ref`'s `pr-<number>`), bound to its own
//! previews: a queue's previews that differ from the approved ones (the world moved, or a
//! pull request ahead in the same group touches environments too) make the approvals
//! stale, so `paved/approval` fails rather than pass what no one approved. Provisioning is
//! the merge's, when the queue lands it on the default branch (`pull_request` closed,
//! merged), exactly as for a merge by hand.

use super::pr::{self, Previews};
use super::{Deps, WorkError};
use crate::event::{MergeGroupEvent, PrInfo, Queue};
use crate::ids::{CommitSha, DeliveryId, InstallationId, PrNumber, RepoName};

/// Runs and reports the checks of a merge queue's commit made for pull request `number`.
pub async fn handle(
    deps: &Deps,
    number: u64,
    ev: &MergeGroupEvent,
    delivery: &DeliveryId,
) -> Result<(), WorkError> {
    let payload = |e: crate::ids::IdError| WorkError::Payload(e.to_string());
    let repo = RepoName::parse(&ev.repository.full_name).map_err(payload)?;
    let installation = ev.installation.map(|i| InstallationId(i.id));
    let gh = deps.forge.client(installation)?;
    let pull = gh.get_pull(&repo, PrNumber(number)).await?;
    let mut pr =
        PrInfo::from_pull(&pull, &ev.repository, installation).map_err(WorkError::Payload)?;
    let g = &ev.merge_group;
    pr.queue = Some(Queue {
        head_ref: g.head_ref.clone(),
        pr_head: pr.head_sha.clone(),
    });
    pr.head_sha = CommitSha::parse(&g.head_sha).map_err(payload)?;
    pr.base_sha = CommitSha::parse(&g.base_sha).map_err(payload)?;
    pr.base_ref = g.base_ref.trim_start_matches("refs/heads/").to_string();
    pr::check(deps, &pr, delivery, Previews::Make).await
}
