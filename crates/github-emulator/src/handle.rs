//! The handle: setting up state and inspecting what Paved did.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------

pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) base: String,
    pub(crate) ops: &'static [Operation],
    pub(crate) world: Mutex<World>,
    pub(crate) changes: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Mutex<Option<oneshot::Sender<()>>>,
    pub(crate) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let stop = self
            .stop
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(tx) = stop {
            let _ = tx.send(());
        }
    }
}

/// A running emulator. Clones share it; it stops when the last clone is dropped or on
/// [`EmulatorHandle::shutdown`].
#[derive(Clone)]
pub struct EmulatorHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("url", &self.inner.shared.base)
            .finish()
    }
}

impl Emulator {
    /// Binds `127.0.0.1:0` and serves an emulator with the default configuration in a
    /// spawned task.
    pub async fn start() -> anyhow::Result<EmulatorHandle> {
        Emulator::start_with(EmulatorConfig::default()).await
    }

    /// Binds `127.0.0.1:0` and serves an emulator with `config` in a spawned task.
    pub async fn start_with(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
        let ops = operations()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the GitHub emulator to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the GitHub emulator's address")?;
        let (changes, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            config,
            base: format!("http://{addr}"),
            ops,
            world: Mutex::new(World {
                next_id: 1000,
                ..World::default()
            }),
            changes,
        });
        let app = Router::new()
            .route("/git/{*path}", axum::routing::any(crate::git::serve))
            .route(
                "/login/oauth/authorize",
                axum::routing::get(crate::oauth::authorize),
            )
            .route(
                "/login/oauth/access_token",
                axum::routing::post(crate::oauth::access_token),
            )
            .route(
                "/settings/apps/new",
                axum::routing::post(crate::apps::new_app_for_user),
            )
            .route(
                "/organizations/{org}/settings/apps/new",
                axum::routing::post(crate::apps::new_app),
            )
            .fallback(handle)
            .with_state(shared.clone())
            .layer(DefaultBodyLimit::max(32 * 1024 * 1024));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "GitHub emulator stopped");
            }
        });
        Ok(EmulatorHandle {
            inner: Arc::new(Inner {
                shared,
                addr,
                stop: Mutex::new(Some(stop_tx)),
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmulatorHandle {
    /// The base URL, `http://127.0.0.1:PORT` (use it as the GitHub API base URL).
    pub fn url(&self) -> String {
        self.inner.shared.base.clone()
    }

    /// The socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.shared.config
    }

    /// Stops serving (idle connections are closed, requests in flight finish).
    pub async fn shutdown(&self) {
        if let Some(tx) = lock(&self.inner.stop).take() {
            let _ = tx.send(());
        }
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.inner.shared.world()
    }

    pub(crate) fn mutate<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let out = f(&mut self.world());
        self.inner.shared.changed();
        out
    }

    // ----- faults -----

    /// The next `n` requests (any route) answer `status` and change nothing. 403 and 429
    /// carry GitHub's "secondary rate limit" message.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.inject(n, Fault::status(status));
    }

    /// Like [`fail_next`](Self::fail_next), with a `Retry-After` header when given.
    pub fn fail_next_with(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        self.inject(
            n,
            Fault {
                status,
                retry_after_secs,
                ..Fault::default()
            },
        );
    }

    /// Queues a fault for the next `n` matching requests (faults apply in queue order).
    pub fn inject(&self, n: usize, fault: Fault) {
        if n > 0 {
            self.mutate(|w| w.faults.push_back((n, fault)));
        }
    }

    /// How many injected failures are still queued.
    pub fn pending_faults(&self) -> usize {
        self.world().faults.iter().map(|(n, _)| n).sum()
    }

    // ----- test setup -----

    /// Sets (or patches) the repository object served by `GET /repos/{owner}/{repo}`;
    /// `patch` is deep-merged over the emulator's default.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or the result does not match GitHub's schema (a
    /// broken test setup); [`try_set_repo`](Self::try_set_repo) returns the error instead.
    pub fn set_repo(&self, repo: &str, patch: Value) {
        if let Err(e) = self.try_set_repo(repo, patch) {
            panic!("set_repo({repo}): {e:#}");
        }
    }

    /// [`set_repo`](Self::set_repo), returning problems as errors.
    pub fn try_set_repo(&self, repo: &str, patch: Value) -> anyhow::Result<()> {
        let (owner, name) = split_repo(repo)?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let r = w.repo_mut(owner, name);
        let mut meta = r.meta.clone();
        deep_merge(&mut meta, patch);
        let candidate = shared.repo_json(r, &meta);
        check_against("repos/get", 200, &candidate)?;
        r.meta = meta;
        drop(w);
        shared.changed();
        Ok(())
    }

    /// Registers a branch or tag name resolving to `sha` (for deployments and the combined
    /// status). `refs/heads/x`, `heads/x` and `x` are the same ref.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `sha` is not a full commit SHA.
    pub fn set_ref(&self, repo: &str, git_ref: &str, sha: &str) {
        let (owner, name) = setup_repo(repo);
        assert!(
            is_full_sha(sha),
            "set_ref: {sha:?} is not a full commit SHA"
        );
        self.mutate(|w| {
            w.repo_mut(owner, name)
                .refs
                .insert(normalize_ref(git_ref).to_string(), sha.to_lowercase());
        });
    }

    /// Sets the pull request served by `GET .../pulls/{number}`: `patch` is deep-merged
    /// over GitHub's example pull request (with this repo, number and default branch filled
    /// in), so a test gives only what matters, e.g.
    /// `json!({"head": {"sha": "...", "ref": "feature"}, "merged": true})`; a webhook's
    /// `pull_request` object works too. Setting it again patches the stored one. Returns the
    /// stored pull request.
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or the result does not match GitHub's schema (a
    /// broken test setup); [`try_set_pull`](Self::try_set_pull) returns the error instead.
    pub fn set_pull(&self, repo: &str, number: u64, patch: Value) -> Value {
        self.try_set_pull(repo, number, patch)
            .unwrap_or_else(|e| panic!("set_pull({repo}, {number}): {e:#}"))
    }

    /// [`set_pull`](Self::set_pull), returning problems as errors.
    pub fn try_set_pull(&self, repo: &str, number: u64, patch: Value) -> anyhow::Result<Value> {
        let (owner, name) = split_repo(repo)?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let r = w.repo_mut(owner, name);
        let mut pull = match r.pulls.get(&number) {
            Some(existing) => existing.clone(),
            None => shared.pull_template(r, number)?,
        };
        deep_merge(&mut pull, patch);
        check_against("pulls/get", 200, &pull)?;
        r.pulls.insert(number, pull.clone());
        drop(w);
        shared.changed();
        Ok(pull)
    }

    /// Sets the files of a pull request (`GET .../pulls/{number}/files`). Each entry is
    /// deep-merged over GitHub's example file, e.g.
    /// `json!({"filename": "environments/a/b.yaml", "status": "added"})`.
    ///
    /// # Panics
    /// Like [`set_pull`](Self::set_pull); [`try_set_pull_files`](Self::try_set_pull_files)
    /// returns the error instead.
    pub fn set_pull_files(&self, repo: &str, number: u64, files: Vec<Value>) {
        if let Err(e) = self.try_set_pull_files(repo, number, files) {
            panic!("set_pull_files({repo}, {number}): {e:#}");
        }
    }

    /// [`set_pull_files`](Self::set_pull_files), returning problems as errors.
    pub fn try_set_pull_files(
        &self,
        repo: &str,
        number: u64,
        files: Vec<Value>,
    ) -> anyhow::Result<()> {
        self.set_list(repo, number, files, "pulls/list-files", |r| {
            &mut r.pull_files
        })
    }

    /// Sets the reviews of a pull request (`GET .../pulls/{number}/reviews`). Each entry is
    /// deep-merged over GitHub's example review, e.g.
    /// `json!({"user": {"login": "alice"}, "state": "APPROVED"})`; ids are filled in.
    ///
    /// # Panics
    /// Like [`set_pull`](Self::set_pull);
    /// [`try_set_pull_reviews`](Self::try_set_pull_reviews) returns the error instead.
    pub fn set_pull_reviews(&self, repo: &str, number: u64, reviews: Vec<Value>) {
        if let Err(e) = self.try_set_pull_reviews(repo, number, reviews) {
            panic!("set_pull_reviews({repo}, {number}): {e:#}");
        }
    }

    /// [`set_pull_reviews`](Self::set_pull_reviews), returning problems as errors.
    pub fn try_set_pull_reviews(
        &self,
        repo: &str,
        number: u64,
        reviews: Vec<Value>,
    ) -> anyhow::Result<()> {
        self.set_list(repo, number, reviews, "pulls/list-reviews", |r| {
            &mut r.reviews
        })
    }

    pub(crate) fn set_list(
        &self,
        repo: &str,
        number: u64,
        entries: Vec<Value>,
        operation_id: &str,
        slot: impl FnOnce(&mut RepoState) -> &mut BTreeMap<u64, Vec<Value>>,
    ) -> anyhow::Result<()> {
        let (owner, name) = split_repo(repo)?;
        let op = operation(operation_id).ok_or_else(|| anyhow!("{operation_id} missing"))?;
        let template = op
            .response_example(200, "application/json", None)
            .and_then(|v| v.as_array()?.first().cloned())
            .ok_or_else(|| anyhow!("no example for {operation_id}"))?;
        let shared = &self.inner.shared;
        let mut w = self.world();
        let mut list = Vec::with_capacity(entries.len());
        for patch in entries {
            let mut item = template.clone();
            rebase_urls(&mut item, &shared.base, None);
            if operation_id == "pulls/list-reviews" {
                let id = w.new_id();
                item["id"] = json!(id);
                item["node_id"] = json!(node_id("PullRequestReview", id));
                item["user"] = shared.user_json("octocat", 1, "User");
            }
            deep_merge(&mut item, patch);
            list.push(item);
        }
        check_against(operation_id, 200, &Value::Array(list.clone()))?;
        let r = w.repo_mut(owner, name);
        slot(r).insert(number, list);
        drop(w);
        shared.changed();
        Ok(())
    }

    /// Stores a file served by `GET .../contents/{path}?ref=...` (`git_ref` empty means the
    /// default branch).
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `path` is empty.
    pub fn set_content(&self, repo: &str, git_ref: &str, path: &str, content: &[u8]) {
        let (owner, name) = setup_repo(repo);
        let path = path.trim_matches('/').to_string();
        assert!(!path.is_empty(), "set_content: empty path");
        let default = self.inner.shared.config.default_branch.clone();
        self.mutate(|w| {
            let r = w.repo_mut(owner, name);
            let key = if git_ref.is_empty() {
                default
            } else {
                normalize_ref(git_ref).to_string()
            };
            r.contents
                .entry(key)
                .or_default()
                .insert(path, content.to_vec());
        });
    }

    /// Adds a commit status as another integration would (not through HTTP, not recorded as
    /// a request).
    ///
    /// # Panics
    /// When `repo` is not `owner/name` or `sha` is not a full commit SHA.
    pub fn add_status(
        &self,
        repo: &str,
        sha: &str,
        state: &str,
        context: &str,
        creator: &str,
    ) -> Status {
        let (owner, name) = setup_repo(repo);
        assert!(
            is_full_sha(sha),
            "add_status: {sha:?} is not a full commit SHA"
        );
        self.mutate(|w| {
            let id = w.new_id();
            let status = Status {
                id,
                sha: sha.to_lowercase(),
                state: state.to_string(),
                context: context.to_string(),
                description: None,
                target_url: None,
                creator: creator.to_string(),
                created_at: Utc::now(),
            };
            w.repo_mut(owner, name)
                .statuses
                .entry(sha.to_lowercase())
                .or_default()
                .push(status.clone());
            status
        })
    }

    /// Adds a comment as another user would (not through HTTP, not recorded as a request).
    ///
    /// # Panics
    /// When `repo` is not `owner/name`.
    pub fn add_comment(&self, repo: &str, issue_number: u64, user: &str, body: &str) -> Comment {
        let (owner, name) = setup_repo(repo);
        let base = self.inner.shared.base.clone();
        self.mutate(|w| {
            let id = w.new_id();
            let r = w.repo_mut(owner, name);
            let comment = new_comment(&base, r, id, issue_number, user, body, Utc::now());
            r.comments.push(comment.clone());
            comment
        })
    }

    /// Expires every token issued so far (with `require_issued_token`, requests using them
    /// get 401 `Bad credentials`).
    pub fn expire_tokens(&self) {
        let past = Utc::now() - chrono::Duration::seconds(1);
        self.mutate(|w| {
            for t in &mut w.tokens {
                t.expires_at = past;
            }
        });
    }

    // ----- inspection -----

    /// All statuses posted for `sha` in `repo` ("owner/name"), in creation order.
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<Status> {
        self.world()
            .repo(repo)
            .and_then(|r| r.statuses.get(&sha.to_lowercase()).cloned())
            .unwrap_or_default()
    }

    /// The latest status of each context for `sha` (context spelled as in that status).
    pub fn latest_statuses(&self, repo: &str, sha: &str) -> BTreeMap<String, Status> {
        latest_by_context(&self.statuses(repo, sha))
    }

    /// The combined state GitHub would show for `sha`.
    pub fn combined_state(&self, repo: &str, sha: &str) -> String {
        combined_state(self.latest_statuses(repo, sha).values()).to_string()
    }

    /// How many statuses were created through the API (all repositories).
    pub fn status_posts_count(&self) -> usize {
        self.served_count("repos/create-commit-status")
    }

    /// How many requests for `operation_id` were answered 2xx.
    pub fn served_count(&self, operation_id: &str) -> usize {
        self.world()
            .requests
            .iter()
            .filter(|r| {
                r.outcome == Outcome::Served && r.operation_id.as_deref() == Some(operation_id)
            })
            .count()
    }

    /// The comments of an issue or pull request, in creation order.
    pub fn comments(&self, repo: &str, issue_number: u64) -> Vec<Comment> {
        self.world()
            .repo(repo)
            .map(|r| {
                r.comments
                    .iter()
                    .filter(|c| c.issue_number == issue_number)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The check runs of a repository, in creation order.
    pub fn check_runs(&self, repo: &str) -> Vec<CheckRun> {
        self.world()
            .repo(repo)
            .map(|r| r.check_runs.clone())
            .unwrap_or_default()
    }

    /// The deployments of a repository (with their statuses), in creation order.
    pub fn deployments(&self, repo: &str) -> Vec<Deployment> {
        self.world()
            .repo(repo)
            .map(|r| r.deployments.clone())
            .unwrap_or_default()
    }

    /// Every Git request, in order.
    pub fn git_requests(&self) -> Vec<GitRequest> {
        self.world().git_requests.clone()
    }

    /// `git.clone_url_template` for the repositories [`EmulatorConfig::git_root`] serves.
    pub fn git_url_template(&self) -> String {
        format!("{}/git/{{owner}}/{{repo}}.git", self.inner.shared.base)
    }

    /// The installation tokens issued, in order.
    pub fn tokens(&self) -> Vec<InstallationToken> {
        self.world().tokens.clone()
    }

    /// Every request answered, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.world().requests.clone()
    }

    /// The requests rejected for being wrong (not the injected faults, not 404s for
    /// missing things, not 409s).
    pub fn rejected(&self) -> Vec<RequestRecord> {
        self.requests_with(Outcome::Rejected)
    }

    /// The requests answered with `outcome`.
    pub fn requests_with(&self, outcome: Outcome) -> Vec<RequestRecord> {
        self.world()
            .requests
            .iter()
            .filter(|r| r.outcome == outcome)
            .cloned()
            .collect()
    }

    /// Requests whose 2xx answer did not match the response schema (emulator bugs).
    pub fn response_schema_violations(&self) -> Vec<RequestRecord> {
        self.world()
            .requests
            .iter()
            .filter(|r| !r.response_schema_errors.is_empty())
            .cloned()
            .collect()
    }

    /// Waits until `f(self)` holds, re-checking on every state change or request (no
    /// polling). Errors after `timeout` with `what` and a summary of the recent requests.
    pub async fn wait_until<F>(&self, timeout: Duration, what: &str, f: F) -> anyhow::Result<()>
    where
        F: Fn(&EmulatorHandle) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.shared.changes.subscribe();
        loop {
            rx.borrow_and_update();
            if f(self) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    if f(self) {
                        return Ok(());
                    }
                    return Err(anyhow!(
                        "timed out after {timeout:?} waiting for {what}; {}",
                        self.summary()
                    ));
                }
            }
        }
    }

    /// A short text summary of what the emulator saw (for failure messages).
    pub fn summary(&self) -> String {
        let w = self.world();
        let n = w.requests.len();
        let rejected = w
            .requests
            .iter()
            .filter(|r| r.outcome == Outcome::Rejected)
            .count();
        let recent: Vec<String> = w
            .requests
            .iter()
            .rev()
            .take(10)
            .rev()
            .map(|r| {
                format!(
                    "#{} {} {} -> {}{}",
                    r.seq,
                    r.method,
                    r.path,
                    r.status,
                    r.reason
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "the emulator answered {n} requests ({rejected} rejected); last: [{}]",
            recent.join("; ")
        )
    }
}
