//! Governed input, check runs and comments, concurrent duplicates, retention, restart recovery and migrations.

use super::*;

/// SPEC 12: an environment's last governed change, and the paths a direct push changed.
pub(crate) async fn governed_input(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let other = repo("octo/other");
    // No row: nothing to record, and no row is made.
    store
        .set_governed(
            &r,
            "checkout",
            "a".repeat(40).as_str(),
            "b".repeat(40).as_str(),
        )
        .await
        .expect("no row is fine");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Ready))
        .await
        .expect("insert");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!((e.governed_sha, e.code_sha), (None, None));
    let (at, code) = ("a".repeat(40), "b".repeat(40));
    store
        .set_governed(&r, "checkout", &at, &code)
        .await
        .expect("set");
    // An inventory update (a run's start or end) keeps it.
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("update");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.governed_sha.as_deref(), Some(at.as_str()));
    assert_eq!(e.code_sha.as_deref(), Some(code.as_str()));

    // Ungoverned paths: per repository, by path, the latest push's commit.
    assert!(store.ungoverned(&r).await.expect("read").is_empty());
    let paths = vec![
        "catalog/site/deploy.sh".to_string(),
        ".paved/platform.yaml".to_string(),
    ];
    store
        .flag_ungoverned(&r, &paths, &"c".repeat(40), "mallory")
        .await
        .expect("flag");
    store
        .flag_ungoverned(&r, &paths[..1], &"d".repeat(40), "mallory")
        .await
        .expect("flag again");
    store
        .flag_ungoverned(&other, &paths[..1], &"e".repeat(40), "eve")
        .await
        .expect("another repository");
    assert_eq!(
        store.ungoverned(&r).await.expect("read"),
        vec![
            (".paved/platform.yaml".to_string(), "c".repeat(40)),
            ("catalog/site/deploy.sh".to_string(), "d".repeat(40)),
        ]
    );
    store
        .clear_ungoverned(&r, &paths[..1])
        .await
        .expect("clear");
    assert_eq!(
        store.ungoverned(&r).await.expect("read"),
        vec![(".paved/platform.yaml".to_string(), "c".repeat(40))]
    );
    assert_eq!(store.ungoverned(&other).await.expect("read").len(), 1);
}

pub(crate) async fn comments_runs_and_counts(b: &Backend) {
    let store = b.open().await;
    store.ping().await.expect("ping");
    let counts = store.delivery_counts().await.expect("counts");
    let zero: BTreeMap<String, u64> = ["done", "failed", "pending", "running"]
        .into_iter()
        .map(|s| (s.to_owned(), 0))
        .collect();
    assert_eq!(counts, zero);

    let r = repo("octo/env");
    assert_eq!(store.pr_comment(&r, PrNumber(3)).await.expect("get"), None);
    store
        .set_pr_comment(&r, PrNumber(3), CommentId(11))
        .await
        .expect("set");
    store
        .set_pr_comment(&r, PrNumber(3), CommentId(12))
        .await
        .expect("set");
    store
        .set_pr_comment(&r, PrNumber(4), CommentId(u64::from(u32::MAX) + 5))
        .await
        .expect("set");
    assert_eq!(
        store.pr_comment(&r, PrNumber(3)).await.expect("get"),
        Some(CommentId(12))
    );
    assert_eq!(
        store.pr_comment(&r, PrNumber(4)).await.expect("get"),
        Some(CommentId(u64::from(u32::MAX) + 5))
    );
    let report = serde_json::json!({"checks": [{"name": "paved/schema", "ok": true}]});
    let run_id = store
        .insert_evaluation(NewEvaluation {
            repo: r.clone(),
            pr: PrNumber(3),
            head_sha: sha('a'),
            base_sha: sha('b'),
            delivery_id: did("d-9"),
            report: report.clone(),
        })
        .await
        .expect("insert run");
    let run = store
        .evaluation(run_id)
        .await
        .expect("run")
        .expect("stored");
    assert_eq!(run.id, run_id);
    assert_eq!((run.repo.as_str(), run.pr), ("octo/env", 3));
    assert_eq!(run.head_sha, sha('a').as_str());
    assert_eq!(run.base_sha, sha('b').as_str());
    assert_eq!(run.delivery_id, "d-9");
    assert_eq!(run.report, report);
    assert!(chrono::DateTime::parse_from_rfc3339(&run.created_at).is_ok());
    assert!(store
        .evaluation(EvaluationId(run_id.0 + 1000))
        .await
        .expect("run")
        .is_none());

    for (i, k) in ["k1", "k2", "k3"].iter().enumerate() {
        store
            .accept_delivery(delivery(&format!("c{i}"), k, "{}"))
            .await
            .expect("accept");
    }
    let c = store.claim_delivery().await.expect("claim").expect("c0");
    store
        .finish_delivery(&c.id, Outcome::Done)
        .await
        .expect("finish");
    let c = store.claim_delivery().await.expect("claim").expect("c1");
    store
        .finish_delivery(&c.id, Outcome::Failed { error: "no".into() })
        .await
        .expect("finish");
    store.claim_delivery().await.expect("claim").expect("c2");
    let counts = store.delivery_counts().await.expect("counts");
    assert_eq!(
        (
            counts["pending"],
            counts["running"],
            counts["done"],
            counts["failed"]
        ),
        (0, 1, 1, 1)
    );
}

