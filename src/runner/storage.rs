//! `ADE_STORAGE` as a tar archive: Paved keeps the folder's contents per environment
//! between operations, so any replica can run the next operation (SPEC §4).
//!
//! Only regular files and folders travel. Symlinks, hard links and devices are left out
//! when packing and refused when unpacking: an archive is stored state that a later run
//! unpacks on the server, and a link or a `..` entry in it would let a script write or read
//! outside its run directory the next time.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The most `ADE_STORAGE` may hold (archive bytes when packing, file bytes when unpacking).
pub const STORAGE_LIMIT: u64 = 50 * 1024 * 1024;

/// The fixed mtime of packed entries, so identical storage gives identical bytes.
const MTIME: u64 = 1_153_704_088;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("entry {path:?} escapes the storage folder")]
    Escapes { path: String },
    #[error("entry {path:?} is a {kind}; only files and folders are restored")]
    Unsupported { path: String, kind: String },
    #[error("storage is over {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A packed storage folder.
#[derive(Debug, Default)]
pub struct Packed {
    /// The tar archive; empty when the folder is empty.
    pub archive: Vec<u8>,
    /// Entries left out (symlinks and other non-file types), as `path (kind)`.
    pub skipped: Vec<String>,
}

fn kind_of(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Packs a folder into a tar archive: files (mode 0644, or 0755 when executable by its
/// owner) and folders, in name order, with fixed owner and time. Fails with
/// [`StorageError::TooLarge`] as soon as the archive would exceed `limit`.
pub fn pack(dir: &Path, limit: u64) -> Result<Packed, StorageError> {
    let mut packed = Packed::default();
    let mut builder = tar::Builder::new(Vec::new());
    let mut any = false;
    pack_dir(
        dir,
        Path::new(""),
        limit,
        &mut builder,
        &mut packed.skipped,
        &mut any,
    )?;
    if any {
        builder.finish()?;
        packed.archive = builder.into_inner()?;
        if packed.archive.len() as u64 > limit {
            return Err(StorageError::TooLarge { limit });
        }
    }
    Ok(packed)
}

fn pack_dir(
    dir: &Path,
    rel: &Path,
    limit: u64,
    builder: &mut tar::Builder<Vec<u8>>,
    skipped: &mut Vec<String>,
    any: &mut bool,
) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = rel.join(entry.file_name());
        // symlink_metadata: never follow a link the script planted.
        let meta = std::fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, &name, std::io::empty())?;
            *any = true;
            pack_dir(&path, &name, limit, builder, skipped, any)?;
        } else if ft.is_file() {
            let size = meta.len();
            // Header and padding included, so a check here never reads a file that could
            // not be kept anyway.
            if builder.get_ref().len() as u64 + size + 1024 > limit {
                return Err(StorageError::TooLarge { limit });
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            });
            header.set_size(size);
            let file = std::fs::File::open(&path)?;
            builder.append_data(&mut header, &name, file.take(size))?;
            *any = true;
        } else {
            skipped.push(format!("{} ({})", name.display(), kind_of(&ft)));
        }
        if builder.get_ref().len() as u64 > limit {
            return Err(StorageError::TooLarge { limit });
        }
    }
    Ok(())
}

