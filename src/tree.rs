//! A read-only view of the repository's files at one point: a Git commit (server) or a
//! directory on disk (`paved check`). Checks are written against this trait so that the
//! server and the local pre-flight give the same verdicts.

use std::path::PathBuf;

/// Largest file Paved will read from a repository. A bigger manifest or policy is an error,
/// not a reason to allocate without bound.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: file is {size} bytes, larger than the {max} byte limit")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

/// Files at one commit. Paths are repository-relative with `/` separators.
pub trait TreeReader: Send + Sync {
    /// The file's bytes, `Ok(None)` if there is no file at that path.
    /// Files over [`MAX_FILE_BYTES`] give [`TreeError::TooLarge`] without being read whole.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TreeError>;
    /// Names (not paths) of the entries directly inside `dir`, sorted; files and folders alike.
    /// Empty when the folder does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError>;
    /// Whether `path` names a folder.
    fn is_dir(&self, path: &str) -> Result<bool, TreeError>;
    /// Whether a file exists at `path`, without reading it.
    fn exists(&self, path: &str) -> Result<bool, TreeError>;
}

/// A checkout on disk.
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree { root: root.into() }
    }

    fn full(&self, path: &str) -> Result<PathBuf, TreeError> {
        // Repository paths come from our own listings or fixed names; still refuse escapes.
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            return Err(TreeError::Io {
                path: path.to_string(),
                message: "path leaves the repository".into(),
            });
        }
        Ok(self.root.join(path))
    }
}

impl TreeReader for DirTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, TreeError> {
        let full = self.full(path)?;
        let meta = match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TreeError::Io {
                    path: path.into(),
                    message: e.to_string(),
                })
            }
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(TreeError::TooLarge {
                path: path.into(),
                size: meta.len(),
                max: MAX_FILE_BYTES,
            });
        }
        std::fs::read(&full).map(Some).map_err(|e| TreeError::Io {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError> {
        let full = self.full(dir)?;
        let rd = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(TreeError::Io {
                    path: dir.into(),
                    message: e.to_string(),
                })
            }
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != ".git")
            .collect();
        names.sort();
        Ok(names)
    }

    fn is_dir(&self, path: &str) -> Result<bool, TreeError> {
        Ok(self.full(path)?.is_dir())
    }

    fn exists(&self, path: &str) -> Result<bool, TreeError> {
        Ok(self.full(path)?.is_file())
    }
}