/// Deliveries accepted at the same moment are grouped into one commit: a redelivery in
/// the same group is still a duplicate, and each key's deliveries are claimed in the order
/// they were accepted.
pub(crate) async fn duplicates_at_once(b: &Backend) {
    let store = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.accept_delivery(delivery(&format!("g-{}", i % 20), "o/r#1", "{}"))
                .await
        }));
    }
    let mut new = 0;
    for t in tasks {
        if t.await.expect("join").expect("accept") == Accepted::New {
            new += 1;
        }
    }
    assert_eq!(new, 20);
    assert_eq!(
        store.delivery_counts().await.expect("counts")["pending"],
        20
    );
    // One key, accepted one after another: claimed in that order.
    for i in 0..5 {
        store
            .accept_delivery(delivery(&format!("o-{i}"), "o/r#2", "{}"))
            .await
            .expect("accept");
    }
    let mut order = Vec::new();
    while order.len() < 25 {
        let d = store
            .claim_delivery()
            .await
            .expect("claim")
            .expect("one is claimable");
        if d.queue_key == "o/r#2" {
            order.push(d.id.as_str().to_string());
        } else {
            order.push(String::new());
        }
        store
            .finish_delivery(&d.id, Outcome::Done)
            .await
            .expect("finish");
    }
    let mine: Vec<&str> = order
        .iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect();
    assert_eq!(mine, ["o-0", "o-1", "o-2", "o-3", "o-4"]);
}

