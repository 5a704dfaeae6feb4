//! The real `paved serve` binary as a process: a crash during a run (SIGKILL) and the next
//! start, and the log it writes. Single-node semantics on SQLite: with a shared database a
//! restarted process cannot tell its own dead runs from another replica's live ones, and
//! tests/replicas.rs covers takeover by lease there.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::{states, Env};
use common::recorder::add;
use common::serve::{spawn_serve, wait_for_file, Paved};
use serde_json::Value;

/// The real `paved serve` binary on this test's data directory, scripts reporting to the
/// record server; `sandbox` is `runner.sandbox`.
async fn spawn_paved(e: &mut Env, sandbox: &str) -> Paved {
    let env = [
        ("PAVED_LEASE", "2s".to_string()),
        ("RECORD_URL", e.record_url.clone()),
        ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
        ("PAVED_RUNNER_SANDBOX", sandbox.to_string()),
    ];
    let db = e.h.config().database_url;
    let (paved, url) = spawn_serve(&e.h, &e.h.data_dir(), &db, &e.h.github.url(), &env).await;
    e.h.external_url = Some(url);
    paved
}

/// The documented action for a run interrupted by a crash: its script does not outlive the
/// next start, the attempt is reported `interrupted` (deployment status `error`, a note),
/// and the operation runs again as attempt 2. Then `paved audit` tells the whole story from
/// Git alone, after the database is deleted.
///
/// Sandboxed (the default), the script dies with its server (bubblewrap's
/// `--die-with-parent`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_run_is_reported_interrupted_and_run_again() {
    crash_during_a_run("bubblewrap").await;
}

/// Unsandboxed (`runner.sandbox = "none"`), the script outlives its crashed server; the
/// next start finds the orphan by its `PAVED_RUN_ID` and kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_unsandboxed_run_kills_the_orphan_at_the_next_start() {
    crash_during_a_run("none").await;
}

