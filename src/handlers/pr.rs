//! A pull request's checks: fetch it, work out what it touches and which governance
//! applies (the default branch where the PR forked off it, never the PR's own commits),
//! post `pending`, evaluate, post the verdicts, and keep the one summary comment.

use super::feedback::{Feedback, Verdict};
use super::{approvers_in, reviews_of, Deps, WorkError, INTERNAL_ERROR};
use super::{comment, environment_changes, governance_changes, preview};
use crate::checks::{self, Change, CheckKind, Governance, PrContext, Report};
use crate::event::{Installation, PrInfo, Repository};
use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
use crate::store::NewEvaluation;
use std::sync::Arc;

/// Re-runs the checks of PR `number` at its current head, read from the API (the event
/// that asked for it does not carry the head).
pub async fn recheck(
    deps: &Deps,
    repository: &Repository,
    installation: Option<Installation>,
    number: u64,
    (delivery, previews): (&DeliveryId, Previews),
) -> Result<(), WorkError> {
    let repo =
        RepoName::parse(&repository.full_name).map_err(|e| WorkError::Payload(e.to_string()))?;
    let gh = deps
        .forge
        .client(installation.map(|i| crate::ids::InstallationId(i.id)))?;
    let pull = gh.get_pull(&repo, PrNumber(number)).await?;
    let pr = PrInfo::from_pull(
        &pull,
        repository,
        installation.map(|i| crate::ids::InstallationId(i.id)),
    )
    .map_err(WorkError::Payload)?;
    check(deps, &pr, delivery, previews).await
}

/// Runs the checks of every touched environment and reports them on the PR. A PR into a
/// branch other than the default one gets nothing; one over `checks.max_manifests` gets one
/// failing `paved/schema`; a panic while evaluating gets failing statuses saying "internal
/// error", not a retry.
pub async fn check(
    deps: &Deps,
    pr: &PrInfo,
    delivery: &DeliveryId,
    previews: Previews,
) -> Result<(), WorkError> {
    let pr = &super::with_requester(deps, pr.clone()).await?;
    if pr.base_ref != pr.default_branch {
        // Only the default branch's verdicts may land on a commit: a PR into another
        // branch, judged by that branch's rules, could otherwise turn the same head SHA
        // green for a PR into the default branch.
        tracing::info!(repo = %pr.repo, pr = %pr.number, base = %pr.base_ref,
            "pull request into a branch other than the default one: no paved/* statuses");
        return Ok(());
    }
    let gh = deps.forge.client(pr.installation)?;
    let mut feedback = Feedback::new(&gh, pr, deps.config.report_mode());
    // The contexts a panic is reported on: the usual three until the planned ones are known.
    let mut contexts: Vec<&'static str> = vec![
        CheckKind::Schema.context(),
        CheckKind::Policy.context(),
        CheckKind::Quota.context(),
    ];
    let delivery_url = format!("{}/api/v1/deliveries/{delivery}", deps.public_url());
    match run(deps, &mut feedback, pr, (delivery, previews), &mut contexts).await {
        Err(e @ WorkError::TooManyManifests { .. }) => {
            let why = format!("{e}: split it into smaller pull requests");
            feedback
                .finish(failed(CheckKind::Schema.context(), &why, &delivery_url))
                .await?;
            let body = format!(
                "{}\n### Paved checks for `{}`\n\n❌ {why}. Nothing was evaluated, and merging it provisions nothing.\n",
                comment::COMMENT_MARKER,
                pr.head_sha.short()
            );
            comment::upsert(deps, &gh, pr, &body).await
        }
        Err(WorkError::Panicked(_)) => {
            for context in contexts {
                feedback
                    .finish(failed(context, INTERNAL_ERROR, &delivery_url))
                    .await?;
            }
            Ok(())
        }
        other => other,
    }
}

/// A failing verdict with nothing behind it but `why`.
fn failed<'v>(context: &'v str, why: &'v str, url: &'v str) -> Verdict<'v> {
    Verdict {
        context,
        pass: false,
        description: why,
        url,
        findings: Vec::new(),
        text: None,
        neutral: false,
    }
}

