//! Deliveries: accepted once, bodies kept, claimed in order per key, retried with a delay.

use super::*;

pub(crate) async fn duplicate_delivery(b: &Backend) {
    let store = b.open().await;
    let before = now_ms();
    assert_eq!(
        store
            .accept_delivery(delivery("d-1", "o/r#1", "{\"first\":true}"))
            .await
            .expect("accept"),
        Accepted::New
    );
    let after = now_ms();
    let mut second = delivery("d-1", "o/r#2", "{\"second\":true}");
    second.event = "push".into();
    assert_eq!(
        store.accept_delivery(second).await.expect("accept again"),
        Accepted::Duplicate
    );
    let rec = store
        .delivery(&did("d-1"))
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(rec.event, "pull_request");
    assert_eq!(rec.action.as_deref(), Some("opened"));
    assert_eq!(rec.queue_key, "o/r#1");
    assert_eq!(rec.state, DeliveryState::Pending);
    assert_eq!((rec.attempts, rec.last_error), (0, None));
    assert!(chrono::DateTime::parse_from_rfc3339(&rec.received_at).is_ok());
    assert!(store.delivery(&did("d-2")).await.expect("read").is_none());

    let claimed = store.claim_delivery().await.expect("claim").expect("one");
    assert_eq!(claimed.body, b"{\"first\":true}");
    assert_eq!(claimed.attempts, 1);
    // The store's clock may be the database's: allow a little skew.
    assert!(
        (before - 2_000..=after + 2_000).contains(&claimed.received_at_ms),
        "{before} <= {} <= {after}",
        claimed.received_at_ms
    );
    assert!(store.claim_delivery().await.expect("claim").is_none());
    // A redelivery of a delivery being processed changes nothing either.
    assert_eq!(
        store
            .accept_delivery(delivery("d-1", "o/r#1", "{}"))
            .await
            .expect("accept again"),
        Accepted::Duplicate
    );
    assert_eq!(state_of(&*store, "d-1").await, DeliveryState::Running);

    // Concurrent redeliveries: each id stored once.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_delivery(delivery(&format!("x-{}", i % 10), "o/r#7", "{}"))
                .await
        }));
    }
    let (mut new, mut dup) = (0, 0);
    for t in tasks {
        match t.await.expect("join").expect("accept") {
            Accepted::New => new += 1,
            Accepted::Duplicate => dup += 1,
        }
    }
    assert_eq!((new, dup), (10, 40));
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(counts["pending"], 10);
    assert_eq!(counts["running"], 1);
    assert_eq!(counts.values().sum::<u64>(), 11);
}

pub(crate) async fn delivery_bodies_round_trip(b: &Backend) {
    let store = b.open().await;
    // Over the size that is (de)compressed on a blocking thread; every byte value.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut d = delivery("big", "k1", "");
    d.body = bytes::Bytes::from(big.clone());
    store.accept_delivery(d).await.expect("accept");
    let mut e = delivery("empty", "k2", "");
    e.action = None;
    e.event = "ping".into();
    store.accept_delivery(e).await.expect("accept");
    let c = store.claim_delivery().await.expect("claim").expect("big");
    assert_eq!(c.id.as_str(), "big");
    assert!(c.body == big, "large body changed");
    let c = store.claim_delivery().await.expect("claim").expect("empty");
    assert_eq!((c.id.as_str(), c.body.len()), ("empty", 0));
    assert_eq!((c.event.as_str(), c.action), ("ping", None));
}