/// Retention prunes finished deliveries, check-run reports and finished operations' logs,
/// a batch at a time; it never touches pending or running deliveries, an operation's record
/// and outcome, or the inventory.
pub(crate) async fn retention(b: &Backend) {
    use paved::store::Prunable;
    let store = b.open().await;
    for (id, key) in [("r-done", "k1"), ("r-failed", "k2"), ("r-running", "k3")] {
        store
            .accept_delivery(delivery(id, key, "{}"))
            .await
            .expect("accept");
    }
    let c = claim_within(store.as_ref(), "r-done", DEADLINE).await;
    store
        .finish_delivery(&c.id, Outcome::Done)
        .await
        .expect("done");
    let c = claim_within(store.as_ref(), "r-failed", DEADLINE).await;
    store
        .finish_delivery(&c.id, Outcome::Failed { error: "no".into() })
        .await
        .expect("failed");
    claim_within(store.as_ref(), "r-running", DEADLINE).await;
    store
        .accept_delivery(delivery("r-pending", "k4", "{}"))
        .await
        .expect("accept");
    let run_id = store
        .insert_evaluation(NewEvaluation {
            repo: repo("octo/envs"),
            pr: PrNumber(7),
            head_sha: sha('a'),
            base_sha: sha('b'),
            delivery_id: did("r-done"),
            report: serde_json::json!({"environments": []}),
        })
        .await
        .expect("run");
    let (op, _) = store
        .plan_operation(new_op("kept", 'c', 1))
        .await
        .expect("plan");
    let fence = start(store.as_ref(), op, "kept", "me")
        .await
        .expect("started");
    let outputs = serde_json::json!({"url": {"type": "string", "value": "https://kept.test"}});
    assert!(
        finish(
            store.as_ref(),
            op,
            &fence,
            OpState::Succeeded,
            outputs.clone()
        )
        .await
    );
    let (running_op, _) = store
        .plan_operation(new_op("busy", 'd', 1))
        .await
        .expect("plan");
    start(store.as_ref(), running_op, "busy", "me")
        .await
        .expect("started");

    // Nothing is older than an hour ago.
    let hour_ago = now_ms() - 3_600_000;
    for what in Prunable::ALL {
        assert_eq!(
            store.prune(what, hour_ago, 100).await.expect("prune"),
            0,
            "{what:?}"
        );
    }

    // Everything finished is older than a minute from now; batches of one.
    let later = now_ms() + 60_000;
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::Deliveries, later, 1)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        store.prune(Prunable::Runs, later, 10).await.expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::OperationLogs, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::OperationLogs, later, 10)
            .await
            .expect("prune"),
        0
    );

    for gone in ["r-done", "r-failed"] {
        assert!(
            store.delivery(&did(gone)).await.expect("read").is_none(),
            "{gone}"
        );
    }
    assert_eq!(
        state_of(store.as_ref(), "r-running").await,
        DeliveryState::Running
    );
    assert_eq!(
        state_of(store.as_ref(), "r-pending").await,
        DeliveryState::Pending
    );
    assert!(store.evaluation(run_id).await.expect("read").is_none());

    // The operation and its outcome stay; only the log went. The inventory is whole.
    let kept = store.operation(op).await.expect("read").expect("kept");
    assert_eq!(kept.state, OpState::Succeeded);
    assert_eq!(kept.outputs, outputs);
    assert_eq!(
        kept.op.approvers,
        vec!["carol".to_string(), "dave".to_string()]
    );
    assert_eq!(kept.log, "");
    let busy = store
        .operation(running_op)
        .await
        .expect("read")
        .expect("busy");
    assert_eq!(busy.state, OpState::Running);
    let env = store
        .environment(&repo("octo/envs"), "kept")
        .await
        .expect("read")
        .expect("inventory");
    assert_eq!(env.state, EnvState::Ready);
    assert_eq!(
        store
            .environment_storage(&repo("octo/envs"), "kept")
            .await
            .expect("storage"),
        Some(b"storage after".to_vec())
    );
}