/// What [`prepare`] worked out for a PR.
#[derive(Clone)]
struct Prepared {
    governance: Arc<Governance>,
    changes: Vec<Change>,
    /// Paths under `.paved/` and `catalog/` the PR changes (`paved/governance` runs then).
    governance_changes: Vec<String>,
    planned: Vec<CheckKind>,
    default_sha: CommitSha,
    /// Where governance was read: the merge base of the head and the default branch.
    governance_sha: CommitSha,
}

async fn run(
    deps: &Deps,
    feedback: &mut Feedback<'_>,
    pr: &PrInfo,
    (delivery, previews): (&DeliveryId, Previews),
    contexts: &mut Vec<&'static str>,
) -> Result<(), WorkError> {
    let Some(prep) = prepare(deps, pr).await? else {
        tracing::info!(repo = %pr.repo, pr = %pr.number, "no manifest touched; nothing to report");
        return Ok(());
    };
    let pending_url = format!("{}/api/v1/deliveries/{}", deps.public_url(), delivery);
    let mut pending: Vec<&'static str> = prep.planned.iter().map(|c| c.context()).collect();
    if !prep.governance_changes.is_empty() {
        pending.push(checks::GOVERNANCE_CONTEXT);
    }
    *contexts = pending.clone();
    for context in pending {
        let why = "Paved is checking this change";
        feedback.pending(context, why, &pending_url).await?;
    }

    let gh = feedback.client();
    let number = pr.number.0;
    let mut reviews = reviews_of(gh, pr).await?;
    // An approval Paved sees for the first time was given on the previews shown until now.
    let reviewed = pr.reviewed_head();
    let kept = preview::stored(deps, &pr.repo, number, reviewed).await?;
    let shown = kept.as_ref().map(|(_, set)| set.digest());
    preview::bind_reviews(
        deps,
        &pr.repo,
        number,
        reviewed,
        &mut reviews,
        shown.as_deref(),
    )
    .await?;
    let mut ctx = PrContext {
        author: pr.author.to_string(),
        approvers: approvers_in(&reviews, &pr.author),
        live: deps.live_by_team(&pr.repo).await?,
        reviews,
        head_sha: Some(reviewed.to_string()),
        identities: Some(deps.known_identities()),
        previews: None,
    };
    let report = evaluate(deps, pr, &prep, ctx.clone()).await?;
    let run_id = deps
        .store
        .insert_evaluation(NewEvaluation {
            repo: pr.repo.clone(),
            pr: pr.number,
            head_sha: pr.head_sha.clone(),
            base_sha: pr.base_sha.clone(),
            delivery_id: delivery.clone(),
            report: to_json(&report)?,
        })
        .await?;
    let run_url = format!("{}/api/v1/runs/{run_id}", deps.public_url());
    // With previews, `paved/plan` and `paved/approval` (bound to the previews) wait for
    // them; the other checks are posted now.
    let held: &[CheckKind] = if prep.planned.contains(&CheckKind::Plan) {
        &[CheckKind::Plan, CheckKind::Approval]
    } else {
        &[]
    };
    post(
        deps,
        feedback,
        &report,
        &run_url,
        |c| !held.contains(&c),
        None,
    )
    .await?;
    // A merge queue's commit gets statuses; the pull request's comment stays its own.
    if held.is_empty() {
        if pr.queue.is_some() {
            return Ok(());
        }
        let body = comment::summary(pr, &report, &run_url, &prep.governance_sha, None);
        return comment::upsert(deps, gh, pr, &body).await;
    }

    let at = preview::PreviewAt {
        repo: pr.repo.clone(),
        pr: number,
        head_sha: pr.head_sha.clone(),
        governance_sha: prep.governance_sha.clone(),
        default_sha: prep.default_sha.clone(),
        requester: pr.author.clone(),
        approvers: super::as_logins(&ctx.approvers),
    };
    let set = match (previews, kept) {
        (Previews::Keep, Some((_, set))) => set,
        _ => {
            let made = preview::make(deps, &at, &prep.governance, &report.environments).await?;
            // A queue's previews are shown, never kept: the approved ones stay the PR's.
            if pr.queue.is_none() {
                preview::keep(deps, &at, &made).await?;
            }
            made.set
        }
    };
    let digest = set.digest();
    if pr.queue.is_none() {
        preview::bind_reviews(
            deps,
            &pr.repo,
            number,
            reviewed,
            &mut ctx.reviews,
            Some(&digest),
        )
        .await?;
    }
    ctx.previews = Some(set.clone());
    let report = evaluate(deps, pr, &prep, ctx).await?;
    deps.store
        .update_evaluation_report(run_id, to_json(&report)?)
        .await?;
    post(
        deps,
        feedback,
        &report,
        &run_url,
        |c| held.contains(&c),
        Some(&set),
    )
    .await?;
    if pr.queue.is_some() {
        return Ok(());
    }
    let body = comment::summary(pr, &report, &run_url, &prep.governance_sha, Some(&set));
    comment::upsert(deps, gh, pr, &body).await
}

