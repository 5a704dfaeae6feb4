//! The webhook receiver over real HTTP on loopback, with a real SQLite store.

use paved::ids::DeliveryId;
use paved::intake::{self, sign, IntakeState, WebhookSecret};
use paved::store::prelude::*;
use paved::store::sqlite::SqliteStore;
use paved::store::DeliveryState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Notify;

const SECRET: &str = "It's a Secret to Everybody";
const ROTATED: &str = "the-new-secret";

struct Harness {
    addr: SocketAddr,
    store: Arc<SqliteStore>,
    state: IntakeState,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/github/webhooks")
        .join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paved.db");
    let store = Arc::new(
        SqliteStore::open(path.to_str().expect("utf-8"))
            .await
            .expect("open store"),
    );
    let state = IntakeState::new(
        store.clone(),
        vec![WebhookSecret::new(SECRET), WebhookSecret::new(ROTATED)],
        Arc::new(Notify::new()),
        paved::config::RepoFilter::any(),
    );
    let app = intake::router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        addr,
        store,
        state,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Harness {
    async fn post(
        &self,
        event: &str,
        delivery: Option<&str>,
        signature: Option<String>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(format!("http://{}/webhooks/github", self.addr))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("user-agent", "GitHub-Hookshot/test");
        if let Some(d) = delivery {
            req = req.header("x-github-delivery", d);
        }
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let resp = req.body(body).send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    async fn signed(&self, event: &str, delivery: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let sig = sign(&WebhookSecret::new(SECRET), &body);
        self.post(event, Some(delivery), Some(sig), body).await
    }

    async fn stored(&self, id: &str) -> bool {
        self.store
            .delivery(&DeliveryId::parse(id).expect("id"))
            .await
            .expect("read")
            .is_some()
    }

    async fn total(&self) -> u64 {
        self.store
            .delivery_counts()
            .await
            .expect("counts")
            .values()
            .sum()
    }
}

#[tokio::test]
async fn valid_delivery_is_stored_then_acknowledged() {
    let h = start().await;
    let body = fixture("pull_request/opened.payload.json");
    assert_eq!(body.len(), 28_011);
    let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let (status, json) = h.signed("pull_request", id, body.clone()).await;
    assert_eq!(status, 202, "{json}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["delivery"], id);

    let rec = h
        .store
        .delivery(&DeliveryId::parse(id).expect("id"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(rec.event, "pull_request");
    assert_eq!(rec.action.as_deref(), Some("opened"));
    assert_eq!(rec.queue_key, "Codertocat/Hello-World#2");
    assert_eq!(rec.state, DeliveryState::Pending);
    let claimed = h.store.claim_delivery().await.expect("claim").expect("one");
    assert_eq!(claimed.body, body, "the exact bytes are stored");
    assert_eq!(h.state.metrics.webhook_count("accepted"), 1);
}

#[tokio::test]
async fn bad_signature_is_rejected_and_nothing_stored() {
    let h = start().await;
    let body = fixture("pull_request/opened.payload.json");
    let wrong = sign(&WebhookSecret::new("not the secret"), &body);
    let (status, _) = h
        .post("pull_request", Some("bad-sig-1"), Some(wrong), body.clone())
        .await;
    assert_eq!(status, 401);

    // Signed over other bytes than those sent.
    let mut tampered = body.clone();
    tampered[100] ^= 1;
    let sig = sign(&WebhookSecret::new(SECRET), &body);
    let (status, _) = h
        .post("pull_request", Some("bad-sig-2"), Some(sig), tampered)
        .await;
    assert_eq!(status, 401);

    let (status, _) = h
        .post(
            "pull_request",
            Some("bad-sig-3"),
            Some("sha256=nothex".into()),
            body,
        )
        .await;
    assert_eq!(status, 401);
    assert!(!h.stored("bad-sig-1").await);
    assert!(!h.stored("bad-sig-2").await);
    assert_eq!(h.total().await, 0);
    assert_eq!(h.state.metrics.webhook_count("rejected_signature"), 3);
}

#[tokio::test]
async fn missing_signature_is_rejected() {
    let h = start().await;
    let body = fixture("pull_request/opened.payload.json");
    let (status, _) = h.post("pull_request", Some("no-sig"), None, body).await;
    assert_eq!(status, 401);
    // Even garbage is rejected for its signature, not parsed.
    let (status, _) = h
        .post(
            "pull_request",
            Some("no-sig-2"),
            None,
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(h.total().await, 0);
}

#[tokio::test]
async fn rotated_secret_is_accepted() {
    let h = start().await;
    let body = fixture("pull_request/synchronize.payload.json");
    let sig = sign(&WebhookSecret::new(ROTATED), &body);
    let (status, json) = h
        .post("pull_request", Some("rotated-1"), Some(sig), body)
        .await;
    assert_eq!(status, 202, "{json}");
    assert!(h.stored("rotated-1").await);
}

#[tokio::test]
async fn redelivery_is_acknowledged_once_stored() {
    let h = start().await;
    let body = fixture("pull_request/opened.payload.json");
    let (first, _) = h.signed("pull_request", "again-1", body.clone()).await;
    assert_eq!(first, 202);
    let (second, json) = h.signed("pull_request", "again-1", body).await;
    assert!((200..300).contains(&second), "{second}");
    assert_eq!(json["duplicate"], true, "{json}");
    assert_eq!(h.total().await, 1);
    let c = h.store.claim_delivery().await.expect("claim").expect("one");
    assert_eq!(c.id.as_str(), "again-1");
    h.store
        .finish_delivery(&c.id, paved::store::Outcome::Done)
        .await
        .expect("finish");
    assert!(h.store.claim_delivery().await.expect("claim").is_none());
    assert_eq!(h.state.metrics.webhook_count("duplicate"), 1);
}

#[tokio::test]
async fn concurrent_redeliveries_store_one_row() {
    let h = Arc::new(start().await);
    let body = fixture("pull_request/opened.payload.json");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            h.signed("pull_request", "same-id", body).await.0
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("join"));
    }
    assert_eq!(codes.iter().filter(|&&c| c == 202).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 15, "{codes:?}");
    assert_eq!(h.total().await, 1);
}

#[tokio::test]
async fn ping_and_unhandled_events_are_acknowledged_not_stored() {
    let h = start().await;
    let (status, json) = h
        .signed("ping", "ping-1", fixture("ping/payload.json"))
        .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["ignored"], true);
    let (status, _) = h
        .signed(
            "pull_request",
            "labeled-1",
            fixture("pull_request/labeled.payload.json"),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .signed(
            "issue_comment",
            "comment-1",
            fixture("issue_comment/created.payload.json"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.total().await, 0);
    assert_eq!(h.state.metrics.webhook_count("ignored"), 3);
}

#[tokio::test]
async fn handled_events_from_fixtures() {
    let h = start().await;
    for (i, (event, file)) in [
        ("pull_request", "pull_request/synchronize.payload.json"),
        (
            "pull_request_review",
            "pull_request_review/submitted.payload.json",
        ),
        ("check_run", "check_run/rerequested.payload.json"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("fixture-{i}");
        let (status, json) = h.signed(event, &id, fixture(file)).await;
        assert_eq!(status, 202, "{file}: {json}");
        assert!(h.stored(&id).await, "{file}");
    }
}

#[tokio::test]
async fn body_over_25_mib_is_refused() {
    let h = start().await;
    let mut body = vec![b' '; 26 * 1024 * 1024];
    body[0] = b'{';
    let last = body.len() - 1;
    body[last] = b'}';
    let sig = sign(&WebhookSecret::new(SECRET), &body);
    let (status, _) = h
        .post("pull_request", Some("huge-1"), Some(sig), body)
        .await;
    assert_eq!(status, 413);
    assert_eq!(h.total().await, 0);
}

#[tokio::test]
async fn invalid_json_with_valid_signature_is_a_bad_request() {
    let h = start().await;
    let (status, _) = h
        .signed(
            "pull_request",
            "badjson-1",
            b"{\"action\": \"opened\",".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    // Valid JSON without what the queue key is made of.
    let (status, _) = h
        .signed(
            "pull_request",
            "badjson-2",
            b"{\"action\":\"opened\"}".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(h.total().await, 0);
}

#[tokio::test]
async fn delivery_and_event_headers_are_required() {
    let h = start().await;
    let body = fixture("pull_request/opened.payload.json");
    let sig = sign(&WebhookSecret::new(SECRET), &body);
    let (status, _) = h
        .post("pull_request", None, Some(sig.clone()), body.clone())
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .post(
            "pull_request",
            Some("bad id"),
            Some(sig.clone()),
            body.clone(),
        )
        .await;
    assert_eq!(status, 400);
    // No X-GitHub-Event at all.
    let resp = h
        .client
        .post(format!("http://{}/webhooks/github", h.addr))
        .header("x-github-delivery", "no-event-1")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(h.total().await, 0);
}

#[tokio::test]
async fn new_delivery_wakes_the_worker() {
    let h = start().await;
    let wake = h.state.wake.clone();
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    let (status, _) = h
        .signed(
            "pull_request",
            "wake-1",
            fixture("pull_request/opened.payload.json"),
        )
        .await;
    assert_eq!(status, 202);
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("worker woken");
}