/// What a restart finds. A single node (SQLite) owns everything: whatever was running
/// died with it. Replicas (PostgreSQL) only touch what no live replica holds: operations
/// whose environment lock ran out, expired locks; deliveries come back by lease expiry.
pub(crate) async fn restart_recovery(b: &Backend) {
    let r = repo("octo/envs");
    let hour = Duration::from_secs(3600);
    let (planned, live, unlocked, expired, done) = {
        let store = b.open().await;
        store
            .accept_delivery(delivery("c1", "o/r#1", "{\"n\":1}"))
            .await
            .expect("accept");
        store
            .accept_delivery(delivery("c2", "o/r#2", "{\"n\":2}"))
            .await
            .expect("accept");
        let c = store.claim_delivery().await.expect("claim").expect("c1");
        assert_eq!(c.id.as_str(), "c1");
        let mut ids = Vec::new();
        for env in ["env-a", "env-b", "env-c", "env-d", "env-e"] {
            ids.push(
                store
                    .plan_operation(new_op(env, 'a', 1))
                    .await
                    .expect("plan")
                    .0,
            );
        }
        // b: running, its lock held for an hour; c: running, no lock; d: running, its
        // lock ran out; e: finished.
        assert!(store
            .try_lock_environment(&r, "env-b", "node-1:env-b", hour)
            .await
            .expect("lock")
            .is_some());
        assert!(store
            .try_lock_environment(&r, "env-d", "node-1:env-d", Duration::ZERO)
            .await
            .expect("lock")
            .is_some());
        for (&id, env) in ids[1..].iter().zip(["env-b", "env-c", "env-d", "env-e"]) {
            let holder = format!("node-1:{env}");
            // d's lease runs out as soon as it is taken.
            let ttl = if env == "env-d" { Duration::ZERO } else { hour };
            let epoch = store
                .try_lock_environment(&r, env, &holder, ttl)
                .await
                .expect("lock")
                .expect("held");
            let fence = Fence { holder, epoch };
            let op = store.operation(id).await.expect("read").expect("op").op;
            assert!(store
                .start_operation(
                    id,
                    &fence,
                    EnvironmentUpdate::of(&op, EnvState::Provisioning, id)
                )
                .await
                .expect("start"));
            store
                .update_operation(id, OperationUpdate::Pid(500 + id.0))
                .await
                .expect("pid");
            if env == "env-e" {
                assert!(
                    finish(
                        &*store,
                        id,
                        &fence,
                        OpState::Succeeded,
                        serde_json::json!({})
                    )
                    .await
                );
            }
            if env == "env-c" || env == "env-e" {
                store
                    .unlock_environment(&r, env, &fence.holder)
                    .await
                    .expect("unlock");
            }
        }
        // Dropped with c1 and b, c, d running: the server died.
        (ids[0], ids[1], ids[2], ids[3], ids[4])
    };
    let store = b.open().await;
    let hit = store
        .interrupt_running_operations()
        .await
        .expect("interrupt");
    let hit_ids: Vec<OperationId> = hit.iter().map(|o| o.id).collect();
    match b.kind {
        Kind::Sqlite => assert_eq!(hit_ids, vec![live, unlocked, expired]),
        Kind::Postgres => assert_eq!(hit_ids, vec![unlocked, expired]),
    }
    // As they were: running, with the pid whose process group may need killing.
    for o in &hit {
        assert_eq!(o.state, OpState::Running);
        assert_eq!(o.pid, Some(500 + o.id.0));
        assert_eq!(o.finished_at, None);
        let now = store.operation(o.id).await.expect("read").expect("op");
        assert_eq!(now.state, OpState::Interrupted);
        assert_eq!(
            now.error.as_deref(),
            Some("interrupted: the server stopped while it ran")
        );
        assert!(now.finished_at.is_some());
        assert_eq!(now.pid, Some(500 + o.id.0));
    }
    let state = |id| {
        let store = store.clone();
        async move { store.operation(id).await.expect("read").expect("op").state }
    };
    assert_eq!(state(planned).await, OpState::Planned);
    assert_eq!(state(done).await, OpState::Succeeded);
    assert_eq!(
        state(live).await,
        match b.kind {
            Kind::Sqlite => OpState::Interrupted,
            Kind::Postgres => OpState::Running,
        }
    );
    assert!(store
        .interrupt_running_operations()
        .await
        .expect("again")
        .is_empty());

    let released = store.release_all_locks().await.expect("release");
    match b.kind {
        // Both locks.
        Kind::Sqlite => assert_eq!(released, 2),
        // Only the expired one: b's holder may be alive.
        Kind::Postgres => {
            assert_eq!(released, 1);
            assert!(store
                .try_lock_environment(&r, "env-b", "node-2:env-b", hour)
                .await
                .expect("b still locked")
                .is_none());
        }
    }
    assert!(store
        .try_lock_environment(&r, "env-d", "node-2:env-d", hour)
        .await
        .expect("d is free")
        .is_some());

    let requeued = store.requeue_interrupted().await.expect("requeue");
    match b.kind {
        Kind::Sqlite => {
            assert_eq!(requeued, 1);
            let c = store.claim_delivery().await.expect("claim").expect("c1");
            assert_eq!((c.id.as_str(), c.attempts), ("c1", 2));
            assert_eq!(c.body, b"{\"n\":1}");
            let c = store.claim_delivery().await.expect("claim").expect("c2");
            assert_eq!(c.id.as_str(), "c2");
        }
        Kind::Postgres => {
            // c1 stays leased to the first instance (until its lease runs out).
            assert_eq!(requeued, 0);
            assert_eq!(state_of(&*store, "c1").await, DeliveryState::Running);
            let c = store.claim_delivery().await.expect("claim").expect("c2");
            assert_eq!(c.id.as_str(), "c2");
            assert!(store.claim_delivery().await.expect("claim").is_none());
        }
    }
}

