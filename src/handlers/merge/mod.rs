//! What a merge makes real.
//!
//! **A merge** (`pull_request` closed with `merged: true`) goes through these steps, each
//! safe to repeat, so a redelivered event or a restart mid-way never runs an operation
//! twice:
//! 1. fetch the default branch and the PR head, and check that the merge commit is on the
//!    default branch (the payload alone is never trusted) — [`plan`];
//! 2. read governance at the default branch just before the merge (never a commit carrying
//!    the PR's own changes), manifests at the merge commit, recompute the PR's checks for
//!    its final head, and check again a manifest the merge holds differently from the head;
//! 3. record one operation per touched environment (`deploy` for an added or changed
//!    manifest, `delete` for a removed one), keyed by (merge commit, environment, operation,
//!    attempt) in the store: recording it again finds the first one. An environment whose
//!    checks were not all green is recorded `refused` and never runs;
//! 4. run each operation under its environment's lock, fenced, retrying an interrupted
//!    one — [`crate::provision`];
//! 5. report each one: a GitHub deployment (in_progress → success/failure), a git note on
//!    the merge commit ([`crate::provision::report`]), then `paved/provision` on the merge
//!    commit and the PR's comment — [`report`].

mod governed;
mod plan;
mod report;

use super::{approvers_in, as_logins, comment, preview, reviews_of, Deps, Target, WorkError};
use crate::checks::{PrContext, Report};
use crate::event::{PrInfo, PullRequestEvent};
use crate::forge::client::{GitHub, NewStatus, StatusState};
use crate::ids::{CommitSha, DeliveryId, EnvName, Login};
use crate::provision::{self, adopt, run_rounds, Item, RunSource};
use crate::store::OpState;

pub const PROVISION_CONTEXT: &str = "paved/provision";

/// Environments a merge touches for which nothing runs, by why.
#[derive(Debug, Default)]
struct Quiet {
    /// Only `expiresAt` moved (an extension).
    extended: Vec<EnvName>,
    /// Their manifest went, and the environment was already deleted (after an expiry).
    gone: Vec<EnvName>,
    /// Manifest paths no environment can be named from: refused.
    unnamed: Vec<String>,
}

/// What the blocking part of a merge worked out.
struct MergePlan {
    source: RunSource,
    report: Report,
    items: Vec<Item>,
    /// Environments the merge touches without running anything.
    quiet: Quiet,
    /// Each touched environment's manifest as merged (`None`: removed or unreadable).
    manifests: Vec<(EnvName, Option<crate::manifest::Manifest>)>,
}

/// Who merged, which commit, and the PR's final reviews.
struct Merge {
    pr: PrInfo,
    merge_sha: CommitSha,
    merger: Option<Login>,
    approvers: Vec<String>,
    ctx: PrContext,
}

/// Handles a merged pull request (see the module documentation).
pub async fn handle(
    deps: &Deps,
    ev: &PullRequestEvent,
    delivery: &DeliveryId,
) -> Result<(), WorkError> {
    let pr = PrInfo::from_event(ev).map_err(WorkError::Payload)?;
    let pr = super::with_requester(deps, pr).await?;
    // A request's pull request merged: its change is on the default branch, and the
    // environment takes new requests (updates, extensions, deletion).
    if !pr.from_fork {
        if let Some(req) = deps.store.request_for_pr(&pr.repo, pr.number.0).await? {
            if req.open {
                deps.store.close_request(req.id).await?;
            }
        }
    }
    if pr.base_ref != pr.default_branch {
        tracing::info!(repo = %pr.repo, pr = %pr.number, base = %pr.base_ref,
            "merged into a branch other than the default one; nothing to provision");
        return Ok(());
    }
    let merge_sha = ev
        .pull_request
        .merge_commit_sha
        .as_deref()
        .ok_or_else(|| WorkError::Payload("merged pull request without merge_commit_sha".into()))
        .and_then(|s| CommitSha::parse(s).map_err(|e| WorkError::Payload(e.to_string())))?;
    let merger = ev.pull_request.merged_by.as_ref().map(|u| u.login.clone());
    let gh = deps.forge.client(pr.installation)?;
    // Everything the checks need, read again at merge time: the PR's final reviews too.
    let mut reviews = reviews_of(&gh, &pr).await?;
    let approvers = approvers_in(&reviews, &pr.author);
    // The previews kept for the final head, and the approvals bound to them (SPEC 14).
    let kept = preview::stored(deps, &pr.repo, pr.number.0, &pr.head_sha).await?;
    let digest = kept.as_ref().map(|(_, set)| set.digest());
    let (number, head) = (pr.number.0, &pr.head_sha);
    preview::bind_reviews(
        deps,
        &pr.repo,
        number,
        head,
        &mut reviews,
        digest.as_deref(),
    )
    .await?;
    let ctx = PrContext {
        author: pr.author.to_string(),
        approvers: approvers.clone(),
        live: deps.live_by_team(&pr.repo).await?,
        reviews,
        head_sha: Some(pr.head_sha.to_string()),
        identities: Some(deps.known_identities()),
        previews: kept.map(|(_, set)| set),
    };
    let m = Merge {
        pr,
        merge_sha,
        merger,
        approvers,
        ctx,
    };
    let plan = match plan::plan(deps, &m.pr, &m.merge_sha, &m.ctx).await {
        Err(e @ (WorkError::Panicked(_) | WorkError::TooManyManifests { .. })) => {
            return refuse(deps, &gh, &m, e).await;
        }
        other => other?,
    };
    // The merge commit is verified to be on the default branch: a push of it is explained
    // by this merge (recorded even when nothing is provisioned).
    deps.store
        .record_merge(&m.pr.repo, &m.merge_sha, m.pr.number)
        .await?;
    let Some(mut plan) = plan else {
        // An import's governance pull request: its import is done.
        adopt::mark(deps, &m.pr.repo, m.pr.number.0, &m.pr.head_sha, &mut []).await?;
        tracing::info!(repo = %m.pr.repo, pr = %m.pr.number, "merge touches no environment");
        return Ok(());
    };
    // An import's environments pull request adopts them (SPEC 15).
    adopt::mark(
        deps,
        &m.pr.repo,
        m.pr.number.0,
        &m.pr.head_sha,
        &mut plan.items,
    )
    .await?;
    provision(deps, &gh, &m, &plan, delivery).await
}

