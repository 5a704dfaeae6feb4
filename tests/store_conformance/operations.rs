//! Operations, environment locks and the fence that keeps a late writer out.

use super::*;

pub(crate) async fn operations_planned_once(b: &Backend) {
    let store = b.open().await;
    let op = new_op("checkout", 'a', 1);
    let (id, created) = store.plan_operation(op.clone()).await.expect("plan");
    assert!(created);
    // A redelivered merge plans it again (even computing something else): the first
    // one stands.
    let mut again = op.clone();
    again.parameters = serde_json::json!({"size": "huge"});
    assert_eq!(
        store.plan_operation(again).await.expect("plan again"),
        (id, false)
    );
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.op, op);
    assert_eq!(rec.state, OpState::Planned);
    assert_eq!(rec.op.parameters["cmd"], "$(rm -rf /)");
    assert_eq!((rec.started_at, rec.finished_at), (None, None));
    assert_eq!((rec.pid, rec.deployment_id, rec.error), (None, None, None));
    assert_eq!((rec.log.as_str(), rec.reported), ("", 0));
    assert_eq!(rec.outputs, serde_json::json!({}));
    assert!(chrono::DateTime::parse_from_rfc3339(&rec.created_at).is_ok());

    // Another attempt, or another kind, is another operation.
    let (id2, created2) = store
        .plan_operation(new_op("checkout", 'a', 2))
        .await
        .expect("plan attempt 2");
    assert!(created2);
    let mut delete = new_op("checkout", 'a', 1);
    delete.kind = OpKind::Delete;
    let (id3, created3) = store.plan_operation(delete).await.expect("plan delete");
    assert!(created3);
    let ids: Vec<OperationId> = store
        .operations_for_merge(&repo("octo/envs"), &sha('a'))
        .await
        .expect("of merge")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![id, id2, id3]);
    assert!(store
        .operations_for_merge(&repo("octo/envs"), &sha('b'))
        .await
        .expect("of other merge")
        .is_empty());
    assert!(store
        .operation(OperationId(id3.0 + 1000))
        .await
        .expect("read")
        .is_none());

    // Planned concurrently (a merge redelivered while it is handled): created once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.plan_operation(new_op("search", 'c', 1)).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join").expect("plan"));
    }
    assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1, "{results:?}");
    assert!(
        results.iter().all(|(i, _)| *i == results[0].0),
        "{results:?}"
    );

    // A refused operation is final at once, and nothing starts it.
    let mut refused = new_op("checkout", 'e', 1);
    refused.state = OpState::Refused;
    refused.error = Some("paved/policy was failing at merge time".into());
    let (rid, _) = store.plan_operation(refused.clone()).await.expect("plan");
    let rec = store.operation(rid).await.expect("read").expect("stored");
    assert_eq!(rec.op, refused);
    assert_eq!(rec.state, OpState::Refused);
    assert_eq!(rec.error, refused.error);
    assert!(rec.started_at.is_some());
    assert_eq!(rec.finished_at, rec.started_at);
    assert!(
        start(&*store, rid, "checkout", "A").await.is_none(),
        "a refused operation never starts"
    );
    let mut running = new_op("checkout", 'b', 1);
    running.state = OpState::Running;
    assert!(store.plan_operation(running).await.is_err());
}

