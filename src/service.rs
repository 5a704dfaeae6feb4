//! Wiring of the running service: store, GitHub client, worker and HTTP server, with a
//! clean shutdown. `paved serve` and `paved demo` both start Paved through [`start`].

use crate::config::{Config, Secret};
use crate::forge::{Forge, RetryPolicy};
use crate::intake::{IntakeState, WebhookSecret};
use crate::metrics::Metrics;
use crate::store::{postgres::PgStore, sqlite::SqliteStore, Store};
use crate::worker::Worker;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running Paved.
pub struct Service {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<Result<(), crate::store::StoreError>>,
    upkeep: JoinHandle<()>,
    scheduler: JoinHandle<()>,
    notes: JoinHandle<()>,
    /// The data folder's lock, held shared while the service runs (see [`hold_data_dir`]).
    _data_lock: std::fs::File,
}

/// Which store a `database_url` names.
enum Backend {
    Sqlite,
    Postgres,
}

fn backend(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        anyhow::bail!("database_url must start with sqlite://, postgres:// or postgresql://")
    }
}

/// Opens the store named by `database_url` (`sqlite:` or `postgres:`/`postgresql:`),
/// applying migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let url = &config.database_url;
    match backend(url)? {
        Backend::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            Ok(Arc::new(SqliteStore::open(url).await?))
        }
        Backend::Postgres => Ok(Arc::new(
            PgStore::open(url)
                .await
                .with_context(|| format!("opening the PostgreSQL store at {}", redact_url(url)))?
                .with_lease(config.lease),
        )),
    }
}

/// The audit notes queued in the store at `database_url` and not in Git yet, as (commit,
/// note text): what `paved audit --database` adds to the history Git tells.
pub async fn pending_notes(database_url: &str) -> Result<Vec<(String, String)>> {
    let store: Arc<dyn Store> = match backend(database_url)? {
        Backend::Sqlite => Arc::new(SqliteStore::open(database_url).await?),
        Backend::Postgres => Arc::new(PgStore::open(database_url).await.with_context(|| {
            format!(
                "opening the PostgreSQL store at {}",
                redact_url(database_url)
            )
        })?),
    };
    Ok(store
        .pending_notes()
        .await?
        .into_iter()
        .map(|q| (q.note.commit.to_string(), q.note.text))
        .collect())
}

/// `paved migrate`: applies the migrations of the store named by `database_url` (creating
/// the database if missing) without serving.
pub async fn migrate(config: &Config) -> Result<()> {
    let url = &config.database_url;
    match backend(url)? {
        Backend::Sqlite => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            SqliteStore::migrate(url).await?;
        }
        Backend::Postgres => PgStore::migrate(url)
            .await
            .with_context(|| format!("migrating the PostgreSQL database {}", redact_url(url)))?,
    }
    Ok(())
}

