//! The sandbox every run goes through (SPEC 12), tried as an attacker would: a hostile
//! definition that tries to read Paved's database, configuration, App key, webhook secret and
//! `/proc/<paved>/environ`, another environment's folder, to write outside its folders and
//! to signal Paved. It reports what it managed on its output, which is all a sandboxed
//! script has (with its outputs and loopback). The same script run without the sandbox
//! manages all of it, which shows the probes are real.
//!
//! Also: `paved serve` refuses to start when bubblewrap cannot run, warns when
//! `runner.sandbox = "none"`, is not dumpable and keeps no secret in its environment.

mod common;
/// The shared harness's servers use SQLite here (see `tests/common`).
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

use paved::config::{Config, Overrides};
use paved::runner::{self, Operation, RunResult, RunSpec, RunnerKind, Sandbox};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the hostile script tries; each line of its output is `CAN <what>` or
/// `CANNOT <what>`.
const HOSTILE: &str = r#"#!/bin/sh
try_read() { if cat "$2" >/dev/null 2>&1; then echo "CAN read $1"; else echo "CANNOT read $1"; fi; }
try_list() { if ls "$2" >/dev/null 2>&1; then echo "CAN list $1"; else echo "CANNOT list $1"; fi; }
try_write() { if ( : > "$2" ) 2>/dev/null; then echo "CAN write $1"; else echo "CANNOT write $1"; fi; }
try_read database "$T_DB"
try_read config "$T_CONFIG"
try_read app-key "$T_KEY"
try_read webhook-secret "$T_SECRET_FILE"
try_read paved-environ "/proc/$T_PID/environ"
try_read other-environment "$T_OTHER"
try_list data-folder "$T_DATA"
if ls -a "$T_WORK" 2>/dev/null | grep -q run-999-other; then echo "CAN see other-runs"; else echo "CANNOT see other-runs"; fi
if grep -qs CARGO_MANIFEST_DIR= /proc/[0-9]*/environ; then echo "CAN read a-paved-environment"; else echo "CANNOT read a-paved-environment"; fi
if kill -0 "$T_PID" 2>/dev/null; then echo "CAN signal paved"; else echo "CANNOT signal paved"; fi
try_write usr /usr/paved-escape
try_write etc /etc/paved-escape
: > "$T_WORK/escape" 2>/dev/null
try_write definition "$PWD/escape"
try_write config-folder "$T_CONFIG_DIR/escape"
try_write home "$HOME/ok"
try_write storage "$ADE_STORAGE/ok"
try_write tmp /tmp/ok
echo "uid=$(id -u)"
"#;

/// A deployment laid out as an operator would: a data folder (database, generated webhook
/// secret), and a configuration folder with `paved.toml` and the App key that runs can
/// see (as `/etc/paved` would be), its files readable by anyone.
struct Deployment {
    tmp: tempfile::TempDir,
    config: Config,
}