pub(crate) async fn operation_lifecycle(b: &Backend) {
    let store = b.open().await;
    let (id, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    let fence = start(&*store, id, "checkout", "A").await.expect("started");
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Running);
    assert!(rec.started_at.is_some());
    assert_eq!((rec.pid, rec.finished_at), (None, None));
    let env = store
        .environment(&repo("octo/envs"), "checkout")
        .await
        .expect("read")
        .expect("inventory row written with the start");
    assert_eq!(
        (env.state, env.last_operation),
        (EnvState::Provisioning, Some(id))
    );
    // Started twice (a second worker or replica): refused, so it cannot run twice.
    assert!(start(&*store, id, "checkout", "A").await.is_none());

    store
        .update_operation(id, OperationUpdate::Pid(4242))
        .await
        .expect("pid");
    store
        .update_operation(
            id,
            OperationUpdate::DeploymentCreated(DeploymentId(9_000_000_001)),
        )
        .await
        .expect("deployment");
    let outputs = serde_json::json!({
        "url": {"type": "string", "value": "https://x", "sensitive": false},
        "token": {"type": "string", "value": "s3cr3t", "sensitive": true}
    });
    assert!(finish(&*store, id, &fence, OpState::Succeeded, outputs.clone()).await);
    // Result, inventory and storage were one write.
    let env = store
        .environment(&repo("octo/envs"), "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        (env.state, env.outputs.clone()),
        (EnvState::Ready, outputs.clone())
    );
    assert_eq!(
        store
            .environment_storage(&repo("octo/envs"), "checkout")
            .await
            .expect("storage"),
        Some(b"storage after".to_vec())
    );
    // Finishing again changes nothing.
    assert!(!finish(&*store, id, &fence, OpState::Failed, serde_json::json!({})).await);
    for bits in [reported::DEPLOYMENT, reported::NOTE, reported::DEPLOYMENT] {
        store
            .update_operation(id, OperationUpdate::Reported(bits))
            .await
            .expect("reported");
    }
    let rec = store.operation(id).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Succeeded);
    assert_eq!(rec.reported, reported::DEPLOYMENT | reported::NOTE);
    assert_eq!(rec.log, "deployed\n\u{1F680} done\n");
    assert_eq!(rec.outputs, outputs);
    assert_eq!(rec.error, None);
    assert_eq!(rec.pid, Some(4242));
    assert_eq!(rec.deployment_id, Some(DeploymentId(9_000_000_001)));
    let (started, done) = (
        rec.started_at.expect("started"),
        rec.finished_at.expect("finished"),
    );
    assert!(started <= done, "{started} > {done}");
    assert_eq!(rec.op, new_op("checkout", 'a', 1));

    // A failure keeps its error.
    let (id2, _) = store
        .plan_operation(new_op("checkout", 'b', 1))
        .await
        .expect("plan");
    let fence2 = start(&*store, id2, "checkout", "A").await.expect("started");
    assert!(
        finish(
            &*store,
            id2,
            &fence2,
            OpState::Failed,
            serde_json::json!({})
        )
        .await
    );
    let rec = store.operation(id2).await.expect("read").expect("stored");
    assert_eq!(rec.state, OpState::Failed);
    assert_eq!(rec.error.as_deref(), Some("deploy.sh exited with status 3"));
    let e = err_text(
        store
            .update_operation(OperationId(id2.0 + 1000), OperationUpdate::Pid(1))
            .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = err_text(
        store
            .update_operation(id2, finished(OpState::Running))
            .await,
    );
    assert!(e.contains("cannot finish as running"), "{e}");

    // History of an environment: newest first, limited, of that repo and name only.
    let (id3, _) = store
        .plan_operation(new_op("checkout", 'c', 1))
        .await
        .expect("plan");
    store
        .plan_operation(new_op("other", 'a', 1))
        .await
        .expect("plan other");
    let mut other_repo = new_op("checkout", 'a', 1);
    other_repo.repo = RepoName::parse("octo/else").expect("repo");
    store.plan_operation(other_repo).await.expect("plan");
    let got: Vec<OperationId> = store
        .operations_for_environment(&repo("octo/envs"), "checkout", 2)
        .await
        .expect("history")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(got, vec![id3, id2]);
    let all = store
        .operations_for_environment(&repo("octo/envs"), "checkout", 100)
        .await
        .expect("history");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.op.env_name == "checkout"));
}

pub(crate) async fn locks(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("B refused")
        .is_none());
    // Another environment, or the same name in another repo, is another lock.
    assert!(store
        .try_lock_environment(&r, "search", "B", minute)
        .await
        .expect("B other env")
        .is_some());
    assert!(store
        .try_lock_environment(&repo("octo/else"), "checkout", "B", minute)
        .await
        .expect("B other repo")
        .is_some());
    // The holder renews.
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A renews")
        .is_some());
    // B cannot release A's lock.
    store
        .unlock_environment(&r, "checkout", "B")
        .await
        .expect("B unlock");
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("still A's")
        .is_none());
    store
        .unlock_environment(&r, "checkout", "A")
        .await
        .expect("A unlock");
    assert!(store
        .try_lock_environment(&r, "checkout", "B", minute)
        .await
        .expect("B takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "checkout", "A", minute)
        .await
        .expect("A refused")
        .is_none());

    // Expiry: a zero lease has run out as soon as it is taken, and anyone takes it over.
    assert!(store
        .try_lock_environment(&r, "billing", "A", Duration::ZERO)
        .await
        .expect("A takes")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "billing", "C", minute)
        .await
        .expect("C takes over")
        .is_some());
    assert!(store
        .try_lock_environment(&r, "billing", "A", minute)
        .await
        .expect("A refused")
        .is_none());
    // A, whose lease was taken over, cannot release C's lock.
    store
        .unlock_environment(&r, "billing", "A")
        .await
        .expect("unlock");
    assert!(store
        .try_lock_environment(&r, "billing", "D", minute)
        .await
        .expect("D refused")
        .is_none());
    // A short lease runs out by itself.
    assert!(store
        .try_lock_environment(&r, "short", "A", Duration::from_millis(200))
        .await
        .expect("A takes")
        .is_some());
    let end = Instant::now() + DEADLINE;
    while store
        .try_lock_environment(&r, "short", "B", minute)
        .await
        .expect("B tries")
        .is_none()
    {
        assert!(Instant::now() < end, "a 200 ms lease never ran out");
        tokio::time::sleep(POLL).await;
    }

    // Many holders at once: one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, r) = (store.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            s.try_lock_environment(&r, "contended", &format!("H{i}"), minute)
                .await
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.expect("join").expect("lock").is_some());
    }
    assert_eq!(won, 1);
}

