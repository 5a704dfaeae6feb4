//! What every piece of work takes and shares: its dependencies, passed explicitly
//! ([`Deps`], as rust-lang/bors does, so a test can build one), the repository it is for
//! ([`Target`]), and why it stopped ([`WorkError`], which the worker reads to decide whether
//! to retry). The event handlers, the provisioning runner and the scheduler's jobs all take
//! these; none of them is above another here.

use crate::checks::Governance;
use crate::config::Config;
use crate::forge::client::{Forge, ForgeError};
use crate::identity::Directory;
use crate::ids::RepoName;
use crate::metrics::Metrics;
use crate::repo::{RepoError, Repos};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// What the handlers need, passed explicitly (no globals), so tests can build one.
pub struct Deps {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub forge: Forge,
    /// The Git mirrors (one lock per repository, clone URL, credentials).
    pub repos: Arc<Repos>,
    /// Governance compiled per (`.paved/` tree, `catalog/` tree).
    pub governance: GovernanceCache,
    /// Provisioning scripts running at once, across all merges (`runner.concurrency`).
    pub runner_slots: Semaphore,
    /// This process's name as a lock holder (unique per start).
    pub instance: String,
    pub metrics: Arc<Metrics>,
    /// Roles and GitHub team members (the checks count GitHub teams' members too).
    pub directory: Arc<Directory>,
    /// Wakes this replica's scheduler: a reconcile was asked for.
    pub lifecycle_wake: Arc<tokio::sync::Notify>,
    /// The sandbox every run goes through (SPEC 12), resolved and tried once at start.
    pub sandbox: crate::runner::Sandbox,
    /// Paved's OpenID Connect issuer: signs each run's identity token (SPEC 13).
    pub issuer: Arc<crate::oidc::Issuer>,
}

impl Deps {
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        forge: Forge,
        metrics: Arc<Metrics>,
        sandbox: crate::runner::Sandbox,
    ) -> Deps {
        let repos = Arc::new(Repos::new(
            config.data_dir.clone(),
            config.clone_url_template.clone(),
            Arc::new(forge.clone()),
        ));
        let directory = Arc::new(Directory::new(
            store.clone(),
            repos.clone(),
            forge.clone(),
            config.api.identity_ttl,
            config.repositories.clone(),
        ));
        let issuer = Arc::new(crate::oidc::Issuer::new(
            store.clone(),
            config.public_url.as_deref().unwrap_or(""),
            config.oidc.rotate_every,
            config.lifecycle.clock.clone(),
        ));
        Deps {
            issuer,
            store,
            forge,
            repos,
            directory,
            governance: GovernanceCache::default(),
            runner_slots: Semaphore::new(config.runner.concurrency),
            instance: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            metrics,
            config,
            lifecycle_wake: Arc::new(tokio::sync::Notify::new()),
            sandbox,
        }
    }

    /// The deploy identities this server defines (`[runner.identities]`): what the checks
    /// hold `platform.yaml` to.
    pub fn known_identities(&self) -> BTreeSet<String> {
        self.config.runner.identities.keys().cloned().collect()
    }

    /// Base URL of Paved's API, for the links in statuses and comments.
    pub fn public_url(&self) -> &str {
        self.config.public_url.as_deref().unwrap_or("")
    }

    /// Environments the inventory holds as live, by team (the quota counts them).
    pub async fn live_by_team(
        &self,
        repo: &RepoName,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, WorkError> {
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.store.environments(Some(repo)).await? {
            if e.state.is_live() {
                live.entry(e.team.to_string())
                    .or_default()
                    .insert(e.name.to_string());
            }
        }
        Ok(live)
    }
}

/// The repository an operation acts on, as Git and GitHub reach it: from a pull request's
/// event, or from what the store knows of it (scheduled work has no event in hand).
#[derive(Debug, Clone)]
pub struct Target {
    pub repo: RepoName,
    pub clone_url: String,
    pub installation: Option<crate::ids::InstallationId>,
}

impl From<&crate::event::PrInfo> for Target {
    fn from(pr: &crate::event::PrInfo) -> Target {
        Target {
            repo: pr.repo.clone(),
            clone_url: pr.clone_url.clone(),
            installation: pr.installation,
        }
    }
}