/// Unpacks an archive made by [`pack`] into `dest` (an empty folder). Refuses, before
/// writing anything outside, entries with absolute paths or `..`, symlinks, hard links and
/// any type other than file and folder, and more than `limit` bytes of file content.
pub fn unpack(archive: &[u8], dest: &Path, limit: u64) -> Result<(), StorageError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if archive.is_empty() {
        return Ok(());
    }
    let mut tar = tar::Archive::new(archive);
    let mut total: u64 = 0;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in tar.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let shown = raw.display().to_string();
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(StorageError::Escapes { path: shown });
                }
            }
        }
        let entry_type = entry.header().entry_type();
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file",
            tar::EntryType::Directory => "folder",
            tar::EntryType::Symlink => "symlink",
            tar::EntryType::Link => "hard link",
            tar::EntryType::Char | tar::EntryType::Block => "device",
            tar::EntryType::Fifo => "fifo",
            _ => "special entry",
        };
        if kind != "file" && kind != "folder" {
            return Err(StorageError::Unsupported {
                path: shown,
                kind: kind.to_string(),
            });
        }
        if rel.as_os_str().is_empty() {
            // "./" itself.
            continue;
        }
        let target = dest.join(&rel);
        if kind == "folder" {
            std::fs::create_dir_all(&target)?;
            dirs.insert(target);
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(StorageError::TooLarge { limit });
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let executable = entry.header().mode().is_ok_and(|m| m & 0o100 != 0);
        let mode = if executable { 0o755 } else { 0o644 };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&target)?;
        let size = entry.size();
        std::io::copy(&mut (&mut entry).take(size), &mut file)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    for d in dirs {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-entry archive with a raw name, bypassing the tar crate's own path checks.
    fn raw_archive(
        name: &[u8],
        entry_type: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link);
            }
        }
        header.set_entry_type(entry_type);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn unpack_refuses_parent_dir_entries() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("storage");
        std::fs::create_dir(&dest).unwrap();
        let archive = raw_archive(b"../escaped", tar::EntryType::Regular, None, b"x");
        let err = unpack(&archive, &dest, STORAGE_LIMIT).unwrap_err();
        assert!(matches!(err, StorageError::Escapes { .. }), "{err}");
        assert!(!root.path().join("escaped").exists());

        let archive = raw_archive(b"a/../../escaped", tar::EntryType::Regular, None, b"x");
        assert!(matches!(
            unpack(&archive, &dest, STORAGE_LIMIT),
            Err(StorageError::Escapes { .. })
        ));
        assert!(!root.path().join("escaped").exists());
    }

    #[test]
    fn unpack_refuses_absolute_paths_and_links() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("storage");
        std::fs::create_dir(&dest).unwrap();
        let abs = root.path().join("abs");
        let archive = raw_archive(
            abs.to_str().unwrap().as_bytes(),
            tar::EntryType::Regular,
            None,
            b"x",
        );
        assert!(matches!(
            unpack(&archive, &dest, STORAGE_LIMIT),
            Err(StorageError::Escapes { .. })
        ));
        assert!(!abs.exists());
        let archive = raw_archive(b"link", tar::EntryType::Symlink, Some(b"/etc/passwd"), b"");
        assert!(matches!(
            unpack(&archive, &dest, STORAGE_LIMIT),
            Err(StorageError::Unsupported { .. })
        ));
        let archive = raw_archive(b"hard", tar::EntryType::Link, Some(b"/etc/passwd"), b"");
        assert!(matches!(
            unpack(&archive, &dest, STORAGE_LIMIT),
            Err(StorageError::Unsupported { .. })
        ));
        assert!(std::fs::read_dir(&dest).unwrap().next().is_none());
    }

    #[test]
    fn pack_unpack_round_trip_skips_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("a/b")).unwrap();
        std::fs::write(src.path().join("a/b/state.json"), b"{\"n\":1}").unwrap();
        std::fs::write(src.path().join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            src.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::create_dir(src.path().join("empty")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        let packed = pack(src.path(), STORAGE_LIMIT).unwrap();
        assert_eq!(packed.skipped, vec!["link (symlink)".to_string()]);
        // Deterministic.
        assert_eq!(
            pack(src.path(), STORAGE_LIMIT).unwrap().archive,
            packed.archive
        );

        let dest = tempfile::tempdir().unwrap();
        unpack(&packed.archive, dest.path(), STORAGE_LIMIT).unwrap();
        assert_eq!(
            std::fs::read(dest.path().join("a/b/state.json")).unwrap(),
            b"{\"n\":1}"
        );
        assert!(dest.path().join("empty").is_dir());
        assert!(!dest.path().join("link").exists());
        let mode = std::fs::metadata(dest.path().join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn pack_empty_is_empty_and_limit_applies() {
        let src = tempfile::tempdir().unwrap();
        assert!(pack(src.path(), STORAGE_LIMIT).unwrap().archive.is_empty());
        std::fs::write(src.path().join("big"), vec![0u8; 4096]).unwrap();
        assert!(matches!(
            pack(src.path(), 2048),
            Err(StorageError::TooLarge { .. })
        ));
        let archive = pack(src.path(), STORAGE_LIMIT).unwrap().archive;
        let dest = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack(&archive, dest.path(), 1000),
            Err(StorageError::TooLarge { .. })
        ));
    }
}
