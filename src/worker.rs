//! The worker: claims stored deliveries (in order per pull request, different pull requests
//! in parallel), keeps each claim's lease while it works, parses the delivery into an
//! [`Event`] and hands it to its handler ([`crate::handlers`]), then records the outcome:
//! done, failed, or due again later with backoff. Nothing else lives here.

use crate::event::{Event, PrInfo};
use crate::forge::client::ForgeError;
use crate::handlers;
use crate::handlers::pr::Previews;
use crate::ids::{InstallationId, RepoName};
use crate::store::{Delivery, KnownRepository, Outcome, StoreError};
use crate::work::{Deps, WorkError};
use futures::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How many times a delivery is tried before it is marked failed for good. With the
/// backoff below (0.5 s doubling, capped at 5 min) that rides out about 25 minutes of
/// GitHub or Git trouble.
pub const MAX_ATTEMPTS: u32 = 15;

/// A delivery claimed more often than this is failed without processing it again (it
/// includes the re-claims of a push waiting for its merge, which are many but bounded).
pub const MAX_CLAIMS: u32 = 100;

/// The claim loop, with the handlers' dependencies.
pub struct Worker {
    pub deps: Arc<Deps>,
    /// Notified by intake after each newly stored delivery.
    pub wake: Arc<Notify>,
    /// What was last recorded of each repository, so a delivery writes only a change.
    noted: std::sync::Mutex<std::collections::HashMap<RepoName, KnownRepository>>,
}

impl Worker {
    pub fn new(deps: Arc<Deps>, wake: Arc<Notify>) -> Self {
        Worker {
            deps,
            wake,
            noted: Default::default(),
        }
    }

