//! The runner against real processes and real files (SPEC §4).
//!
//! No sleeps as synchronisation: scripts may `sleep`, but the tests wait on conditions
//! with deadlines.

use paved::runner::{self, storage, Operation, RunOutcome, RunResult, RunSpec, RunnerKind};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCRIPT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Run ids unique across parallel tests (and other test binaries), so `kill_orphan`'s
/// marker never matches another test's processes.
fn unique_run_id() -> i64 {
    1_000_000_000 + i64::from(rand::random::<u32>())
}

struct Fixture {
    root: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("definition")).unwrap();
        std::fs::create_dir(root.path().join("work")).unwrap();
        Fixture { root }
    }

    fn definition(&self) -> PathBuf {
        self.root.path().join("definition")
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn script(&self, rel: &str, body: &str) {
        let p = self.definition().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn spec(&self, operation: Operation) -> RunSpec {
        RunSpec {
            run_id: unique_run_id(),
            operation,
            environment_name: "feature-x".into(),
            environment_type: "dev".into(),
            team: "payments".into(),
            repository: "acme/envs".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            definition_dir: self.definition(),
            runner: RunnerKind::Command,
            template_path: None,
            terraform_binary: None,
            parameters: serde_json::json!({"size": "small", "replicas": 2}),
            storage: None,
            timeout: Duration::from_secs(60),
            output_limit: 256 * 1024,
            env: vec![],
            path: SCRIPT_PATH.into(),
            secrets: vec![],
            work_root: self.work(),
            // These tests are about the process machinery (groups, timeouts, orphans by host
            // pid); the sandbox has its own, tests/sandbox.rs.
            sandbox: runner::Sandbox::None,
            network: true,
            definition: "def".into(),
            owner: "alice".into(),
            identity: None,
            ade_program: None,
            plan: None,
        }
    }

    fn work_is_empty(&self) -> bool {
        std::fs::read_dir(self.work()).unwrap().next().is_none()
    }
}

/// The orchestration spawns runs on the multi-threaded runtime: the future must be `Send`.
#[allow(dead_code)]
fn run_future_is_send(spec: RunSpec) {
    fn assert_send<T: Send>(_: T) {}
    assert_send(runner::run(spec, |_pid| async {}));
}

async fn run(spec: RunSpec) -> RunResult {
    runner::run(spec, |_| async {}).await
}

/// Unpacks a result's storage archive into a fresh folder.
fn unpacked(archive: &[u8]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    storage::unpack(archive, d.path(), storage::STORAGE_LIMIT).expect("storage unpacks");
    d
}

/// Gone: no /proc entry, or a zombie (its parent may be a PID 1 that does not reap).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(file: &Path) -> u32 {
    let mut pid = None;
    wait_for("the pid file", Duration::from_secs(10), || {
        pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

#[tokio::test]
async fn deploy_receives_the_ade_environment_and_nothing_else() {
    // Set in this test process: it must not reach the script.
    std::env::set_var("PAVED_RUNNER_TEST_LEAK", "1");
    let f = Fixture::new();
    f.script("deploy.sh", r#"env -0 > "$ADE_STORAGE/env""#);
    let mut spec = f.spec(Operation::Deploy);
    spec.env = vec![
        ("ALLOWED_BY_CONFIG".into(), "yes".into()),
        ("ADE_OPERATION_NAME".into(), "spoofed".into()),
        ("PAVED_RUN_ID".into(), "1".into()),
    ];
    let run_id = spec.run_id;
    let result = run(spec).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);

    let storage = unpacked(&result.storage);
    let raw = std::fs::read(storage.path().join("env")).unwrap();
    let env: BTreeMap<String, String> = raw
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8_lossy(e);
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();

    let mut expected: BTreeSet<String> = ["PATH", "HOME", "LANG", "ALLOWED_BY_CONFIG"]
        .into_iter()
        .map(String::from)
        .collect();
    for name in [
        "OPERATION_NAME",
        "OPERATION_PARAMETERS",
        "ENVIRONMENT_NAME",
        "ENVIRONMENT_TYPE",
        "STORAGE",
        "OUTPUTS",
        "ERROR_LOG",
    ] {
        expected.insert(format!("ADE_{name}"));
        expected.insert(format!("PAVED_{name}"));
    }
    for name in [
        "PAVED_ENVIRONMENT_TEAM",
        "PAVED_REPOSITORY",
        "PAVED_COMMIT",
        "PAVED_RUN_ID",
        // ADE's runner contract (SPEC 13): the operation id, and where `ade` finds the run.
        "ADE_HTTP__OPERATIONID",
        "PAVED_ADE_CONTEXT",
    ] {
        expected.insert(name.to_string());
    }
    // What the shell itself adds.
    let shell_added = ["PWD", "OLDPWD", "SHLVL", "_"];
    let got: BTreeSet<String> = env
        .keys()
        .filter(|k| !shell_added.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(got, expected);
    assert!(!env.contains_key("PAVED_RUNNER_TEST_LEAK"));

    for prefix in ["ADE", "PAVED"] {
        let v = |name: &str| env[&format!("{prefix}_{name}")].clone();
        assert_eq!(v("OPERATION_NAME"), "deploy");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&v("OPERATION_PARAMETERS")).unwrap(),
            serde_json::json!({"size": "small", "replicas": 2})
        );
        assert_eq!(v("ENVIRONMENT_NAME"), "feature-x");
        assert_eq!(v("ENVIRONMENT_TYPE"), "dev");
        assert!(v("STORAGE").starts_with(f.work().to_str().unwrap()));
        assert!(v("STORAGE").ends_with("/storage"));
        assert!(v("OUTPUTS").ends_with("/outputs.json"));
        assert!(v("ERROR_LOG").ends_with("/error.log"));
    }
    assert_eq!(env["PAVED_ENVIRONMENT_TEAM"], "payments");
    assert_eq!(env["PAVED_REPOSITORY"], "acme/envs");
    assert_eq!(
        env["PAVED_COMMIT"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(env["PAVED_RUN_ID"], run_id.to_string());
    assert_eq!(env["ALLOWED_BY_CONFIG"], "yes");
    assert_eq!(env["PATH"], SCRIPT_PATH);
    assert_eq!(env["LANG"], "C.UTF-8");
    assert!(env["HOME"].starts_with(f.work().to_str().unwrap()));
    // The run directory is removed afterwards.
    assert!(f.work_is_empty());
}

#[tokio::test]
async fn outputs_are_parsed_and_sensitive_values_redacted_from_the_log() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"cat > "$ADE_OUTPUTS" <<'EOF'
{"outputs": {
  "url": {"type": "string", "value": "https://feature-x.example.test", "sensitive": false},
  "password": {"type": "string", "value": "hunter2-very-secret", "sensitive": true},
  "replicas": {"type": "number", "value": 2}
}}
EOF
echo "url is https://feature-x.example.test"
echo "password is hunter2-very-secret" >&2"#,
    );
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    assert_eq!(result.outputs_error, None);
    assert_eq!(
        result.outputs["url"].value,
        "https://feature-x.example.test"
    );
    assert!(!result.outputs["url"].sensitive);
    assert_eq!(result.outputs["replicas"].value, 2);
    assert_eq!(result.outputs["replicas"].r#type, "number");
    assert!(result.outputs["password"].sensitive);
    assert_eq!(result.outputs["password"].value, "hunter2-very-secret");
    assert!(result.log.contains("url is https://feature-x.example.test"));
    assert!(
        !result.log.contains("hunter2-very-secret"),
        "{}",
        result.log
    );
    assert!(
        result.log.contains("password is [redacted]"),
        "{}",
        result.log
    );
}

/// A sensitive output too short to redact reliably is not silently skipped: the log names
/// the output (never its value).
#[tokio::test]
async fn a_short_sensitive_output_is_named_in_the_log() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"cat > "$ADE_OUTPUTS" <<'EOF'
{"outputs": {"pin": {"type": "string", "value": "739", "sensitive": true}}}
EOF"#,
    );
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    assert!(
        result
            .log
            .contains("sensitive output pin is shorter than 4 characters"),
        "{}",
        result.log
    );
}

#[tokio::test]
async fn malformed_outputs_are_reported() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"echo '{"url": {"type": "string", "value": "x"}}' > "$ADE_OUTPUTS""#,
    );
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert!(result.outputs.is_empty());
    let err = result.outputs_error.expect("an outputs error");
    assert!(err.contains("ADE_OUTPUTS"), "{err}");
}

