//! `ade files`: files kept with the environment between operations. They live in
//! `ADE_STORAGE/.ade-files/`, so they are kept and restored with the rest of `ADE_STORAGE`.
//! `ADE_STORAGE` itself is the file ADE calls `storage.zip`: Paved keeps and restores it
//! already, so uploading that folder, or downloading `storage.zip` into it, has nothing
//! to do.

use std::io::{Read, Write};
use std::path::{Component, Path};

const FILES: &str = ".ade-files";
const LOGS: &str = ".ade-logs";
const STORAGE_ZIP: &str = "storage.zip";

/// A file name as `ade files` takes it: one plain path component.
fn plain_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && Path::new(name).components().count() == 1
        && matches!(
            Path::new(name).components().next(),
            Some(Component::Normal(_))
        );
    ok.then_some(name)
        .ok_or_else(|| format!("{name:?} is not a file name"))
}

pub(super) fn list(storage: &Path) -> Result<Vec<String>, String> {
    let mut names = vec![STORAGE_ZIP.to_string()];
    if let Ok(entries) = std::fs::read_dir(storage.join(FILES)) {
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str() {
                names.push(n.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub(super) fn upload(
    storage: &Path,
    file: Option<&Path>,
    folder: Option<&Path>,
) -> Result<(), String> {
    let dir = storage.join(FILES);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    match (file, folder) {
        (Some(file), None) => {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{} has no file name", file.display()))?;
            std::fs::copy(file, dir.join(plain_name(name)?))
                .map_err(|e| format!("cannot upload {}: {e}", file.display()))?;
            Ok(())
        }
        (None, Some(folder)) => {
            if same_folder(folder, storage) {
                // ADE_STORAGE is kept by Paved as it is.
                return Ok(());
            }
            let name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{} has no folder name", folder.display()))?;
            let target = dir.join(format!("{}.zip", plain_name(name)?));
            zip_folder(folder, &target)
        }
        _ => Err("give --file-path or --folder-path".into()),
    }
}

pub(super) fn download(storage: &Path, name: &str, to: &Path, unzip: bool) -> Result<(), String> {
    let name = plain_name(name)?;
    if name == STORAGE_ZIP && unzip && same_folder(to, storage) {
        // Already there: Paved restored ADE_STORAGE before the script started.
        return Ok(());
    }
    let from = storage.join(FILES).join(name);
    if !from.is_file() {
        return Err(format!("no file {name:?} is kept for this environment"));
    }
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    if unzip {
        let f = std::fs::File::open(&from).map_err(|e| e.to_string())?;
        let mut archive = zip::ZipArchive::new(f).map_err(|e| format!("{name}: {e}"))?;
        // `extract` refuses entries that would land outside `to`.
        archive.extract(to).map_err(|e| format!("{name}: {e}"))
    } else {
        std::fs::copy(&from, to.join(name))
            .map(|_| ())
            .map_err(|e| format!("cannot download {name}: {e}"))
    }
}

pub(super) fn append_log(storage: &Path, name: &str, line: &str) -> Result<(), String> {
    let dir = storage.join(LOGS);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(plain_name(name)?))
        .map_err(|e| format!("cannot open log {name}: {e}"))?;
    writeln!(f, "{line}").map_err(|e| e.to_string())
}

fn zip_folder(folder: &Path, target: &Path) -> Result<(), String> {
    let out = std::fs::File::create(target)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(folder)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .to_string();
            let ft = e.file_type().map_err(|e| e.to_string())?;
            if ft.is_dir() {
                zip.add_directory(format!("{rel}/"), options)
                    .map_err(|e| e.to_string())?;
                stack.push(path);
            } else if ft.is_file() {
                zip.start_file(rel, options).map_err(|e| e.to_string())?;
                let mut bytes = Vec::new();
                std::fs::File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut bytes))
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                zip.write_all(&bytes).map_err(|e| e.to_string())?;
            }
        }
    }
    zip.finish().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_round_trips_and_storage_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = tmp.path().join("storage");
        let folder = tmp.path().join("state");
        std::fs::create_dir_all(folder.join("sub")).unwrap();
        std::fs::write(folder.join("sub/a.txt"), "hello").unwrap();
        std::fs::create_dir_all(&storage).unwrap();
        upload(&storage, None, Some(&folder)).unwrap();
        assert_eq!(list(&storage).unwrap(), vec!["state.zip", "storage.zip"]);
        let out = tmp.path().join("out");
        download(&storage, "state.zip", &out, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("sub/a.txt")).unwrap(),
            "hello"
        );
        // ADE's entrypoint uploads ADE_STORAGE and downloads storage.zip into it: no-ops.
        upload(&storage, None, Some(&storage)).unwrap();
        download(&storage, "storage.zip", &storage, true).unwrap();
        assert!(download(&storage, "../x", &out, false).is_err());
    }
}
