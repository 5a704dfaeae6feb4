//! Test harness: a real Paved (real SQLite file, real HTTP on loopback, real Git
//! repositories in a temp dir) against the strict GitHub emulator.
#![allow(dead_code)]

pub mod provisioning;
pub mod recorder;
pub mod records;
pub mod serve;

use github_emulator::{Emulator, EmulatorHandle, Status};
use paved::config::{Config, GithubAuth, Secret};
use paved::ids::{CommitSha, RepoName};
use paved::service::Service;
use paved_testkit::{self as testkit, FileChange, GitRemote, PullRequestSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SECRET: &str = "test-secret-for-paved";
pub const REPO: &str = "acme/environments";
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A valid manifest for the examples repository, team payments.
pub fn manifest(name: &str, size: &str) -> String {
    testkit::manifest(name, "payments", size)
}

/// The value of the unlabelled series `name` on the `/metrics` page of the Paved at `url`.
pub async fn metric(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The PostgreSQL server the PostgreSQL suite uses (`PAVED_TEST_DATABASE_URL`).
pub fn postgres_server() -> Option<String> {
    std::env::var("PAVED_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A database made for one test on the PostgreSQL server, dropped with the harness.
pub struct TestDatabase {
    pub server: String,
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create(server: &str) -> TestDatabase {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .expect("connect to PAVED_TEST_DATABASE_URL");
        let name = format!("paved_test_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let mut url = url::Url::parse(server).expect("PAVED_TEST_DATABASE_URL");
        url.set_path(&format!("/{name}"));
        TestDatabase {
            server: server.to_string(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropped from async tests: do the blocking work on a thread of its own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct Harness {
    pub tmp: tempfile::TempDir,
    pub github: EmulatorHandle,
    pub remote: GitRemote,
    pub repo: RepoName,
    pub base: CommitSha,
    pub service: Option<Service>,
    /// URL of a Paved running as a separate process.
    pub external_url: Option<String>,
    pub client: reqwest::Client,
    next_delivery: std::sync::atomic::AtomicU64,
    /// The PostgreSQL database of this test, in the PostgreSQL suite.
    pub database: Option<TestDatabase>,
    /// Requests GitHub is expected to refuse in this test (see [`Harness::allow_rejections`]).
    allowed_rejections: Vec<RejectionRule>,
}

/// Which of GitHub's refusals a test expects.
type RejectionRule = Box<dyn Fn(&github_emulator::RequestRecord) -> bool + Send + Sync>;

/// When a harness closes, GitHub (the strict emulator) refused no request Paved made, but
/// the ones the test said it expects: every test checks that Paved asks GitHub only what
/// GitHub's published schema allows, without saying so by hand.
impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let refused: Vec<_> = self
            .github
            .rejected()
            .into_iter()
            .filter(|r| !self.allowed_rejections.iter().any(|allow| allow(r)))
            .collect();
        assert!(
            refused.is_empty(),
            "GitHub emulator rejected requests: {refused:#?}"
        );
    }
}

/// Waits until `check` gives a value, asking again every 20 ms, and fails the test naming
/// `what` when [`DEADLINE`] passes first. The one way tests wait: on a condition, with a
/// deadline, never a sleep standing in for it.
pub async fn eventually<T>(
    what: impl std::fmt::Display,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_within(DEADLINE, what, check).await
}

/// [`eventually`] with a deadline of its own, for the long runs (chaos, replicas).
pub async fn eventually_within<T>(
    deadline: Duration,
    what: impl std::fmt::Display,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Harness {
    /// The examples repository on `main`, a running Paved and a fresh emulator.
    pub async fn start() -> Harness {
        Self::start_with(&[]).await
    }

    /// Like [`start`], with extra changes on the base commit.
    pub async fn start_with(extra: &[FileChange]) -> Harness {
        let mut h = Self::prepare(extra).await;
        h.service = Some(
            paved::service::start(h.config())
                .await
                .expect("start paved"),
        );
        h
    }

    /// Repository and emulator, but no Paved running yet.
    pub async fn prepare(extra: &[FileChange]) -> Harness {
        Self::prepare_with(extra, |_, _| {}).await
    }

    /// Like [`prepare`], with the emulator configured by `emulator` (told where the
    /// repositories live, for `git_root`).
    pub async fn prepare_with(
        extra: &[FileChange],
        emulator: impl FnOnce(&mut github_emulator::EmulatorConfig, &Path),
    ) -> Harness {
        Self::prepare_from(&examples_dir(), extra, emulator).await
    }

    /// Like [`prepare_with`], with the files of `source` (instead of `examples/`) on the
    /// base commit.
    pub async fn prepare_from(
        source: &Path,
        extra: &[FileChange],
        emulator: impl FnOnce(&mut github_emulator::EmulatorConfig, &Path),
    ) -> Harness {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut emulator_config = github_emulator::EmulatorConfig::default();
        emulator(&mut emulator_config, &tmp.path().join("git"));
        let github = Emulator::start_with(emulator_config)
            .await
            .expect("emulator");
        let repo = RepoName::parse(REPO).expect("repo name");
        let remote = GitRemote::create(&tmp.path().join("git"), &repo).expect("remote");
        let mut files = GitRemote::files_of(source).expect("the base commit's files");
        files.extend(extra.iter().cloned());
        let base = remote
            .commit("refs/heads/main", None, &files, "initial")
            .expect("commit");
        // The PostgreSQL suite (tests/postgres_suite.rs) runs these same tests with a
        // database of their own on the PostgreSQL server.
        let database = if crate::POSTGRES_SUITE {
            let server = postgres_server()
                .expect("PAVED_TEST_DATABASE_URL is set: the suite is not built without it");
            Some(TestDatabase::create(&server).await)
        } else {
            None
        };
        Harness {
            tmp,
            github,
            remote,
            repo,
            base,
            service: None,
            external_url: None,
            client: testkit::service_client(),
            next_delivery: std::sync::atomic::AtomicU64::new(1),
            database,
            allowed_rejections: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn config(&self) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            data_dir: self.data_dir(),
            database_url: match &self.database {
                Some(db) => db.url.clone(),
                None => format!(
                    "sqlite://{}",
                    self.data_dir().join("paved.sqlite").display()
                ),
            },
            public_url: Some("http://paved.test".into()),
            workers: 4,
            webhook_secrets: vec![Secret::new(SECRET)],
            api_url: self.github.url(),
            auth: Some(GithubAuth::Token(Secret::new("test-token"))),
            clone_url_template: Some(self.remote.clone_url_template()),
            runner: paved::config::RunnerConfig {
                // The built `paved` is the runs' `ade` command (this test binary is not).
                ade_program: Some(PathBuf::from(env!("CARGO_BIN_EXE_paved"))),
                ..Default::default()
            },
            push_grace: std::time::Duration::from_secs(600),
            // Short, so that on PostgreSQL work left by a killed process is taken over
            // within a test's deadline.
            lease: std::time::Duration::from_secs(2),
            repositories: paved::config::RepoFilter::only([REPO]),
            checks: Default::default(),
            intake: Default::default(),
            report: None,
            store: Default::default(),
            portal: Default::default(),
            lifecycle: Default::default(),
            oidc: Default::default(),
            log_format: Default::default(),
            api: paved::config::ApiConfig {
                tokens: vec![paved::config::ServiceToken {
                    name: "tests".into(),
                    sha256: service_token_hash(),
                }],
                ..Default::default()
            },
        }
    }

    pub fn url(&self) -> String {
        match (&self.service, &self.external_url) {
            (Some(s), _) => s.url(),
            (None, Some(u)) => u.clone(),
            (None, None) => panic!("Paved is not running"),
        }
    }

    /// Commits `changes` on a branch off `parent` (default: base) and publishes it as PR `number`.
    pub fn push_pr(
        &self,
        number: u64,
        parent: Option<&CommitSha>,
        changes: &[FileChange],
    ) -> PullRequestSpec {
        let parent = parent.unwrap_or(&self.base);
        let spec = self
            .remote
            .open_pull(number, parent, &self.base, changes, "change")
            .expect("open pull request");
        // As on GitHub, the pull request exists in the API (its reviews can be listed).
        self.github.set_pull(
            &self.repo.to_string(),
            number,
            testkit::pull_json(&spec).expect("pull json"),
        );
        spec
    }

    pub fn delivery_id(&self) -> String {
        let n = self
            .next_delivery
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("00000000-0000-4000-8000-{n:012}")
    }

    /// Sends a signed webhook; returns the HTTP status.
    pub async fn send(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::StatusCode {
        self.send_signed(event, delivery, body, &testkit::sign(SECRET, body))
            .await
    }

    pub async fn send_signed(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: &str,
    ) -> reqwest::StatusCode {
        testkit::post_webhook_signed(
            &self.client,
            &self.url(),
            event,
            delivery,
            signature,
            body.to_vec(),
        )
        .await
        .expect("send webhook")
    }

    /// Sends `spec` as a `pull_request` event; returns the delivery id.
    pub async fn send_pr(&self, spec: &PullRequestSpec) -> String {
        let body = testkit::pull_request_payload(spec).expect("payload");
        let id = self.delivery_id();
        let status = self.send("pull_request", &id, &body).await;
        assert_eq!(
            status,
            reqwest::StatusCode::ACCEPTED,
            "webhook not accepted"
        );
        id
    }

    /// Waits until the delivery is done (or failed), by its state in Paved's API.
    pub async fn wait_delivery(&self, id: &str) -> serde_json::Value {
        eventually(format!("delivery {id} finished"), async || {
            let r = self
                .client
                .get(format!("{}/api/v1/deliveries/{id}", self.url()))
                .send()
                .await
                .expect("api");
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.expect("json");
            (v["state"] == "done" || v["state"] == "failed").then_some(v)
        })
        .await
    }

    /// Waits until every check posted on `sha` has left `pending`, and at least `min` exist.
    pub async fn verdicts(&self, sha: &CommitSha, min: usize) -> BTreeMap<String, Status> {
        let repo = self.repo.to_string();
        let sha_s = sha.to_string();
        self.github
            .wait_until(DEADLINE, "verdict statuses", move |gh| {
                let latest = gh.latest_statuses(&repo, &sha_s);
                latest.len() >= min && latest.values().all(|s| s.state != "pending")
            })
            .await
            .expect("statuses");
        self.github
            .latest_statuses(&self.repo.to_string(), &sha.to_string())
    }

    pub fn comments(&self, pr: u64) -> Vec<github_emulator::Comment> {
        self.github.comments(&self.repo.to_string(), pr)
    }

    /// The test sends tokens GitHub does not know (made up, or revoked): GitHub answers
    /// Paved's `GET /user` for each with 401, as it should.
    pub fn allow_unknown_tokens(&mut self) {
        self.allow_rejections(|r| r.method == "GET" && r.path == "/user" && r.status == 401);
    }

    /// Says which of GitHub's refusals this test expects (the check when the harness
    /// closes lets them by).
    pub fn allow_rejections(
        &mut self,
        rule: impl Fn(&github_emulator::RequestRecord) -> bool + Send + Sync + 'static,
    ) {
        self.allowed_rejections.push(Box::new(rule));
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.service.take() {
            s.shutdown().await.expect("shutdown");
        }
    }
}

/// [`testkit::SERVICE_TOKEN`]'s SHA-256 as configured.
pub fn service_token_hash() -> [u8; 32] {
    let hex = testkit::service_token_sha256();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}