/// Issue 9, item 5: a holder whose lease ran out and was taken over writes nothing more,
/// neither a start nor a result (nor the inventory or storage that go with it), and each
/// change of hands raises the lock's epoch, released locks included.
pub(crate) async fn fencing(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    let minute = Duration::from_secs(60);
    let (id, _) = store
        .plan_operation(new_op("fenced", 'a', 1))
        .await
        .expect("plan");
    // A takes the lock with a lease that has run out at once, and starts the operation.
    let e1 = store
        .try_lock_environment(&r, "fenced", "A", Duration::ZERO)
        .await
        .expect("lock")
        .expect("A holds");
    let a = Fence {
        holder: "A".into(),
        epoch: e1,
    };
    let op = store.operation(id).await.expect("read").expect("op").op;
    assert!(store
        .start_operation(
            id,
            &a,
            EnvironmentUpdate::of(&op, EnvState::Provisioning, id)
        )
        .await
        .expect("start"));
    // Renewal by the same holder keeps the epoch.
    assert_eq!(
        store
            .try_lock_environment(&r, "fenced", "A", Duration::ZERO)
            .await
            .expect("renew"),
        Some(e1)
    );
    // B takes it over: a higher epoch.
    let e2 = store
        .try_lock_environment(&r, "fenced", "B", minute)
        .await
        .expect("lock")
        .expect("B holds");
    assert!(e2 > e1, "{e2} > {e1}");
    // A's late result is fenced off: nothing of it lands.
    assert!(
        !finish(
            &*store,
            id,
            &a,
            OpState::Succeeded,
            serde_json::json!({"x": 1})
        )
        .await
    );
    let rec = store.operation(id).await.expect("read").expect("op");
    assert_eq!(rec.state, OpState::Running);
    let env = store
        .environment(&r, "fenced")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(env.state, EnvState::Provisioning);
    assert_eq!(
        store.environment_storage(&r, "fenced").await.expect("read"),
        None
    );
    // Even with B's epoch, A's name is not B's: still nothing.
    let forged = Fence {
        holder: "A".into(),
        epoch: e2,
    };
    assert!(
        !finish(
            &*store,
            id,
            &forged,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    // B marks the run it found interrupted; A's result still cannot land afterwards.
    store
        .update_operation(id, finished(OpState::Interrupted))
        .await
        .expect("interrupt");
    assert!(!finish(&*store, id, &a, OpState::Succeeded, serde_json::json!({})).await);
    assert_eq!(
        store.operation(id).await.expect("read").expect("op").state,
        OpState::Interrupted
    );
    // A stale fence cannot start the next attempt either; B's can.
    let (next, _) = store
        .plan_operation(new_op("fenced", 'a', 2))
        .await
        .expect("plan");
    let op2 = store.operation(next).await.expect("read").expect("op").op;
    let env2 = EnvironmentUpdate::of(&op2, EnvState::Provisioning, next);
    assert!(!store
        .start_operation(next, &a, env2.clone())
        .await
        .expect("start"));
    let b_fence = Fence {
        holder: "B".into(),
        epoch: e2,
    };
    assert!(store
        .start_operation(next, &b_fence, env2)
        .await
        .expect("start"));
    assert!(
        finish(
            &*store,
            next,
            &b_fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    // Released and taken again: the epoch still only goes up.
    store
        .unlock_environment(&r, "fenced", "B")
        .await
        .expect("unlock");
    let e3 = store
        .try_lock_environment(&r, "fenced", "C", minute)
        .await
        .expect("lock")
        .expect("C holds");
    assert!(e3 > e2, "{e3} > {e2}");
    // A running operation's pid is recorded; a finished one's is not changed.
    let e = err_text(store.update_operation(next, OperationUpdate::Pid(7)).await);
    assert!(e.contains("succeeded"), "{e}");
}
