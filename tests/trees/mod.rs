//! Copies of `examples/` in temp dirs, mutated by tests of the evaluation engine
//! (tests/checks.rs, tests/approvals.rs, tests/governance.rs).
#![allow(dead_code)]

use paved::tree::DirTree;
use std::path::{Path, PathBuf};

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A copy of the examples repository in a temp dir.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(&examples(), dir.path());
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.dir.path().join(rel)).expect("remove");
        self
    }

    pub fn tree(&self) -> DirTree {
        DirTree::new(self.dir.path())
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).expect("read")
    }

    /// Edit `.paved/platform.yaml`.
    pub fn platform(&self, edit: impl FnOnce(String) -> String) -> &Self {
        let text = edit(self.read(".paved/platform.yaml"));
        self.write(".paved/platform.yaml", text)
    }
}
