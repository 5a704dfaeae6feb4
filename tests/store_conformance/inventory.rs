//! The inventory, merges, the notes outbox, repositories, requests and the operator's views.

use super::*;

pub(crate) async fn environments_upsert_and_order(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("insert");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Provisioning);
    assert_eq!(e.parameters, serde_json::json!({}));
    assert_eq!(e.outputs, serde_json::json!({}));
    assert_eq!(e.last_operation, None);
    assert_eq!((e.team.as_str(), e.owner.as_str()), ("payments", "alice"));

    let outputs = serde_json::json!({
        "url": {"type": "string", "value": "https://x"},
        "password": {"type": "string", "value": "hunter2", "sensitive": true}
    });
    let mut ready = env_update("octo/envs", "checkout", EnvState::Ready);
    ready.parameters = Some(serde_json::json!({"size": "small"}));
    ready.outputs = Some(outputs.clone());
    ready.last_operation = Some(OperationId(1));
    store.upsert_environment(ready).await.expect("ready");
    let before = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(before.outputs, outputs);
    let shown = before.public();
    assert!(shown.outputs.get("password").is_none());
    assert_eq!(shown.outputs["url"]["value"], "https://x");

    // A delete starts: only the state, owner and last operation change.
    let mut deleting = env_update("octo/envs", "checkout", EnvState::Deleting);
    deleting.owner = "erin".parse().expect("login");
    deleting.last_operation = Some(OperationId(2));
    store.upsert_environment(deleting).await.expect("deleting");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Deleting);
    assert_eq!(e.owner, "erin");
    assert_eq!(e.outputs, outputs);
    assert_eq!(e.parameters, serde_json::json!({"size": "small"}));
    assert_eq!(e.last_operation, Some(OperationId(2)));
    assert!(e.updated_at >= before.updated_at);
    // Without an operation id, the last one stays; given outputs replace the stored ones.
    let mut deleted = env_update("octo/envs", "checkout", EnvState::Deleted);
    deleted.outputs = Some(serde_json::json!({}));
    store.upsert_environment(deleted).await.expect("deleted");
    let e = store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(e.state, EnvState::Deleted);
    assert_eq!(e.last_operation, Some(OperationId(2)));
    assert_eq!(e.outputs, serde_json::json!({}));

    // Ordered by repo, then name (bytewise: digits before letters; names are DNS labels,
    // so never upper case).
    for (r, n) in [
        ("octo/zeta", "bbb"),
        ("octo/alpha", "zzz"),
        ("octo/zeta", "aaa"),
        ("octo/alpha", "mmm"),
        ("octo/alpha", "0qq"),
    ] {
        store
            .upsert_environment(env_update(r, n, EnvState::Ready))
            .await
            .expect("insert");
    }
    let all = store.environments(None).await.expect("all");
    let keys: Vec<String> = all
        .iter()
        .map(|e| format!("{}:{}", e.repo, e.name))
        .collect();
    assert_eq!(
        keys,
        [
            "octo/alpha:0qq",
            "octo/alpha:mmm",
            "octo/alpha:zzz",
            "octo/envs:checkout",
            "octo/zeta:aaa",
            "octo/zeta:bbb"
        ]
    );
    let zeta: Vec<String> = store
        .environments(Some(&repo("octo/zeta")))
        .await
        .expect("zeta")
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(zeta, vec!["aaa", "bbb"]);
    assert!(store
        .environments(Some(&repo("octo/none")))
        .await
        .expect("none")
        .is_empty());
}

pub(crate) async fn merges(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    assert_eq!(store.merge_of(&r, &sha('a')).await.expect("read"), None);
    store
        .record_merge(&r, &sha('a'), PrNumber(12))
        .await
        .expect("record");
    store
        .record_merge(&r, &sha('a'), PrNumber(12))
        .await
        .expect("record again");
    // The first record stands.
    store
        .record_merge(&r, &sha('a'), PrNumber(99))
        .await
        .expect("record other");
    assert_eq!(
        store.merge_of(&r, &sha('a')).await.expect("read"),
        Some(PrNumber(12))
    );
    assert_eq!(store.merge_of(&r, &sha('b')).await.expect("read"), None);
    assert_eq!(
        store
            .merge_of(&repo("octo/else"), &sha('a'))
            .await
            .expect("read"),
        None
    );
}