/// `postgres://user:password@host/db` without the password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The webhook secrets to accept. With none configured, Paved generates one on first run,
/// stores it in `<data_dir>/webhook-secret` (mode 0600) and prints it once, so a first
/// start works; later starts use the stored one silently.
fn webhook_secrets(config: &Config) -> Result<Vec<Secret>> {
    if !config.webhook_secrets.is_empty() {
        return Ok(config.webhook_secrets.clone());
    }
    let path = config.data_dir.join("webhook-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(vec![Secret::new(s.trim())]),
        Ok(_) => anyhow::bail!(
            "{} is empty: set github.webhook_secrets or PAVED_WEBHOOK_SECRET, or delete the file to generate a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&path)
            .with_context(|| format!("storing the generated secret in {}", path.display()))?;
        f.write_all(secret.as_bytes())?;
        f.sync_all()?;
    }
    // Printed once, on purpose, to the terminal of whoever started Paved for the first time:
    // it must be pasted into GitHub's webhook settings. It never goes to the log.
    println!(
        "No webhook secret was configured. Generated one and stored it in {}:\n\n    {secret}\n\nPaste it into the GitHub webhook's \"Secret\" field. It will not be shown again.",
        path.display()
    );
    Ok(vec![Secret::new(secret)])
}

/// Starts the HTTP server and the worker on `config.listen` (port 0 picks a free port).
pub async fn start(mut config: Config) -> Result<Service> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.public_url.is_none() {
        config.public_url = Some(format!("http://{addr}"));
    }
    config.validate()?;
    for name in &config.runner.pass_env_missing {
        tracing::warn!(variable = %name, "runner.pass_env names a variable that is not set; scripts will not get it");
    }
    let config = Arc::new(config);
    let data_lock = hold_data_dir(&config.data_dir)?;
    let store = open_store(&config).await?;
    let secrets = webhook_secrets(&config)?;
    let metrics = Arc::new(Metrics::new());
    let forge = forge_of(&config, &metrics)?;
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();

    let intake = IntakeState::new(
        store.clone(),
        secrets
            .iter()
            .map(|s| WebhookSecret::new(s.expose()))
            .collect(),
        wake.clone(),
        config.repositories.clone(),
    )
    .with_limits(&config.intake)
    .with_metrics(metrics.clone());
    tracing::info!(%addr, database = %redact_url(&config.database_url), "Paved is listening");

    let data_dir = config.data_dir.clone();
    let removed =
        tokio::task::spawn_blocking(move || crate::repo::clear_stale_locks(&data_dir)).await??;
    if removed > 0 {
        tracing::warn!(removed, "removed Git lock files left by an earlier crash");
    }
    let sandbox = sandbox_of(&config)?;
    metrics.set_runner_unsandboxed(sandbox.is_none());
    let deps = Arc::new(crate::work::Deps::new(
        config.clone(),
        store.clone(),
        forge,
        metrics.clone(),
        sandbox,
    ));
    let lifecycle_wake = deps.lifecycle_wake.clone();
    let (app, api_state) = crate::api::app(
        intake,
        crate::api::ApiDeps {
            store: store.clone(),
            public_url: deps.public_url().to_string(),
            identities: Arc::new(crate::identity::Identities::new(
                &config.api,
                deps.forge.clone(),
            )),
            directory: deps.directory.clone(),
            orchestrator: Arc::new(crate::orchestrator::Orchestrator {
                store: store.clone(),
                repos: deps.repos.clone(),
                forge: deps.forge.clone(),
                directory: deps.directory.clone(),
                clock: config.lifecycle.clock.clone(),
                identities: config.runner.identities.keys().cloned().collect(),
            }),
            lifecycle_wake: lifecycle_wake.clone(),
            clock: config.lifecycle.clock.clone(),
            unsandboxed: deps.sandbox.is_none(),
            issuer: deps.issuer.clone(),
        },
    );
    // The portal reads through the API's state: the same scoping, the same Orchestrator.
    let app = crate::api::with_security_headers(
        app.merge(crate::portal::router(api_state, &config.portal)),
    );
    let upkeep = tokio::spawn(crate::retention::run(
        store.clone(),
        deps.repos.clone(),
        config.store.clone(),
        metrics,
        stop.clone(),
    ));
    let scheduler = tokio::spawn(crate::scheduler::run(
        deps.clone(),
        lifecycle_wake,
        stop.clone(),
    ));
    let notes = tokio::spawn(crate::outbox::run(deps.clone(), stop.clone()));
    let worker = Arc::new(Worker::new(deps, wake));
    let worker = tokio::spawn(worker.run(stop.clone()));
    let server = tokio::spawn(crate::api::server::serve(
        listener,
        app,
        config.intake.clone(),
        stop.clone(),
    ));
    Ok(Service {
        addr,
        store,
        stop,
        server,
        worker,
        upkeep,
        scheduler,
        notes,
        _data_lock: data_lock,
    })
}

/// The lock file in a data folder.
pub const DATA_LOCK: &str = "paved.lock";