impl From<&crate::store::KnownRepository> for Target {
    fn from(k: &crate::store::KnownRepository) -> Target {
        Target {
            repo: k.repo.clone(),
            clone_url: k.clone_url.clone(),
            installation: k.installation,
        }
    }
}

/// Sets an environment's lifecycle timers from its manifest on the default branch (see
/// [`crate::timers`]); an environment that is gone, or has no manifest, has none.
pub(crate) async fn set_timers(
    deps: &Deps,
    repo: &RepoName,
    name: &str,
    manifest: Option<&crate::manifest::Manifest>,
) -> Result<(), WorkError> {
    let live = deps
        .store
        .environment(repo, name)
        .await?
        .is_some_and(|e| e.state.is_live());
    match manifest {
        Some(m) if live => {
            let now = deps.config.lifecycle.clock.now();
            let (set, clear) = crate::timers::timers_for(repo, m, &deps.config.lifecycle, now);
            for t in &set {
                deps.store.set_timer(t).await?;
            }
            if !clear.is_empty() {
                deps.store.clear_timers(repo, name, &clear).await?;
            }
        }
        _ => deps.store.clear_timers(repo, name, &[]).await?,
    }
    Ok(())
}

/// Governance compiled once per (`.paved/` tree id, `catalog/` tree id) and reused by every
/// PR whose base has the same governance. Small and bounded: governance changes rarely.
#[derive(Default, Clone)]
pub struct GovernanceCache {
    inner: Arc<Mutex<HashMap<String, Arc<Governance>>>>,
}

impl GovernanceCache {
    const MAX: usize = 64;

    pub fn get(&self, key: &str) -> Option<Arc<Governance>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn insert(&self, key: String, governance: Arc<Governance>) {
        let mut cache = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= Self::MAX {
            cache.clear();
        }
        cache.insert(key, governance);
    }
}

/// Why a handler stopped. The worker decides from it whether to retry, when, or not.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Forge(#[from] ForgeError),
    #[error(transparent)]
    Repo(RepoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("payload: {0}")]
    Payload(String),
    #[error("internal: {0}")]
    Internal(String),
    /// Code panicked on some input (a bug). Never retried: the same input would panic
    /// again. A PR's checks report it as a failing status instead.
    #[error("internal error: {0}")]
    Panicked(String),
    /// The PR touches more manifests than `checks.max_manifests`: nothing is evaluated or
    /// provisioned; it gets one failing status saying so.
    #[error("{count} environment manifests changed; at most {max} per pull request (checks.max_manifests)")]
    TooManyManifests { count: usize, max: usize },
    /// Not an error: the delivery must wait (a push waiting for its merge event). It is
    /// retried after `after` however many attempts it took, because what it waits for is
    /// bounded in time by the handler itself.
    #[error("{why}")]
    NotYet { why: String, after: Duration },
}

impl From<RepoError> for WorkError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Panicked(why) => WorkError::Panicked(why),
            other => WorkError::Repo(other),
        }
    }
}

impl WorkError {
    /// Worth trying again later.
    pub fn is_transient(&self) -> bool {
        match self {
            WorkError::Forge(e) => e.is_transient(),
            WorkError::Repo(e) => e.is_transient(),
            WorkError::Store(_) => true,
            WorkError::Payload(_) => false,
            WorkError::Internal(_) => true,
            WorkError::Panicked(_) => false,
            WorkError::TooManyManifests { .. } => false,
            WorkError::NotYet { .. } => true,
        }
    }
}

/// Runs blocking work (Git, parsing, evaluating) on a blocking thread. A panic there
/// becomes [`WorkError::Panicked`] with its message, logged, rather than a retryable error.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorkError> + Send + 'static,
) -> Result<T, WorkError> {
    crate::repo::blocking(f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_reported_once_never_retried() {
        let r: Result<(), WorkError> = blocking(|| panic!("scanner fell over")).await;
        match r {
            Err(e @ WorkError::Panicked(_)) => {
                assert!(!e.is_transient(), "a panic must not be retried");
                assert!(e.to_string().contains("scanner fell over"), "{e}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        let ok = blocking(|| Ok(7)).await.expect("no panic");
        assert_eq!(ok, 7);
    }
}
