//! Keeping a mirror compact: every fetch adds a pack (or loose objects), and a mirror
//! fetched for years would hold thousands of them, each one more file every object lookup
//! may have to search. Past a threshold the mirror is repacked into one pack, as
//! `git repack -a -d` does, with libgit2 (no `git` binary needed at run time).
//!
//! Every object in the mirror goes into the new pack, reachable or not: a commit a stored
//! operation names may no longer be on any ref (a force-pushed pull request), and nothing
//! here decides it is garbage. Old packs and loose objects are removed only once the new
//! pack and its index are written. The caller holds the mirror's lock, so no fetch adds
//! objects meanwhile; readers that opened an old pack keep reading it (removing an open
//! file on Unix does not take it from under them).

use super::{Mirror, RepoError};
use std::path::{Path, PathBuf};

/// What a mirror holds: loose objects and pack files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectFiles {
    pub loose: usize,
    pub packs: usize,
}

/// What a repack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repacked {
    pub before: ObjectFiles,
    pub objects: usize,
}

fn objects_dir(mirror: &Mirror) -> PathBuf {
    mirror.path().join("objects")
}

/// The loose object files (`objects/xx/yyyy…`).
fn loose_files(objects: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(objects)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.len() == 2 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            for file in std::fs::read_dir(entry.path())? {
                out.push(file?.path());
            }
        }
    }
    Ok(out)
}

/// The `.pack` files, each with its stem (`pack-<hash>`).
fn pack_files(objects: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = objects.join("pack");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pack") {
            if let Some(stem) = path.file_stem() {
                out.push((stem.to_string_lossy().into_owned(), path));
            }
        }
    }
    Ok(out)
}

impl Mirror {
    /// How many loose objects and packs the mirror holds.
    pub fn object_files(&self) -> Result<ObjectFiles, RepoError> {
        let objects = objects_dir(self);
        Ok(ObjectFiles {
            loose: loose_files(&objects)?.len(),
            packs: pack_files(&objects)?.len(),
        })
    }

    /// Repacks every object into one pack when there are more than `max_loose` loose
    /// objects or more than `max_packs` packs; `None` when it was not needed.
    pub fn repack_if_needed(
        &self,
        max_loose: usize,
        max_packs: usize,
    ) -> Result<Option<Repacked>, RepoError> {
        let before = self.object_files()?;
        if before.loose <= max_loose && before.packs <= max_packs {
            return Ok(None);
        }
        let objects = self.repack()?;
        Ok(Some(Repacked { before, objects }))
    }

    /// Writes every object into one new pack, then removes the old packs and the loose
    /// objects. Returns how many objects the pack holds.
    pub fn repack(&self) -> Result<usize, RepoError> {
        let objects = objects_dir(self);
        let old_packs = pack_files(&objects)?;
        let loose = loose_files(&objects)?;
        let odb = self.repo.odb()?;
        let mut ids = Vec::new();
        odb.foreach(|id| {
            ids.push(*id);
            true
        })?;
        ids.sort();
        ids.dedup();
        let mut builder = self.repo.packbuilder()?;
        for id in &ids {
            builder.insert_object(*id, None)?;
        }
        let pack_dir = objects.join("pack");
        std::fs::create_dir_all(&pack_dir)?;
        builder.write(&pack_dir, 0o444)?;
        let written = builder.object_count();
        let new_name = builder
            .name()
            .map(|n| format!("pack-{n}"))
            .ok_or_else(|| RepoError::Io(std::io::Error::other("the new pack has no name")))?;
        if written != ids.len() {
            return Err(RepoError::Io(std::io::Error::other(format!(
                "the new pack holds {written} objects, not {}; nothing was removed",
                ids.len()
            ))));
        }
        for (stem, pack) in old_packs {
            if stem == new_name {
                continue;
            }
            for ext in ["idx", "rev", "bitmap", "pack"] {
                let file = pack.with_extension(ext);
                if let Err(e) = std::fs::remove_file(&file) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e.into());
                    }
                }
            }
        }
        for file in loose {
            std::fs::remove_file(&file)?;
            if let Some(dir) = file.parent() {
                // Empty fan-out folders go too; one still holding objects stays.
                let _ = std::fs::remove_dir(dir);
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RepoName;

    #[test]
    fn a_repack_keeps_every_object_in_one_pack() {
        let dir = tempfile::tempdir().expect("tmp");
        let name = RepoName::parse("acme/envs").expect("name");
        let mirror = Mirror::open(dir.path(), &name).expect("mirror");
        // Twenty commits, written as loose objects, and one blob no ref reaches.
        let repo = &mirror.repo;
        let sig = git2::Signature::now("t", "t@example.test").expect("sig");
        let mut parent: Option<git2::Oid> = None;
        let mut commits = Vec::new();
        for i in 0..20 {
            let blob = repo.blob(format!("content {i}").as_bytes()).expect("blob");
            let mut tb = repo.treebuilder(None).expect("tb");
            tb.insert("file.txt", blob, 0o100_644).expect("insert");
            let tree = repo.find_tree(tb.write().expect("tree")).expect("tree");
            let parents: Vec<git2::Commit<'_>> = parent
                .map(|p| repo.find_commit(p).expect("parent"))
                .into_iter()
                .collect();
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            let c = repo
                .commit(Some("refs/heads/main"), &sig, &sig, "c", &tree, &refs)
                .expect("commit");
            commits.push(c);
            parent = Some(c);
        }
        let orphan = repo.blob(b"no ref reaches me").expect("orphan");
        let before = mirror.object_files().expect("count");
        assert_eq!(before.loose, 61, "20 blobs, 20 trees, 20 commits, 1 orphan");
        assert!(mirror
            .repack_if_needed(1000, 20)
            .expect("not needed")
            .is_none());

        let done = mirror
            .repack_if_needed(10, 20)
            .expect("repack")
            .expect("done");
        assert_eq!(done.objects, 61);
        assert_eq!(
            mirror.object_files().expect("count"),
            ObjectFiles { loose: 0, packs: 1 }
        );
        // Everything is still readable from a fresh handle, the orphan too.
        let reopened = Mirror::open_path(mirror.path()).expect("reopen");
        for c in &commits {
            let commit = reopened.repo.find_commit(*c).expect("commit");
            assert!(commit.tree().is_ok());
        }
        assert!(reopened.repo.find_blob(orphan).is_ok());
        // A second repack replaces the pack by an identical one and removes nothing else.
        assert_eq!(reopened.repack().expect("again"), 61);
        assert_eq!(
            reopened.object_files().expect("count"),
            ObjectFiles { loose: 0, packs: 1 }
        );
    }
}
