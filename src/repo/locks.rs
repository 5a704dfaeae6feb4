//! Lock files left behind by a writer that died (issue 20).
//!
//! Git (and libgit2) take a ref by creating `<ref>.lock` with `O_EXCL`, write it, and rename
//! it over the ref. A writer killed in between leaves the lock, and every later writer of
//! that ref fails ("failed to lock file … for writing") until someone removes it.
//! - In Paved's own mirrors Paved is the only writer, and [`super::Repos`] lets one
//!   operation at a time near a mirror: a lock found there while Paved holds the mirror's
//!   lock belongs to nobody alive, and is removed ([`clear_mirror_locks`]): at start, for
//!   every mirror ([`super::clear_stale_locks`]), and before the next use of a mirror after
//!   a failure with it (a retry).
//! - In a local origin (`file://`, as `git.clone_url_template` allows) other writers may
//!   be alive: a lock is removed only when it is older than the longest push
//!   ([`STALE_AFTER`]) and no process of this host has it open ([`clear_stale_origin_locks`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lock in a local origin older than this, held open by no process, is a dead writer's.
/// A push writes its lock for milliseconds; libgit2 keeps the file open while it does.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Removes every `*.lock` file under `dir` (a mirror, or the folder of all mirrors),
/// except under `objects` (objects are written under temporary names and renamed: no locks
/// there), logging each. Call only while nothing of this process works in it. Returns how
/// many went.
pub fn clear_mirror_locks(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "objects" {
                removed += clear_mirror_locks(&path)?;
            }
        } else if path.extension().is_some_and(|e| e == "lock") {
            std::fs::remove_file(&path)?;
            tracing::warn!(lock = %path.display(),
                "removed a lock file a writer that died left in a mirror");
            removed += 1;
        }
    }
    Ok(removed)
}

/// The folder of a local origin: a `file://` URL or a plain path. `None` for anything
/// reached over a network.
pub fn local_origin(url: &str) -> Option<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (url.starts_with('/')).then(|| PathBuf::from(url))
}

/// Removes the locks of `refs` (and of `packed-refs`) in the local origin at `origin`
/// that a dead writer left: older than `stale_after` and open in no process of this host.
pub fn clear_stale_origin_locks(
    origin: &Path,
    refs: &[&str],
    stale_after: Duration,
) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let candidates = refs
        .iter()
        .map(|r| origin.join(format!("{r}.lock")))
        .chain(std::iter::once(origin.join("packed-refs.lock")));
    for lock in candidates {
        let Ok(meta) = std::fs::metadata(&lock) else {
            continue;
        };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age < stale_after || open_anywhere(&lock) {
            continue;
        }
        if std::fs::remove_file(&lock).is_ok() {
            tracing::warn!(lock = %lock.display(), age_s = age.as_secs(),
                "removed a stale lock a writer that died left in the origin");
            removed.push(lock);
        }
    }
    removed
}

/// Whether any process of this host (that this one may look at) has `path` open.
fn open_anywhere(path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l == target) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_loses_the_locks_a_dead_writer_left() {
        let tmp = tempfile::tempdir().unwrap();
        let git = tmp.path();
        std::fs::create_dir_all(git.join("refs/notes")).unwrap();
        std::fs::create_dir_all(git.join("objects/pack")).unwrap();
        for f in ["refs/notes/paved.lock", "packed-refs.lock", "index.lock"] {
            std::fs::write(git.join(f), "").unwrap();
        }
        std::fs::write(git.join("refs/notes/paved"), "x").unwrap();
        std::fs::write(git.join("objects/pack/keep.lock"), "").unwrap();
        assert_eq!(clear_mirror_locks(git).unwrap(), 3);
        assert!(git.join("refs/notes/paved").exists());
        assert!(!git.join("refs/notes/paved.lock").exists());
        // Not under objects: nothing there is a lock of Git's.
        assert!(git.join("objects/pack/keep.lock").exists());
    }

    #[test]
    fn an_origin_lock_goes_only_when_old_and_held_by_nobody() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path();
        std::fs::create_dir_all(origin.join("refs/notes")).unwrap();
        let lock = origin.join("refs/notes/paved.lock");
        // Fresh: a live writer may be in the middle of its push.
        std::fs::write(&lock, "").unwrap();
        assert!(clear_stale_origin_locks(origin, &["refs/notes/paved"], STALE_AFTER).is_empty());
        assert!(lock.exists());
        // Old, but open in a process of this host (this one): still somebody's.
        let held = std::fs::File::open(&lock).unwrap();
        assert!(clear_stale_origin_locks(origin, &["refs/notes/paved"], Duration::ZERO).is_empty());
        assert!(lock.exists());
        drop(held);
        // Old and open nowhere: a dead writer's.
        assert_eq!(
            clear_stale_origin_locks(origin, &["refs/notes/paved"], Duration::ZERO),
            std::slice::from_ref(&lock)
        );
        assert!(!lock.exists());
    }

    #[test]
    fn only_local_origins_are_touched() {
        assert_eq!(
            local_origin("file:///srv/git/acme/envs.git"),
            Some(PathBuf::from("/srv/git/acme/envs.git"))
        );
        assert_eq!(
            local_origin("/srv/git/x.git"),
            Some(PathBuf::from("/srv/git/x.git"))
        );
        assert_eq!(local_origin("https://github.com/acme/envs.git"), None);
    }
}