    /// Runs until `stop` is notified: resumes what a previous process left running, then
    /// claims deliveries as they arrive (woken by intake) or fall due (polled each second).
    pub async fn run(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<(), StoreError> {
        let store = &self.deps.store;
        // Operations whose process died with the previous server: kill their orphaned
        // scripts (only if still ours), and free their locks. The merge deliveries they
        // belong to are re-queued just below, and report and re-run them.
        let instance = crate::runner::instance_of(&self.deps.config.data_dir);
        for op in store.interrupt_running_operations().await? {
            let killed = op
                .pid
                .is_some_and(|pid| crate::runner::kill_orphan(pid, op.id.0, &instance));
            tracing::warn!(op = %op.id, env = %op.op.env_name, killed, "operation interrupted by a restart");
        }
        store.release_all_locks().await?;
        let resumed = store.requeue_interrupted().await?;
        if resumed > 0 {
            tracing::info!(resumed, "resuming deliveries interrupted by a restart");
        }
        let workers = self.deps.config.workers;
        let permits = Arc::new(Semaphore::new(workers));
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.map_err(|_| StoreError::Closed)?,
                _ = stop.cancelled() => break,
            };
            let claimed = match store.claim_delivery().await {
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
        let _ = permits.acquire_many(workers as u32).await;
        Ok(())
    }

    async fn process(&self, d: Delivery) {
        use tracing::Instrument;
        // The repository is the queue key's part before `#` (a PR) or `@` (a push, a rerun).
        let repository = d.queue_key.split(['#', '@']).next().unwrap_or_default();
        let span = tracing::info_span!("delivery", id = %d.id, event = %d.event, repository);
        self.process_in_span(d).instrument(span).await
    }

    async fn process_in_span(&self, d: Delivery) {
        let store = &self.deps.store;
        let started = std::time::Instant::now();
        if d.taken_over {
            tracing::warn!(
                attempt = d.attempts,
                "took the delivery over from a replica whose lease ran out"
            );
            self.deps.metrics.lease_taken_over();
        }
        if d.attempts > MAX_CLAIMS {
            // Claimed again and again without an outcome: each time, the process working
            // on it died (a crash loop, or replicas losing their leases). Stop here.
            let error = format!("gave up: claimed {} times without finishing", d.attempts);
            tracing::error!(%error, "delivery failed");
            if let Err(e) = store
                .finish_delivery(&d.id, Outcome::Failed { error })
                .await
            {
                tracing::error!(error = %e, "could not record the outcome");
            }
            return;
        }
        // With a shared database the claim is a lease: keep it while working, so another
        // replica does not take the delivery over from a live one. A lost lease stops the
        // work (its scripts are killed with it): the replica that took it over does it.
        let lost = tokio_util::sync::CancellationToken::new();
        let renew = tokio::spawn(keep_lease(self.deps.clone(), d.id.clone(), lost.clone()));
        let handled = std::panic::AssertUnwindSafe(self.handle(&d)).catch_unwind();
        let result = tokio::select! {
            r = handled => match r {
                Ok(r) => r,
                Err(payload) => {
                    let why = crate::repo::panic_text(payload.as_ref());
                    tracing::error!(panic = %why, "internal error: a panic while handling a delivery");
                    Err(WorkError::Panicked(why))
                }
            },
            _ = lost.cancelled() => {
                tracing::warn!("lost the delivery's lease: stopped, its scripts killed; nothing was recorded (another replica has it)");
                renew.abort();
                return;
            }
        };
        renew.abort();
        let outcome = outcome_of(result, d.attempts);
        let result = match &outcome {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        };
        // One line per delivery worked on, in its span (id, event, repository): what a log
        // collector counts and follows.
        tracing::info!(
            outcome = result,
            ms = started.elapsed().as_millis() as u64,
            attempt = d.attempts,
            "delivery processed"
        );
        self.deps
            .metrics
            .delivery_processed(event_label(&d.event), result, started.elapsed());
        if let Err(e) = store.finish_delivery(&d.id, outcome).await {
            // The delivery stays running; the next start re-queues it.
            tracing::error!(error = %e, "could not record the outcome");
        }
    }

    /// Parses the delivery and calls its handler.
    async fn handle(&self, d: &Delivery) -> Result<(), WorkError> {
        let event =
            Event::parse(&d.event, &d.body).map_err(|e| WorkError::Payload(e.to_string()))?;
        let Some(event) = event else {
            // Stored by an older release, or no longer handled: nothing to do.
            return Ok(());
        };
        let deps = &self.deps;
        if !deps.config.repositories.allows(&event.repo()) {
            // The configuration changed since it was accepted: never touch a repository
            // Paved no longer serves (not even for a token).
            tracing::warn!(repo = %event.repo(), "repository not served (github.repositories); ignored");
            return Ok(());
        }
        self.note_repository(&event).await;
        match event {
            Event::PullRequest(ev) => {
                let pr = PrInfo::from_event(&ev).map_err(WorkError::Payload)?;
                handlers::pr::check(deps, &pr, &d.id, Previews::Make).await
            }
            // A review changes the approvals, not what the change would do: the previews
            // kept for the head are shown again.
            Event::Review(ev) => {
                let pr = PrInfo::from_event(&ev).map_err(WorkError::Payload)?;
                handlers::pr::check(deps, &pr, &d.id, Previews::Keep).await
            }
            Event::Merged(ev) => handlers::merge::handle(deps, &ev, &d.id).await,
            Event::MergeGroup { number, event } => {
                handlers::queue::handle(deps, number, &event, &d.id).await
            }
            Event::Push(ev) => handlers::push::handle(deps, &ev, &d.id, d.received_at_ms).await,
            command @ Event::Command { .. } => {
                handlers::commands::handle(deps, &d.id, command).await
            }
            Event::Rerun {
                number,
                repository,
                installation,
                ..
            } => match number {
                Some(number) => {
                    let how = (&d.id, Previews::Make);
                    handlers::pr::recheck(deps, &repository, installation, number, how).await
                }
                None => {
                    tracing::info!("check run has no pull request; nothing to re-run");
                    Ok(())
                }
            },
        }
    }
}

impl Worker {
    /// Records the repository's default branch, clone URL and installation when they
    /// changed (the API acts on repositories without a webhook in hand). A failure is
    /// logged: the delivery's own work does not depend on it.
    async fn note_repository(&self, event: &Event) {
        let r = event.repository();
        let known = KnownRepository {
            repo: event.repo(),
            default_branch: r.default_branch.clone(),
            clone_url: r.clone_url.clone(),
            installation: event.installation().map(InstallationId),
        };
        let seen = {
            let noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            noted.get(&known.repo) == Some(&known)
        };
        if seen {
            return;
        }
        match self.deps.store.note_repository(&known).await {
            Ok(()) => {
                let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
                noted.insert(known.repo.clone(), known);
            }
            Err(e) => tracing::warn!(error = %e, "recording the repository failed"),
        }
    }
}

/// The `event` label of the processing metrics: the webhook event names Paved handles.
fn event_label(event: &str) -> &'static str {
    match event {
        "pull_request" => "pull_request",
        "pull_request_review" => "pull_request_review",
        "issue_comment" => "issue_comment",
        "check_run" => "check_run",
        "push" => "push",
        "merge_group" => "merge_group",
        _ => "other",
    }
}

/// Renews the delivery's lease every third of `provision.lease`; cancels `lost` when the
/// store says it is gone (another replica took the delivery over).
async fn keep_lease(
    deps: Arc<Deps>,
    id: crate::ids::DeliveryId,
    lost: tokio_util::sync::CancellationToken,
) {
    let every = deps.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        match deps.store.renew_delivery_lease(&id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery = %id, "lost the delivery's lease; another replica took it over");
                lost.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, "renewing a delivery lease failed"),
        }
    }
}

/// How a handler's result is recorded: done, retried (when and why), or failed for good.
fn outcome_of(result: Result<(), WorkError>, attempts: u32) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(WorkError::NotYet { why, after }) => {
            tracing::debug!(%why, ?after, "not yet");
            Outcome::Retry { error: why, after }
        }
        // GitHub said when to come back: then, however many attempts it took.
        Err(WorkError::Forge(ForgeError::RateLimited { what, after })) => {
            let e = ForgeError::RateLimited { what, after };
            tracing::warn!(error = %e, ?after, "rate limited; will retry when it resets");
            Outcome::Retry {
                error: e.to_string(),
                after: after + Duration::from_secs(1),
            }
        }
        Err(e) if e.is_transient() && attempts < MAX_ATTEMPTS => {
            let after = Duration::from_millis(500u64.saturating_mul(1 << attempts.min(10)))
                .min(Duration::from_secs(300));
            tracing::warn!(error = %e, attempt = attempts, ?after, "will retry");
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
    }
}
