//! Where test scripts report what they did: a small HTTP server on loopback, run by the
//! test, that keeps each report as a file in the test's own records folder.
//!
//! A sandboxed run cannot write into the test's folder (SPEC 12), and must not be able to:
//! scripts report through what the sandbox allows, the network, with `curl`:
//! `PUT $RECORD_URL/<name>` keeps the body as `<records>/<name>`, `GET $RECORD_URL/<name>`
//! answers it (404 while there is none), which is how a test releases a waiting script
//! (`release`) or tells it something (`drift-<env>`). Names are plain file names.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::path::{Path, PathBuf};

/// The environment variable that carries the server's address to scripts.
pub const RECORD_URL: &str = "RECORD_URL";

/// Starts the server for `records` on the current runtime; returns its base URL.
pub async fn serve(records: &Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the record server");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new()
        .route("/{name}", get(read).put(write))
        .with_state(records.to_path_buf());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// A name a script may report under: one plain file name, nothing that climbs out.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

async fn write(
    State(dir): State<PathBuf>,
    UrlPath(name): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    if !plain(&name) {
        return StatusCode::BAD_REQUEST;
    }
    // Written aside and renamed, so a test never reads half a report.
    let part = dir.join(format!(".{name}.part"));
    match std::fs::write(&part, &body).and_then(|()| std::fs::rename(&part, dir.join(&name))) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn read(
    State(dir): State<PathBuf>,
    UrlPath(name): UrlPath<String>,
) -> Result<Vec<u8>, StatusCode> {
    if !plain(&name) {
        return Err(StatusCode::BAD_REQUEST);
    }
    std::fs::read(dir.join(name)).map_err(|_| StatusCode::NOT_FOUND)
}

/// The processes of run `run_id` reporting to `record_url`, as this machine numbers them
/// (a sandboxed script's `$$` is its number inside the sandbox). Found by the run's
/// environment, which only its processes carry: Paved wipes its own copy.
pub fn run_processes(record_url: &str, run_id: &str) -> Vec<i32> {
    let run = format!("PAVED_RUN_ID={run_id}");
    let url = format!("{RECORD_URL}={record_url}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                return false;
            };
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            vars.contains(&run.as_bytes()) && vars.contains(&url.as_bytes())
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The parent of `pid`, if it still runs.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Which of `candidates` `pid` descends from, if any.
pub fn ancestor_among(pid: i32, candidates: &[i32]) -> Option<i32> {
    let mut p = pid;
    for _ in 0..64 {
        if candidates.contains(&p) {
            return Some(p);
        }
        p = parent_of(p)?;
        if p <= 1 {
            return None;
        }
    }
    None
}
