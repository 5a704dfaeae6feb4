//! A consistent copy of a SQLite store taken while it is in use (`VACUUM INTO`, a read
//! transaction: the writer goes on committing meanwhile), and the check that a file is
//! one: what `paved backup` and `paved restore` stand on.

use super::connect_options;
use crate::store::StoreError;
use sqlx::{ConnectOptions, Connection, Row};
use std::path::{Path, PathBuf};

/// What a backup holds, read back from the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupFacts {
    pub deliveries: i64,
    pub environments: i64,
    pub operations: i64,
}

/// The database file a `sqlite:` URL (or a path) names.
pub fn database_file(url_or_path: &str) -> Result<PathBuf, StoreError> {
    Ok(connect_options(url_or_path)?.get_filename().to_path_buf())
}

/// Copies the database at `url_or_path` (which must exist) into `out` (which must not: the
/// caller checks both), as it was when the copy began, and checks the copy. The copy is written under a temporary name beside
/// `out`, synced, then renamed: `out` is whole or absent.
pub async fn backup(url_or_path: &str, out: &Path) -> Result<BackupFacts, StoreError> {
    let partial = partial_name(out);
    let _ = std::fs::remove_file(&partial);
    let mut conn = connect_options(url_or_path)?
        .create_if_missing(false)
        .disable_statement_logging()
        .connect()
        .await?;
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await;
    conn.close().await?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    let facts = match inspect(&partial).await {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    sync_and_rename(&partial, out)?;
    Ok(facts)
}

/// Checks that `file` is a whole SQLite database of Paved's (integrity, Paved's tables)
/// and says what it holds. Opens it read-only: the file is not changed.
pub async fn inspect(file: &Path) -> Result<BackupFacts, StoreError> {
    let not_ours = |why: String| StoreError::Corrupt(format!("{}: {why}", file.display()));
    if !file.is_file() {
        return Err(not_ours("no such file".into()));
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true)
        .immutable(true)
        .disable_statement_logging()
        .connect()
        .await
        .map_err(|e| not_ours(format!("not a SQLite database ({e})")))?;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| not_ours(format!("not a SQLite database ({e})")))?;
    if integrity != "ok" {
        return Err(not_ours(format!("damaged: {integrity}")));
    }
    let counts = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM deliveries), (SELECT COUNT(*) FROM environments), \
         (SELECT COUNT(*) FROM operations)",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|_| {
        not_ours("not a Paved database (no deliveries, environments or operations)".into())
    })?;
    let facts = BackupFacts {
        deliveries: counts.try_get(0)?,
        environments: counts.try_get(1)?,
        operations: counts.try_get(2)?,
    };
    conn.close().await?;
    Ok(facts)
}

/// `out` with `.partial` after its name, in the same folder (so the rename is atomic).
pub fn partial_name(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// Syncs `from`, renames it to `to` and syncs the folder, so `to` survives a power cut
/// whole.
pub fn sync_and_rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Corrupt(format!("{}: {e}", to.display()));
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(from, to).map_err(io)?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}