pub(crate) async fn migrations_apply_on_an_empty_database(b: &Backend) {
    // Through `paved migrate` and the service's store selection by URL scheme.
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, fresh_url) = match b.kind {
        Kind::Sqlite => (
            format!("sqlite://{}", dir.path().join("fresh.sqlite").display()),
            None,
        ),
        Kind::Postgres => {
            let pg = b.pg.as_ref().expect("pg");
            // postgresql:// is accepted too.
            let url = b.url.replacen("postgres://", "postgresql://", 1);
            // A database that does not exist yet is created.
            let fresh = format!("paved_test_{:016x}", rand::random::<u64>());
            (url, Some((fresh.clone(), pg.url_of(&fresh))))
        }
    };
    let config = |url: &str| {
        Config::load(
            &Overrides {
                database_url: Some(url.to_owned()),
                data_dir: Some(dir.path().join("data")),
                ..Default::default()
            },
            &|_| None,
        )
        .expect("config")
    };
    paved::service::migrate(&config(&url))
        .await
        .expect("migrate");
    paved::service::migrate(&config(&url))
        .await
        .expect("migrate again is a no-op");
    let store = paved::service::open_store(&config(&url))
        .await
        .expect("open after migrate");
    store.ping().await.expect("ping");
    store
        .accept_delivery(delivery("m1", "k", "{}"))
        .await
        .expect("accept");
    let (op, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    drop(store);
    // Opening again applies nothing and keeps everything.
    let store = paved::service::open_store(&config(&url))
        .await
        .expect("reopen");
    assert!(store.operation(op).await.expect("read").is_some());
    assert_eq!(state_of(&*store, "m1").await, DeliveryState::Pending);
    drop(store);
    // The store's own entry points agree.
    match b.kind {
        Kind::Sqlite => SqliteStore::migrate(&url).await.expect("migrate"),
        Kind::Postgres => PgStore::migrate(&url).await.expect("migrate"),
    }
    let e = paved::service::open_store(&config("mysql://localhost/paved"))
        .await
        .err()
        .expect("unknown scheme refused");
    assert!(
        e.to_string().contains("database_url must start with"),
        "{e}"
    );

    if let Some((name, fresh_url)) = fresh_url {
        let pg = b.pg.as_ref().expect("pg");
        let result = async {
            paved::service::migrate(&config(&fresh_url)).await?;
            let store = PgStore::open(&fresh_url).await?;
            store.ping().await?;
            store.close().await;
            anyhow::Ok(())
        }
        .await;
        drop_database(&pg.server, &name).await;
        result.expect("migrate creates a missing database");
    }
}