#[tokio::test]
async fn storage_persists_between_operations() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"mkdir -p "$ADE_STORAGE/state" && printf 'res-42' > "$ADE_STORAGE/state/id.txt""#,
    );
    f.script(
        "delete.sh",
        r#"test "$(cat "$ADE_STORAGE/state/id.txt")" = res-42 || exit 7
echo "deleting $(cat "$ADE_STORAGE/state/id.txt")""#,
    );
    let deployed = run(f.spec(Operation::Deploy)).await;
    assert_eq!(deployed.outcome, RunOutcome::Succeeded, "{}", deployed.log);
    assert!(!deployed.storage.is_empty());

    let mut spec = f.spec(Operation::Delete);
    spec.storage = Some(deployed.storage.clone());
    let deleted = run(spec).await;
    assert_eq!(deleted.outcome, RunOutcome::Succeeded, "{}", deleted.log);
    assert!(deleted.log.contains("deleting res-42"));
    // The storage is still returned (the caller decides what to keep).
    let st = unpacked(&deleted.storage);
    assert_eq!(
        std::fs::read_to_string(st.path().join("state/id.txt")).unwrap(),
        "res-42"
    );
}

#[tokio::test]
async fn storage_keeps_only_files_and_folders() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"ln -s /etc/passwd "$ADE_STORAGE/passwd"
echo kept > "$ADE_STORAGE/kept.txt""#,
    );
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    assert!(
        result
            .log
            .contains("ADE_STORAGE entry passwd (symlink) was not kept"),
        "{}",
        result.log
    );
    let st = unpacked(&result.storage);
    assert!(st.path().join("kept.txt").is_file());
    assert!(!st.path().join("passwd").exists());
}