/// The notes outbox: a queued note marks its operations noted with it (one transaction),
/// waits out its grace, has one holder at a time, goes back with backoff when its push
/// fails, and counts as pending until it lands.
pub(crate) async fn notes_outbox(b: &Backend) {
    use paved::store::{NewNote, Prunable};
    let store = b.open().await;
    let (op, _) = store
        .plan_operation(new_op("checkout", 'a', 1))
        .await
        .expect("plan");
    let note = NewNote {
        repo: repo("octo/envs"),
        clone_url: "file:///srv/git/octo/envs.git".into(),
        installation: None,
        commit: sha('a'),
        text: "Paved-Audit: v1\nEnvironment: checkout\n".into(),
    };
    // Queued with a grace: the outbox leaves it to whoever queued it.
    let id = store
        .queue_note(note.clone(), &[op], Duration::from_secs(60))
        .await
        .expect("queue");
    let rec = store.operation(op).await.expect("read").expect("op");
    assert_ne!(rec.reported & reported::NOTE, 0, "noted with the queueing");
    assert!(store.note_pending(op).await.expect("pending"));
    let depth = store.outbox_depth().await.expect("depth");
    assert_eq!(depth.pending, 1);
    assert!(depth.oldest_ms.is_some_and(|t| t <= now_ms() + 1000));
    let lease = Duration::from_secs(60);
    assert!(store
        .claim_notes("replica-b", lease, 10)
        .await
        .expect("claim")
        .is_empty());
    // Its queuer takes it at once; nobody else may meanwhile.
    let mine = store
        .claim_note(id, "replica-a", lease)
        .await
        .expect("claim one")
        .expect("claimed");
    assert_eq!((mine.note.commit.clone(), mine.attempts), (sha('a'), 1));
    assert_eq!(mine.note.text, note.text);
    assert!(store
        .claim_note(id, "replica-b", lease)
        .await
        .expect("claim one")
        .is_none());
    // The push failed: due again right away here (retry_in 0), claimed by the outbox.
    store
        .note_failed(id, "the origin refused", Duration::ZERO)
        .await
        .expect("failed");
    let again = store
        .claim_notes("replica-b", lease, 10)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(store.pending_notes().await.expect("list").len(), 1);
    store.note_landed(id).await.expect("landed");
    // Kept until the retention passes; a pending note is never pruned.
    let pending = store
        .queue_note(note.clone(), &[], Duration::ZERO)
        .await
        .expect("queue");
    let later = now_ms() + 60_000;
    assert_eq!(
        store
            .prune(Prunable::NoteLinks, now_ms() - 60_000, 10)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(
        store
            .prune(Prunable::NoteLinks, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune(Prunable::LandedNotes, later, 10)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(store.pending_notes().await.expect("list")[0].id, pending);
    store.note_landed(pending).await.expect("landed");
    assert!(!store.note_pending(op).await.expect("pending"));
    assert_eq!(store.outbox_depth().await.expect("depth").pending, 0);
    assert!(store.pending_notes().await.expect("list").is_empty());
    assert!(store
        .claim_note(id, "replica-b", lease)
        .await
        .expect("claim one")
        .is_none());
}

pub(crate) async fn repositories(b: &Backend) {
    use paved::ids::InstallationId;
    use paved::store::KnownRepository;
    let store = b.open().await;
    assert_eq!(
        store.repository(&repo("octo/envs")).await.expect("read"),
        None
    );
    let known = |name: &str, branch: &str, inst: Option<u64>| KnownRepository {
        repo: repo(name),
        default_branch: branch.into(),
        clone_url: format!("https://github.com/{name}.git"),
        installation: inst.map(InstallationId),
    };
    store
        .note_repository(&known("octo/envs", "main", Some(7)))
        .await
        .expect("note");
    store
        .note_repository(&known("acme/a", "trunk", None))
        .await
        .expect("note");
    // A later delivery's description replaces the earlier one.
    store
        .note_repository(&known("octo/envs", "develop", Some(8)))
        .await
        .expect("note again");
    assert_eq!(
        store.repository(&repo("octo/envs")).await.expect("read"),
        Some(known("octo/envs", "develop", Some(8)))
    );
    let all = store.repositories().await.expect("all");
    assert_eq!(
        all,
        vec![
            known("acme/a", "trunk", None),
            known("octo/envs", "develop", Some(8))
        ]
    );
}

pub(crate) async fn requests(b: &Backend) {
    use paved::store::NewRequest;
    let store = b.open().await;
    let new = |name: &str, who: &str| NewRequest {
        repo: repo("octo/envs"),
        action: "create".into(),
        env_name: name.parse().expect("environment name"),
        team: "payments".parse().expect("team"),
        requester: who.parse().expect("login"),
        branch: String::new(),
        manifest_path: format!("environments/payments/{name}.yaml"),
    };
    let first = store
        .open_request(&new("env-a", "octocat"))
        .await
        .expect("open");
    let id = first.expect("the first request for a is open");
    // One open request per environment.
    assert_eq!(
        store
            .open_request(&new("env-a", "hubot"))
            .await
            .expect("open"),
        None
    );
    let other = store
        .open_request(&new("env-b", "hubot"))
        .await
        .expect("open");
    let other = other.expect("b's request is open");
    // Pushed, its pull request opened but not yet written down: found by its head.
    let b_head = "b".repeat(40);
    store.set_request_head(other, &b_head).await.expect("head");
    let awaiting = |head: String| {
        let store = store.clone();
        async move {
            store
                .request_awaiting_pr(&repo("octo/envs"), &head)
                .await
                .expect("awaiting")
                .map(|r| r.id)
        }
    };
    assert_eq!(awaiting(b_head.clone()).await, Some(other));
    assert_eq!(awaiting("c".repeat(40)).await, None, "another head");
    store
        .set_request_pr(other, 8, "https://github.com/octo/envs/pull/8")
        .await
        .expect("pr");
    assert_eq!(awaiting(b_head).await, None, "its number is known now");
    store
        .set_request_pr(id, 7, "https://github.com/octo/envs/pull/7")
        .await
        .expect("pr");
    let r = store.request(id).await.expect("read").expect("request");
    assert_eq!(
        (r.pr_number, r.open, r.requester.as_str()),
        (Some(7), true, "octocat")
    );
    assert_eq!(r.branch_name(), format!("paved/requests/env-a-{id}"));
    assert_eq!(r.head_sha, None);
    store
        .set_request_head(id, &"f".repeat(40))
        .await
        .expect("head");
    let r = store.request(id).await.expect("read").expect("request");
    assert_eq!(r.head_sha.as_deref(), Some("f".repeat(40).as_str()));
    assert_eq!(
        store
            .request_for_pr(&repo("octo/envs"), 7)
            .await
            .expect("by pr")
            .map(|r| r.id),
        Some(id)
    );
    assert_eq!(
        store
            .open_request_for(&repo("octo/envs"), "env-a")
            .await
            .expect("open for")
            .map(|r| r.id),
        Some(id)
    );
    // Closed, the environment takes a new request.
    store.close_request(id).await.expect("close");
    assert_eq!(
        store
            .open_request_for(&repo("octo/envs"), "env-a")
            .await
            .expect("open for"),
        None
    );
    assert!(store
        .open_request(&new("env-a", "hubot"))
        .await
        .expect("open")
        .is_some());
}

/// What the portal's operations page reads: troubled deliveries, newest first, and
/// operations not finished.
pub(crate) async fn operator_views(b: &Backend) {
    let store = b.open().await;
    for (id, key) in [
        ("d-clean", "o/r#1"),
        ("d-failed", "o/r#2"),
        ("d-retried", "o/r#3"),
    ] {
        store
            .accept_delivery(delivery(id, key, "{}"))
            .await
            .expect("accept");
        // Received in this order, a millisecond apart at least.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    for _ in 0..3 {
        let d = store
            .claim_delivery()
            .await
            .expect("claim")
            .expect("a delivery");
        let outcome = match d.id.as_str() {
            "d-failed" => Outcome::Failed {
                error: "payload unusable".into(),
            },
            "d-retried" => Outcome::Retry {
                error: "GitHub answered 502".into(),
                after: std::time::Duration::ZERO,
            },
            _ => Outcome::Done,
        };
        store.finish_delivery(&d.id, outcome).await.expect("finish");
    }
    let troubled: Vec<(String, Option<String>)> = store
        .troubled_deliveries(10)
        .await
        .expect("troubled")
        .into_iter()
        .map(|d| (d.id, d.last_error))
        .collect();
    assert_eq!(
        troubled,
        [
            (
                "d-retried".to_string(),
                Some("GitHub answered 502".to_string())
            ),
            ("d-failed".into(), Some("payload unusable".into())),
        ]
    );
    assert_eq!(store.troubled_deliveries(1).await.expect("one").len(), 1);
    // Operations: planned and running are unfinished; a finished one is not.
    let r = repo("octo/envs");
    let (a, _) = store
        .plan_operation(new_op("a-env", 'a', 1))
        .await
        .expect("plan");
    let (b_id, _) = store
        .plan_operation(new_op("b-env", 'b', 1))
        .await
        .expect("plan");
    let ids = |ops: Vec<OperationRecord>| ops.into_iter().map(|o| o.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.unfinished_operations(&r).await.expect("unfinished")),
        [a, b_id]
    );
    let fence = start(&*store, a, "a-env", "me").await.expect("started");
    let unfinished = store.unfinished_operations(&r).await.expect("unfinished");
    assert_eq!(unfinished[0].state, OpState::Running);
    assert!(unfinished[0].log.is_empty(), "read without its log");
    assert!(
        finish(
            &*store,
            a,
            &fence,
            OpState::Succeeded,
            serde_json::json!({})
        )
        .await
    );
    assert_eq!(
        ids(store.unfinished_operations(&r).await.expect("unfinished")),
        [b_id]
    );
    assert!(store
        .unfinished_operations(&repo("octo/other"))
        .await
        .expect("other")
        .is_empty());
}

pub(crate) async fn inventory_pages(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    for (name, team) in [
        ("b-env", "payments"),
        ("a-env", "search"),
        ("0-first", "payments"),
        ("c-env", "payments"),
    ] {
        let mut u = env_update("octo/envs", name, EnvState::Ready);
        u.team = team.parse().expect("team");
        store.upsert_environment(u).await.expect("upsert");
    }
    store
        .upsert_environment(env_update("octo/other", "a-env", EnvState::Ready))
        .await
        .expect("upsert");
    // A page, chosen in the database: counted, by name in byte order (digits first),
    // this repository's only.
    let names =
        |rows: &[EnvironmentRecord]| rows.iter().map(|e| e.name.to_string()).collect::<Vec<_>>();
    let all = EnvironmentFilter::default();
    let (total, rows) = store.environment_page(&r, &all, 0, 10).await.expect("page");
    assert_eq!(total, 4);
    assert_eq!(names(&rows), ["0-first", "a-env", "b-env", "c-env"]);
    let (total, rows) = store.environment_page(&r, &all, 1, 2).await.expect("page");
    assert_eq!(
        (total, names(&rows)),
        (4, vec!["a-env".to_string(), "b-env".into()])
    );
    let (total, rows) = store.environment_page(&r, &all, 9, 2).await.expect("page");
    assert_eq!((total, rows.len()), (4, 0));
    let (total, rows) = store
        .environment_page(&r, &all, 0, 0)
        .await
        .expect("count only");
    assert_eq!((total, rows.len()), (4, 0));
    // By team: exactly the teams listed; a team with a comma cannot match across two.
    let teams = |t: &[&str]| EnvironmentFilter {
        teams: Some(t.iter().map(ToString::to_string).collect()),
        name_contains: None,
    };
    let (total, rows) = store
        .environment_page(&r, &teams(&["search"]), 0, 10)
        .await
        .expect("page");
    assert_eq!((total, names(&rows)), (1, vec!["a-env".to_string()]));
    let (total, _) = store
        .environment_page(&r, &teams(&["pay"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0, "a prefix of a team is not the team");
    let (total, _) = store
        .environment_page(&r, &teams(&["x,payments"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0);
    let (total, _) = store
        .environment_page(&r, &teams(&[]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 0);
    let (total, _) = store
        .environment_page(&r, &teams(&["search", "payments"]), 0, 10)
        .await
        .expect("page");
    assert_eq!(total, 4);
    // By a part of the name, case-insensitively; `%` and `_` are no wildcards.
    let part = |q: &str| EnvironmentFilter {
        teams: Some(vec!["payments".into()]),
        name_contains: Some(q.into()),
    };
    let (total, rows) = store
        .environment_page(&r, &part("-ENV"), 0, 10)
        .await
        .expect("page");
    assert_eq!(
        (total, names(&rows)),
        (2, vec!["b-env".to_string(), "c-env".into()])
    );
    let (_, rows) = store
        .environment_page(&r, &part("FIR"), 0, 10)
        .await
        .expect("page");
    assert_eq!(names(&rows), ["0-first"]);
    for wild in ["%", "_", "b_env"] {
        let (total, _) = store
            .environment_page(&r, &part(wild), 0, 10)
            .await
            .expect("page");
        assert_eq!(total, 0, "{wild}");
    }
    // An operation read without its log keeps everything else.
    let (id, _) = store
        .plan_operation(new_op("a-env", 'a', 1))
        .await
        .expect("plan");
    let fence = start(&*store, id, "a-env", "me").await.expect("started");
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
    let full = store.operation(id).await.expect("read").expect("op");
    let light = store
        .operation_without_log(id)
        .await
        .expect("read")
        .expect("op");
    assert!(!full.log.is_empty(), "the scenario needs a log");
    assert_eq!(light.log, "");
    assert_eq!(
        (light.state, light.op.env_name.as_str()),
        (full.state, full.op.env_name.as_str())
    );
    assert_eq!(
        store
            .operation_without_log(OperationId(987_654))
            .await
            .expect("read"),
        None
    );
}

pub(crate) async fn storage_round_trip(b: &Backend) {
    let store = b.open().await;
    let r = repo("octo/envs");
    // No environment row: nothing is created, and the caller hears about it.
    let e = err_text(
        store
            .set_environment_storage(&r, "checkout", vec![1, 2, 3])
            .await,
    );
    assert!(e.contains("does not exist"), "{e}");
    assert!(store
        .environment(&r, "checkout")
        .await
        .expect("read")
        .is_none());
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        None
    );
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Provisioning))
        .await
        .expect("insert");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        None
    );
    // Every byte value, NULs included, and more than a page.
    let archive: Vec<u8> = (0..70_000u32).map(|i| (i % 256) as u8).collect();
    store
        .set_environment_storage(&r, "checkout", archive.clone())
        .await
        .expect("store");
    // An inventory update does not touch the archive.
    store
        .upsert_environment(env_update("octo/envs", "checkout", EnvState::Ready))
        .await
        .expect("update");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        Some(archive)
    );
    store
        .set_environment_storage(&r, "checkout", Vec::new())
        .await
        .expect("store empty");
    assert_eq!(
        store
            .environment_storage(&r, "checkout")
            .await
            .expect("read"),
        Some(Vec::new())
    );
}
