//! Local Git mirrors, one bare repository per GitHub repository under
//! `<data_dir>/mirrors/<owner>/<name>.git`. Everything here is blocking (git2): callers run
//! it inside `tokio::task::spawn_blocking`, never on an async thread.

mod branch;
pub use branch::{unguessable_branch, BranchChange, CommitChange, COMMITTER};
mod history;
pub mod locks;

pub use history::CommitWithParents;

use crate::config::Secret;
use crate::ids::{CommitSha, RepoName};
use crate::tree::{TreeError, TreeReader, MAX_FILE_BYTES};
use git2::{FetchOptions, ObjectType, Oid, Repository};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod export;
pub mod notes;
mod repack;
pub use repack::{ObjectFiles, Repacked};
mod service;

pub use service::{blocking, panic_text, Anonymous, GitCredentials, Repos, Session};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("commit {0} is not in the mirror after fetching")]
    MissingCommit(CommitSha),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Git over HTTPS needs a token that could not be had.
    #[error("git credentials: {0}")]
    Credentials(String),
    /// Code panicked on a blocking thread (a bug met on some input): never retried.
    #[error("internal error: {0}")]
    Panicked(String),
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
            RepoError::Credentials(_) => true,
            RepoError::Panicked(_) => false,
        }
    }
}

