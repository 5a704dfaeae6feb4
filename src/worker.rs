//! The worker: takes stored deliveries one by one (in order per pull request, different
//! pull requests in parallel), does what each event asks, and marks it done, failed, or
//! due again later. Everything that talks to Git runs on blocking threads.

use crate::checks::{self, Change, ChangeKind, Governance, PrContext, Report};
use crate::config::Config;
use crate::forge::client::{Forge, ForgeError, GitHub, NewStatus, StatusState};
use crate::ids::{CommitSha, DeliveryId, PrNumber, RepoName};
use crate::repo::{Mirror, PathStatus, RepoError};
use crate::store::{Delivery, NewRun, Outcome, Store, StoreError};
use futures::FutureExt as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// The marker that identifies Paved's summary comment among a PR's comments.
pub const COMMENT_MARKER: &str = "<!-- paved:summary -->";

/// How many times a delivery is tried before it is marked failed for good. With the
/// backoff below (0.5 s doubling, capped at 5 min) that rides out about 25 minutes of
/// GitHub or Git trouble.
pub const MAX_ATTEMPTS: u32 = 15;

/// A delivery claimed more often than this is failed without processing it again (it
/// includes the re-claims of a push waiting for its merge, which are many but bounded).
pub const MAX_CLAIMS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("payload: {0}")]
    Payload(String),
    #[error("internal: {0}")]
    Internal(String),
    /// Code panicked on some input (a bug). Never retried: the same input would panic
    /// again. A PR's checks report it as a failing status instead.
    #[error("internal error: {0}")]
    Panicked(String),
    /// The PR touches more manifests than `checks.max_manifests`: nothing is evaluated or
    /// provisioned; it gets one failing status saying so.
    #[error("{count} environment manifests changed; at most {max} per pull request (checks.max_manifests)")]
    TooManyManifests { count: usize, max: usize },
    /// Not an error: the delivery must wait (a push waiting for its merge event). It is
    /// retried after `after` however many attempts it took, because what it waits for is
    /// bounded in time by the handler itself.
    #[error("{why}")]
    NotYet { why: String, after: Duration },
}

/// Runs blocking work (Git, parsing, evaluating) on a blocking thread. A panic there
/// becomes [`WorkError::Panicked`] with its message, logged, rather than a retryable error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkError> + Send + 'static,
) -> Result<T, WorkError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let why = panic_text(e.into_panic().as_ref());
            tracing::error!(panic = %why, "internal error: a panic while working on a delivery");
            Err(WorkError::Panicked(why))
        }
        Err(e) => Err(WorkError::Internal(e.to_string())),
    }
}

/// The message of a panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// The status description for a change whose evaluation panicked.
pub const INTERNAL_ERROR: &str =
    "internal error while evaluating this change; nothing else happened (see Paved's log)";

impl WorkError {
    fn is_transient(&self) -> bool {
        match self {
            WorkError::Forge(e) => e.is_transient(),
            WorkError::Repo(e) => e.is_transient(),
            WorkError::Store(_) => true,
            WorkError::Payload(_) => false,
            WorkError::Internal(_) => true,
            WorkError::Panicked(_) => false,
            WorkError::TooManyManifests { .. } => false,
            WorkError::NotYet { .. } => true,
        }
    }
}

/// What the worker needs, passed explicitly (no globals), so tests can build one.
pub struct Worker {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub forge: Forge,
    pub wake: Arc<Notify>,
    /// Governance compiled per (`.paved/` tree, `catalog/` tree): policies are compiled once
    /// and reused by every PR whose base has the same governance.
    governance: Mutex<HashMap<String, Arc<Governance>>>,
    /// One fetch at a time per mirror: git2 takes ref locks that concurrent fetches into the
    /// same repository would fight over.
    repo_locks: Mutex<HashMap<RepoName, Arc<tokio::sync::Mutex<()>>>>,
    /// Provisioning scripts running at once, across all merges (`runner.concurrency`).
    pub(crate) runner_slots: Semaphore,
    /// This process's name as a lock holder (unique per start).
    pub(crate) instance: String,
}

