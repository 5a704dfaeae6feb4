//! The real `paved serve` binary as a child process, configured through its environment.
#![allow(dead_code)]

use super::{Harness, SECRET};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Kills the child when dropped, so a failing assertion leaves no server running.
pub struct Paved(pub Child);

impl Drop for Paved {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Starts `paved serve` on `data_dir` and `database_url`, talking to `api_url` as GitHub,
/// with `extra_env` on top; its log (at debug) goes to `<data_dir>.log`. Returns once
/// `/readyz` answers, with the server's URL.
pub async fn spawn_serve(
    h: &Harness,
    data_dir: &Path,
    database_url: &str,
    api_url: &str,
    extra_env: &[(&str, String)],
) -> (Paved, String) {
    let port = free_port();
    // Appended to: a replica started again on the same folder keeps its earlier log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let child = Command::new(env!("CARGO_BIN_EXE_paved"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PAVED_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAVED_DATA_DIR", data_dir)
        .env("PAVED_DATABASE_URL", database_url)
        .env("PAVED_WEBHOOK_SECRET", SECRET)
        .env("PAVED_GITHUB_API_URL", api_url)
        .env("PAVED_GITHUB_TOKEN", "test-token")
        .env("PAVED_GITHUB_REPOSITORIES", h.repo.to_string())
        .env(
            "PAVED_GIT_CLONE_URL_TEMPLATE",
            h.remote.clone_url_template(),
        )
        .env("PAVED_PUBLIC_URL", "http://paved.test")
        .env(
            "PAVED_API_TOKENS",
            format!("tests={}", paved_testkit::service_token_sha256()),
        )
        .env("PAVED_LOG", "paved=debug")
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(h.tmp.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn paved");
    let url = format!("http://127.0.0.1:{port}");
    let ready = format!("{url}/readyz");
    let what = format!("paved at {} ready", data_dir.display());
    super::eventually(what, async || {
        let r = h.client.get(&ready).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    (Paved(child), url)
}

/// Waits until `path` holds something, and returns it.
pub async fn wait_for_file(path: &Path) -> String {
    super::eventually(format!("{} written", path.display()), async || {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| !s.trim().is_empty())
    })
    .await
}