/// Takes `<data_dir>/paved.lock` shared, as every running server does, so `paved restore`
/// (which takes it exclusive) refuses to replace a database a server is using. Shared, so
/// servers that share a folder (replicas on one machine) do not exclude each other; the
/// operating system drops it when the process ends, however it ends.
pub fn hold_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join(DATA_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "{} is held by a restore in progress: start Paved when it has finished",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The GitHub client of `config`, counting into `metrics`.
fn forge_of(config: &Config, metrics: &Arc<Metrics>) -> Result<Forge> {
    Ok(Forge::new(
        &config.api_url,
        config.auth.as_ref(),
        RetryPolicy::default(),
        metrics.clone(),
    )?)
}

/// The handlers' dependencies for `config`, without a server, worker or scheduler running:
/// for benchmarks that drive one part (a scheduler tick) directly.
pub async fn handler_deps(config: Config) -> Result<Arc<crate::work::Deps>> {
    config.validate()?;
    let config = Arc::new(config);
    let store = open_store(&config).await?;
    let metrics = Arc::new(Metrics::new());
    let forge = forge_of(&config, &metrics)?;
    let sandbox = sandbox_of(&config)?;
    Ok(Arc::new(crate::work::Deps::new(
        config, store, forge, metrics, sandbox,
    )))
}

/// The Orchestrator of `config`, without a server: what `paved import ade` opens its pull
/// requests through, with the service's own store and GitHub credentials. Its Git mirrors
/// live in `mirrors`, apart from the running service's: two processes never write one
/// mirror (each clears lock files it finds at its first use, as left by a dead writer).
pub async fn orchestrator(
    config: Config,
    mirrors: &std::path::Path,
) -> Result<crate::orchestrator::Orchestrator> {
    config.validate()?;
    let store = open_store(&config).await?;
    let mut config = config;
    config.data_dir = mirrors.to_path_buf();
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let forge = forge_of(&config, &metrics)?;
    let deps = crate::work::Deps::new(
        config.clone(),
        store.clone(),
        forge.clone(),
        metrics,
        crate::runner::Sandbox::None,
    );
    Ok(crate::orchestrator::Orchestrator {
        store,
        repos: deps.repos.clone(),
        forge,
        directory: deps.directory.clone(),
        clock: config.lifecycle.clock.clone(),
        identities: config.runner.identities.keys().cloned().collect(),
    })
}

/// The sandbox runs go through (SPEC 12), tried once by starting one: a Paved that cannot
/// sandbox its runs refuses to start, naming what failed, unless `runner.sandbox = "none"`
/// says so (then it warns, here and in `/readyz` and a gauge).
pub fn sandbox_of(config: &Config) -> Result<crate::runner::Sandbox> {
    use crate::config::{absolute, SandboxMode};
    use crate::runner::{Bubblewrap, Mount, Sandbox};
    let work_dir = absolute(&config.runner.work_dir);
    prepare_work_dir(&work_dir)?;
    match config.runner.sandbox {
        SandboxMode::None => {
            tracing::warn!(
                "runner.sandbox = \"none\": scripts run unsandboxed, as Paved's own user, and can read what Paved can (its secrets, its database)"
            );
            Ok(Sandbox::None)
        }
        SandboxMode::Bubblewrap => {
            let mut hidden = config.runner.hidden.clone();
            hidden.push(absolute(&config.data_dir));
            if let Some(db) = config
                .database_url
                .strip_prefix("sqlite://")
                .or_else(|| config.database_url.strip_prefix("sqlite:"))
            {
                let file = db.split('?').next().unwrap_or(db);
                hidden.push(absolute(std::path::Path::new(file)));
            }
            let mounts = config
                .runner
                .mounts
                .iter()
                .map(|(path, writable)| Mount {
                    path: absolute(path),
                    writable: *writable,
                })
                .collect();
            let bwrap = Bubblewrap::resolve(
                &config.runner.bubblewrap,
                "/usr/bin:/bin:/usr/local/bin:/usr/sbin",
                &config.runner.user,
                mounts,
                hidden,
            )
            .map_err(|e| anyhow::anyhow!("the runner's sandbox cannot run: {e}. {SANDBOX_HINT}"))?;
            bwrap.probe(&work_dir).map_err(|e| {
                anyhow::anyhow!("the runner's sandbox cannot run: {e}. {SANDBOX_HINT}")
            })?;
            Ok(Sandbox::Bubblewrap(Arc::new(bwrap)))
        }
    }
}

const SANDBOX_HINT: &str = "Install bubblewrap (Debian's `bubblewrap`) and allow unprivileged user namespaces, or set runner.sandbox = \"none\" to run scripts unsandboxed (not recommended)";

/// Creates `runner.work_dir` (mode 0711: the runner's user may pass through to its own run
/// folder, but nobody may list the others) and checks it is this user's own.
fn prepare_work_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating runner.work_dir {}", dir.display()))?;
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("reading runner.work_dir {}", dir.display()))?;
    // Safety: geteuid only reads the process's credentials.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        anyhow::bail!(
            "runner.work_dir {} is not a folder of Paved's own user (uid {me}): choose another with runner.work_dir",
            dir.display()
        );
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("setting the mode of runner.work_dir {}", dir.display()))?;
    Ok(())
}