impl Deployment {
    fn new() -> Deployment {
        let tmp = tempfile::tempdir().expect("tempdir");
        set_mode(tmp.path(), 0o711);
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("paved.sqlite"), "SQLite format 3 db-secret").unwrap();
        std::fs::write(data.join("webhook-secret"), "webhook-secret-value").unwrap();
        let conf_dir = tmp.path().join("etc-paved");
        std::fs::create_dir(&conf_dir).unwrap();
        set_mode(&conf_dir, 0o777);
        let key = conf_dir.join("app.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY----- key-secret").unwrap();
        set_mode(&key, 0o644);
        let toml = conf_dir.join("paved.toml");
        std::fs::write(
            &toml,
            format!(
                "data_dir = {data:?}\n\
                 [github]\napp_id = 1\nprivate_key_path = {key:?}\nrepositories = [\"acme/envs\"]\n\
                 webhook_secrets = [\"config-secret-value\"]\n\
                 [runner]\nwork_dir = {work:?}\n\
                 [[runner.mounts]]\npath = {conf:?}\n",
                data = data.display().to_string(),
                key = key.display().to_string(),
                work = tmp.path().join("runs").display().to_string(),
                conf = conf_dir.display().to_string(),
            ),
        )
        .unwrap();
        set_mode(&toml, 0o644);
        let config = Config::load(
            &Overrides {
                config_path: Some(toml),
                ..Default::default()
            },
            &|_| None,
        )
        .expect("config loads");
        Deployment { tmp, config }
    }

    fn work_dir(&self) -> PathBuf {
        self.config.runner.work_dir.clone()
    }

    /// The sandbox `paved serve` makes from this configuration.
    fn sandbox(&self) -> Sandbox {
        let s = paved::service::sandbox_of(&self.config).expect("the sandbox runs here");
        assert!(!s.is_none());
        s
    }

    /// Another environment's run folder, its storage readable by anyone.
    fn other_environment(&self) -> PathBuf {
        let other = self.work_dir().join("run-999-other").join("storage");
        std::fs::create_dir_all(&other).unwrap();
        set_mode(&other, 0o777);
        let secret = other.join("terraform.tfstate");
        std::fs::write(&secret, "other-team-secret").unwrap();
        set_mode(&secret, 0o644);
        secret
    }

    async fn run(&self, sandbox: Sandbox, script: &str, network: bool) -> RunResult {
        let def = self
            .tmp
            .path()
            .join(format!("def-{}", rand::random::<u32>()));
        std::fs::create_dir(&def).unwrap();
        let deploy = def.join("deploy.sh");
        std::fs::write(&deploy, script).unwrap();
        set_mode(&deploy, 0o755);
        let data = &self.config.data_dir;
        let conf_dir = self.tmp.path().join("etc-paved");
        let vars = [
            ("T_DB", data.join("paved.sqlite")),
            ("T_CONFIG", conf_dir.join("paved.toml")),
            ("T_CONFIG_DIR", conf_dir.clone()),
            ("T_KEY", conf_dir.join("app.pem")),
            ("T_SECRET_FILE", data.join("webhook-secret")),
            ("T_DATA", data.clone()),
            ("T_WORK", self.work_dir()),
            ("T_OTHER", self.other_environment()),
            ("T_PID", PathBuf::from(std::process::id().to_string())),
        ];
        let spec = RunSpec {
            run_id: 1_000_000_000 + i64::from(rand::random::<u32>()),
            operation: Operation::Deploy,
            environment_name: "hostile".into(),
            environment_type: "dev".into(),
            team: "mallory".into(),
            repository: "acme/envs".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            definition_dir: def,
            runner: RunnerKind::Command,
            template_path: None,
            terraform_binary: None,
            parameters: serde_json::json!({}),
            storage: None,
            timeout: Duration::from_secs(60),
            output_limit: 1 << 20,
            env: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.display().to_string()))
                .collect(),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            secrets: vec![],
            work_root: self.work_dir(),
            sandbox,
            network,
            definition: "def".into(),
            owner: "alice".into(),
            identity: None,
            ade_program: None,
            plan: None,
        };
        runner::run(spec, |_| async {}).await
    }
}

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn lines_with<'a>(log: &'a str, prefix: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test]
async fn a_hostile_definition_reaches_nothing_of_paveds() {
    // This test process runs Paved's runner: cargo started it with CARGO_MANIFEST_DIR in
    // its environment, the stand-in for Paved's secrets in `/proc/*/environ`.
    let d = Deployment::new();
    let r = d.run(d.sandbox(), HOSTILE, true).await;
    assert!(r.outcome.is_success(), "{:?}\n{}", r.outcome, r.log);
    let can: Vec<&str> = lines_with(&r.log, "CAN ");
    assert_eq!(
        can,
        vec!["CAN write home", "CAN write storage", "CAN write tmp"],
        "the sandbox let the script reach more than its own folders:\n{}",
        r.log
    );
    for what in [
        "read database",
        "read config",
        "read app-key",
        "read webhook-secret",
        "read paved-environ",
        "read other-environment",
        "list data-folder",
        "see other-runs",
        "read a-paved-environment",
        "signal paved",
        "write usr",
        "write etc",
        "write definition",
        "write config-folder",
    ] {
        assert!(
            r.log.contains(&format!("CANNOT {what}\n")),
            "no CANNOT {what}:\n{}",
            r.log
        );
    }
    assert!(r.log.contains("uid=65534"), "not nobody:\n{}", r.log);
    assert!(!d.work_dir().join("escape").exists());
    assert!(!d.tmp.path().join("etc-paved/escape").exists());
}

/// The control: the same script without the sandbox reads Paved's files and environment,
/// so the probes above would notice a sandbox that lets them through.
#[tokio::test]
async fn without_the_sandbox_the_same_script_reaches_everything() {
    let d = Deployment::new();
    let r = d.run(Sandbox::None, HOSTILE, true).await;
    for what in [
        "read database",
        "read config",
        "read app-key",
        "read other-environment",
        "read a-paved-environment",
        "list data-folder",
        "see other-runs",
        "signal paved",
        "write definition",
    ] {
        assert!(
            r.log.contains(&format!("CAN {what}\n")),
            "unsandboxed, the probe {what} should succeed:\n{}",
            r.log
        );
    }
}

/// Network: shared by default (a run reaches a server on the host's loopback); none when
/// the type says `network: none`.
#[tokio::test]
async fn network_is_shared_unless_the_type_says_none() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let d = Deployment::new();
    let script = format!(
        "#!/bin/sh\nif curl -s -m 5 -o /dev/null http://127.0.0.1:{port}/; then echo REACHED; else echo UNREACHABLE; fi\n"
    );
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let (accepted, stop) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        s.set_nonblocking(false).ok();
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let shared = d.run(d.sandbox(), &script, true).await;
    assert!(shared.log.contains("REACHED"), "{}", shared.log);
    let none = d.run(d.sandbox(), &script, false).await;
    assert!(none.log.contains("UNREACHABLE"), "{}", none.log);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the shared run connected"
    );
}