/// Whether a check of a pull request makes its previews again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previews {
    /// A push, a reopen, `/paved plan`, "Re-run": the world may have moved.
    Make,
    /// A review, `/paved recheck`: the previews kept for this head are shown again.
    Keep,
}

fn to_json(report: &Report) -> Result<serde_json::Value, WorkError> {
    serde_json::to_value(report).map_err(|e| WorkError::Internal(e.to_string()))
}

/// Posts the report's verdicts of the checks `which` selects (`paved/governance` with
/// those that are not held). `paved/plan` carries the preview as its check run's text.
async fn post(
    deps: &Deps,
    feedback: &mut Feedback<'_>,
    report: &Report,
    run_url: &str,
    which: impl Fn(CheckKind) -> bool,
    set: Option<&crate::preview::PreviewSet>,
) -> Result<(), WorkError> {
    for v in report.contexts() {
        let selected = match v.check {
            Some(c) => which(c),
            None => which(CheckKind::Schema),
        };
        if !selected {
            continue;
        }
        deps.metrics.verdict(
            v.check.map_or(checks::GOVERNANCE_CONTEXT, |c| c.context()),
            if v.verdict.is_pass() { "pass" } else { "fail" },
        );
        let is_plan = v.check == Some(CheckKind::Plan);
        let preview = set.filter(|_| is_plan);
        let description = match preview {
            Some(set) if v.verdict.is_pass() => {
                crate::checks::truncate_line(&crate::preview::render::description(set))
            }
            _ => v.description.clone(),
        };
        feedback
            .finish(Verdict {
                context: &v.context,
                pass: v.verdict.is_pass(),
                description: &description,
                url: run_url,
                findings: report.findings(&v),
                text: preview.map(crate::preview::render::check_text),
                neutral: preview.is_some_and(crate::preview::render::is_neutral),
            })
            .await?;
    }
    Ok(())
}

/// Evaluates the PR's head against the prepared governance, on a blocking thread.
async fn evaluate(
    deps: &Deps,
    pr: &PrInfo,
    prep: &Prepared,
    ctx: PrContext,
) -> Result<Report, WorkError> {
    let prep = prep.clone();
    let head_sha = pr.head_sha.clone();
    if let Some(platform) = prep.governance.platform() {
        // Lists the GitHub teams this governance names (cached), for the snapshot below.
        deps.directory
            .github_members(pr.installation, platform)
            .await;
    }
    let teams = deps.directory.teams_snapshot();
    let now = deps.config.lifecycle.clock.now();
    deps.repos
        .read(&pr.repo, move |mirror| -> Result<Report, WorkError> {
            let head = mirror.tree_at(&head_sha)?;
            let default = mirror.tree_at(&prep.default_sha)?;
            let mut report = super::judge(
                &prep.governance,
                &teams,
                &head,
                &default,
                &prep.changes,
                &ctx,
                now,
            );
            if !prep.governance_changes.is_empty() {
                report.governance = Some(super::judge_governance(
                    &prep.governance,
                    &teams,
                    &head,
                    &default,
                    &prep.governance_changes,
                    &ctx,
                    now,
                ));
            }
            Ok(report)
        })
        .await
}

