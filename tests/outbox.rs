//! An outcome never waits on its note (issue 20): when the origin will not take the audit
//! note, the merge still ends (`paved/provision`, the inventory, the deployment), the API
//! and `paved audit --database` say the note is pending, the gauge counts it, and the
//! notes outbox lands it, once, as soon as the origin takes it again.

/// `false`: this binary's harnesses use SQLite; tests/postgres_suite.rs includes this file
/// again with `true`.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use std::time::{Duration, SystemTime};

fn audit(e: &Env, database: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["audit", "outbox-preview", "--repo"])
        .arg(e.h.remote.path())
        .args(["--database", database])
        .output()
        .expect("paved audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_the_origin_refuses_waits_in_the_outbox_and_holds_nothing_up() {
    let e = Env::start().await;
    // Another writer is in the middle of updating the origin's notes (its lock is fresh):
    // every push of the notes fails meanwhile.
    let lock = e.h.remote.path().join("refs/notes/paved.lock");
    std::fs::create_dir_all(lock.parent().expect("parent")).expect("dirs");
    let held = std::fs::File::create(&lock).expect("lock");

    let pr = e.open(&add("outbox-preview", "ok"));
    let (merge, _) = e.merge(&pr).await;
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "success", "{status:?}");
    assert_eq!(
        e.environment("outbox-preview").await["environment"]["state"],
        "ready"
    );
    let ops = e.operations(&merge).await;
    assert_eq!(ops[0]["note_pending"], true, "{ops:?}");
    assert!(e.notes(&merge).is_empty(), "the origin took the note");
    assert_eq!(
        common::metric(&e.h.client, &e.h.url(), "paved_notes_pending").await,
        Some(1.0)
    );
    let database = e.h.config().database_url;
    let shown = audit(&e, &database);
    assert!(
        shown.contains("Not in Git yet") && shown.contains(&format!("commit {merge}")),
        "{shown}"
    );

    // The writer died (its lock is old now, and nobody holds it open): the outbox's next
    // try clears it and lands the note, once.
    drop(held);
    let f = std::fs::File::options()
        .write(true)
        .open(&lock)
        .expect("lock");
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .expect("mtime");
    drop(f);
    common::eventually("the note landed", async || {
        (!e.notes(&merge).is_empty()).then_some(())
    })
    .await;
    let notes = e.notes(&merge);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].outcome, "succeeded");
    assert!(!lock.exists());
    // The note is in Git first, then its outbox row is marked pushed: wait for that.
    common::eventually("the note marked pushed", async || {
        let ops = e.operations(&merge).await;
        (ops[0]["note_pending"] == false).then_some(())
    })
    .await;
    let shown = audit(&e, &database);
    assert!(!shown.contains("Not in Git yet"), "{shown}");
    assert!(shown.contains("succeeded"), "{shown}");
}
