//! Prometheus metrics, kept with `prometheus-client` and served at `/metrics`.
//!
//! One [`Metrics`] is made at start and handed to the rooms that count (intake, worker,
//! handlers, the GitHub client): an explicit dependency, so a test starting two services
//! in one process sees each one's own figures. The series, and alert rules built on them,
//! are listed in the README ("Metrics").

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The results `paved_webhooks_total` counts.
pub const WEBHOOK_RESULTS: [&str; 9] = [
    "accepted",
    "duplicate",
    "rejected_signature",
    "ignored",
    "ignored_repository",
    "refused_size",
    "busy",
    "bad_request",
    "store_error",
];

type Label1 = [(&'static str, &'static str); 1];
type Label2 = [(&'static str, &'static str); 2];
type Owned2 = [(&'static str, String); 2];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The values of `paved_environments`' `state` label.
const ENVIRONMENT_STATES: [&str; 7] = [
    "provisioning",
    "ready",
    "failed",
    "deleting",
    "deleted",
    "stopped",
    "drifted",
];

/// Every series Paved exports.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<Label1, Counter>,
    deliveries: Family<Label1, Gauge>,
    environments: Family<Label1, Gauge>,
    scheduler_leading: Gauge,
    runner_unsandboxed: Gauge,
    oldest_pending: Gauge<f64, AtomicU64>,
    notes_pending: Gauge,
    notes_oldest_pending: Gauge<f64, AtomicU64>,
    processing: Histograms<Label2>,
    delivery_retries: Family<Label1, Counter>,
    lease_takeovers: Counter,
    verdicts: Family<Label2, Counter>,
    operations: Family<Label2, Counter>,
    operation_seconds: Histograms<Label2>,
    github_requests: Family<Owned2, Counter>,
    github_retries: Family<[(&'static str, String); 1], Counter>,
    github_tokens: Counter,
    pruned: Family<Label1, Counter>,
}

/// Processing and operation latencies: 5 ms to about 20 minutes.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("paved");
        let m = Metrics {
            registry: Registry::default(),
            webhooks: Family::default(),
            deliveries: Family::default(),
            environments: Family::default(),
            scheduler_leading: Gauge::default(),
            runner_unsandboxed: Gauge::default(),
            oldest_pending: Gauge::default(),
            notes_pending: Gauge::default(),
            notes_oldest_pending: Gauge::default(),
            processing: Family::new_with_constructor(latency),
            delivery_retries: Family::default(),
            lease_takeovers: Counter::default(),
            verdicts: Family::default(),
            operations: Family::default(),
            operation_seconds: Family::new_with_constructor(latency),
            github_requests: Family::default(),
            github_retries: Family::default(),
            github_tokens: Counter::default(),
            pruned: Family::default(),
        };
        registry.register("webhooks", "Webhook requests by result", m.webhooks.clone());
        registry.register(
            "deliveries",
            "Stored deliveries by state (pending is the queue's depth)",
            m.deliveries.clone(),
        );
        registry.register(
            "environments",
            "Environments by state; state=\"drifted\" counts live ones whose last drift check found drift",
            m.environments.clone(),
        );
        registry.register(
            "scheduler_leading",
            "1 on the replica that holds the scheduler's lease (runs expiries, schedules, drift checks), else 0",
            m.scheduler_leading.clone(),
        );
        registry.register(
            "runner_unsandboxed",
            "1 when runner.sandbox = \"none\": scripts run as Paved's own user, outside any sandbox (SPEC 12); else 0",
            m.runner_unsandboxed.clone(),
        );
        registry.register(
            "notes_pending",
            "Audit notes queued and not yet pushed to the origin (the notes outbox, all replicas)",
            m.notes_pending.clone(),
        );
        registry.register(
            "notes_oldest_pending_age_seconds",
            "Age of the oldest audit note not yet pushed (0 when none waits); alert when it passes a few minutes",
            m.notes_oldest_pending.clone(),
        );
        registry.register(
            "delivery_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending)",
            m.oldest_pending.clone(),
        );
        registry.register(
            "delivery_processing_seconds",
            "Time from claim to finish of a delivery, by event kind and result",
            m.processing.clone(),
        );
        registry.register(
            "delivery_retries",
            "Deliveries put back to be tried again, by event kind",
            m.delivery_retries.clone(),
        );
        registry.register(
            "lease_takeovers",
            "Deliveries claimed from a replica whose lease ran out",
            m.lease_takeovers.clone(),
        );
        registry.register(
            "check_verdicts",
            "Check verdicts posted on pull requests, by check and verdict",
            m.verdicts.clone(),
        );
        registry.register(
            "operations",
            "Provisioning operations finished, by kind and outcome",
            m.operations.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Provisioning operations' run time, by kind and outcome",
            m.operation_seconds.clone(),
        );
        registry.register(
            "github_requests",
            "GitHub API requests sent, by operation and HTTP status (0: no answer)",
            m.github_requests.clone(),
        );
        registry.register(
            "github_retries",
            "GitHub API requests sent again after a transient failure, by operation",
            m.github_retries.clone(),
        );
        registry.register(
            "github_tokens_minted",
            "GitHub App installation tokens minted",
            m.github_tokens.clone(),
        );
        registry.register(
            "pruned_rows",
            "Rows removed by retention, by table",
            m.pruned.clone(),
        );
        // Every result from the start, so a rate over a result that has not happened yet
        // is 0, not absent.
        for result in WEBHOOK_RESULTS {
            let _ = m.webhooks.get_or_create(&[("result", result)]);
        }
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String does not fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn webhook(&self, result: &'static str) {
        self.webhooks.get_or_create(&[("result", result)]).inc();
    }

    /// How many webhook requests had `result` so far.
    pub fn webhook_count(&self, result: &'static str) -> u64 {
        self.webhooks.get_or_create(&[("result", result)]).get()
    }

    /// Sets the queue gauges from the store's counts, at scrape time.
    pub fn set_queue(&self, counts: &[(String, u64)], oldest_pending: Option<Duration>) {
        for (state, n) in counts {
            let state: &'static str = match state.as_str() {
                "pending" => "pending",
                "running" => "running",
                "done" => "done",
                "failed" => "failed",
                _ => continue,
            };
            self.deliveries
                .get_or_create(&[("state", state)])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.oldest_pending
            .set(oldest_pending.map_or(0.0, |d| d.as_secs_f64()));
    }

    /// Sets `paved_environments` from the store's counts, at scrape time: every state
    /// (0 when none), and `drifted`.
    pub fn set_environments(&self, counts: &[(String, u64)]) {
        for state in ENVIRONMENT_STATES {
            let n = counts
                .iter()
                .filter(|(s, _)| s == state)
                .map(|(_, n)| *n)
                .sum::<u64>();
            self.environments
                .get_or_create(&[("state", state)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The notes outbox: how many wait, and the oldest's age.
    pub fn set_notes_pending(&self, pending: u64, oldest_age: Duration) {
        self.notes_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.notes_oldest_pending.set(oldest_age.as_secs_f64());
    }

    /// Whether this replica runs the scheduler now.
    pub fn set_runner_unsandboxed(&self, unsandboxed: bool) {
        self.runner_unsandboxed.set(i64::from(unsandboxed));
    }

    pub fn set_scheduler_leading(&self, leading: bool) {
        self.scheduler_leading.set(i64::from(leading));
    }

    pub fn delivery_processed(&self, event: &'static str, result: &'static str, took: Duration) {
        self.processing
            .get_or_create(&[("event", event), ("result", result)])
            .observe(took.as_secs_f64());
        if result == "retry" {
            self.delivery_retries
                .get_or_create(&[("event", event)])
                .inc();
        }
    }

    pub fn lease_taken_over(&self) {
        self.lease_takeovers.inc();
    }

    pub fn verdict(&self, check: &'static str, verdict: &'static str) {
        self.verdicts
            .get_or_create(&[("check", check), ("verdict", verdict)])
            .inc();
    }

    pub fn operation(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        let labels = [("kind", kind), ("outcome", outcome)];
        self.operations.get_or_create(&labels).inc();
        self.operation_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn github_request(&self, operation: &'static str, status: u16) {
        self.github_requests
            .get_or_create(&[
                ("operation", operation.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    pub fn github_retry(&self, operation: &'static str) {
        self.github_retries
            .get_or_create(&[("operation", operation.to_string())])
            .inc();
    }

    pub fn github_token_minted(&self) {
        self.github_tokens.inc();
    }

    pub fn pruned(&self, table: &'static str, rows: u64) {
        self.pruned.get_or_create(&[("table", table)]).inc_by(rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exposed_with_the_paved_prefix() {
        let m = Metrics::new();
        m.webhook("accepted");
        m.verdict("paved/schema", "fail");
        m.github_request("pulls/get", 200);
        let text = m.encode();
        assert!(
            text.contains("paved_webhooks_total{result=\"accepted\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("paved_check_verdicts_total{check=\"paved/schema\",verdict=\"fail\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("paved_github_requests_total{operation=\"pulls/get\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
