//! Pushes to the default branch. A push is governed when its commit is the merge commit of
//! a pull request: Paved handled that merge already, or GitHub says so
//! (`GET /repos/{owner}/{repo}/commits/{sha}/pulls`). GitHub's answer decides at once; only
//! when GitHub cannot be asked does a push that changes `environments/`, `.paved/`,
//! `catalog/` or workflows wait up to `push_grace` for its merge event (the two events come
//! in no fixed order) before it is flagged ungoverned. An ungoverned push provisions
//! nothing: it gets a failing `paved/governance` status and an audit note, and every path
//! it changed is recorded as ungoverned: nothing it changed runs (SPEC 12) until a governed
//! pull request changes that path again (see `merge::governed`).

use super::{Deps, WorkError};
use crate::audit::AuditRecord;
use crate::event::{valid_branch, PushEvent};
use crate::forge::client::{NewStatus, StatusState};
use crate::ids::{CommitSha, DeliveryId, RepoName};
use crate::repo::PathStatus;
use std::time::Duration;

pub const GOVERNANCE_CONTEXT: &str = "paved/governance";

/// Handles a push to the default branch (see the module documentation).
pub async fn handle(
    deps: &Deps,
    ev: &PushEvent,
    delivery: &DeliveryId,
    received_at_ms: i64,
) -> Result<(), WorkError> {
    let p = |e: crate::ids::IdError| WorkError::Payload(e.to_string());
    let repo = RepoName::parse(&ev.repository.full_name).map_err(p)?;
    if ev.deleted || ev.after.bytes().all(|b| b == b'0') {
        return Ok(());
    }
    let after = CommitSha::parse(&ev.after).map_err(p)?;
    if deps.store.merge_of(&repo, &after).await?.is_some() {
        return Ok(());
    }
    let branch = valid_branch(&ev.repository.default_branch).map_err(WorkError::Payload)?;
    if ev.git_ref != format!("refs/heads/{branch}") {
        return Ok(());
    }
    let touched = pushed_governed_changes(deps, &repo, ev, &branch, &after).await?;
    if touched.is_empty() {
        return Ok(());
    }
    let waited = crate::clock::wall().timestamp_millis() - received_at_ms;
    // Ask GitHub which pull request the commit came from, rather than wait for the merge
    // event: a PR merged as this very commit explains the push (its merge event
    // provisions); an answer without one is a direct push, flagged at once (after one
    // second look, in case GitHub had not linked a fresh merge yet).
    let installation = ev.installation.map(|i| crate::ids::InstallationId(i.id));
    match merged_as(deps, installation, &repo, &after).await {
        Some(true) => return Ok(()),
        Some(false) if waited < SECOND_LOOK_MS => {
            return Err(WorkError::NotYet {
                why: format!(
                    "asking GitHub again which pull request {} came from",
                    after.short()
                ),
                after: Duration::from_millis(u64::try_from(SECOND_LOOK_MS - waited).unwrap_or(0)),
            });
        }
        Some(false) => {
            if deps.store.merge_of(&repo, &after).await?.is_some() {
                return Ok(());
            }
            return flag_ungoverned(deps, ev, &repo, &branch, &after, &touched, delivery).await;
        }
        // GitHub could not say: wait for the merge event that may explain this push.
        None => {}
    }
    let grace = i64::try_from(deps.config.push_grace.as_millis()).unwrap_or(i64::MAX);
    if waited < grace {
        let left = Duration::from_millis(u64::try_from(grace - waited).unwrap_or(0));
        return Err(WorkError::NotYet {
            why: format!("waiting for the merge event of {}", after.short()),
            after: left.clamp(Duration::from_millis(200), Duration::from_secs(30)),
        });
    }
    if deps.store.merge_of(&repo, &after).await?.is_some() {
        return Ok(());
    }

    flag_ungoverned(deps, ev, &repo, &branch, &after, &touched, delivery).await
}

/// How long after a push GitHub is asked a second time, when its first answer named no
/// pull request merged as the pushed commit.
const SECOND_LOOK_MS: i64 = 3_000;

/// Whether GitHub says `sha` is the merge commit of a merged pull request; `None` when
/// GitHub could not be asked.
async fn merged_as(
    deps: &Deps,
    installation: Option<crate::ids::InstallationId>,
    repo: &RepoName,
    sha: &CommitSha,
) -> Option<bool> {
    let gh = deps.forge.client(installation).ok()?;
    match gh.pulls_for_commit(repo, sha).await {
        Ok(pulls) => {
            Some(pulls.iter().any(|p| {
                p.merged_at.is_some() && p.merge_commit_sha.as_deref() == Some(sha.as_str())
            }))
        }
        Err(e) => {
            tracing::warn!(error = %e, "GitHub could not say which pull request a pushed commit came from");
            None
        }
    }
}