#[tokio::test]
async fn storage_over_the_limit_keeps_the_previous_archive() {
    let f = Fixture::new();
    f.script("deploy.sh", "echo v1 > \"$ADE_STORAGE/v1.txt\"");
    let first = run(f.spec(Operation::Deploy)).await;
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{}", first.log);

    f.script(
        "deploy.sh",
        r#"head -c 52428800 /dev/zero > "$ADE_STORAGE/big.bin""#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.storage = Some(first.storage.clone());
    let second = run(spec).await;
    assert_eq!(second.outcome, RunOutcome::Succeeded, "{}", second.log);
    assert!(
        second
            .log
            .contains("[ADE_STORAGE over 50 MiB was not kept]"),
        "{}",
        second.log
    );
    assert_eq!(second.storage, first.storage);
}

#[tokio::test]
async fn parameters_with_shell_syntax_reach_the_script_verbatim() {
    let f = Fixture::new();
    let sentinel = f.path("injected");
    let sentinel2 = f.path("injected2");
    let nasty = format!(
        "$(touch {}); rm -rf / ; `touch {}` \"'",
        sentinel.display(),
        sentinel2.display()
    );
    f.script(
        "deploy.sh",
        r#"printf '%s' "$ADE_OPERATION_PARAMETERS" > "$ADE_STORAGE/params.json""#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.parameters = serde_json::json!({"name": nasty, "nested": {"list": [nasty]}});
    spec.environment_name = nasty.clone();
    let expected = spec.parameters.clone();
    let result = run(spec).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    let st = unpacked(&result.storage);
    let got: serde_json::Value =
        serde_json::from_slice(&std::fs::read(st.path().join("params.json")).unwrap()).unwrap();
    assert_eq!(got, expected);
    assert!(!sentinel.exists());
    assert!(!sentinel2.exists());
}

#[tokio::test]
async fn failing_script_reports_exit_code_and_error_log() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"echo "starting"
echo "quota exceeded in westeurope" > "$ADE_ERROR_LOG"
exit 3"#,
    );
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(
        result.outcome,
        RunOutcome::Failed {
            exit_code: Some(3),
            signal: None
        }
    );
    assert!(!result.outcome.is_success());
    assert_eq!(result.outcome.describe(), "exited with code 3");
    assert_eq!(result.error_log.trim(), "quota exceeded in westeurope");
    assert!(result.log.contains("starting"));
    assert!(result.pid.is_some());
    assert!(result.finished_at >= result.started_at);
    assert!(f.work_is_empty());
}