/// A `paved serve` child with a minimal configuration in its environment.
fn serve(data: &Path, extra: &[(&str, &str)]) -> std::process::Command {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_paved"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATA_DIR", data)
        .env("PAVED_WEBHOOK_SECRET", "webhook-secret-in-env")
        .env("PAVED_GITHUB_TOKEN", "github-token-in-env")
        .env("PAVED_GITHUB_API_URL", "http://127.0.0.1:9")
        .env("PAVED_GITHUB_REPOSITORIES", "acme/envs")
        .env(
            "PAVED_PORTAL_SESSION_KEY",
            "portal-session-key-in-env-0123456789",
        )
        .env(
            "PAVED_RUNNER_WORK_DIR",
            data.with_file_name(format!("runs-{port}")),
        )
        .envs(extra.iter().copied())
        .stdin(std::process::Stdio::null());
    cmd
}

fn listen_url(cmd: &std::process::Command) -> String {
    let listen = cmd
        .get_envs()
        .find(|(k, _)| *k == "PAVED_LISTEN")
        .and_then(|(_, v)| v)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap();
    format!("http://{listen}")
}

/// Kills the child when dropped.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ready(url: &str, child: &mut Child) {
    let client = reqwest::Client::new();
    common::eventually("paved serve answers /healthz", async || {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("paved serve exited: {status}");
        }
        let r = client.get(format!("{url}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
}

#[test]
fn serve_refuses_to_start_when_bubblewrap_cannot_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = serve(
        &tmp.path().join("data"),
        &[("PAVED_RUNNER_BUBBLEWRAP", "/nonexistent/bwrap")],
    )
    .stdout(std::process::Stdio::null())
    .output()
    .expect("run paved serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sandbox cannot run") && stderr.contains("/nonexistent/bwrap"),
        "{stderr}"
    );
    assert!(stderr.contains("runner.sandbox = \"none\""), "{stderr}");

    // Root as the runner's user is refused too.
    let out = serve(&tmp.path().join("data"), &[("PAVED_RUNNER_USER", "root")])
        .stdout(std::process::Stdio::null())
        .output()
        .expect("run paved serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unprivileged"), "{stderr}");
}

#[tokio::test]
async fn without_a_sandbox_serve_warns_in_its_log_readyz_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = serve(
        &tmp.path().join("data"),
        &[("PAVED_RUNNER_SANDBOX", "none")],
    );
    let url = listen_url(&cmd);
    let log = tmp.path().join("paved.log");
    cmd.stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null());
    let mut child = Child(cmd.spawn().unwrap());
    ready(&url, &mut child).await;
    let client = reqwest::Client::new();
    let readyz = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(readyz.contains("runner.sandbox = \"none\""), "{readyz}");
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "paved_runner_unsandboxed 1"),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("scripts run unsandboxed"), "{logged}");

    // With the sandbox (the default): ready without a warning, and the gauge at 0.
    drop(child);
    let mut cmd = serve(&tmp.path().join("data2"), &[]);
    let url = listen_url(&cmd);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = Child(cmd.spawn().unwrap());
    ready(&url, &mut child).await;
    let readyz = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(readyz, "ready");
    let metrics = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.lines().any(|l| l == "paved_runner_unsandboxed 0"));
}

/// Paved keeps no secret in its environment once configured, and is not dumpable: another
/// process of its own user cannot read `/proc/<pid>/environ`.
#[tokio::test]
async fn paved_is_not_dumpable_and_keeps_no_secret_in_its_environment() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    set_mode(tmp.path(), 0o711);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // Paved runs as an ordinary user here (nobody), as in a real installation.
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let work = tmp.path().join("runs");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(65534), Some(65534)).unwrap();
    let mut cmd = serve(
        &data,
        &[
            ("PAVED_RUNNER_SANDBOX", "none"),
            ("PAVED_RUNNER_WORK_DIR", work.to_str().unwrap()),
        ],
    );
    let url = listen_url(&cmd);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .uid(65534)
        .gid(65534);
    let mut child = Child(cmd.spawn().unwrap());
    ready(&url, &mut child).await;
    let pid = child.0.id();

    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for secret in [
        "webhook-secret-in-env",
        "github-token-in-env",
        "portal-session-key-in-env",
    ] {
        assert!(
            !environ.contains(secret),
            "{secret} is still in Paved's environment"
        );
    }
    // Another process of the same user.
    let peek = std::process::Command::new("cat")
        .arg(format!("/proc/{pid}/environ"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        !peek.status.success(),
        "a process of Paved's user read its environment"
    );
    assert!(
        String::from_utf8_lossy(&peek.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&peek.stderr)
    );
}