/// A push no merge explains: a failing `paved/governance` status on the pushed commit and
/// an audit note per touched environment; nothing is provisioned.
async fn flag_ungoverned(
    deps: &Deps,
    ev: &PushEvent,
    repo: &RepoName,
    branch: &str,
    after: &CommitSha,
    touched: &[(String, &'static str)],
    delivery: &DeliveryId,
) -> Result<(), WorkError> {
    tracing::warn!(repo = %repo, commit = %after, "ungoverned change to governed paths");
    let pusher = ev
        .pusher
        .as_ref()
        .map(|p| p.name.clone())
        .filter(|n| !n.is_empty());
    let paths: Vec<String> = touched.iter().map(|(p, _)| p.clone()).collect();
    deps.store
        .flag_ungoverned(
            repo,
            &paths,
            after.as_str(),
            pusher.as_deref().unwrap_or("unknown"),
        )
        .await?;
    let installation = ev.installation.map(|i| crate::ids::InstallationId(i.id));
    let gh = deps.forge.client(installation)?;
    let manifests = touched
        .iter()
        .filter(|(p, _)| p.starts_with("environments/"))
        .count();
    let others = touched.len() - manifests;
    let what = match (manifests, others) {
        (m, 0) => format!("{m} environment manifest(s)"),
        (0, o) => format!("{o} governance or catalog file(s)"),
        (m, o) => format!("{m} environment manifest(s) and {o} governance or catalog file(s)"),
    };
    gh.create_status(
        repo,
        after,
        &NewStatus {
            state: StatusState::Failure,
            context: GOVERNANCE_CONTEXT.into(),
            description: format!(
                "{what} changed without a pull request; nothing they changed runs until a pull request changes them"
            ),
            target_url: Some(format!(
                "{}/api/v1/deliveries/{delivery}",
                deps.public_url()
            )),
        },
    )
    .await?;
    let text = ungoverned_notes(repo, branch, touched, pusher);
    if text.is_empty() {
        return Ok(());
    }
    // Queued, as every audit note is: the outbox pushes it apart from this delivery.
    let note = deps
        .store
        .queue_note(
            crate::store::NewNote {
                repo: repo.clone(),
                clone_url: ev.repository.clone_url.clone(),
                installation,
                commit: after.clone(),
                text,
            },
            &[],
            crate::outbox::lease(deps),
        )
        .await?;
    crate::outbox::push_now(deps, note).await;
    Ok(())
}

/// The audit trail of an ungoverned push: one record per touched environment.
fn ungoverned_notes(
    repo: &RepoName,
    branch: &str,
    touched: &[(String, &'static str)],
    pusher: Option<String>,
) -> String {
    let now = crate::clock::wall().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut text = String::new();
    for (path, change) in touched {
        // A manifest's record is its environment's; any other path's is the repository's
        // governance (a name no environment can have).
        let (environment, team) = match crate::manifest::names::parse_manifest_path(path) {
            Ok(mp) => (mp.name.to_string(), mp.team.to_string()),
            Err(_) if path.starts_with("environments/") => continue,
            Err(_) => ("(governance)".to_string(), "(platform)".to_string()),
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&crate::audit::render(&AuditRecord {
            environment,
            team,
            operation: "none".into(),
            outcome: "ungoverned".into(),
            run_id: None,
            repository: repo.to_string(),
            pull_request: None,
            requester: pusher.clone(),
            merger: None,
            approvers: Vec::new(),
            checks: Vec::new(),
            governance_commit: None,
            started_at: Some(now.clone()),
            finished_at: Some(now.clone()),
            message: Some(format!(
                "{path} {change} by a direct push to {branch}; nothing it changed runs until a pull request changes it"
            )),
            attempt: None,
        }));
    }
    text
}

/// What a push can change that is governed (SPEC 12).
const GOVERNED_PREFIXES: [&str; 4] = ["environments/", ".paved/", "catalog/", "workflows/"];

/// Governed files the push changed (path, "added" | "modified" | "deleted"): manifests,
/// governance, definitions, workflows.
async fn pushed_governed_changes(
    deps: &Deps,
    repo: &RepoName,
    ev: &PushEvent,
    branch: &str,
    after: &CommitSha,
) -> Result<Vec<(String, &'static str)>, WorkError> {
    let before = CommitSha::parse(&ev.before).ok();
    let after = after.clone();
    let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let installation = ev.installation.map(|i| crate::ids::InstallationId(i.id));
    deps.repos
        .with_remote(repo, &ev.repository.clone_url, installation, move |s| {
            let mirror = s.mirror;
            if !mirror.has_commit(&after) {
                mirror.fetch(&s.url, &[spec], s.token.as_ref())?;
            }
            mirror.require_commit(&after)?;
            // A new branch (`before` is zeros) or an unknown `before`: compare with the
            // pushed commit's first parent.
            let base = match before.filter(|b| mirror.has_commit(b)) {
                Some(b) => Some(b),
                None => mirror.first_parent(&after)?,
            };
            let Some(base) = base else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for prefix in GOVERNED_PREFIXES {
                for c in mirror.changes_under(&base, &after, prefix)? {
                    let what = match c.status {
                        PathStatus::Added => "added",
                        PathStatus::Modified => "modified",
                        PathStatus::Deleted => "deleted",
                    };
                    out.push((c.path, what));
                }
            }
            Ok(out)
        })
        .await
}
