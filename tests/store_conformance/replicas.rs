//! Two PostgreSQL replicas on one database.

use super::*;

/// Two replicas, four claimers each, 200 deliveries over 40 pull requests accepted
/// through both at once: every delivery is claimed exactly once, the deliveries of one
/// pull request never run at the same time and run in the order they were accepted.
pub(crate) async fn replicas_claim_each_delivery_once(b: &Backend) {
    let a = Arc::new(b.open_pg().await);
    let bb = Arc::new(b.open_pg().await);
    assert_ne!(a.instance_id(), bb.instance_id());
    const KEYS: usize = 40;
    const PER_KEY: usize = 5;
    const TOTAL: usize = KEYS * PER_KEY;

    // Each key's deliveries are accepted in order, alternately through either replica;
    // the keys concurrently.
    let mut accepting = Vec::new();
    for k in 0..KEYS {
        let stores: [Arc<PgStore>; 2] = [a.clone(), bb.clone()];
        accepting.push(tokio::spawn(async move {
            for n in 0..PER_KEY {
                let s = &stores[(k + n) % 2];
                let got = s
                    .accept_delivery(delivery(&format!("k{k}-n{n}"), &format!("o/r#{k}"), "{}"))
                    .await
                    .expect("accept");
                assert_eq!(got, Accepted::New);
            }
        }));
    }

    #[derive(Default)]
    struct Seen {
        order: HashMap<String, Vec<String>>,
        running: HashSet<String>,
        claims: Vec<String>,
        by: [usize; 2],
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let end = Instant::now() + Duration::from_secs(60);
    let mut claimers = Vec::new();
    for (which, store) in [(0usize, a.clone()), (1, bb.clone())] {
        for _ in 0..4 {
            let (store, seen) = (store.clone(), seen.clone());
            claimers.push(tokio::spawn(async move {
                loop {
                    if seen.lock().unwrap().claims.len() >= TOTAL {
                        return;
                    }
                    assert!(Instant::now() < end, "not all deliveries claimed in time");
                    let Some(d) = store.claim_delivery().await.expect("claim") else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    {
                        let mut s = seen.lock().unwrap();
                        assert!(
                            s.running.insert(d.queue_key.clone()),
                            "two deliveries of {} running at once",
                            d.queue_key
                        );
                        s.order
                            .entry(d.queue_key.clone())
                            .or_default()
                            .push(d.id.as_str().to_owned());
                        s.claims.push(d.id.as_str().to_owned());
                        s.by[which] += 1;
                    }
                    tokio::task::yield_now().await;
                    seen.lock().unwrap().running.remove(&d.queue_key);
                    store
                        .finish_delivery(&d.id, Outcome::Done)
                        .await
                        .expect("finish");
                }
            }));
        }
    }
    for t in accepting {
        t.await.expect("accept task");
    }
    for t in claimers {
        t.await.expect("claimer");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let unique: HashSet<&String> = seen.claims.iter().collect();
    assert_eq!(seen.claims.len(), TOTAL, "claims: {}", seen.claims.len());
    assert_eq!(unique.len(), TOTAL, "a delivery was claimed twice");
    for k in 0..KEYS {
        let want: Vec<String> = (0..PER_KEY).map(|n| format!("k{k}-n{n}")).collect();
        assert_eq!(seen.order[&format!("o/r#{k}")], want, "order of key {k}");
    }
    assert!(
        seen.by[0] > 0 && seen.by[1] > 0,
        "both replicas claimed: {:?}",
        seen.by
    );
    let counts = a.delivery_counts().await.expect("counts");
    assert_eq!(counts["done"], TOTAL as u64);
    assert_eq!(counts["pending"] + counts["running"], 0);
    for d in seen.claims.iter().take(5) {
        let rec = bb.delivery(&did(d)).await.expect("read").expect("stored");
        assert_eq!(rec.attempts, 1, "{d} was claimed more than once");
    }
}

/// A replica that stops renewing loses its delivery to another one once its lease runs
/// out, and its late result is not committed.
pub(crate) async fn replicas_take_over_an_expired_lease(b: &Backend) {
    let lease = Duration::from_millis(300);
    let a = b.open_pg().await.with_lease(lease);
    let other = b.open_pg().await;
    a.accept_delivery(delivery("slow", "o/r#1", "{}"))
        .await
        .expect("accept");
    other
        .accept_delivery(delivery("next", "o/r#1", "{}"))
        .await
        .expect("accept");
    let before = Instant::now();
    let d = a.claim_delivery().await.expect("claim").expect("slow");
    let claimed = Instant::now();
    assert_eq!((d.id.as_str(), d.attempts), ("slow", 1));
    if before.elapsed() < lease / 2 {
        // Leased: the other replica cannot take it, nor the next one of its key.
        assert!(other.claim_delivery().await.expect("claim").is_none());
    }
    // Wait (polling, with a deadline) until the lease has surely run out.
    let expired = claimed + lease + Duration::from_millis(50);
    while Instant::now() < expired {
        tokio::time::sleep(POLL).await;
    }
    // The replica holding it does not claim it again: its task is still at work.
    assert!(a.claim_delivery().await.expect("claim").is_none());
    // Another replica does, as a new attempt (the first one "died").
    let again = claim_within(&other, "slow", DEADLINE).await;
    assert_eq!(again.attempts, 2);
    assert_eq!(again.body, b"{}");
    // The first replica's lease is gone: renewing says so, and its result is dropped.
    assert!(!a.renew_delivery_lease(&d.id).await.expect("renew"));
    a.finish_delivery(&d.id, Outcome::Done)
        .await
        .expect("a stale finish is not an error");
    let rec = other
        .delivery(&did("slow"))
        .await
        .expect("read")
        .expect("slow");
    assert_eq!(rec.state, DeliveryState::Running, "stale result committed");
    assert_eq!(rec.attempts, 2);
    a.finish_delivery(
        &d.id,
        Outcome::Retry {
            error: "stale".into(),
            after: Duration::ZERO,
        },
    )
    .await
    .expect("stale retry");
    let rec = other
        .delivery(&did("slow"))
        .await
        .expect("read")
        .expect("slow");
    assert_eq!((rec.state, rec.last_error), (DeliveryState::Running, None));
    // The key stays blocked behind it for both replicas.
    assert!(a.claim_delivery().await.expect("claim").is_none());
    assert!(other.claim_delivery().await.expect("claim").is_none());
    // The new holder renews and commits.
    assert!(other.renew_delivery_lease(&again.id).await.expect("renew"));
    other
        .finish_delivery(
            &again.id,
            Outcome::Failed {
                error: "by the second replica".into(),
            },
        )
        .await
        .expect("finish");
    let rec = a.delivery(&did("slow")).await.expect("read").expect("slow");
    assert_eq!(rec.state, DeliveryState::Failed);
    assert_eq!(rec.last_error.as_deref(), Some("by the second replica"));
    assert!(!other.renew_delivery_lease(&again.id).await.expect("renew"));
    // The next delivery of the key is free now, for either replica.
    let n = a.claim_delivery().await.expect("claim").expect("next");
    assert_eq!(n.id.as_str(), "next");
}

/// A lease renewed in time is never taken over.
pub(crate) async fn replicas_respect_a_renewed_lease(b: &Backend) {
    let lease = Duration::from_millis(400);
    let a = Arc::new(b.open_pg().await.with_lease(lease));
    let other = b.open_pg().await;
    a.accept_delivery(delivery("long", "o/r#1", "{}"))
        .await
        .expect("accept");
    let d = a.claim_delivery().await.expect("claim").expect("long");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let (a, stop, id) = (a.clone(), stop.clone(), d.id.clone());
        tokio::spawn(async move {
            let mut renewed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(
                    a.renew_delivery_lease(&id).await.expect("renew"),
                    "lease lost"
                );
                renewed += 1;
                tokio::time::sleep(lease / 5).await;
            }
            renewed
        })
    };
    // For four lease lengths, the other replica keeps trying and never gets it.
    let watch_until = Instant::now() + lease * 4;
    while Instant::now() < watch_until {
        assert!(
            other.claim_delivery().await.expect("claim").is_none(),
            "a renewed lease was taken over"
        );
        tokio::time::sleep(POLL).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let renewed = renewer.await.expect("renewer");
    assert!(renewed >= 4, "renewed only {renewed} times");
    assert_eq!(
        a.delivery(&d.id)
            .await
            .expect("read")
            .expect("long")
            .attempts,
        1
    );
    // Renewal stopped: the lease runs out and the other replica takes it.
    let again = claim_within(&other, "long", DEADLINE).await;
    assert_eq!(again.attempts, 2);
}

/// Environment locks and planned operations are shared: one winner across replicas.
pub(crate) async fn replicas_share_locks_and_operations(b: &Backend) {
    let a = Arc::new(b.open_pg().await);
    let other = Arc::new(b.open_pg().await);
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { other.clone() };
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let lock = s
                .try_lock_environment(&r, "checkout", &format!("replica-{}:op", i % 2), minute)
                .await
                .expect("lock");
            let planned = s
                .plan_operation(new_op("checkout", 'f', 1))
                .await
                .expect("plan");
            (i % 2, lock, planned)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    // The same holder renews, so every try of the winning replica succeeds (at one epoch)
    // and none of the other's.
    let winners: HashSet<usize> = results
        .iter()
        .filter(|r| r.1.is_some())
        .map(|r| r.0)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let epochs: HashSet<i64> = results.iter().filter_map(|r| r.1).collect();
    assert_eq!(epochs.len(), 1, "{results:?}");
    let created = results.iter().filter(|r| r.2 .1).count();
    assert_eq!(created, 1, "{results:?}");
    let ids: HashSet<OperationId> = results.iter().map(|r| r.2 .0).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    // A replica starting up leaves the other's live lock and running operation alone.
    let id = *ids.iter().next().expect("id");
    let w = *winners.iter().next().expect("winner");
    let (winner, loser) = if w == 0 { (&a, &other) } else { (&other, &a) };
    let fence = Fence {
        holder: format!("replica-{w}:op"),
        epoch: *epochs.iter().next().expect("epoch"),
    };
    let op = winner.operation(id).await.expect("read").expect("op").op;
    let env = EnvironmentUpdate::of(&op, EnvState::Provisioning, id);
    assert!(winner
        .start_operation(id, &fence, env.clone())
        .await
        .expect("start"));
    assert!(loser
        .interrupt_running_operations()
        .await
        .expect("interrupt")
        .is_empty());
    assert_eq!(loser.release_all_locks().await.expect("release"), 0);
    // The loser cannot start it, nor finish it, with a fence of its own.
    let theirs = Fence {
        holder: format!("replica-{}:op", 1 - w),
        epoch: fence.epoch,
    };
    assert!(!loser
        .start_operation(id, &theirs, env.clone())
        .await
        .expect("start"));
    assert!(
        !finish(
            &**loser,
            id,
            &theirs,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    assert!(
        finish(
            &**winner,
            id,
            &fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
}