pub(crate) async fn claim_order_per_key(b: &Backend) {
    let store = b.open().await;
    for (i, key) in [
        ("a1", "o/r#1"),
        ("a2", "o/r#1"),
        ("b1", "o/r#2"),
        ("a3", "o/r#1"),
    ] {
        store
            .accept_delivery(delivery(i, key, "{}"))
            .await
            .expect("accept");
    }
    let first = store.claim_delivery().await.expect("claim").expect("a1");
    assert_eq!(first.id.as_str(), "a1");
    assert_eq!(first.queue_key, "o/r#1");
    // a2 waits for a1; b1 (another key) is claimable.
    let second = store.claim_delivery().await.expect("claim").expect("b1");
    assert_eq!(second.id.as_str(), "b1");
    assert!(store.claim_delivery().await.expect("claim").is_none());
    assert_eq!(state_of(&*store, "a1").await, DeliveryState::Running);
    // The lease of a delivery being processed can be renewed (trivially, on one node).
    assert!(store.renew_delivery_lease(&first.id).await.expect("renew"));

    store
        .finish_delivery(&first.id, Outcome::Done)
        .await
        .expect("finish");
    assert_eq!(state_of(&*store, "a1").await, DeliveryState::Done);
    // Finishing again (or finishing what is not running) changes nothing.
    store
        .finish_delivery(
            &first.id,
            Outcome::Failed {
                error: "late".into(),
            },
        )
        .await
        .expect("finish again is not an error");
    let rec = store.delivery(&did("a1")).await.expect("read").expect("a1");
    assert_eq!((rec.state, rec.last_error), (DeliveryState::Done, None));

    let third = store.claim_delivery().await.expect("claim").expect("a2");
    assert_eq!(third.id.as_str(), "a2");
    store
        .finish_delivery(
            &third.id,
            Outcome::Failed {
                error: "bad manifest".into(),
            },
        )
        .await
        .expect("finish");
    let rec = store.delivery(&did("a2")).await.expect("read").expect("a2");
    assert_eq!(rec.state, DeliveryState::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("bad manifest"));
    // A failed delivery does not hold back the rest of its key.
    let fourth = store.claim_delivery().await.expect("claim").expect("a3");
    assert_eq!(fourth.id.as_str(), "a3");
    assert!(store.claim_delivery().await.expect("claim").is_none());
}

pub(crate) async fn retry_delay(b: &Backend) {
    let store = b.open().await;
    for (i, key) in [("r1", "o/r#1"), ("r2", "o/r#1"), ("s1", "o/r#9")] {
        store
            .accept_delivery(delivery(i, key, "{}"))
            .await
            .expect("accept");
    }
    let c = store.claim_delivery().await.expect("claim").expect("r1");
    assert_eq!(c.id.as_str(), "r1");
    store
        .finish_delivery(
            &c.id,
            Outcome::Retry {
                error: "GitHub answered 502".into(),
                after: Duration::from_secs(3600),
            },
        )
        .await
        .expect("retry");
    let rec = store.delivery(&did("r1")).await.expect("read").expect("r1");
    assert_eq!(rec.state, DeliveryState::Pending);
    assert_eq!(rec.last_error.as_deref(), Some("GitHub answered 502"));
    assert_eq!(rec.attempts, 1);
    // Not due yet, and r2 waits behind it; the other key goes ahead.
    let other = store.claim_delivery().await.expect("claim").expect("s1");
    assert_eq!(other.id.as_str(), "s1");
    assert!(store.claim_delivery().await.expect("claim").is_none());

    // A short delay: not claimable before it, claimable after, as a new attempt.
    store
        .accept_delivery(delivery("t1", "o/r#5", "{}"))
        .await
        .expect("accept");
    let c = store.claim_delivery().await.expect("claim").expect("t1");
    assert_eq!(c.id.as_str(), "t1");
    let delay = Duration::from_millis(700);
    let retried = Instant::now();
    store
        .finish_delivery(
            &c.id,
            Outcome::Retry {
                error: "not yet".into(),
                after: delay,
            },
        )
        .await
        .expect("retry");
    let again = claim_within(&*store, "t1", DEADLINE).await;
    assert!(
        retried.elapsed() + Duration::from_millis(50) >= delay,
        "claimed {:?} after a {delay:?} retry delay",
        retried.elapsed()
    );
    assert_eq!(again.attempts, 2);
}
