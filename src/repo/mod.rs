//! Local Git mirrors, one bare repository per GitHub repository under
//! `<data_dir>/mirrors/<owner>/<name>.git`. Everything here is blocking (git2): callers run
//! it inside `tokio::task::spawn_blocking`, never on an async thread.

use crate::config::Secret;
use crate::ids::{CommitSha, RepoName};
use crate::tree::{TreeError, TreeReader, MAX_FILE_BYTES};
use git2::{FetchOptions, ObjectType, Oid, RemoteCallbacks, Repository};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("commit {0} is not in the mirror after fetching")]
    MissingCommit(CommitSha),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RepoError {
    /// Network and lock trouble are worth retrying; a missing commit after a good fetch
    /// usually is too (GitHub can lag in publishing `refs/pull/N/head`).
    pub fn is_transient(&self) -> bool {
        match self {
            RepoError::Git(e) => {
                matches!(
                    e.class(),
                    git2::ErrorClass::Net
                        | git2::ErrorClass::Http
                        | git2::ErrorClass::Ssl
                        | git2::ErrorClass::Os
                        | git2::ErrorClass::Reference
                ) || e.code() == git2::ErrorCode::Locked
            }
            RepoError::MissingCommit(_) => true,
            RepoError::Io(_) => true,
        }
    }
}

/// Removes lock files left in the mirrors by a process that was killed mid-fetch. Git
/// refuses to update a ref while its `.lock` file exists, so without this a crash would
/// block every later fetch of that repository. Safe because each Paved process has its own
/// data directory and calls this before its worker starts.
pub fn clear_stale_locks(data_dir: &Path) -> std::io::Result<usize> {
    fn walk(dir: &Path, removed: &mut usize) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                // Objects are written under temporary names and renamed; no locks there.
                if entry.file_name() != "objects" {
                    walk(&path, removed)?;
                }
            } else if path.extension().is_some_and(|e| e == "lock") {
                std::fs::remove_file(&path)?;
                *removed += 1;
            }
        }
        Ok(())
    }
    let mut removed = 0;
    walk(&data_dir.join("mirrors"), &mut removed)?;
    Ok(removed)
}

/// How a path differs between two commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStatus {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChange {
    pub path: String,
    pub status: PathStatus,
}

pub struct Mirror {
    repo: Repository,
    path: PathBuf,
}

