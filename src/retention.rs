//! Upkeep off the hot path: processing records older than `store.retention` are pruned
//! in small batches (see [`crate::store::retention`] for what is and is never pruned), and
//! mirrors past the repack thresholds are repacked. Runs shortly after start, then hourly.

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::repo::Repos;
use crate::store::{Prunable, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Rows per prune transaction: small enough that a webhook's commit never waits long
/// behind one.
pub const BATCH: u32 = 500;
/// How often upkeep runs.
pub const EVERY: Duration = Duration::from_secs(3600);
/// The pause between two batches, leaving the database to the hot path.
const BREATHE: Duration = Duration::from_millis(20);

/// Prunes everything of each [`Prunable`] older than `before_ms`, batch by batch.
/// Returns the rows pruned, by what.
pub async fn prune(
    store: &dyn Store,
    before_ms: i64,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<BTreeMap<&'static str, u64>, StoreError> {
    let mut pruned = BTreeMap::new();
    for what in Prunable::ALL {
        let mut total = 0;
        loop {
            if stop.is_cancelled() {
                return Ok(pruned);
            }
            let n = store.prune(what, before_ms, BATCH).await?;
            total += n;
            metrics.pruned(what.name(), n);
            if n < u64::from(BATCH) {
                break;
            }
            tokio::time::sleep(BREATHE).await;
        }
        pruned.insert(what.name(), total);
    }
    Ok(pruned)
}

/// One round: prune what is older than the retention, repack what needs it.
pub async fn run_once(
    store: &dyn Store,
    repos: &Repos,
    config: &StoreConfig,
    metrics: &Metrics,
    stop: &CancellationToken,
) {
    let retention = i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
    let before_ms = crate::clock::wall()
        .timestamp_millis()
        .saturating_sub(retention);
    match prune(store, before_ms, metrics, stop).await {
        Ok(pruned) if pruned.values().any(|n| *n > 0) => {
            tracing::info!(?pruned, "pruned records older than store.retention");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning old records failed; will try again"),
    }
    repos
        .repack_all(config.repack_loose_objects, config.repack_packs)
        .await;
}

/// Runs upkeep a minute after start, then every [`EVERY`], until `stop`.
pub async fn run(
    store: Arc<dyn Store>,
    repos: Arc<Repos>,
    config: StoreConfig,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        run_once(store.as_ref(), &repos, &config, &metrics, &stop).await;
        wait = EVERY;
    }
}