/// A bug met on this merge's input, or a merge too large to plan: provision nothing, and
/// say so on the merge commit.
async fn refuse(deps: &Deps, gh: &GitHub, m: &Merge, e: WorkError) -> Result<(), WorkError> {
    let why = match e {
        WorkError::Panicked(_) => super::INTERNAL_ERROR.to_string(),
        other => {
            // Verified on the default branch before it was counted: its push is explained
            // by this (refused) merge.
            deps.store
                .record_merge(&m.pr.repo, &m.merge_sha, m.pr.number)
                .await?;
            other.to_string()
        }
    };
    gh.create_status(
        &m.pr.repo,
        &m.merge_sha,
        &NewStatus {
            state: StatusState::Failure,
            context: PROVISION_CONTEXT.into(),
            description: format!("{why}; nothing was provisioned"),
            target_url: None,
        },
    )
    .await?;
    Ok(())
}

/// Records, runs and reports the plan's operations.
async fn provision(
    deps: &Deps,
    gh: &GitHub,
    m: &Merge,
    plan: &MergePlan,
    delivery: &DeliveryId,
) -> Result<(), WorkError> {
    let (pr, merge_sha) = (&m.pr, &m.merge_sha);
    let run_list_url = format!(
        "{}/api/v1/repos/{}/merges/{}",
        deps.public_url(),
        pr.repo,
        merge_sha
    );
    gh.create_status(
        &pr.repo,
        merge_sha,
        &NewStatus {
            state: StatusState::Pending,
            context: PROVISION_CONTEXT.into(),
            description: format!("Provisioning {} environment(s)", plan.items.len()),
            target_url: Some(run_list_url.clone()),
        },
    )
    .await?;

    // What an ungoverned push changed runs only once a governed pull request changed it
    // again (SPEC 12): this merge clears what it changed, and refuses what it would run of
    // the rest.
    let tainted = governed::still_ungoverned(deps, &pr.repo, &plan.source, merge_sha).await?;

    // Record every operation (or find the ones recorded by an earlier delivery).
    let mut first_ids = Vec::new();
    for item in &plan.items {
        let mut op = item.op.clone();
        op.merger = m.merger.clone();
        op.approvers = as_logins(&m.approvers);
        op.delivery_id = Some(delivery.clone());
        op.governance_sha = plan.source.first_parent.to_string();
        if op.state != OpState::Refused {
            if let Some(why) = governed::refusal(&tainted, &op) {
                op.state = OpState::Refused;
                op.error = Some(why);
            }
        }
        let (id, created) = deps.store.plan_operation(op).await?;
        if !created {
            tracing::info!(op = %id, env = %item.op.env_name, "operation already recorded");
        }
        first_ids.push((item.clone(), id));
    }
    // The governed input of every environment this merge may run: a refused one keeps its
    // last governed change (and its timers), whatever the merge wrote.
    let refused: Vec<EnvName> = {
        let mut refused = Vec::new();
        for (item, id) in &first_ids {
            if provision::operation(deps, *id).await?.state == OpState::Refused {
                refused.push(item.op.env_name.clone());
            }
        }
        refused
    };
    let at = Target::from(pr);
    let finals = run_rounds(deps, gh, &at, &plan.source, &first_ids).await?;
    // After the runs: a new environment's inventory row exists from its run's start.
    let code_sha = if plan.source.from_fork {
        plan.source.first_parent.clone()
    } else {
        merge_sha.clone()
    };
    let governed = plan
        .items
        .iter()
        .filter(|i| i.op.kind.deploys() && !refused.contains(&i.op.env_name))
        .map(|i| &i.op.env_name)
        .chain(&plan.quiet.extended);
    for name in governed {
        deps.store
            .set_governed(&pr.repo, name, merge_sha.as_str(), code_sha.as_str())
            .await?;
    }

    // Report everything that is not reported yet.
    provision::report::report_operations(deps, gh, &at, &finals).await?;
    for (name, manifest) in &plan.manifests {
        if !refused.contains(name) {
            crate::work::set_timers(deps, &pr.repo, name, manifest.as_ref()).await?;
        }
    }
    // The comment before the final status: `paved/provision` leaving pending is the last
    // thing a merge does, so whoever waits for it sees every report made.
    let body = report::merge_comment(
        deps.public_url(),
        pr,
        merge_sha,
        &plan.report,
        &finals,
        &plan.quiet,
    );
    comment::upsert(deps, gh, pr, &body).await?;
    let (state, description) = report::provision_verdict(&finals, &plan.quiet);
    gh.create_status(
        &pr.repo,
        merge_sha,
        &NewStatus {
            state,
            context: PROVISION_CONTEXT.into(),
            description,
            target_url: Some(run_list_url),
        },
    )
    .await?;
    Ok(())
}