impl Service {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets running work finish, and returns.
    /// Stops every task at once, as a crash would: no lease or lock is given back, so
    /// another replica takes over only when they run out (for tests of takeovers).
    pub fn kill(self) {
        self.server.abort();
        self.worker.abort();
        self.upkeep.abort();
        self.scheduler.abort();
        self.notes.abort();
    }

    pub async fn shutdown(self) -> Result<()> {
        self.stop.cancel();
        self.server.await??;
        self.worker.await??;
        self.upkeep.await?;
        self.scheduler.await?;
        self.notes.await?;
        Ok(())
    }
}

/// What `paved serve` does once its configuration is read (SPEC 12): the process becomes
/// not dumpable (no other process of its user may read its memory or `/proc/<pid>/environ`,
/// nor attach a debugger), and every `PAVED_*` variable and `runner.pass_env` variable is
/// wiped from its environment, the block `/proc/<pid>/environ` shows included: the
/// configuration holds what is needed, and nothing else keeps a secret in plain sight.
pub fn harden_process(config: &Config) {
    // Safety: prctl(PR_SET_DUMPABLE) only changes this process's flag.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not make the process not dumpable");
    }
    let passed: Vec<&str> = config
        .runner
        .pass_env
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(config.runner.pass_env_missing.iter().map(String::as_str))
        .collect();
    wipe_environment(|name| name.starts_with("PAVED_") || passed.contains(&name));
}

extern "C" {
    static mut environ: *mut *mut libc::c_char;
}

/// Overwrites the values of the variables `wipe` picks where they are stored (for the
/// initial ones, the block the kernel shows in `/proc/<pid>/environ`), then unsets them.
/// Called before any thread reads the environment.
fn wipe_environment(wipe: impl Fn(&str) -> bool) {
    let mut names = Vec::new();
    // Safety: `environ` is the NUL-terminated array of NUL-terminated strings libc keeps;
    // no other thread reads or changes it while `paved serve` starts (the runtime's threads
    // are idle). Each value is overwritten within its own string's length.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let entry = *p;
            let bytes = std::ffi::CStr::from_ptr(entry).to_bytes();
            if let Some(eq) = bytes.iter().position(|b| *b == b'=') {
                let name = String::from_utf8_lossy(&bytes[..eq]).into_owned();
                if wipe(&name) {
                    let len = bytes.len() - eq - 1;
                    std::ptr::write_bytes(entry.add(eq + 1), 0, len);
                    names.push(name);
                }
            }
            p = p.add(1);
        }
    }
    for name in names {
        std::env::remove_var(name);
    }
}

/// `paved serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<()> {
    let service = start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    service.shutdown().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, secrets: Vec<Secret>) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.to_path_buf(),
            database_url: format!("sqlite://{}", dir.join("p.sqlite").display()),
            public_url: None,
            workers: 1,
            webhook_secrets: secrets,
            api_url: "http://127.0.0.1:1".into(),
            auth: None,
            clone_url_template: None,
            runner: Default::default(),
            push_grace: std::time::Duration::from_secs(600),
            lease: std::time::Duration::from_secs(60),
            repositories: crate::config::RepoFilter::any(),
            checks: Default::default(),
            intake: Default::default(),
            report: None,
            store: Default::default(),
            portal: Default::default(),
            lifecycle: Default::default(),
            oidc: Default::default(),
            log_format: Default::default(),
            api: Default::default(),
        }
    }

    #[test]
    fn first_run_generates_stores_and_reuses_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), vec![]);
        let first = webhook_secrets(&c).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].expose().len(), 64);
        let stored = std::fs::read_to_string(dir.path().join("webhook-secret")).unwrap();
        assert_eq!(stored, first[0].expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("webhook-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(webhook_secrets(&c).unwrap(), first, "later starts reuse it");
    }

    #[test]
    fn configured_secrets_win_and_an_empty_stored_secret_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path(), vec![Secret::new("a"), Secret::new("b")]);
        assert_eq!(webhook_secrets(&c).unwrap().len(), 2);
        assert!(!dir.path().join("webhook-secret").exists());
        std::fs::write(dir.path().join("webhook-secret"), "  \n").unwrap();
        let err = webhook_secrets(&config(dir.path(), vec![])).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact_url("postgres://paved:hunter2@db/paved"),
            "postgres://paved:****@db/paved"
        );
        assert_eq!(redact_url("sqlite:///x.sqlite"), "sqlite:///x.sqlite");
    }
}
