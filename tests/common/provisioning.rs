//! The provisioning test environment: the examples repository plus the `recorder`
//! definition, a running Paved, and helpers to open, merge and inspect pull requests
//! (used by tests/provision.rs and tests/security.rs).
#![allow(dead_code)]

use super::{Harness, DEADLINE};
use paved::ids::CommitSha;
use paved_testkit::{self as testkit, FileChange, PullRequestSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Env {
    pub h: Harness,
    /// Where the record server keeps what scripts report (see `records`).
    pub records: PathBuf,
    /// The record server's address, given to runs as `RECORD_URL`.
    pub record_url: String,
    next_pr: std::sync::atomic::AtomicU64,
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    /// Repository, emulator and records folder, no Paved running.
    pub async fn prepare() -> Env {
        Self::prepare_with(|_, _| {}).await
    }

    /// Like [`prepare`], with the emulator configured by `emulator`.
    pub async fn prepare_with(
        emulator: impl FnOnce(&mut github_emulator::EmulatorConfig, &Path),
    ) -> Env {
        let h = Harness::prepare_with(&super::recorder::governance_files(), emulator).await;
        Env::around(h).await
    }

    /// Like [`Env::prepare`], with `extra` files on the base commit besides the recorder's,
    /// and the emulator seeing the repositories' branches (for pull requests Paved opens).
    pub async fn prepare_files(extra: Vec<FileChange>) -> Env {
        let mut files = super::recorder::governance_files();
        files.extend(extra);
        let h = Harness::prepare_with(&files, |c, git| c.git_root = Some(git.to_path_buf())).await;
        Env::around(h).await
    }

    /// Like [`Env::prepare`], with `platform.yaml` changed by `edit` and the emulator set
    /// up by `emulator`.
    pub async fn prepare_platform(
        edit: impl FnOnce(String) -> String,
        emulator: impl FnOnce(&mut github_emulator::EmulatorConfig, &Path),
    ) -> Env {
        Self::prepare_platform_files_with(edit, Vec::new(), emulator).await
    }

    /// Like [`Env::prepare_platform`], with `extra` files on the base commit.
    pub async fn prepare_platform_files(
        edit: impl FnOnce(String) -> String,
        extra: Vec<FileChange>,
    ) -> Env {
        Self::prepare_platform_files_with(edit, extra, |_, _| {}).await
    }

    async fn prepare_platform_files_with(
        edit: impl FnOnce(String) -> String,
        extra: Vec<FileChange>,
        emulator: impl FnOnce(&mut github_emulator::EmulatorConfig, &Path),
    ) -> Env {
        let mut files = super::recorder::governance_files();
        let (_, content) = files
            .iter_mut()
            .find(|(path, _)| path == ".paved/platform.yaml")
            .expect("platform.yaml");
        let text = String::from_utf8(content.take().unwrap_or_default()).expect("utf-8");
        *content = Some(edit(text).into_bytes());
        files.extend(extra);
        let h = Harness::prepare_with(&files, emulator).await;
        Env::around(h).await
    }

    /// The test's records folder and its record server, around `h`.
    async fn around(h: Harness) -> Env {
        let records = h.tmp.path().join("records");
        std::fs::create_dir_all(&records).expect("records dir");
        let record_url = super::records::serve(&records).await;
        Env {
            h,
            records,
            record_url,
            next_pr: std::sync::atomic::AtomicU64::new(100),
        }
    }

    /// `RECORD_URL` for the runs of `config` (a run's environment is only what the
    /// configuration gives it).
    pub fn report_to(&self, config: &mut paved::config::Config) {
        report_to(&self.record_url, config);
    }

    /// The processes of run `run_id` still running, as this machine numbers them.
    pub fn run_processes(&self, run_id: &str) -> Vec<i32> {
        super::records::run_processes(&self.record_url, run_id)
    }

    /// Waits until no process of run `run_id` runs any more.
    pub async fn wait_run_gone(&self, run_id: &str, what: &str) {
        super::eventually(
            format!("{what}: run {run_id}'s processes gone"),
            async || self.run_processes(run_id).is_empty().then_some(()),
        )
        .await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut paved::config::Config)) -> Env {
        Self::prepare().await.run_with(tweak).await
    }

    /// Starts Paved on a prepared environment, its config changed by `tweak`.
    pub async fn run_with(self, tweak: impl FnOnce(&mut paved::config::Config)) -> Env {
        let Env {
            mut h,
            records,
            record_url,
            ..
        } = self;
        let mut config = h.config();
        report_to(&record_url, &mut config);
        tweak(&mut config);
        h.service = Some(paved::service::start(config).await.expect("start paved"));
        Env {
            h,
            records,
            record_url,
            next_pr: std::sync::atomic::AtomicU64::new(100),
        }
    }

    /// Stops Paved (cleanly) and starts it again on the same data, its config changed by
    /// `tweak` as at the first start.
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut paved::config::Config)) {
        self.h.stop().await;
        let mut config = self.h.config();
        self.report_to(&mut config);
        tweak(&mut config);
        self.h.service = Some(paved::service::start(config).await.expect("restart paved"));
    }

    pub fn repo(&self) -> String {
        self.h.repo.to_string()
    }

    /// Opens a PR off the current `main` with `changes`, and registers it with the
    /// emulator (so its reviews can be listed).
    pub fn open(&self, changes: &[FileChange]) -> PullRequestSpec {
        let n = self
            .next_pr
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let main = self.h.remote.tip("refs/heads/main").expect("main");
        let spec = self
            .h
            .remote
            .open_pull(n, &main, &main, changes, "change environments")
            .expect("open pull");
        self.h.github.set_pull(
            &self.repo(),
            n,
            testkit::pull_json(&spec).expect("pull json"),
        );
        self.h.github.set_pull_reviews(
            &self.repo(),
            n,
            vec![
                serde_json::json!({"user": {"login": "admin1"}, "state": "APPROVED",
                                    "commit_id": spec.head_sha.as_str()}),
            ],
        );
        spec
    }

    /// Like [`Env::open`], for a PR whose head lives in the fork `mallory/environments`.
    pub fn open_fork(&self, changes: &[FileChange]) -> PullRequestSpec {
        let mut spec = self.open(changes);
        spec.head_repo = Some(paved::ids::RepoName::parse("mallory/environments").expect("fork"));
        spec.author = "mallory".into();
        self.h.github.set_pull(
            &self.repo(),
            spec.number,
            testkit::pull_json(&spec).expect("pull json"),
        );
        spec
    }

    /// Merges the PR on the remote and sends the `closed` event; returns the merge commit
    /// and the delivery id.
    pub async fn merge(&self, spec: &PullRequestSpec) -> (CommitSha, String) {
        let merge = self.merge_on_github(spec);
        let id = self.send_merge(spec, &merge).await;
        (merge, id)
    }

    /// Merges the PR on the remote and marks it merged at the emulator, as GitHub does
    /// before it sends any event about the merge. Returns the merge commit.
    pub fn merge_on_github(&self, spec: &PullRequestSpec) -> CommitSha {
        let merge = self.h.remote.merge_pull(spec).expect("merge");
        self.h.github.set_pull(
            &self.repo(),
            spec.number,
            serde_json::json!({"state": "closed", "merged": true,
                               "merged_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                               "merge_commit_sha": merge.as_str()}),
        );
        merge
    }

    pub async fn send_merge(&self, spec: &PullRequestSpec, merge: &CommitSha) -> String {
        let body = testkit::merged_payload(spec, merge, "hubot").expect("payload");
        let id = self.h.delivery_id();
        assert_eq!(
            self.h.send("pull_request", &id, &body).await,
            reqwest::StatusCode::ACCEPTED
        );
        id
    }

    /// Sends the `push` of `before..after` to `main` by `pusher`; returns the delivery id.
    pub async fn send_push(&self, before: &CommitSha, after: &CommitSha, pusher: &str) -> String {
        let body = testkit::push_payload(
            &self.h.repo,
            &self.h.remote.clone_url(),
            "main",
            before,
            after,
            pusher,
        )
        .expect("payload");
        let id = self.h.delivery_id();
        assert_eq!(
            self.h.send("push", &id, &body).await,
            reqwest::StatusCode::ACCEPTED
        );
        id
    }

    /// Waits for the final `paved/provision` status on `merge`.
    pub async fn provision_status(&self, merge: &CommitSha) -> github_emulator::Status {
        let repo = self.repo();
        let sha = merge.to_string();
        self.h
            .github
            .wait_until(DEADLINE, "paved/provision verdict", move |gh| {
                gh.latest_statuses(&repo, &sha)
                    .get("paved/provision")
                    .is_some_and(|s| s.state != "pending")
            })
            .await
            .expect("paved/provision");
        self.h
            .github
            .latest_statuses(&self.repo(), &merge.to_string())["paved/provision"]
            .clone()
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .h
            .client
            .get(format!("{}{path}", self.h.url()))
            .send()
            .await
            .expect("api");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn environment(&self, name: &str) -> Value {
        self.get(&format!(
            "/api/v1/repos/{}/environments/{name}",
            self.repo()
        ))
        .await
    }

    pub async fn operations(&self, merge: &CommitSha) -> Vec<Value> {
        let v = self
            .get(&format!("/api/v1/repos/{}/merges/{merge}", self.repo()))
            .await;
        v.as_array().cloned().expect("operations")
    }

    /// Runs recorded by the recorder script, by run id.
    pub fn runs(&self) -> BTreeMap<i64, Run> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(&self.records).expect("records") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "env") {
                let id: i64 = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok())
                    .expect("run id");
                out.insert(id, Run::read(&self.records, id));
            }
        }
        out
    }

    /// The audit records in the note on `commit`, read from the remote with git2.
    pub fn notes(&self, commit: &CommitSha) -> Vec<paved::audit::AuditRecord> {
        let repo = git2::Repository::open_bare(self.h.remote.path()).expect("remote");
        let oid = git2::Oid::from_str(commit.as_str()).expect("oid");
        let text = match repo.find_note(Some("refs/notes/paved"), oid) {
            Ok(n) => n.message().unwrap_or_default().to_string(),
            Err(_) => String::new(),
        };
        paved::audit::parse(&text)
    }
}

pub struct Run {
    pub env: BTreeMap<String, String>,
    pub params: Value,
    pub history: String,
    pub start: Option<u128>,
    pub end: Option<u128>,
    /// The identity token the run was given (SPEC 13), when its type has one.
    pub token: Option<String>,
}

impl Run {
    pub fn read(dir: &Path, id: i64) -> Run {
        let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{id}.{ext}"))).ok();
        let env = read("env")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Run {
            env,
            params: read("params")
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or(Value::Null),
            history: read("history").unwrap_or_default(),
            start: read("start").and_then(|s| s.trim().parse().ok()),
            end: read("end").and_then(|s| s.trim().parse().ok()),
            token: read("token"),
        }
    }
}

pub fn states(d: &github_emulator::Deployment) -> Vec<String> {
    d.statuses
        .iter()
        .filter(|s| !s.automatic)
        .map(|s| s.state.clone())
        .collect()
}

/// Gives the runs of `config` the record server's address, `RECORD_URL`. Runs stay
/// sandboxed (the default): they report over loopback.
pub fn report_to(record_url: &str, config: &mut paved::config::Config) {
    config.runner.env.push((
        super::records::RECORD_URL.into(),
        paved::config::Secret::new(record_url.to_string()),
    ));
}