impl Worker {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        forge: Forge,
        wake: Arc<Notify>,
    ) -> Self {
        Worker {
            store,
            forge,
            wake,
            governance: Mutex::new(HashMap::new()),
            repo_locks: Mutex::new(HashMap::new()),
            runner_slots: Semaphore::new(config.runner.concurrency),
            instance: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            config,
        }
    }

    /// Runs until `stop` is notified: resumes what a previous process left running, then
    /// claims deliveries as they arrive (woken by intake) or fall due (polled each second).
    pub async fn run(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(), StoreError> {
        // Operations whose process died with the previous server: kill their orphaned
        // scripts (only if still ours), and free their locks. The merge deliveries they
        // belong to are re-queued just below, and report and re-run them.
        for op in self.store.interrupt_running_operations().await? {
            let killed = op
                .pid
                .is_some_and(|pid| crate::runner::kill_orphan(pid, op.id));
            tracing::warn!(op = op.id, env = %op.op.env_name, killed, "operation interrupted by a restart");
        }
        self.store.release_all_locks().await?;
        let resumed = self.store.requeue_interrupted().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resuming deliveries interrupted by a restart");
        }
        let permits = Arc::new(Semaphore::new(self.config.workers));
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.map_err(|_| StoreError::Closed)?,
                _ = stop.cancelled() => break,
            };
            let claimed = match self.store.claim_delivery().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "claiming a delivery failed");
                    None
                }
            };
            match claimed {
                Some(delivery) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.process(delivery).await;
                        drop(permit);
                        // A finished delivery may unblock the next one of its pull request.
                        me.wake.notify_one();
                    });
                }
                None => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => break,
                    }
                }
            }
        }
        // Let running deliveries finish so a clean stop leaves nothing half done.
        let _ = permits.acquire_many(self.config.workers as u32).await;
        Ok(())
    }

    async fn process(&self, d: Delivery) {
        use tracing::Instrument;
        let span = tracing::info_span!("delivery", id = %d.id, event = %d.event);
        self.process_in_span(d).instrument(span).await
    }

    async fn process_in_span(&self, d: Delivery) {
        if d.attempts > MAX_CLAIMS {
            // Claimed again and again without an outcome: each time, the process working
            // on it died (a crash loop, or replicas losing their leases). Stop here.
            let error = format!("gave up: claimed {} times without finishing", d.attempts);
            tracing::error!(%error, "delivery failed");
            if let Err(e) = self
                .store
                .finish_delivery(&d.id, Outcome::Failed { error })
                .await
            {
                tracing::error!(error = %e, "could not record the outcome");
            }
            return;
        }
        // With a shared database the claim is a lease: keep it while working, so another
        // replica does not take the delivery over from a live one.
        let renew = {
            let store = self.store.clone();
            let id = d.id.clone();
            let every = self.config.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match store.renew_delivery_lease(&id).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(delivery = %id, "lost the delivery's lease; another replica took it over");
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "renewing a delivery lease failed"),
                    }
                }
            })
        };
        let result = match std::panic::AssertUnwindSafe(self.handle(&d))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(payload) => {
                let why = panic_text(payload.as_ref());
                tracing::error!(panic = %why, "internal error: a panic while handling a delivery");
                Err(WorkError::Panicked(why))
            }
        };
        renew.abort();
        let outcome = match result {
            Ok(()) => Outcome::Done,
            Err(WorkError::NotYet { why, after }) => {
                tracing::debug!(%why, ?after, "not yet");
                Outcome::Retry { error: why, after }
            }
            // GitHub said when to come back: then, however many attempts it took.
            Err(WorkError::Forge(e @ ForgeError::RateLimited { .. })) => {
                let after = match &e {
                    ForgeError::RateLimited { after, .. } => *after,
                    _ => Duration::from_secs(60),
                };
                tracing::warn!(error = %e, ?after, "rate limited; will retry when it resets");
                Outcome::Retry {
                    error: e.to_string(),
                    after: after + Duration::from_secs(1),
                }
            }
            Err(e) if e.is_transient() && d.attempts < MAX_ATTEMPTS => {
                let after = Duration::from_millis(500u64.saturating_mul(1 << d.attempts.min(10)))
                    .min(Duration::from_secs(300));
                tracing::warn!(error = %e, attempt = d.attempts, ?after, "will retry");
                Outcome::Retry {
                    error: e.to_string(),
                    after,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "delivery failed");
                Outcome::Failed {
                    error: e.to_string(),
                }
            }
        };
        if let Err(e) = self.store.finish_delivery(&d.id, outcome).await {
            // The delivery stays running; the next start re-queues it.
            tracing::error!(error = %e, "could not record the outcome");
        }
    }

    async fn handle(&self, d: &Delivery) -> Result<(), WorkError> {
        match (d.event.as_str(), d.action.as_deref()) {
            ("pull_request", Some("opened" | "synchronize" | "reopened" | "edited")) => {
                let ev: PullRequestEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                if ev.action == "edited"
                    && ev.changes.as_ref().and_then(|c| c.base.as_ref()).is_none()
                {
                    // Only a change of base branch changes what the checks see.
                    return Ok(());
                }
                let pr = PrInfo::from_event(&ev)?;
                self.check_pull_request(&pr, &d.id).await
            }
            ("pull_request", Some("closed")) => {
                let ev: PullRequestEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                if !ev.pull_request.merged {
                    return Ok(());
                }
                self.handle_merge(&ev, &d.id).await
            }
            ("push", _) => {
                let ev: crate::provision::PushEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                self.handle_push(&ev, &d.id, d.received_at_ms).await
            }
            // Approvals are not a check yet, but a review is a natural moment to re-run the
            // checks of the PR's current head (the approval check joins them later).
            ("pull_request_review", Some("submitted" | "dismissed")) => {
                let ev: PullRequestEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                let pr = PrInfo::from_event(&ev)?;
                self.check_pull_request(&pr, &d.id).await
            }
            ("check_run", Some("rerequested")) => {
                let ev: CheckRunEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                let Some(number) = ev.check_run.pull_requests.first().map(|p| p.number) else {
                    tracing::info!("check run has no pull request; nothing to re-run");
                    return Ok(());
                };
                self.recheck(&ev.repository, ev.installation, number, &d.id)
                    .await
            }
            ("issue_comment", _) => {
                let ev: IssueCommentEvent = serde_json::from_slice(&d.body)
                    .map_err(|e| WorkError::Payload(e.to_string()))?;
                if ev.issue.pull_request.is_none() || !is_recheck(&ev.comment.body) {
                    return Ok(());
                }
                self.recheck(&ev.repository, ev.installation, ev.issue.number, &d.id)
                    .await
            }
            (event, action) => Err(WorkError::Payload(format!(
                "no handler for {event}/{}",
                action.unwrap_or("-")
            ))),
        }
    }

    /// Re-runs the checks of PR `number` at its current head, read from the API (the event
    /// that asked for it does not carry the head).
    async fn recheck(
        &self,
        repository: &Repository,
        installation: Option<Installation>,
        number: u64,
        delivery: &DeliveryId,
    ) -> Result<(), WorkError> {
        let repo = RepoName::parse(&repository.full_name)
            .map_err(|e| WorkError::Payload(e.to_string()))?;
        let gh = self.forge.client(installation.map(|i| i.id))?;
        let pull = gh.get_pull(&repo, PrNumber(number)).await?;
        let pr = PrInfo::from_pull(&pull, repository, installation.map(|i| i.id))?;
        self.check_pull_request(&pr, delivery).await
    }

    pub(crate) fn public_url(&self) -> &str {
        self.config.public_url.as_deref().unwrap_or("")
    }

    pub(crate) fn repo_lock(&self, repo: &RepoName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.repo_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(repo.clone()).or_default().clone()
    }

    /// Fetches the PR into the mirror and works out what it touches and which governance
    /// applies (read at the base commit, never the head).
    async fn prepare(&self, pr: &PrInfo) -> Result<Option<Prepared>, WorkError> {
        let lock = self.repo_lock(&pr.repo);
        let _held = lock.lock().await;
        let data_dir = self.config.data_dir.clone();
        let url = self.config.clone_url(&pr.repo, &pr.clone_url);
        let token = self.forge.git_token(pr.installation).await?;
        let max_manifests = self.config.checks.max_manifests;
        let pr2 = pr.clone();
        let cache: HashMap<String, Arc<Governance>> = self
            .governance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let prepared = blocking(
            move || -> Result<Option<(Prepared, Option<String>)>, WorkError> {
                let pr = pr2;
                let started = std::time::Instant::now();
                let mirror = Mirror::open(&data_dir, &pr.repo)?;
                let default_ref = format!("refs/remotes/origin/{}", pr.default_branch);
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
                if !(mirror.has_commit(&pr.head_sha) && mirror.has_commit(&pr.base_sha))
                    || mirror.resolve(&default_ref).is_none()
                {
                    mirror.fetch(&url, &specs, token.as_ref())?;
                } else {
                    // Both commits are here already (a redelivery or a recheck); still refresh
                    // the default branch, which the quota counts from.
                    mirror.fetch(&url, &specs[1..], token.as_ref())?;
                }
                mirror.require_commit(&pr.head_sha)?;
                mirror.require_commit(&pr.base_sha)?;
                let fetched = started.elapsed();
                let default_sha = mirror.resolve(&default_ref).ok_or_else(|| {
                    WorkError::Internal(format!("{default_ref} missing after fetch"))
                })?;
                // Governance is the default branch's, where the PR forked off it: never a
                // commit of the PR's own, and never another branch's (whose relaxed rules
                // would post green statuses on the same head SHA).
                let merge_base = mirror.merge_base(&default_sha, &pr.head_sha)?;
                let changes = environment_changes(&mirror, &merge_base, &pr.head_sha)?;
                if changes.len() > max_manifests {
                    return Err(WorkError::TooManyManifests {
                        count: changes.len(),
                        max: max_manifests,
                    });
                }
                let governance_changes = governance_changes(&mirror, &merge_base, &pr.head_sha)?;
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
                let (governance, new_key) = match cache.get(&key) {
                    Some(g) => (g.clone(), None),
                    None => {
                        let base = mirror.tree_at(&merge_base)?;
                        (Arc::new(Governance::load(&base)), Some(key))
                    }
                };
                let head = mirror.tree_at(&pr.head_sha)?;
                let default_tree = mirror.tree_at(&default_sha)?;
                let planned =
                    checks::planned_checks_with_branch(&governance, &head, &default_tree, &changes);
                tracing::debug!(?fetched, total = ?started.elapsed(), "prepared");
                Ok(Some((
                    Prepared {
                        mirror_path: mirror.path().to_path_buf(),
                        governance,
                        changes,
                        governance_changes,
                        planned,
                        default_sha,
                        governance_sha: merge_base,
                    },
                    new_key,
                )))
            },
        )
        .await?;
        Ok(prepared.map(|(p, new_key)| {
            if let Some(k) = new_key {
                let mut cache = self.governance.lock().unwrap_or_else(|e| e.into_inner());
                // Governance changes rarely; a small bound keeps memory flat regardless.
                if cache.len() >= 64 {
                    cache.clear();
                }
                cache.insert(k, p.governance.clone());
            }
            p
        }))
    }

    /// Runs the checks of every touched environment and reports them on the PR.
    pub async fn check_pull_request(
        &self,
        pr: &PrInfo,
        delivery: &DeliveryId,
    ) -> Result<(), WorkError> {
        if pr.base_ref != pr.default_branch {
            // Only the default branch's verdicts may land on a commit: a PR into another
            // branch, judged by that branch's rules, could otherwise turn the same head
            // SHA green for a PR into the default branch.
            tracing::info!(repo = %pr.repo, pr = %pr.number, base = %pr.base_ref,
                "pull request into a branch other than the default one: no paved/* statuses");
            return Ok(());
        }
        let gh = self.forge.client(pr.installation)?;
        // The contexts a panic is reported on: the usual three until the planned ones are
        // known.
        let mut contexts: Vec<&'static str> = vec![
            checks::CheckKind::Schema.context(),
            checks::CheckKind::Policy.context(),
            checks::CheckKind::Quota.context(),
        ];
        match self.run_checks(&gh, pr, delivery, &mut contexts).await {
            Err(e @ WorkError::TooManyManifests { .. }) => {
                let why = format!("{e}: split it into smaller pull requests");
                gh.create_status(
                    &pr.repo,
                    &pr.head_sha,
                    &NewStatus {
                        state: StatusState::Failure,
                        context: checks::CheckKind::Schema.context().to_string(),
                        description: why.clone(),
                        target_url: Some(format!(
                            "{}/api/v1/deliveries/{delivery}",
                            self.public_url()
                        )),
                    },
                )
                .await?;
                let body = format!(
                    "{COMMENT_MARKER}\n### Paved checks for `{}`\n\n❌ {why}. Nothing was evaluated, and merging it provisions nothing.\n",
                    pr.head_sha.short()
                );
                self.upsert_comment(&gh, pr, &body).await?;
                Ok(())
            }
            Err(WorkError::Panicked(_)) => {
                for context in contexts {
                    gh.create_status(
                        &pr.repo,
                        &pr.head_sha,
                        &NewStatus {
                            state: StatusState::Failure,
                            context: context.to_string(),
                            description: INTERNAL_ERROR.into(),
                            target_url: Some(format!(
                                "{}/api/v1/deliveries/{delivery}",
                                self.public_url()
                            )),
                        },
                    )
                    .await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn run_checks(
        &self,
        gh: &GitHub,
        pr: &PrInfo,
        delivery: &DeliveryId,
        contexts: &mut Vec<&'static str>,
    ) -> Result<(), WorkError> {
        let Some(prep) = self.prepare(pr).await? else {
            tracing::info!(repo = %pr.repo, pr = %pr.number, "no manifest touched; nothing to report");
            return Ok(());
        };
        let pending_url = format!("{}/api/v1/deliveries/{}", self.public_url(), delivery);
        let mut pending: Vec<&str> = prep.planned.iter().map(|c| c.context()).collect();
        if !prep.governance_changes.is_empty() {
            pending.push(checks::GOVERNANCE_CONTEXT);
        }
        *contexts = pending.clone();
        for context in pending {
            gh.create_status(
                &pr.repo,
                &pr.head_sha,
                &NewStatus {
                    state: StatusState::Pending,
                    context: context.to_string(),
                    description: "Paved is checking this change".into(),
                    target_url: Some(pending_url.clone()),
                },
            )
            .await?;
        }

        let reviews = reviews_of(gh, pr).await?;
        let ctx = PrContext {
            author: pr.author.clone(),
            approvers: approvers_in(&reviews, &pr.author),
            live: self.live_by_team(&pr.repo).await?,
            reviews,
            head_sha: Some(pr.head_sha.to_string()),
        };
        let head_sha = pr.head_sha.clone();
        let governance_sha = prep.governance_sha.clone();
        let report: Report = blocking(move || -> Result<Report, WorkError> {
            let mirror = Mirror::open_path(&prep.mirror_path)?;
            let head = mirror.tree_at(&head_sha)?;
            let default = mirror.tree_at(&prep.default_sha)?;
            let mut report =
                checks::evaluate(&prep.governance, &head, &default, &prep.changes, &ctx);
            if !prep.governance_changes.is_empty() {
                report.governance = Some(checks::evaluate_governance(
                    &prep.governance,
                    &head,
                    &default,
                    &prep.governance_changes,
                    &ctx,
                ));
            }
            Ok(report)
        })
        .await?;

        let report_json =
            serde_json::to_value(&report).map_err(|e| WorkError::Internal(e.to_string()))?;
        let run_id = self
            .store
            .insert_run(NewRun {
                repo: pr.repo.clone(),
                pr: pr.number,
                head_sha: pr.head_sha.clone(),
                base_sha: pr.base_sha.clone(),
                delivery_id: delivery.clone(),
                report: report_json,
            })
            .await?;
        let run_url = format!("{}/api/v1/runs/{run_id}", self.public_url());
        for v in report.contexts() {
            gh.create_status(
                &pr.repo,
                &pr.head_sha,
                &NewStatus {
                    state: if v.verdict.is_pass() {
                        StatusState::Success
                    } else {
                        StatusState::Failure
                    },
                    context: v.context.clone(),
                    description: v.description.clone(),
                    target_url: Some(run_url.clone()),
                },
            )
            .await?;
        }
        let body = summary_comment(pr, &report, &run_url, &governance_sha);
        self.upsert_comment(gh, pr, &body).await?;
        Ok(())
    }

    /// Edits Paved's one summary comment on the PR, creating it the first time. The id is
    /// remembered in the store; if it is unknown (a new database), the PR's comments are
    /// searched for the marker first so a comment is never duplicated.
    pub(crate) async fn upsert_comment(
        &self,
        gh: &GitHub,
        pr: &PrInfo,
        body: &str,
    ) -> Result<(), WorkError> {
        let mut id = self.store.pr_comment(&pr.repo, pr.number).await?;
        if id.is_none() {
            id = self.find_comment(gh, pr).await?;
        }
        if let Some(id) = id {
            match gh.update_comment(&pr.repo, id, body).await {
                Ok(()) => {
                    self.store.set_pr_comment(&pr.repo, pr.number, id).await?;
                    return Ok(());
                }
                // Someone deleted the comment: make a new one below.
                Err(ForgeError::Refused { status: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let id = match gh.create_comment(&pr.repo, pr.number, body).await {
            Ok(id) => id,
            // The comment may exist although its answer was lost: find it before making
            // another one.
            Err(ForgeError::AnswerLost(_)) => match self.find_comment(gh, pr).await? {
                Some(id) => {
                    gh.update_comment(&pr.repo, id, body).await?;
                    id
                }
                None => gh.create_comment(&pr.repo, pr.number, body).await?,
            },
            Err(e) => return Err(e.into()),
        };
        self.store.set_pr_comment(&pr.repo, pr.number, id).await?;
        Ok(())
    }

    /// Paved's summary comment on the PR, found by its marker.
    async fn find_comment(&self, gh: &GitHub, pr: &PrInfo) -> Result<Option<u64>, WorkError> {
        Ok(gh
            .list_comments(&pr.repo, pr.number)
            .await?
            .into_iter()
            .find(|c| {
                c.body
                    .as_deref()
                    .is_some_and(|b| b.starts_with(COMMENT_MARKER))
            })
            .map(|c| c.id))
    }
}

struct Prepared {
    mirror_path: std::path::PathBuf,
    governance: Arc<Governance>,
    changes: Vec<Change>,
    /// Paths under `.paved/` and `catalog/` the PR changes (`paved/governance` runs then).
    governance_changes: Vec<String>,
    planned: Vec<checks::CheckKind>,
    default_sha: CommitSha,
    /// Where governance was read: the merge base of the head and the default branch.
    governance_sha: CommitSha,
}

/// The pull request's reviews, oldest first (states Paved does not know are left out).
pub(crate) async fn reviews_of(gh: &GitHub, pr: &PrInfo) -> Result<Vec<checks::Review>, WorkError> {
    Ok(gh
        .list_reviews(&pr.repo, pr.number)
        .await?
        .into_iter()
        .filter_map(|r| {
            Some(checks::Review {
                user: r.user?.login,
                state: checks::ReviewState::parse(&r.state)?,
                commit_id: r.commit_id,
            })
        })
        .collect())
}

/// Reviewers whose latest approving-or-blocking review approves, the author excepted
/// (what policies see as `data.paved.approvers` and the audit note records).
pub(crate) fn approvers_in(reviews: &[checks::Review], author: &str) -> Vec<String> {
    use checks::ReviewState as S;
    let mut latest: std::collections::BTreeMap<String, S> = Default::default();
    for r in reviews {
        if matches!(r.state, S::Commented | S::Pending) {
            continue;
        }
        latest.insert(r.user.to_ascii_lowercase(), r.state);
    }
    let mut out: Vec<String> = Vec::new();
    for r in reviews {
        let key = r.user.to_ascii_lowercase();
        if latest.get(&key) == Some(&S::Approved)
            && !r.user.eq_ignore_ascii_case(author)
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&r.user))
        {
            out.push(r.user.clone());
        }
    }
    out
}

/// Paths under `.paved/` and `catalog/` that differ from `from` to `to`.
pub(crate) fn governance_changes(
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
pub(crate) fn environment_changes(
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

fn is_recheck(body: &str) -> bool {
    body.lines()
        .next()
        .map(str::trim)
        .is_some_and(|l| l == "/paved recheck")
}

/// The note a fork's pull request carries in its summary comment.
pub const FORK_NOTE: &str = "This pull request comes from a fork: Paved checks its data only, and no script from it ever runs (when it is merged, definitions are taken from the default branch as it was before the merge).";

fn summary_comment(
    pr: &PrInfo,
    report: &Report,
    run_url: &str,
    governance_sha: &CommitSha,
) -> String {
    let fork = if pr.from_fork {
        format!("> {FORK_NOTE}\n\n")
    } else {
        String::new()
    };
    format!(
        "{COMMENT_MARKER}\n### Paved checks for `{}`\n\n{fork}{}\n\n[Run details]({run_url}) · governance read at `{}` (where this branch forked off `{}`)\n",
        pr.head_sha.short(),
        checks::render_markdown(report),
        governance_sha.short(),
        pr.default_branch
    )
}

// ---- payloads: only the fields Paved reads ----

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
pub struct Changes {
    #[serde(default)]
    pub base: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize, Clone)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub sha: String,
    #[serde(default)]
    pub repo: Option<Repository>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Repository {
    pub full_name: String,
    pub clone_url: String,
    pub default_branch: String,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Deserialize, Clone, Copy)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Deserialize)]
struct CheckRunEvent {
    check_run: CheckRun,
    repository: Repository,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
struct CheckRun {
    #[serde(default)]
    pull_requests: Vec<CheckRunPull>,
}

#[derive(Debug, Deserialize)]
struct CheckRunPull {
    number: u64,
}

#[derive(Debug, Deserialize)]
struct IssueCommentEvent {
    issue: Issue,
    comment: IssueComment,
    repository: Repository,
    #[serde(default)]
    installation: Option<Installation>,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: u64,
    #[serde(default)]
    pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct IssueComment {
    #[serde(default)]
    body: String,
}

/// What the checks need to know about a pull request, validated.
#[derive(Debug, Clone)]
pub struct PrInfo {
    pub repo: RepoName,
    pub number: PrNumber,
    pub head_sha: CommitSha,
    pub base_sha: CommitSha,
    pub base_ref: String,
    pub default_branch: String,
    pub clone_url: String,
    pub author: String,
    pub installation: Option<u64>,
    /// The head lives in another repository (a fork).
    pub from_fork: bool,
}

/// Branch names go into refspecs: refuse anything Git itself would not accept as a ref.
pub(crate) fn valid_branch(name: &str) -> Result<String, WorkError> {
    if name.is_empty()
        || name.starts_with('-')
        || name.contains("..")
        || name.contains(':')
        || name
            .bytes()
            .any(|b| b <= b' ' || b"~^?*[\\".contains(&b) || b == 0x7f)
        || !git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
    {
        return Err(WorkError::Payload(format!(
            "not a valid branch name: {name:?}"
        )));
    }
    Ok(name.to_string())
}

impl PrInfo {
    pub fn from_event(ev: &PullRequestEvent) -> Result<PrInfo, WorkError> {
        let p = |e: crate::ids::IdError| WorkError::Payload(e.to_string());
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
            base_ref: valid_branch(&pr.base.ref_name)?,
            default_branch: valid_branch(&ev.repository.default_branch)?,
            clone_url: ev.repository.clone_url.clone(),
            author: pr.user.login.clone(),
            installation: ev.installation.map(|i| i.id),
            from_fork,
        })
    }

    fn from_pull(
        pull: &serde_json::Value,
        repository: &Repository,
        installation: Option<u64>,
    ) -> Result<PrInfo, WorkError> {
        let pr: PullRequest = serde_json::from_value(pull.clone())
            .map_err(|e| WorkError::Payload(format!("pull request: {e}")))?;
        let ev = PullRequestEvent {
            action: "recheck".into(),
            number: pr.number,
            pull_request: pr,
            repository: repository.clone(),
            installation: installation.map(|id| Installation { id }),
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

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_reported_once_never_retried() {
        let r: Result<(), WorkError> = blocking(|| panic!("scanner fell over")).await;
        match r {
            Err(e @ WorkError::Panicked(_)) => {
                assert!(!e.is_transient(), "a panic must not be retried");
                assert!(e.to_string().contains("scanner fell over"), "{e}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        let ok = blocking(|| Ok(7)).await.expect("no panic");
        assert_eq!(ok, 7);
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
