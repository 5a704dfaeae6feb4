//! The notes outbox's pusher (issue 20): audit notes queued by the handlers
//! ([`crate::store::NoteStore`]) are appended to `refs/notes/paved` on the origin here,
//! apart from any delivery, so an outcome never waits on Git. A push that fails is tried
//! again with backoff ([`crate::store::notes::backoff`]) until it lands; one that lands
//! twice adds nothing ([`crate::repo::Mirror::append_note`] finds its text already there).
//! Every replica runs one; a note is claimed for [`lease`], so two do not push the
//! same one at once.

use crate::store::{notes::backoff, QueuedNote};
use crate::work::Deps;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a claimed note is this replica's, and how long the outbox leaves a freshly
/// queued note to whoever queued it (who pushes it at once, [`push_now`]): the lease of
/// operations (`provision.lease`, 60 s by default). A replica that dies holding a note
/// leaves it to the others after this; a push slower than this may be made twice, which
/// adds nothing.
pub fn lease(deps: &Deps) -> Duration {
    deps.config.lease
}
/// How long [`push_now`] lets a push take before the caller goes on without it.
const INLINE_LIMIT: Duration = Duration::from_secs(30);
/// Notes claimed per round.
const BATCH: u32 = 16;
/// How often the outbox looks for due notes when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);

/// Pushes due notes every [`POLL`] until `stop` (a handler pushes its own note at once,
/// [`push_now`]; this pushes what that left, and what a crash left); keeps the outbox's
/// gauges current.
pub async fn run(deps: Arc<Deps>, stop: CancellationToken) {
    loop {
        if let Err(e) = drain(&deps).await {
            tracing::warn!(error = %e, "the notes outbox could not be read; trying again");
        }
        match deps.store.outbox_depth().await {
            Ok(depth) => {
                let age = depth.oldest_ms.map_or(Duration::ZERO, |t| {
                    let ms = crate::clock::wall().timestamp_millis().saturating_sub(t);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                });
                deps.metrics.set_notes_pending(depth.pending, age);
            }
            Err(e) => tracing::debug!(error = %e, "reading the notes outbox's depth failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Claims due notes and pushes each; returns how many landed.
pub async fn drain(deps: &Deps) -> Result<usize, crate::store::StoreError> {
    let mut landed = 0;
    loop {
        let claimed = deps
            .store
            .claim_notes(&deps.instance, lease(deps), BATCH)
            .await?;
        if claimed.is_empty() {
            return Ok(landed);
        }
        for q in claimed {
            let outcome = push(deps, &q).await;
            if settle(deps, &q, outcome).await? {
                landed += 1;
            }
        }
    }
}

/// Pushes note `id` now, once, on behalf of whoever queued it: so in the usual case the
/// audit trail is on the origin before the outcome's last report. A push that fails (or
/// takes longer than [`INLINE_LIMIT`]) is left to the outbox; the caller goes on either
/// way, never failing for it.
pub async fn push_now(deps: &Deps, id: i64) {
    let claimed = match deps.store.claim_note(id, &deps.instance, lease(deps)).await {
        Ok(Some(q)) => q,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(note = id, error = %e, "claiming an audit note failed; the outbox will push it");
            return;
        }
    };
    let outcome = match tokio::time::timeout(INLINE_LIMIT, push(deps, &claimed)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the push took longer than {}s",
            INLINE_LIMIT.as_secs()
        )),
    };
    if let Err(e) = settle(deps, &claimed, outcome).await {
        tracing::warn!(note = id, error = %e, "recording an audit note's push failed");
    }
}

/// Records how a push of `q` went: landed, or back in the queue after its backoff.
/// Returns whether it landed.
async fn settle(
    deps: &Deps,
    q: &QueuedNote,
    outcome: Result<(), String>,
) -> Result<bool, crate::store::StoreError> {
    match outcome {
        Ok(()) => {
            deps.store.note_landed(q.id).await?;
            Ok(true)
        }
        Err(why) => {
            let retry_in = backoff(q.attempts);
            tracing::warn!(note = q.id, repo = %q.note.repo, commit = %q.note.commit,
                attempts = q.attempts, retry_in_s = retry_in.as_secs(), error = %why,
                "pushing an audit note failed; it stays queued");
            deps.store.note_failed(q.id, &why, retry_in).await?;
            Ok(false)
        }
    }
}

async fn push(deps: &Deps, q: &QueuedNote) -> Result<(), String> {
    let (commit, text) = (q.note.commit.clone(), q.note.text.clone());
    deps.repos
        .with_remote(
            &q.note.repo,
            &q.note.clone_url,
            q.note.installation,
            move |s| {
                s.mirror
                    .append_note(&s.url, s.token.as_ref(), &commit, &text)
            },
        )
        .await
        .map_err(|e| e.to_string())
}