impl Mirror {
    /// Opens the mirror of `name`, creating an empty bare repository the first time.
    pub fn open(data_dir: &Path, name: &RepoName) -> Result<Mirror, RepoError> {
        // RepoName admits only [A-Za-z0-9._-] and never `.`/`..`, so this stays inside data_dir.
        let path = data_dir
            .join("mirrors")
            .join(name.owner())
            .join(format!("{}.git", name.name()));
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&path)?;
                Repository::init_bare(&path)?
            }
        };
        Ok(Mirror { repo, path })
    }

    /// Opens an existing mirror by its folder (one already made by [`Mirror::open`]).
    pub fn open_path(path: &Path) -> Result<Mirror, RepoError> {
        Ok(Mirror {
            repo: Repository::open_bare(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fetches `refspecs` from `url`. The token, when given, goes to Git as HTTPS basic
    /// credentials (`x-access-token`), never into the URL, so it cannot leak into logs.
    pub fn fetch(
        &self,
        url: &str,
        refspecs: &[String],
        token: Option<&Secret>,
    ) -> Result<(), RepoError> {
        let mut callbacks = RemoteCallbacks::new();
        if let Some(token) = token {
            let token = token.clone();
            callbacks.credentials(move |_url, _user, _allowed| {
                git2::Cred::userpass_plaintext("x-access-token", token.expose())
            });
        }
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks);
        opts.download_tags(git2::AutotagOption::None);
        let mut remote = self.repo.remote_anonymous(url)?;
        let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        remote.fetch(&specs, Some(&mut opts), None)?;
        Ok(())
    }

    pub fn has_commit(&self, sha: &CommitSha) -> bool {
        Oid::from_str(sha.as_str())
            .and_then(|oid| self.repo.find_commit(oid))
            .is_ok()
    }

    /// The commit a ref points at, if the ref exists.
    pub fn resolve(&self, refname: &str) -> Option<CommitSha> {
        let r = self.repo.find_reference(refname).ok()?;
        let c = r.peel_to_commit().ok()?;
        CommitSha::parse(&c.id().to_string()).ok()
    }

    pub fn require_commit(&self, sha: &CommitSha) -> Result<(), RepoError> {
        if self.has_commit(sha) {
            Ok(())
        } else {
            Err(RepoError::MissingCommit(sha.clone()))
        }
    }

    pub fn merge_base(&self, a: &CommitSha, b: &CommitSha) -> Result<CommitSha, RepoError> {
        let oid = self
            .repo
            .merge_base(Oid::from_str(a.as_str())?, Oid::from_str(b.as_str())?)?;
        Ok(
            CommitSha::parse(&oid.to_string())
                .map_err(|e| git2::Error::from_str(&e.to_string()))?,
        )
    }

    /// Files that differ between `from` and `to` below `prefix` (a folder, e.g.
    /// `environments/`). Unchanged subtrees are skipped by OID, so the cost follows the
    /// size of the change, not of the repository. Renames show as a delete plus an add.
    pub fn changes_under(
        &self,
        from: &CommitSha,
        to: &CommitSha,
        prefix: &str,
    ) -> Result<Vec<PathChange>, RepoError> {
        let old = self
            .repo
            .find_commit(Oid::from_str(from.as_str())?)?
            .tree()?;
        let new = self.repo.find_commit(Oid::from_str(to.as_str())?)?.tree()?;
        let mut opts = git2::DiffOptions::new();
        opts.pathspec(prefix);
        opts.disable_pathspec_match(false);
        let diff = self
            .repo
            .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))?;
        let mut out = Vec::new();
        for delta in diff.deltas() {
            let (file, status) = match delta.status() {
                git2::Delta::Added | git2::Delta::Copied => (delta.new_file(), PathStatus::Added),
                git2::Delta::Deleted => (delta.old_file(), PathStatus::Deleted),
                git2::Delta::Modified | git2::Delta::Typechange => {
                    (delta.new_file(), PathStatus::Modified)
                }
                git2::Delta::Renamed => {
                    if let Some(p) = delta.old_file().path() {
                        out.push(PathChange {
                            path: p.to_string_lossy().into_owned(),
                            status: PathStatus::Deleted,
                        });
                    }
                    (delta.new_file(), PathStatus::Added)
                }
                _ => continue,
            };
            if let Some(p) = file.path() {
                let path = p.to_string_lossy().into_owned();
                if path.starts_with(prefix) {
                    out.push(PathChange { path, status });
                }
            }
        }
        Ok(out)
    }

    /// A reader over the files at `sha`, usable from any thread.
    pub fn tree_at(&self, sha: &CommitSha) -> Result<CommitTree, RepoError> {
        let tree = self
            .repo
            .find_commit(Oid::from_str(sha.as_str())?)?
            .tree_id();
        Ok(CommitTree {
            repo: Mutex::new(Repository::open_bare(&self.path)?),
            tree,
        })
    }

    /// The tree id of a folder at a commit, or `None` if it does not exist there. Used as a
    /// cache key: governance is reloaded only when `.paved/` or `catalog/` really changed.
    pub fn subtree_id(&self, sha: &CommitSha, dir: &str) -> Result<Option<String>, RepoError> {
        let tree = self
            .repo
            .find_commit(Oid::from_str(sha.as_str())?)?
            .tree()?;
        match tree.get_path(Path::new(dir)) {
            Ok(e) => Ok(Some(e.id().to_string())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The files of one commit (implements [`TreeReader`]).
pub struct CommitTree {
    // git2's Repository is Send but not Sync; readers are used from one blocking task at
    // a time, so the lock is uncontended.
    repo: Mutex<Repository>,
    tree: Oid,
}

impl CommitTree {
    fn with_repo<T>(
        &self,
        path: &str,
        f: impl FnOnce(&Repository) -> Result<T, git2::Error>,
    ) -> Result<T, TreeError> {
        let repo = self.repo.lock().map_err(|_| TreeError::Io {
            path: path.into(),
            message: "repository lock poisoned".into(),
        })?;
        f(&repo).map_err(|e| TreeError::Io {
            path: path.into(),
            message: e.message().to_string(),
        })
    }
}

fn clean(path: &str) -> &str {
    path.trim_matches('/')
}

impl TreeReader for CommitTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TreeError> {
        let p = clean(path);
        enum Got {
            None,
            TooLarge(u64),
            Bytes(Vec<u8>),
        }
        let got = self.with_repo(path, |repo| {
            let tree = repo.find_tree(self.tree)?;
            let entry = match tree.get_path(Path::new(p)) {
                Ok(e) => e,
                Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Got::None),
                Err(e) => return Err(e),
            };
            if entry.kind() != Some(ObjectType::Blob) {
                return Ok(Got::None);
            }
            // Ask the size from the object header before loading the blob, so a huge file
            // is refused without being read into memory.
            let odb = repo.odb()?;
            let (size, _) = odb.read_header(entry.id())?;
            if size as u64 > MAX_FILE_BYTES {
                return Ok(Got::TooLarge(size as u64));
            }
            let blob = repo.find_blob(entry.id())?;
            Ok(Got::Bytes(blob.content().to_vec()))
        })?;
        match got {
            Got::None => Ok(None),
            Got::TooLarge(size) => Err(TreeError::TooLarge {
                path: path.into(),
                size,
                max: MAX_FILE_BYTES,
            }),
            Got::Bytes(b) => Ok(Some(b)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError> {
        let p = clean(dir);
        self.with_repo(dir, |repo| {
            let root = repo.find_tree(self.tree)?;
            let tree = if p.is_empty() {
                root
            } else {
                match root.get_path(Path::new(p)) {
                    Ok(e) if e.kind() == Some(ObjectType::Tree) => repo.find_tree(e.id())?,
                    Ok(_) => return Ok(Vec::new()),
                    Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                }
            };
            let mut names: Vec<String> = tree
                .iter()
                .filter_map(|e| e.name().map(str::to_string))
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn exists(&self, path: &str) -> Result<bool, TreeError> {
        let p = clean(path);
        self.with_repo(path, |repo| {
            let root = repo.find_tree(self.tree)?;
            match root.get_path(Path::new(p)) {
                Ok(e) => Ok(e.kind() == Some(ObjectType::Blob)),
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn is_dir(&self, path: &str) -> Result<bool, TreeError> {
        let p = clean(path);
        self.with_repo(path, |repo| {
            let root = repo.find_tree(self.tree)?;
            if p.is_empty() {
                return Ok(true);
            }
            match root.get_path(Path::new(p)) {
                Ok(e) => Ok(e.kind() == Some(ObjectType::Tree)),
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
    }
}
