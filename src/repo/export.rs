//! Writing a folder of a commit to disk (an environment definition and its scripts, for the
//! runner). Only regular files and folders are written: symlinks could point outside the
//! destination and submodules have no content here, so both are skipped.

use super::{Mirror, RepoError};
use crate::ids::CommitSha;
use git2::{ErrorCode, ObjectType, Oid};
use std::io::Write as _;
use std::path::{Path, PathBuf};

const MODE_EXECUTABLE: i32 = 0o100755;
const MODE_SYMLINK: i32 = 0o120000;

fn refuse(what: String) -> RepoError {
    RepoError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

/// A tree entry name that is safe to join to a folder: one component, not `.` or `..`.
fn check_name(name: &str, within: &str) -> Result<(), RepoError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(refuse(format!(
            "refusing to export {within:?}: it holds an entry named {name:?}"
        )));
    }
    Ok(())
}

/// Creates the folder `path`; an existing one is fine unless it is a symlink.
fn make_dir(path: &Path) -> Result<(), RepoError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(path)?;
            if meta.is_dir() {
                Ok(())
            } else {
                Err(refuse(format!(
                    "{}: exists and is not a folder",
                    path.display()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a new file (never through an existing file or symlink) with exactly `mode`.
fn write_file(path: &Path, content: &[u8], executable: bool) -> Result<(), RepoError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    let mode = if executable { 0o755 } else { 0o644 };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    let mut file = opts.open(path)?;
    file.write_all(content)?;
    #[cfg(unix)]
    {
        // The umask may have narrowed the mode given at creation.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

impl Mirror {
    /// Writes the folder `dir` (e.g. `catalog/postgres-db`) of `commit` into `dest`, which is
    /// created. Files are 0755 when Git records them executable (100755), else 0644; symlinks
    /// and submodules are skipped. Returns `false` when `dir` is not a folder at `commit`.
    /// An entry name that is not a single path component is refused with an error.
    pub fn export_dir(
        &self,
        commit: &CommitSha,
        dir: &str,
        dest: &Path,
    ) -> Result<bool, RepoError> {
        let dir = dir.trim_matches('/');
        if !dir.is_empty() {
            for part in dir.split('/') {
                check_name(part, dir)?;
            }
        }
        let root = self
            .repo
            .find_commit(Oid::from_str(commit.as_str())?)?
            .tree()?;
        let top = if dir.is_empty() {
            root.id()
        } else {
            match root.get_path(Path::new(dir)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => e.id(),
                Ok(_) => return Ok(false),
                Err(e) if e.code() == ErrorCode::NotFound => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        };
        std::fs::create_dir_all(dest)?;
        // Depth-first with an explicit stack: a hostile tree cannot exhaust the call stack.
        let mut stack: Vec<(Oid, PathBuf, String)> =
            vec![(top, dest.to_path_buf(), dir.to_string())];
        while let Some((tree_id, out_dir, git_dir)) = stack.pop() {
            let tree = self.repo.find_tree(tree_id)?;
            for entry in tree.iter() {
                let name = entry.name().ok_or_else(|| {
                    refuse(format!(
                        "refusing to export {git_dir:?}: it holds an entry whose name is not UTF-8"
                    ))
                })?;
                check_name(name, &git_dir)?;
                let path = out_dir.join(name);
                match entry.kind() {
                    Some(ObjectType::Tree) => {
                        make_dir(&path)?;
                        stack.push((entry.id(), path, format!("{git_dir}/{name}")));
                    }
                    Some(ObjectType::Blob) if entry.filemode() == MODE_SYMLINK => {}
                    Some(ObjectType::Blob) => {
                        let blob = self.repo.find_blob(entry.id())?;
                        write_file(&path, blob.content(), entry.filemode() == MODE_EXECUTABLE)?;
                    }
                    // Submodules (commits) and anything else: nothing to write.
                    _ => {}
                }
            }
        }
        Ok(true)
    }
}
