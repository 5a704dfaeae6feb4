//! Pushes to the default branch. A push is governed when Paved handled a merge whose merge
//! commit is the pushed commit; GitHub sends the `push` and the `pull_request` closed
//! events in no fixed order, so a push that changes `environments/` waits up to
//! `push_grace` for its merge before it is flagged ungoverned. An ungoverned push provisions
//! nothing: it gets a failing `paved/governance` status and an audit note per environment.

use crate::audit::AuditRecord;
use crate::checks::ChangeKind;
use crate::forge::client::{NewStatus, StatusState};
use crate::ids::{CommitSha, DeliveryId, RepoName};
use crate::repo::Mirror;
use crate::worker::{Installation, Repository, WorkError, Worker};
use serde::Deserialize;
use std::time::Duration;

pub const GOVERNANCE_CONTEXT: &str = "paved/governance";

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
pub struct Pusher {
    #[serde(default)]
    pub name: String,
}

impl Worker {
    pub(crate) async fn handle_push(
        &self,
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
        if self.store.merge_of(&repo, &after).await?.is_some() {
            return Ok(());
        }
        let branch = crate::worker::valid_branch(&ev.repository.default_branch)?;
        if ev.git_ref != format!("refs/heads/{branch}") {
            return Ok(());
        }
        let touched = self
            .pushed_environment_changes(&repo, ev, &branch, &after)
            .await?;
        if touched.is_empty() {
            return Ok(());
        }
        // Wait for the merge event that may explain this push.
        let waited = chrono::Utc::now().timestamp_millis() - received_at_ms;
        let grace = i64::try_from(self.config.push_grace.as_millis()).unwrap_or(i64::MAX);
        if waited < grace {
            let left = Duration::from_millis(u64::try_from(grace - waited).unwrap_or(0));
            return Err(WorkError::NotYet {
                why: format!("waiting for the merge event of {}", after.short()),
                after: left.clamp(Duration::from_millis(200), Duration::from_secs(30)),
            });
        }
        if self.store.merge_of(&repo, &after).await?.is_some() {
            return Ok(());
        }

        tracing::warn!(repo = %repo, commit = %after, "ungoverned change to environments/");
        let gh = self.forge.client(ev.installation.map(|i| i.id))?;
        let pusher = ev
            .pusher
            .as_ref()
            .map(|p| p.name.clone())
            .filter(|n| !n.is_empty());
        gh.create_status(
            &repo,
            &after,
            &NewStatus {
                state: StatusState::Failure,
                context: GOVERNANCE_CONTEXT.into(),
                description: format!(
                    "{} environment manifest(s) changed without a pull request; nothing provisioned",
                    touched.len()
                ),
                target_url: Some(format!(
                    "{}/api/v1/deliveries/{delivery}",
                    self.public_url()
                )),
            },
        )
        .await?;

        // The audit trail: one record per touched environment, on the pushed commit.
        let mut text = String::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (path, change) in &touched {
            let Ok(mp) = crate::manifest::names::parse_manifest_path(path) else {
                continue;
            };
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&crate::audit::render(&AuditRecord {
                environment: mp.name.clone(),
                team: mp.team.clone(),
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
                    "{path} {change} by a direct push to {branch}; nothing was provisioned"
                )),
                attempt: None,
            }));
        }
        if text.is_empty() {
            return Ok(());
        }
        let lock = self.repo_lock(&repo);
        let _held = lock.lock().await;
        let url = self.config.clone_url(&repo, &ev.repository.clone_url);
        let token = self.forge.git_token(ev.installation.map(|i| i.id)).await?;
        let data_dir = self.config.data_dir.clone();
        crate::worker::blocking(move || -> Result<(), WorkError> {
            let mirror = Mirror::open(&data_dir, &repo)?;
            mirror.append_note(&url, token.as_ref(), &after, &text)?;
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Manifests the push changed (path, "added" | "modified" | "deleted").
    async fn pushed_environment_changes(
        &self,
        repo: &RepoName,
        ev: &PushEvent,
        branch: &str,
        after: &CommitSha,
    ) -> Result<Vec<(String, &'static str)>, WorkError> {
        let lock = self.repo_lock(repo);
        let _held = lock.lock().await;
        let data_dir = self.config.data_dir.clone();
        let url = self.config.clone_url(repo, &ev.repository.clone_url);
        let token = self.forge.git_token(ev.installation.map(|i| i.id)).await?;
        let repo = repo.clone();
        let before = CommitSha::parse(&ev.before).ok();
        let after = after.clone();
        let spec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
        crate::worker::blocking(move || -> Result<Vec<(String, &'static str)>, WorkError> {
            let mirror = Mirror::open(&data_dir, &repo)?;
            if !mirror.has_commit(&after) {
                mirror.fetch(&url, &[spec], token.as_ref())?;
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
            Ok(crate::worker::environment_changes(&mirror, &base, &after)?
                .into_iter()
                .map(|c| {
                    let what = match c.kind {
                        ChangeKind::Added => "added",
                        ChangeKind::Modified => "modified",
                        ChangeKind::Deleted => "deleted",
                    };
                    (c.path, what)
                })
                .collect())
        })
        .await
    }
}
