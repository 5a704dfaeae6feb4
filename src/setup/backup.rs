//! `paved backup --out FILE` and `paved restore FILE`, for the SQLite store. A backup is a
//! consistent copy taken while the server runs (SQLite's `VACUUM INTO`: a read transaction,
//! so every delivery acknowledged before it began is in it, and the server goes on
//! acknowledging meanwhile). A restore puts one back while no server holds the data folder,
//! keeping the database it replaces beside it. PostgreSQL has its own tools: `pg_dump`.

use crate::config::Config;
use crate::service::DATA_LOCK;
use crate::store::sqlite::backup::{self as sqlite, BackupFacts};
use crate::store::StoreError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the database is PostgreSQL ({0}): back it up with its own tools, e.g. `pg_dump --format=custom --file=paved.dump {0}`, and restore with `pg_restore --clean --dbname=… paved.dump` while no replica runs")]
    Postgres(String),
    #[error("{0}: no database there (is data_dir or database_url right?)")]
    NoDatabase(PathBuf),
    #[error("{0}: exists; a backup never writes over a file")]
    Exists(PathBuf),
    #[error("a Paved server holds {0} (its {DATA_LOCK} is locked): stop it, then restore")]
    ServerRunning(PathBuf),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { path, source }
}

/// The SQLite file of `config`, or why there is none to back up or restore.
fn sqlite_file(config: &Config) -> Result<PathBuf, BackupError> {
    let url = &config.database_url;
    if !url.starts_with("sqlite:") {
        return Err(BackupError::Postgres(crate::service::redact_url(url)));
    }
    Ok(sqlite::database_file(url)?)
}

/// `paved backup --out FILE`.
pub async fn backup(config: &Config, out: &Path) -> Result<BackupFacts, BackupError> {
    let file = sqlite_file(config)?;
    if !file.is_file() {
        return Err(BackupError::NoDatabase(file));
    }
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    Ok(sqlite::backup(&config.database_url, out).await?)
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub facts: BackupFacts,
    pub database: PathBuf,
    /// Where the database it replaced went (with its `-wal` and `-shm`), if there was one.
    pub previous: Option<PathBuf>,
}

/// `paved restore FILE`: checks `from` is a whole Paved database, takes the data folder's
/// lock exclusive (refusing while a server holds it), moves the current database and its
/// WAL aside, and puts a synced copy of `from` in its place. A server started afterwards
/// migrates it if it is older, and goes on from there.
pub async fn restore(config: &Config, from: &Path) -> Result<Restored, BackupError> {
    let database = sqlite_file(config)?;
    let facts = sqlite::inspect(from).await?;
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let lock_path = dir.join(DATA_LOCK);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(BackupError::ServerRunning(dir)),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    let previous = if database.exists() {
        let stamp = crate::clock::wall().format("%Y%m%dT%H%M%SZ");
        let aside = suffixed(&database, &format!(".before-restore-{stamp}"));
        for ext in ["", "-wal", "-shm"] {
            let from = suffixed(&database, ext);
            if from.exists() {
                let to = suffixed(&aside, ext);
                std::fs::rename(&from, &to).map_err(io(&from))?;
            }
        }
        Some(aside)
    } else {
        if let Some(parent) = database.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        None
    };
    let partial = sqlite::partial_name(&database);
    std::fs::copy(from, &partial).map_err(io(&partial))?;
    sqlite::sync_and_rename(&partial, &database)?;
    drop(lock);
    Ok(Restored {
        facts,
        database,
        previous,
    })
}

/// `path` with `suffix` after its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