/// Removes lock files left in the mirrors by a process that was killed mid-fetch. Git
/// refuses to update a ref while its `.lock` file exists, so without this a crash would
/// block every later fetch of that repository. Safe because each Paved process has its own
/// data directory and calls this before its worker starts (see [`locks`]).
pub fn clear_stale_locks(data_dir: &Path) -> std::io::Result<usize> {
    locks::clear_mirror_locks(&data_dir.join("mirrors"))
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
        let callbacks = notes::callbacks(token);
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
    /// `environments`). Walks both trees together and descends only into subtrees whose ids
    /// differ, so the cost follows the size of the change, not of the repository. Renames
    /// show as a delete plus an add.
    pub fn changes_under(
        &self,
        from: &CommitSha,
        to: &CommitSha,
        prefix: &str,
    ) -> Result<Vec<PathChange>, RepoError> {
        let prefix = prefix.trim_matches('/');
        let old = self
            .repo
            .find_commit(Oid::from_str(from.as_str())?)?
            .tree()?;
        let new = self.repo.find_commit(Oid::from_str(to.as_str())?)?.tree()?;
        let sub = |t: &git2::Tree| -> Result<Option<Oid>, RepoError> {
            match t.get_path(Path::new(prefix)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => Ok(Some(e.id())),
                Ok(_) => Ok(None),
                Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let mut out = Vec::new();
        self.diff_trees(sub(&old)?, sub(&new)?, prefix, &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The changes between two trees, below `dir`. Iterative (an explicit stack, so a
    /// deeply nested tree cannot overflow the thread's stack) and linear: each level's
    /// entries are walked once, side by side, in name order (a merge join), instead of
    /// looking every name up in the other tree.
    fn diff_trees(
        &self,
        old: Option<Oid>,
        new: Option<Oid>,
        dir: &str,
        out: &mut Vec<PathChange>,
    ) -> Result<(), RepoError> {
        type Entry = (String, Oid, bool);
        let entries = |oid: Option<Oid>| -> Result<Vec<Entry>, RepoError> {
            let Some(oid) = oid else {
                return Ok(Vec::new());
            };
            let tree = self.repo.find_tree(oid)?;
            let mut v: Vec<Entry> = tree
                .iter()
                .filter_map(|e| {
                    let is_tree = e.kind() == Some(ObjectType::Tree);
                    e.name().map(|n| (n.to_string(), e.id(), is_tree))
                })
                .collect();
            // Git orders trees as if their names ended in '/'; plain name order is what
            // the join below needs.
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(v)
        };
        let mut stack: Vec<(Option<Oid>, Option<Oid>, String)> = vec![(old, new, dir.to_string())];
        while let Some((old, new, dir)) = stack.pop() {
            if old == new {
                continue;
            }
            let (olds, news) = (entries(old)?, entries(new)?);
            let (mut i, mut j) = (0, 0);
            while i < olds.len() || j < news.len() {
                let order = match (olds.get(i), news.get(j)) {
                    (Some(o), Some(n)) => o.0.cmp(&n.0),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, _) => std::cmp::Ordering::Greater,
                };
                let (o, n) = match order {
                    std::cmp::Ordering::Less => {
                        i += 1;
                        (olds.get(i - 1), None)
                    }
                    std::cmp::Ordering::Greater => {
                        j += 1;
                        (None, news.get(j - 1))
                    }
                    std::cmp::Ordering::Equal => {
                        i += 1;
                        j += 1;
                        (olds.get(i - 1), news.get(j - 1))
                    }
                };
                let name = &o.or(n).map(|e| e.0.clone()).unwrap_or_default();
                let path = format!("{dir}/{name}");
                let tree_of = |e: Option<&Entry>| e.filter(|e| e.2).map(|e| e.1);
                let blob_of = |e: Option<&Entry>| e.filter(|e| !e.2).map(|e| e.1);
                let (old_tree, new_tree) = (tree_of(o), tree_of(n));
                if old_tree.is_some() || new_tree.is_some() {
                    stack.push((old_tree, new_tree, path.clone()));
                }
                let status = match (blob_of(o), blob_of(n)) {
                    (None, Some(_)) => Some(PathStatus::Added),
                    (Some(_), None) => Some(PathStatus::Deleted),
                    (Some(a), Some(b)) if a != b => Some(PathStatus::Modified),
                    _ => None,
                };
                if let Some(status) = status {
                    out.push(PathChange { path, status });
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use paved_testkit::GitRemote;

    fn add(path: &str, text: &str) -> (String, Option<Vec<u8>>) {
        (path.to_string(), Some(text.as_bytes().to_vec()))
    }

    /// A PR may nest folders thousands deep under `environments/`: the diff walks them
    /// without recursion, so even a thread with a small stack gets through.
    #[test]
    fn a_deeply_nested_tree_does_not_overflow_the_stack() {
        let tmp = tempfile::tempdir().unwrap();
        let name = RepoName::parse("o/r").unwrap();
        let remote = GitRemote::create(&tmp.path().join("git"), &name).unwrap();
        let base = remote
            .commit("refs/heads/main", None, &[add("README.md", "r")], "base")
            .unwrap();
        // environments/d/d/.../d/x.yaml, 3,000 folders deep, built bottom-up.
        let repo = git2::Repository::open_bare(remote.path()).unwrap();
        let blob = repo.blob(b"x").unwrap();
        let mut b = repo.treebuilder(None).unwrap();
        b.insert("x.yaml", blob, 0o100644).unwrap();
        let mut tree = b.write().unwrap();
        for _ in 0..3000 {
            let mut b = repo.treebuilder(None).unwrap();
            b.insert("d", tree, 0o040000).unwrap();
            tree = b.write().unwrap();
        }
        let base_tree = repo
            .find_commit(Oid::from_str(base.as_str()).unwrap())
            .unwrap()
            .tree()
            .unwrap();
        let mut root = repo.treebuilder(Some(&base_tree)).unwrap();
        root.insert("environments", tree, 0o040000).unwrap();
        let root = repo.find_tree(root.write().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let parent = repo
            .find_commit(Oid::from_str(base.as_str()).unwrap())
            .unwrap();
        let head = repo
            .commit(Some("refs/heads/pr"), &sig, &sig, "deep", &root, &[&parent])
            .unwrap();
        let head = CommitSha::parse(&head.to_string()).unwrap();
        let mirror = Mirror::open(&tmp.path().join("data"), &name).unwrap();
        mirror
            .fetch(
                &remote.clone_url(),
                &["+refs/heads/*:refs/remotes/origin/*".into()],
                None,
            )
            .unwrap();
        let changes = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || mirror.changes_under(&base, &head, "environments").unwrap())
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(changes.len(), 1);
        assert!(
            changes[0].path.ends_with("/d/x.yaml"),
            "{}",
            changes[0].path
        );
        assert_eq!(changes[0].status, PathStatus::Added);
    }

    #[test]
    fn changes_under_reports_adds_edits_and_deletes_below_the_prefix_only() {
        let tmp = tempfile::tempdir().unwrap();
        let name = RepoName::parse("o/r").unwrap();
        let remote = GitRemote::create(&tmp.path().join("git"), &name).unwrap();
        let base = remote
            .commit(
                "refs/heads/main",
                None,
                &[
                    add("environments/a/one.yaml", "1"),
                    add("environments/a/two.yaml", "2"),
                    add("environments/b/three.yaml", "3"),
                    add("environments-not/x.yaml", "x"),
                    add("README.md", "r"),
                ],
                "base",
            )
            .unwrap();
        let head = remote
            .commit(
                "refs/heads/pr",
                Some(&base),
                &[
                    add("environments/a/one.yaml", "1 changed"),
                    ("environments/a/two.yaml".into(), None),
                    add("environments/c/four.yaml", "4"),
                    add("environments-not/y.yaml", "y"),
                    add("README.md", "r2"),
                ],
                "head",
            )
            .unwrap();
        let mirror = Mirror::open(&tmp.path().join("data"), &name).unwrap();
        mirror
            .fetch(
                &remote.clone_url(),
                &["+refs/heads/*:refs/remotes/origin/*".into()],
                None,
            )
            .unwrap();
        let changes = mirror.changes_under(&base, &head, "environments/").unwrap();
        let got: Vec<(&str, PathStatus)> = changes
            .iter()
            .map(|c| (c.path.as_str(), c.status))
            .collect();
        assert_eq!(
            got,
            vec![
                ("environments/a/one.yaml", PathStatus::Modified),
                ("environments/a/two.yaml", PathStatus::Deleted),
                ("environments/c/four.yaml", PathStatus::Added),
            ]
        );
        assert!(mirror
            .changes_under(&base, &base, "environments")
            .unwrap()
            .is_empty());
    }
}
