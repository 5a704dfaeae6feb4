//! One way to open a mirror: [`Repos`] owns the mirrors' folder, the clone URL (the
//! configured template or the URL GitHub sent), the credentials for Git over HTTPS, one
//! lock per repository (git2 takes ref locks that concurrent fetches into one mirror would
//! fight over), and the blocking thread every Git call runs on.

use super::{Mirror, Repacked, RepoError};
use crate::config::Secret;
use crate::ids::{InstallationId, RepoName};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where Git's HTTPS token comes from: the configured token, or a GitHub App's installation
/// token (implemented by the GitHub client).
#[async_trait]
pub trait GitCredentials: Send + Sync + 'static {
    async fn git_token(
        &self,
        installation: Option<InstallationId>,
    ) -> Result<Option<Secret>, String>;

    /// Work with the token failed. Git does not say whether the token was refused, so a
    /// source of short-lived tokens drops the one it gave, and the retry gets a fresh one.
    async fn failed(&self, _installation: Option<InstallationId>) {}
}

/// No credentials (local `file://` repositories).
pub struct Anonymous;

#[async_trait]
impl GitCredentials for Anonymous {
    async fn git_token(
        &self,
        _installation: Option<InstallationId>,
    ) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

/// A mirror opened for work that talks to the remote: where to fetch from and push to,
/// and with which token.
pub struct Session {
    pub mirror: Mirror,
    pub url: String,
    pub token: Option<Secret>,
}

/// The mirrors of the repositories Paved serves (see the module documentation).
pub struct Repos {
    data_dir: PathBuf,
    clone_url_template: Option<String>,
    credentials: Arc<dyn GitCredentials>,
    /// One lock per repository; what it guards says whether the mirror is known free of
    /// lock files a dead writer left (false at start and after a failure).
    locks: Mutex<HashMap<RepoName, Arc<tokio::sync::Mutex<bool>>>>,
}

impl Repos {
    pub fn new(
        data_dir: PathBuf,
        clone_url_template: Option<String>,
        credentials: Arc<dyn GitCredentials>,
    ) -> Repos {
        Repos {
            data_dir,
            clone_url_template,
            credentials,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The URL Paved fetches `repo` from and pushes notes to: the template with `{owner}`
    /// and `{repo}` filled in, or the clone URL GitHub sent.
    pub fn clone_url(&self, repo: &RepoName, payload_clone_url: &str) -> String {
        match &self.clone_url_template {
            Some(t) => t
                .replace("{owner}", repo.owner())
                .replace("{repo}", repo.name()),
            None => payload_clone_url.to_string(),
        }
    }

    fn lock_of(&self, repo: &RepoName) -> Arc<tokio::sync::Mutex<bool>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(repo.clone()).or_default().clone()
    }

    /// Runs `f` on `repo`'s mirror (made the first time) on a blocking thread, holding the
    /// repository's lock, with the URL and token to fetch or push with.
    pub async fn with_remote<T, E>(
        &self,
        repo: &RepoName,
        payload_clone_url: &str,
        installation: Option<InstallationId>,
        f: impl FnOnce(Session) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        let lock = self.lock_of(repo);
        let mut swept = lock.lock().await;
        let sweep = !*swept;
        let url = self.clone_url(repo, payload_clone_url);
        let token = self
            .credentials
            .git_token(installation)
            .await
            .map_err(|e| E::from(RepoError::Credentials(e)))?;
        let data_dir = self.data_dir.clone();
        let repo = repo.clone();
        let result = blocking(move || {
            let mirror = Mirror::open(&data_dir, &repo)?;
            // Paved is its mirrors' only writer and holds this one's lock: a lock file in
            // it now was left by a writer that died (a crash, or a failure of this one).
            if sweep {
                super::locks::clear_mirror_locks(mirror.path()).map_err(RepoError::from)?;
            }
            f(Session { mirror, url, token })
        })
        .await;
        *swept = result.is_ok();
        if result.is_err() {
            self.credentials.failed(installation).await;
        }
        result
    }

    /// Fetches `branch` of `repo` (into `refs/remotes/origin/<branch>`) and runs `f` on the
    /// mirror with its tip, under the repository's lock: what the default branch says now.
    pub async fn with_branch<T, E>(
        &self,
        repo: &RepoName,
        clone_url: &str,
        installation: Option<InstallationId>,
        branch: &str,
        f: impl FnOnce(&super::Mirror, &crate::ids::CommitSha) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        let branch = branch.to_string();
        self.with_remote(repo, clone_url, installation, move |s| {
            let local = format!("refs/remotes/origin/{branch}");
            s.mirror.fetch(
                &s.url,
                &[format!("+refs/heads/{branch}:{local}")],
                s.token.as_ref(),
            )?;
            let tip = s.mirror.resolve(&local).ok_or_else(|| {
                RepoError::Git(git2::Error::from_str("the default branch is missing"))
            })?;
            f(&s.mirror, &tip)
        })
        .await
    }

    /// Runs `f` on `repo`'s mirror on a blocking thread, without the lock: for reading
    /// commits already fetched (reads never conflict with a fetch's ref updates).
    pub async fn read<T, E>(
        &self,
        repo: &RepoName,
        f: impl FnOnce(Mirror) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<RepoError> + Send + 'static,
    {
        let data_dir = self.data_dir.clone();
        let repo = repo.clone();
        blocking(move || f(Mirror::open(&data_dir, &repo)?)).await
    }
}

impl Repos {
    /// Repacks each mirror past the thresholds (see [`Mirror::repack_if_needed`]), holding
    /// its lock so no fetch adds objects meanwhile. A mirror that fails is logged and
    /// skipped; the others are still done.
    pub async fn repack_all(
        &self,
        max_loose: usize,
        max_packs: usize,
    ) -> Vec<(RepoName, Repacked)> {
        let root = self.data_dir.join("mirrors");
        let names =
            match blocking(move || -> Result<Vec<RepoName>, RepoError> { mirrors_in(&root) }).await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "listing the mirrors failed");
                    return Vec::new();
                }
            };
        let mut done = Vec::new();
        for name in names {
            let lock = self.lock_of(&name);
            let _held = lock.lock().await;
            let data_dir = self.data_dir.clone();
            let repo = name.clone();
            let result = blocking(move || {
                Mirror::open(&data_dir, &repo)?.repack_if_needed(max_loose, max_packs)
            })
            .await;
            match result {
                Ok(Some(r)) => {
                    tracing::info!(repo = %name, loose = r.before.loose, packs = r.before.packs,
                        objects = r.objects, "repacked the mirror into one pack");
                    done.push((name, r));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(repo = %name, error = %e, "repacking the mirror failed"),
            }
        }
        done
    }
}

/// The repositories with a mirror under `root` (`<owner>/<repo>.git`).
fn mirrors_in(root: &std::path::Path) -> Result<Vec<RepoName>, RepoError> {
    let mut out = Vec::new();
    let owners = match std::fs::read_dir(root) {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for owner in owners {
        let owner = owner?;
        if !owner.file_type()?.is_dir() {
            continue;
        }
        for repo in std::fs::read_dir(owner.path())? {
            let file = repo?.file_name();
            let file = file.to_string_lossy();
            let Some(name) = file.strip_suffix(".git") else {
                continue;
            };
            let full = format!("{}/{name}", owner.file_name().to_string_lossy());
            if let Ok(n) = RepoName::parse(&full) {
                out.push(n);
            }
        }
    }
    out.sort_by_key(|n| n.to_string());
    Ok(out)
}

/// Runs `f` on a blocking thread; a panic there becomes [`RepoError::Panicked`] with its
/// message (logged), so the caller can report it instead of retrying.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<RepoError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let why = panic_text(e.into_panic().as_ref());
            tracing::error!(panic = %why, "internal error: a panic on a blocking thread");
            Err(E::from(RepoError::Panicked(why)))
        }
        Err(e) => Err(E::from(RepoError::Panicked(e.to_string()))),
    }
}

/// The message of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}