#[tokio::test]
async fn script_without_exec_bit_runs_with_sh() {
    let f = Fixture::new();
    std::fs::write(f.definition().join("deploy.sh"), "echo via-sh\n").unwrap();
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    assert!(result.log.contains("via-sh"));
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let f = Fixture::new();
    let pid_file = f.path("bg.pid");
    f.script(
        "deploy.sh",
        r#"sleep 600 &
echo $! > "$PIDFILE"
sleep 600"#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.timeout = Duration::from_secs(1);
    spec.env = vec![("PIDFILE".into(), pid_file.display().to_string())];
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    let result = runner::run(spec, move |pid| {
        tx.send(pid).unwrap();
        async {}
    })
    .await;
    let leader = rx.try_recv().expect("on_spawn was called");
    assert_eq!(result.pid, Some(leader));
    assert_eq!(
        result.outcome,
        RunOutcome::TimedOut {
            after: Duration::from_secs(1)
        }
    );
    assert_eq!(result.outcome.describe(), "killed after 1s timeout");
    // SIGTERM ends `sleep` at once: no need to wait for the SIGKILL grace.
    assert!(started.elapsed() < Duration::from_secs(30));
    let background = read_pid(&pid_file);
    wait_for("the script to be gone", Duration::from_secs(10), || {
        process_gone(leader)
    });
    wait_for(
        "the background child to be gone",
        Duration::from_secs(10),
        || process_gone(background),
    );
    assert!(result.log.contains("timed out"), "{}", result.log);
    assert!(f.work_is_empty());
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"trap '' TERM
echo ready
while :; do sleep 1; done"#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.timeout = Duration::from_millis(500);
    let (tx, rx) = std::sync::mpsc::channel();
    let result = runner::run(spec, move |pid| {
        tx.send(pid).unwrap();
        async {}
    })
    .await;
    let leader = rx.try_recv().unwrap();
    assert!(matches!(result.outcome, RunOutcome::TimedOut { .. }));
    assert!(result.log.contains("SIGKILL"), "{}", result.log);
    wait_for("the script to be gone", Duration::from_secs(10), || {
        process_gone(leader)
    });
}

#[tokio::test]
async fn background_children_holding_the_pipes_do_not_hang_the_run() {
    let f = Fixture::new();
    let pid_file = f.path("bg.pid");
    f.script(
        "deploy.sh",
        r#"sleep 600 &
echo $! > "$PIDFILE"
echo deployed"#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.env = vec![("PIDFILE".into(), pid_file.display().to_string())];
    let started = Instant::now();
    let result = run(spec).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(result.log.contains("deployed"));
    assert!(
        result.log.contains("background processes"),
        "{}",
        result.log
    );
    let background = read_pid(&pid_file);
    wait_for(
        "the background child to be gone",
        Duration::from_secs(10),
        || process_gone(background),
    );
}

#[tokio::test]
async fn background_jobs_are_killed_when_the_script_ends() {
    let f = Fixture::new();
    let pid_file = f.path("bg.pid");
    f.script(
        "deploy.sh",
        r#"sleep 600 >/dev/null 2>&1 &
echo $! > "$PIDFILE""#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.env = vec![("PIDFILE".into(), pid_file.display().to_string())];
    let result = run(spec).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{}", result.log);
    let background = read_pid(&pid_file);
    wait_for(
        "the detached background job to be gone",
        Duration::from_secs(10),
        || process_gone(background),
    );
}

#[tokio::test]
async fn output_is_capped_keeping_head_and_tail() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"echo HEAD-MARKER
head -c 5000000 /dev/zero | tr '\0' 'x'
echo
echo TAIL-MARKER"#,
    );
    let mut spec = f.spec(Operation::Deploy);
    let limit = 64 * 1024;
    spec.output_limit = limit;
    let result = run(spec).await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert!(
        result.log.len() <= limit + 64,
        "log is {} bytes",
        result.log.len()
    );
    assert!(result.log.starts_with("HEAD-MARKER\n"));
    assert!(result.log.trim_end().ends_with("TAIL-MARKER"));
    assert!(result.log.contains("bytes omitted"), "no omission marker");
}

#[tokio::test]
async fn missing_script_is_not_runnable_and_names_the_file() {
    let f = Fixture::new();
    f.script("deploy.sh", "echo only deploy");
    let result = run(f.spec(Operation::Delete)).await;
    match &result.outcome {
        RunOutcome::NotRunnable(why) => {
            assert!(why.contains("delete.sh"), "{why}");
            assert!(why.contains("scripts/delete.sh"), "{why}");
            assert!(why.contains("definition"), "{why}");
        }
        other => panic!("expected NotRunnable, got {other:?}"),
    }
    assert_eq!(result.pid, None);
    assert!(f.work_is_empty());
}

#[tokio::test]
async fn not_runnable_keeps_the_previous_storage() {
    let f = Fixture::new();
    f.script("deploy.sh", "echo v1 > \"$ADE_STORAGE/v1.txt\"");
    let first = run(f.spec(Operation::Deploy)).await;
    assert!(!first.storage.is_empty());
    // No delete.sh: nothing ran, the archive comes back byte for byte.
    let mut spec = f.spec(Operation::Delete);
    spec.storage = Some(first.storage.clone());
    let result = run(spec).await;
    assert!(matches!(result.outcome, RunOutcome::NotRunnable(_)));
    assert_eq!(result.storage, first.storage);

    // An archive that cannot be restored: not runnable, and kept as it was.
    let mut spec = f.spec(Operation::Deploy);
    spec.storage = Some(b"not a tar archive".to_vec());
    let result = run(spec).await;
    match &result.outcome {
        RunOutcome::NotRunnable(why) => assert!(why.contains("ADE_STORAGE"), "{why}"),
        other => panic!("expected NotRunnable, got {other:?}"),
    }
    assert_eq!(result.storage, b"not a tar archive");
    assert!(f.work_is_empty());
}

#[tokio::test]
async fn ade_scripts_layout_is_found() {
    let f = Fixture::new();
    f.script("scripts/deploy.sh", "echo ade-layout");
    let result = run(f.spec(Operation::Deploy)).await;
    assert_eq!(
        result.outcome,
        RunOutcome::Succeeded,
        "{:?}",
        result.outcome
    );
    assert!(result.log.contains("ade-layout"));
}

#[tokio::test]
async fn secrets_are_redacted_from_log_and_error_log() {
    let f = Fixture::new();
    f.script(
        "deploy.sh",
        r#"echo "token=$TOKEN short=ab"
echo "failed with $TOKEN" > "$ADE_ERROR_LOG"
exit 1"#,
    );
    let mut spec = f.spec(Operation::Deploy);
    spec.env = vec![("TOKEN".into(), "ghp_abcdef1234567890".into())];
    spec.secrets = vec!["ghp_abcdef1234567890".into(), "ab".into(), String::new()];
    let result = run(spec).await;
    assert!(
        !result.log.contains("ghp_abcdef1234567890"),
        "{}",
        result.log
    );
    assert!(
        result.log.contains("token=[redacted] short=ab"),
        "{}",
        result.log
    );
    assert_eq!(result.error_log.trim(), "failed with [redacted]");
}

#[tokio::test]
async fn kill_orphan_checks_the_run_id() {
    use std::os::unix::process::CommandExt;
    let f = Fixture::new();
    let run_id = unique_run_id();
    let pid_file = f.path("bg.pid");
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"sleep 600 & echo $! > "$PIDFILE"; wait"#)
        .env_clear()
        .env("PATH", SCRIPT_PATH)
        .env("PIDFILE", &pid_file)
        .env("PAVED_RUN_ID", run_id.to_string())
        .env("PAVED_INSTANCE", "0123456789abcdef")
        .process_group(0)
        .spawn()
        .unwrap();
    let leader = child.id();
    let background = read_pid(&pid_file);

    let instance = "0123456789abcdef";
    // Another run's id (a reused pid): nothing is killed.
    assert!(!runner::kill_orphan(
        i64::from(leader),
        run_id + 1,
        instance
    ));
    assert!(!runner::kill_orphan(
        i64::from(leader),
        run_id * 10,
        instance
    ));
    // The same run id of another Paved instance on this machine: nothing is killed.
    assert!(!runner::kill_orphan(
        i64::from(leader),
        run_id,
        "fedcba9876543210"
    ));
    assert!(child.try_wait().unwrap().is_none());
    assert!(!process_gone(background));
    // A pid that does not exist.
    assert!(!runner::kill_orphan(
        i64::from(i32::MAX),
        run_id + 1,
        instance
    ));

    assert!(runner::kill_orphan(i64::from(leader), run_id, instance));
    let mut status = None;
    wait_for("the orphan to die", Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    wait_for(
        "the orphan's background child to die",
        Duration::from_secs(10),
        || process_gone(background),
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.unwrap().signal(), Some(libc::SIGKILL));
}

// ---- Terraform ----

/// The real `terraform`/`tofu` where installed, and always the project's stand-in.
fn terraform_binaries() -> Vec<PathBuf> {
    paved_testkit::terraform_binaries()
}

const TEMPLATE: &str = r#"
variable "name" {
  type = string
}

resource "terraform_data" "env" {
  input = var.name
}

output "greeting" {
  value = "hello ${terraform_data.env.output}"
}

output "token" {
  value     = "tok-${var.name}-s3cr3t"
  sensitive = true
}
"#;

fn terraform_fixture(binary: &Path) -> (Fixture, RunSpec) {
    let f = Fixture::new();
    let tf = f.definition().join("infra");
    std::fs::create_dir(&tf).unwrap();
    std::fs::write(tf.join("main.tf"), TEMPLATE).unwrap();
    let mut spec = f.spec(Operation::Deploy);
    spec.runner = RunnerKind::Terraform;
    spec.template_path = Some("infra/main.tf".into());
    spec.parameters = serde_json::json!({"name": "demo"});
    spec.timeout = Duration::from_secs(300);
    let bin_dir = binary.parent().unwrap().display().to_string();
    spec.path = format!("{bin_dir}:{SCRIPT_PATH}");
    (f, spec)
}

#[tokio::test]
async fn terraform_deploy_then_delete_carries_state_in_storage() {
    for binary in terraform_binaries() {
        eprintln!("with {}", binary.display());
        let (f, spec) = terraform_fixture(&binary);
        let (tx, rx) = std::sync::mpsc::channel();
        let deployed = runner::run(spec.clone(), move |pid| {
            tx.send(pid).unwrap();
            async {}
        })
        .await;
        assert_eq!(deployed.outcome, RunOutcome::Succeeded, "{}", deployed.log);
        assert_eq!(rx.try_recv().ok(), deployed.pid);
        assert_eq!(deployed.outputs_error, None);
        assert_eq!(deployed.outputs["greeting"].value, "hello demo");
        assert_eq!(deployed.outputs["greeting"].r#type, "string");
        assert!(!deployed.outputs["greeting"].sensitive);
        assert!(deployed.outputs["token"].sensitive);
        assert_eq!(deployed.outputs["token"].value, "tok-demo-s3cr3t");
        assert!(!deployed.log.contains("tok-demo-s3cr3t"));
        assert!(deployed.log.contains("Apply complete"), "{}", deployed.log);
        let st = unpacked(&deployed.storage);
        let state = std::fs::read_to_string(st.path().join("terraform.tfstate")).unwrap();
        assert!(state.contains("terraform_data"));
        // The definition folder itself is untouched.
        assert!(!f.definition().join("infra/terraform.tfstate").exists());
        assert!(!f.definition().join("infra/.terraform").exists());

        let mut delete = spec.clone();
        delete.run_id = unique_run_id();
        delete.operation = Operation::Delete;
        delete.storage = Some(deployed.storage.clone());
        let deleted = run(delete).await;
        assert_eq!(deleted.outcome, RunOutcome::Succeeded, "{}", deleted.log);
        // The state came through storage: destroy found the resource.
        assert!(
            deleted.log.contains("Resources: 1 destroyed"),
            "{}",
            deleted.log
        );
        assert!(deleted.outputs.is_empty());
        assert!(f.work_is_empty());
    }
}

/// The Terraform runner as `paved serve` runs it, in the sandbox as `nobody`: Terraform
/// writes `.terraform` and its lock file beside the configuration (a private, writable
/// copy), and its state travels in `ADE_STORAGE` from deploy to delete.
#[tokio::test]
async fn terraform_runs_in_the_sandbox() {
    for binary in terraform_binaries() {
        eprintln!("with {}", binary.display());
        let (_f, mut spec) = terraform_fixture(&binary);
        // A work folder the runner's user can reach (a temporary folder is its creator's alone).
        let work = tempfile::tempdir().unwrap();
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        spec.work_root = work.path().to_path_buf();
        let sandbox = runner::Bubblewrap::resolve("bwrap", &spec.path, "nobody", vec![], vec![])
            .expect("bubblewrap is installed (script/bootstrap installs it)");
        sandbox.probe(work.path()).expect("the sandbox runs here");
        spec.sandbox = runner::Sandbox::Bubblewrap(std::sync::Arc::new(sandbox));

        let deployed = run(spec.clone()).await;
        assert_eq!(deployed.outcome, RunOutcome::Succeeded, "{}", deployed.log);
        assert_eq!(deployed.outputs["greeting"].value, "hello demo");
        let st = unpacked(&deployed.storage);
        assert!(std::fs::read_to_string(st.path().join("terraform.tfstate"))
            .unwrap()
            .contains("terraform_data"));

        let mut delete = spec;
        delete.run_id = unique_run_id();
        delete.operation = Operation::Delete;
        delete.storage = Some(deployed.storage.clone());
        let deleted = run(delete).await;
        assert_eq!(deleted.outcome, RunOutcome::Succeeded, "{}", deleted.log);
        assert!(
            deleted.log.contains("Resources: 1 destroyed"),
            "{}",
            deleted.log
        );
        assert!(std::fs::read_dir(work.path()).unwrap().next().is_none());
    }
}

#[tokio::test]
async fn terraform_failure_reports_the_error() {
    for binary in terraform_binaries() {
        eprintln!("with {}", binary.display());
        let (f, mut spec) = terraform_fixture(&binary);
        std::fs::write(
            f.definition().join("infra/main.tf"),
            "resource \"terraform_data\" \"x\" {\n  input = var.missing\n}\n",
        )
        .unwrap();
        spec.template_path = Some("infra".into());
        let result = run(spec).await;
        assert!(
            matches!(result.outcome, RunOutcome::Failed { exit_code: Some(c), .. } if c != 0),
            "{:?}\n{}",
            result.outcome,
            result.log
        );
        assert!(result.error_log.contains("missing"), "{}", result.error_log);
    }
}

#[tokio::test]
async fn terraform_without_binary_is_not_runnable() {
    let f = Fixture::new();
    std::fs::write(f.definition().join("main.tf"), TEMPLATE).unwrap();
    let mut spec = f.spec(Operation::Deploy);
    spec.runner = RunnerKind::Terraform;
    spec.path = String::new();
    let result = run(spec).await;
    assert_eq!(
        result.outcome,
        RunOutcome::NotRunnable("runner terraform needs `terraform` or `tofu` on PATH".into())
    );
    assert!(f.work_is_empty());
}

/// The drift check of `runner: terraform` is `plan -detailed-exitcode` after `init`: exit 0
/// means in sync, 2 drifted. Shown with a stand-in `terraform` on PATH that records its
/// arguments and answers as Terraform documents (the test below runs the real one where it
/// is on PATH, and the project's stand-in).
#[tokio::test]
async fn the_terraform_drift_check_is_a_detailed_exit_code_plan() {
    let bin = tempfile::tempdir().unwrap();
    let args = bin.path().join("args");
    let stand_in = bin.path().join("terraform");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\ncase \"$1\" in\n  plan) echo '~ terraform_data.env will be updated in-place'; exit 2 ;;\nesac\nexit 0\n",
            args.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_f, mut spec) = terraform_fixture(&stand_in);
    spec.operation = Operation::Status;
    let result = run(spec).await;
    assert_eq!(
        paved::scheduler::drift_state_of(&result.outcome),
        paved::store::DriftState::Drifted,
        "{:?}\n{}",
        result.outcome,
        result.log
    );
    assert!(
        result.log.contains("will be updated in-place"),
        "{}",
        result.log
    );
    let called = std::fs::read_to_string(&args).unwrap();
    let lines: Vec<&str> = called.lines().collect();
    assert_eq!(lines.len(), 2, "{called}");
    assert!(lines[0].starts_with("init"), "{called}");
    assert!(
        lines[1].starts_with("plan -detailed-exitcode -input=false -no-color -var-file="),
        "{called}"
    );
    assert!(result.outputs.is_empty(), "a check has no outputs");
}

#[tokio::test]
async fn terraform_plan_finds_drift_after_a_deploy() {
    for binary in terraform_binaries() {
        eprintln!("with {}", binary.display());
        let (_f, spec) = terraform_fixture(&binary);
        let deployed = run(spec.clone()).await;
        assert_eq!(deployed.outcome, RunOutcome::Succeeded, "{}", deployed.log);
        let mut check = spec.clone();
        check.run_id = unique_run_id();
        check.operation = Operation::Status;
        check.storage = Some(deployed.storage.clone());
        let same = run(check.clone()).await;
        assert_eq!(
            paved::scheduler::drift_state_of(&same.outcome),
            paved::store::DriftState::InSync,
            "{}",
            same.log
        );
        check.run_id = unique_run_id();
        check.parameters = serde_json::json!({"name": "changed"});
        let changed = run(check).await;
        assert_eq!(
            paved::scheduler::drift_state_of(&changed.outcome),
            paved::store::DriftState::Drifted,
            "{}",
            changed.log
        );
    }
}

// ---- ARM and Bicep (ADE's built-in runners, with the Azure CLI) ----

/// A recording `az`: it prints what it was asked (the token by its length only) and, for a
/// deployment, the deployment JSON the CLI prints, with the parameters file's `name` in an
/// output and a secure output. Reports through stdout, as a sandboxed run can.
const AZ: &str = r#"#!/bin/sh
args="$*"
case "$1 $2 $3" in
  "login --service-principal --username")
    echo "az login as $4 tenant $6 token-bytes $(printf %s "$8" | wc -c)"; exit 0 ;;
  "account set --subscription") echo "az account set $4"; exit 0 ;;
  "deployment group create")
    shift 3
    while [ $# -gt 0 ]; do
      case "$1" in
        --resource-group) rg=$2 ;; --name) dn=$2 ;; --template-file) tf=$2 ;;
        --parameters) pf=${2#@} ;; --mode) mode=$2 ;;
      esac; shift 2
    done
    echo "az deploy $dn to $rg mode $mode template $(basename "$tf")" >&2
    [ -r "$tf" ] || { echo "template $tf unreadable" >&2; exit 1; }
    name=$(sed -n 's/.*"name":{"value":"\([^"]*\)".*/\1/p' "$pf")
    printf '{"name":"%s","properties":{"provisioningState":"Succeeded","outputs":{"greeting":{"type":"String","value":"hello %s"},"key":{"type":"SecureString","value":"k-%s-0123456789"}}}}\n' "$dn" "$name" "$name"
    exit 0 ;;
esac
echo "az: unexpected $args" >&2; exit 2
"#;

#[tokio::test]
async fn arm_deploys_with_the_azure_cli_in_the_sandbox_and_deletes_in_complete_mode() {
    let f = Fixture::new();
    std::fs::write(
        f.definition().join("azuredeploy.json"),
        "{\"resources\": []}",
    )
    .unwrap();
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.path().join("az"), AZ).unwrap();
    std::fs::set_permissions(
        bin.path().join("az"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let token = bin.path().join("token");
    std::fs::write(&token, "eyJ.run-token.sig").unwrap();
    let mut spec = f.spec(Operation::Deploy);
    spec.runner = RunnerKind::Arm;
    spec.template_path = Some("azuredeploy.json".into());
    spec.parameters = serde_json::json!({"name": "demo"});
    spec.path = format!("{}:{SCRIPT_PATH}", bin.path().display());
    spec.env = vec![
        (
            "AZURE_CLIENT_ID".into(),
            "11111111-2222-3333-4444-555555555555".into(),
        ),
        (
            "AZURE_TENANT_ID".into(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        ),
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            token.display().to_string(),
        ),
        ("ADE_RESOURCE_GROUP_NAME".into(), "rg-demo".into()),
        (
            "ADE_SUBSCRIPTION_ID".into(),
            "00000000-0000-0000-0000-000000000000".into(),
        ),
    ];
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    spec.work_root = work.path().to_path_buf();
    let sandbox = runner::Bubblewrap::resolve("bwrap", &spec.path, "nobody", vec![], vec![])
        .expect("bubblewrap is installed (script/bootstrap installs it)");
    spec.sandbox = runner::Sandbox::Bubblewrap(std::sync::Arc::new(sandbox));

    let deployed = run(spec.clone()).await;
    assert_eq!(deployed.outcome, RunOutcome::Succeeded, "{}", deployed.log);
    let log = &deployed.log;
    assert!(log.contains("az login as 11111111-2222-3333-4444-555555555555 tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 token-bytes 17"), "{log}");
    assert!(
        log.contains("--federated-token <the run's token>") && !log.contains("run-token"),
        "{log}"
    );
    assert!(
        log.contains("az account set 00000000-0000-0000-0000-000000000000"),
        "{log}"
    );
    assert!(
        log.contains("mode Incremental template azuredeploy.json"),
        "{log}"
    );
    assert_eq!(deployed.outputs["greeting"].value, "hello demo");
    assert!(deployed.outputs["key"].sensitive);
    assert!(
        !log.contains("k-demo-0123456789"),
        "deployment JSON is kept out of the log: {log}"
    );

    let mut delete = spec.clone();
    delete.run_id = unique_run_id();
    delete.operation = Operation::Delete;
    let deleted = run(delete).await;
    assert_eq!(deleted.outcome, RunOutcome::Succeeded, "{}", deleted.log);
    assert!(
        deleted
            .log
            .contains("to rg-demo mode Complete template empty.json"),
        "{}",
        deleted.log
    );

    // Without the type's Azure identity, nothing runs.
    let mut bare = spec.clone();
    bare.run_id = unique_run_id();
    bare.env.clear();
    let refused = run(bare).await;
    assert!(
        matches!(&refused.outcome, RunOutcome::NotRunnable(why) if why.contains("Azure identity")),
        "{:?}",
        refused.outcome
    );
}