async fn crash_during_a_run(sandbox: &str) {
    let mut e = Env::prepare().await;
    let mut first = spawn_paved(&mut e, sandbox).await;
    let pr = e.open(&add("crash-preview", "block"));
    let (merge, _) = e.merge(&pr).await;
    // The script is running (it waits for a release the test has not given yet).
    wait_for_file(&e.records.join("1.pid")).await;
    assert!(
        !e.run_processes("1").is_empty(),
        "run 1's processes are not to be found"
    );
    first.0.kill().expect("SIGKILL");
    first.0.wait().expect("reap");

    let _second = if sandbox == "none" {
        // The orphan outlived its server: it still waits for the release.
        assert!(
            !e.run_processes("1").is_empty(),
            "the script died with its server"
        );
        // The second server kills the orphan (its PAVED_RUN_ID is 1) at start.
        let second = spawn_paved(&mut e, sandbox).await;
        e.wait_run_gone("1", "the orphaned script of run 1").await;
        second
    } else {
        e.wait_run_gone("1", "the sandboxed script outlived its server")
            .await;
        spawn_paved(&mut e, sandbox).await
    };
    // Attempt 2 runs now; let it finish.
    std::fs::write(e.records.join("release"), b"").expect("release");
    let status = e.provision_status(&merge).await;
    assert_eq!(status.state, "success", "{status:?}");
    assert!(e.records.join("1.start").exists());
    assert!(!e.records.join("1.end").exists(), "run 1 never finished");

    let ops = e.operations(&merge).await;
    let summary: Vec<(i64, String)> = ops
        .iter()
        .map(|o| {
            (
                o["attempt"].as_i64().unwrap_or(0),
                o["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "interrupted".to_string()), (2, "succeeded".to_string())]
    );
    let deployments = e.h.github.deployments(&e.repo());
    assert_eq!(deployments.len(), 2, "one deployment per attempt");
    assert_eq!(states(&deployments[0]), ["in_progress", "error"]);
    assert_eq!(states(&deployments[1]), ["in_progress", "success"]);
    let outcomes: Vec<String> = e.notes(&merge).into_iter().map(|n| n.outcome).collect();
    assert_eq!(outcomes, ["interrupted", "succeeded"]);
    assert_eq!(
        e.environment("crash-preview").await["environment"]["state"],
        "ready"
    );

    // Git alone: stop the server, delete the database, ask `paved audit`.
    drop(_second);
    for f in ["paved.sqlite", "paved.sqlite-wal", "paved.sqlite-shm"] {
        let _ = std::fs::remove_file(e.h.data_dir().join(f));
    }
    assert!(!e.h.data_dir().join("paved.sqlite").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["audit", "crash-preview", "--format", "json", "--repo"])
        .arg(e.h.remote.path())
        .current_dir(e.h.tmp.path())
        .output()
        .expect("paved audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let history: Value = serde_json::from_slice(&out.stdout).expect("json");
    let entries = history["entries"].as_array().expect("entries");
    let merge_entry = entries
        .iter()
        .find(|en| en["commit"] == merge.as_str())
        .expect("the merge commit is in the history");
    let records: Vec<&str> = merge_entry["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert_eq!(records, ["interrupted", "succeeded"]);
    assert!(
        entries
            .iter()
            .any(|en| en["commit"] == pr.head_sha.as_str() && en["change"] == "added"),
        "the commit that added the manifest is in the history: {history}"
    );
}

/// `PAVED_LOG_FORMAT=json`: every line of the log is one JSON object, and what happened to a
/// delivery and an operation can be found by its delivery id, repository and environment.
/// The text log that follows on the same file (not a terminal) has no colour escapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_json_for_collectors_and_plain_text_without_a_terminal() {
    let mut e = Env::prepare().await;
    let log_path = e.h.data_dir().with_extension("log");
    let mut env = vec![
        ("RECORD_URL", e.record_url.clone()),
        ("PAVED_RUNNER_PASS_ENV", "RECORD_URL".to_string()),
        ("PAVED_LOG_FORMAT", "json".to_string()),
    ];
    let db = e.h.config().database_url;
    let (paved, url) = spawn_serve(&e.h, &e.h.data_dir(), &db, &e.h.github.url(), &env).await;
    e.h.external_url = Some(url);
    let pr = e.open(&add("logged-env", "ok"));
    let (merge, delivery) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    drop(paved);

    let json_log = std::fs::read_to_string(&log_path).expect("log");
    assert!(!json_log.contains('\u{1b}'), "escape codes in the log");
    let lines: Vec<Value> = json_log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_span = |line: &Value, span: &str, key: &str, want: &str| {
        line["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|s| s["name"] == span && s[key].as_str() == Some(want))
        })
    };
    let repo = e.repo();
    assert!(
        lines.iter().any(|l| in_span(l, "delivery", "id", &delivery)
            && in_span(l, "delivery", "repository", &repo)
            && l["level"].is_string()
            && l["message"].is_string()),
        "no line of delivery {delivery} names it and its repository:\n{json_log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| in_span(l, "operation", "environment", "logged-env")
                && in_span(l, "operation", "repository", &repo)),
        "no line names the operation's environment:\n{json_log}"
    );

    // Text, to a file: no escape codes, not JSON.
    env.retain(|(k, _)| *k != "PAVED_LOG_FORMAT");
    let (paved, url) = spawn_serve(&e.h, &e.h.data_dir(), &db, &e.h.github.url(), &env).await;
    e.h.external_url = Some(url);
    let pr = e.open(&[(
        "environments/payments/text-log.yaml".to_string(),
        Some(common::manifest("text-log", "small").into_bytes()),
    )]);
    e.h.send_pr(&pr).await;
    e.h.verdicts(&pr.head_sha, 4).await;
    drop(paved);
    let all = std::fs::read_to_string(&log_path).expect("log");
    let text = &all[json_log.len()..];
    assert!(text.lines().count() > 0, "the text server logged nothing");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file:\n{text}"
    );
    assert!(
        text.lines().all(|l| !l.starts_with('{')),
        "JSON in the text log:\n{text}"
    );
}