/// Fetches the PR into the mirror and works out what it touches and which governance
/// applies. `None`: it touches no manifest and no governance file.
async fn prepare(deps: &Deps, pr: &PrInfo) -> Result<Option<Prepared>, WorkError> {
    let max_manifests = deps.config.checks.max_manifests;
    let cache = deps.governance.clone();
    let pr2 = pr.clone();
    deps.repos
        .with_remote(&pr.repo, &pr.clone_url, pr.installation, move |s| {
            let pr = pr2;
            fetch(&s, &pr)?;
            let mirror = &s.mirror;
            let default_sha = default_tip(mirror, &pr)?;
            // Governance is the default branch's, where the PR forked off it: never a
            // commit of the PR's own, and never another branch's.
            // A merge queue's commit is judged by the default branch it builds on.
            let merge_base = match &pr.queue {
                Some(_) => pr.base_sha.clone(),
                None => mirror.merge_base(&default_sha, &pr.head_sha)?,
            };
            let changes = environment_changes(mirror, &merge_base, &pr.head_sha)?;
            if changes.len() > max_manifests {
                return Err(WorkError::TooManyManifests {
                    count: changes.len(),
                    max: max_manifests,
                });
            }
            let governance_changes = governance_changes(mirror, &merge_base, &pr.head_sha)?;
            if changes.is_empty() && governance_changes.is_empty() {
                return Ok(None);
            }
            let key = format!(
                "{}:{}",
                mirror
                    .subtree_id(&merge_base, ".paved")?
                    .unwrap_or_default(),
                mirror
                    .subtree_id(&merge_base, "catalog")?
                    .unwrap_or_default()
            );
            let governance = match cache.get(&key) {
                Some(g) => g,
                None => {
                    let g = Arc::new(Governance::load(&mirror.tree_at(&merge_base)?));
                    cache.insert(key, g.clone());
                    g
                }
            };
            let head = mirror.tree_at(&pr.head_sha)?;
            let default_tree = mirror.tree_at(&default_sha)?;
            let planned =
                checks::planned_checks_with_branch(&governance, &head, &default_tree, &changes);
            Ok(Some(Prepared {
                governance,
                changes,
                governance_changes,
                planned,
                default_sha,
                governance_sha: merge_base,
            }))
        })
        .await
}

/// Fetches the PR's head, its base branch and the default branch (only the branches when
/// both commits are here already: a redelivery or a recheck; the default branch is still
/// refreshed, the quota counts from it).
fn fetch(s: &crate::repo::Session, pr: &PrInfo) -> Result<(), WorkError> {
    let mirror = &s.mirror;
    let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
    if let Some(q) = &pr.queue {
        // The merge queue's commit lives on its own branch.
        let specs = [
            format!("+{}:refs/paved/queue/{}", q.head_ref, pr.number),
            format!("+refs/heads/{}:{default_ref}", pr.default_branch),
        ];
        mirror.fetch(&s.url, &specs, s.token.as_ref())?;
        mirror.require_commit(&pr.head_sha)?;
        mirror.require_commit(&pr.base_sha)?;
        return Ok(());
    }
    let mut specs = vec![
        format!(
            "+refs/pull/{}/head:refs/paved/pull/{}",
            pr.number, pr.number
        ),
        format!(
            "+refs/heads/{}:refs/remotes/origin/{}",
            pr.base_ref, pr.base_ref
        ),
    ];
    if pr.default_branch != pr.base_ref {
        specs.push(format!("+refs/heads/{}:{default_ref}", pr.default_branch));
    }
    let have = mirror.has_commit(&pr.head_sha)
        && mirror.has_commit(&pr.base_sha)
        && mirror.resolve(&default_ref).is_some();
    let specs = if have { &specs[1..] } else { &specs[..] };
    mirror.fetch(&s.url, specs, s.token.as_ref())?;
    mirror.require_commit(&pr.head_sha)?;
    mirror.require_commit(&pr.base_sha)?;
    Ok(())
}

/// The default branch's tip, as fetched.
fn default_tip(mirror: &crate::repo::Mirror, pr: &PrInfo) -> Result<CommitSha, WorkError> {
    let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
    mirror
        .resolve(&default_ref)
        .ok_or_else(|| WorkError::Internal(format!("{default_ref} missing after fetch")))
}
