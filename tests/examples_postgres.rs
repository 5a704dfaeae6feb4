//! The example definitions in `examples/catalog/` run for real through Paved's runner
//! (`paved::runner::run`, what a merge runs): `postgres-db` against the local PostgreSQL,
//! `static-site` on the filesystem, each in the sandbox a server gives its runs (SPEC 12:
//! bubblewrap, as `nobody`), with the sites folder granted as an operator would grant it
//! (`[[runner.mounts]]`, writable by the runner's user).
//!
//! PostgreSQL is expected at `POSTGRES_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, falling back to the role `root`), with
//! a role allowed to create databases and roles. These tests fail, never skip, when it is
//! not reachable: CI starts it.

use paved::runner::{self, Bubblewrap, Mount, Operation, RunOutcome, RunResult, RunSpec};
use paved::runner::{RunnerKind, Sandbox};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_ADMIN_URLS: &[&str] = &[
    "postgres://postgres@127.0.0.1:5432/postgres",
    "postgres://root@127.0.0.1:5432/postgres",
];

fn definition(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/catalog")
        .join(name)
}

/// Connects to the admin database: `POSTGRES_ADMIN_URL` when set, else the defaults.
/// Panics with what was tried when none answers.
async fn admin() -> (String, PgPool) {
    let candidates: Vec<String> = match std::env::var("POSTGRES_ADMIN_URL") {
        Ok(u) if !u.is_empty() => vec![u],
        _ => DEFAULT_ADMIN_URLS.iter().map(|s| s.to_string()).collect(),
    };
    let mut errors = Vec::new();
    for url in &candidates {
        // One plain connection first: its error says why (refused, unknown role, …),
        // where a pool only says it timed out.
        let probe = tokio::time::timeout(Duration::from_secs(10), async {
            let opts: PgConnectOptions = url.parse()?;
            opts.connect().await
        })
        .await;
        match probe {
            Ok(Ok(_conn)) => {}
            Ok(Err(e)) => {
                errors.push(format!("{url}: {e}"));
                continue;
            }
            Err(_) => {
                errors.push(format!("{url}: no answer within 10s"));
                continue;
            }
        }
        match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
        {
            Ok(pool) => return (url.clone(), pool),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    panic!(
        "PostgreSQL is not reachable, so the postgres-db example cannot be tested. Start \
         PostgreSQL on 127.0.0.1:5432 with trust authentication for the role postgres (or \
         set POSTGRES_ADMIN_URL). Tried:\n  {}",
        errors.join("\n  ")
    );
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

struct Env {
    name: String,
    work: tempfile::TempDir,
    vars: Vec<(String, String)>,
    run_id: i64,
}

/// A folder the runner's user may use: a temporary folder is its creator's alone.
fn open_to_runs(dir: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The sandbox as `paved serve` makes it, with `mounts` granted; tried once.
fn sandbox(mounts: Vec<Mount>, work_root: &Path) -> Sandbox {
    let b = Bubblewrap::resolve("bwrap", "/usr/bin:/bin", "nobody", mounts, Vec::new())
        .expect("bubblewrap is installed (script/bootstrap installs it)");
    b.probe(work_root).expect("the sandbox runs here");
    Sandbox::Bubblewrap(std::sync::Arc::new(b))
}

impl Env {
    fn new(name: String, vars: Vec<(String, String)>) -> Env {
        let work = tempfile::tempdir().expect("tempdir");
        open_to_runs(work.path(), 0o711);
        Env {
            name,
            work,
            vars,
            run_id: 0,
        }
    }

    async fn run(
        &mut self,
        definition_name: &str,
        operation: Operation,
        parameters: serde_json::Value,
        storage: Option<Vec<u8>>,
    ) -> RunResult {
        self.run_id += 1;
        let spec = RunSpec {
            run_id: self.run_id,
            operation,
            environment_name: self.name.clone(),
            environment_type: "dev".into(),
            team: "payments".into(),
            repository: "acme/environments".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            definition_dir: definition(definition_name),
            runner: RunnerKind::Command,
            template_path: None,
            terraform_binary: None,
            parameters,
            storage,
            timeout: Duration::from_secs(60),
            output_limit: 1 << 20,
            env: self.vars.clone(),
            path: "/usr/local/bin:/usr/bin:/bin".into(),
            secrets: self.vars.iter().map(|(_, v)| v.clone()).collect(),
            work_root: self.work.path().join("runs"),
            // The sites folder is a host folder the operator grants, writable.
            sandbox: sandbox(
                self.vars
                    .iter()
                    .filter(|(k, _)| k == "SITES_ROOT")
                    .map(|(_, v)| Mount {
                        path: PathBuf::from(v),
                        writable: true,
                    })
                    .collect(),
                self.work.path(),
            ),
            network: true,
            definition: "def".into(),
            owner: "alice".into(),
            identity: None,
            ade_program: None,
            plan: None,
        };
        runner::run(spec, |_| async {}).await
    }
}

fn assert_succeeded(what: &str, r: &RunResult) {
    assert!(
        r.outcome.is_success() && r.outputs_error.is_none(),
        "{what}: {} {:?}\nlog:\n{}\nerror log:\n{}",
        r.outcome.describe(),
        r.outputs_error,
        r.log,
        r.error_log
    );
}

fn output<'a>(r: &'a RunResult, key: &str) -> &'a str {
    r.outputs
        .get(key)
        .unwrap_or_else(|| panic!("no output {key}: {:?}", r.outputs))
        .value
        .as_str()
        .unwrap_or_else(|| panic!("output {key} is not a string"))
}

async fn database_exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .expect("query pg_database")
        .is_some()
}

/// The role's connection limit, `None` when the role does not exist.
async fn role_limit(pool: &PgPool, name: &str) -> Option<i32> {
    sqlx::query("SELECT rolconnlimit FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .expect("query pg_roles")
        .map(|row| row.get::<i32, _>(0))
}

/// Logs in as the environment's role with the password output, on its own database.
async fn login(r: &RunResult) -> Result<String, sqlx::Error> {
    let opts = PgConnectOptions::new()
        .host(output(r, "host"))
        .port(output(r, "port").parse().expect("port output is a number"))
        .username(output(r, "user"))
        .password(output(r, "password"))
        .database(output(r, "database"));
    let mut conn = opts.connect().await?;
    let row = sqlx::query("SELECT current_user::text, current_database()::text")
        .fetch_one(&mut conn)
        .await?;
    Ok(format!(
        "{}@{}",
        row.get::<String, _>(0),
        row.get::<String, _>(1)
    ))
}

#[tokio::test]
async fn postgres_db_deploy_update_delete() {
    let (admin_url, pool) = admin().await;
    let mut env = Env::new(
        unique_name("pg"),
        vec![("POSTGRES_ADMIN_URL".into(), admin_url.clone())],
    );
    let db = format!("env_{}", env.name.replace('-', "_"));

    // Deploy: database, role, outputs.
    let first = env
        .run(
            "postgres-db",
            Operation::Deploy,
            serde_json::json!({"size": "small"}),
            None,
        )
        .await;
    assert_succeeded("first deploy", &first);
    assert!(database_exists(&pool, &db).await, "database {db} missing");
    assert_eq!(role_limit(&pool, &db).await, Some(10), "role {db}");
    assert_eq!(output(&first, "database"), db);
    assert_eq!(output(&first, "user"), db);
    let password = output(&first, "password").to_string();
    assert_eq!(password.len(), 32, "password {password:?}");
    assert!(first.outputs["password"].sensitive);
    assert!(first.outputs["connectionString"].sensitive);
    assert!(!first.outputs["host"].sensitive && !first.outputs["database"].sensitive);
    assert!(
        output(&first, "connectionString").contains(&password),
        "the connection string holds the password"
    );
    assert!(
        !first.log.contains(&password) && !first.log.contains(&admin_url),
        "secrets in the log:\n{}",
        first.log
    );
    assert_eq!(
        login(&first)
            .await
            .expect("log in with the password output"),
        format!("{db}@{db}")
    );
    // The connection string works as it is.
    let mut conn = output(&first, "connectionString")
        .parse::<PgConnectOptions>()
        .expect("connectionString parses")
        .connect()
        .await
        .expect("connect with the connectionString output");
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("query as the environment's role");
    drop(conn);

    // Update (deploy again, storage from the first run): same password, new size applied.
    let second = env
        .run(
            "postgres-db",
            Operation::Deploy,
            serde_json::json!({"size": "large"}),
            Some(first.storage.clone()),
        )
        .await;
    assert_succeeded("second deploy", &second);
    assert_eq!(
        output(&second, "password"),
        password,
        "the update kept the password"
    );
    assert_eq!(role_limit(&pool, &db).await, Some(100), "role {db}");
    login(&second).await.expect("log in after the update");

    // Delete: both gone, even with a session open on the database.
    let mut open = output(&second, "connectionString")
        .parse::<PgConnectOptions>()
        .expect("connectionString parses")
        .connect()
        .await
        .expect("connect before delete");
    let deleted = env
        .run(
            "postgres-db",
            Operation::Delete,
            serde_json::json!({"size": "large"}),
            Some(second.storage.clone()),
        )
        .await;
    assert_succeeded("delete", &deleted);
    assert!(!database_exists(&pool, &db).await, "database {db} left");
    assert_eq!(role_limit(&pool, &db).await, None, "role {db} left");
    assert!(
        sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
        "the open session was ended"
    );

    // Deleting again is not an error.
    let again = env
        .run(
            "postgres-db",
            Operation::Delete,
            serde_json::json!({}),
            Some(deleted.storage.clone()),
        )
        .await;
    assert_succeeded("second delete", &again);
}

#[tokio::test]
async fn postgres_db_refuses_bad_input_and_reports_errors() {
    let (admin_url, _pool) = admin().await;

    // A name that is not a DNS label never reaches SQL (Paved's own checks refuse it
    // earlier; the script checks again).
    let mut bad = Env::new(
        "x\"; DROP DATABASE postgres; --".into(),
        vec![("POSTGRES_ADMIN_URL".into(), admin_url.clone())],
    );
    let r = bad
        .run(
            "postgres-db",
            Operation::Deploy,
            serde_json::json!({}),
            None,
        )
        .await;
    assert!(!r.outcome.is_success(), "deploy with a bad name succeeded");
    assert!(
        r.error_log.contains("refusing database name"),
        "error log: {}",
        r.error_log
    );

    // No admin URL: a clear error in ADE_ERROR_LOG.
    let mut unset = Env::new(unique_name("pg"), Vec::new());
    let r = unset
        .run(
            "postgres-db",
            Operation::Deploy,
            serde_json::json!({}),
            None,
        )
        .await;
    assert!(!r.outcome.is_success());
    assert!(
        r.error_log.contains("POSTGRES_ADMIN_URL is not set"),
        "error log: {}",
        r.error_log
    );

    // A server that refuses: the operation fails with psql's reason, and the admin URL
    // (a secret of the service config) is redacted.
    let unreachable = "postgres://postgres@127.0.0.1:1/postgres".to_string();
    let mut down = Env::new(
        unique_name("pg"),
        vec![("POSTGRES_ADMIN_URL".into(), unreachable.clone())],
    );
    let r = down
        .run(
            "postgres-db",
            Operation::Deploy,
            serde_json::json!({}),
            None,
        )
        .await;
    assert!(!r.outcome.is_success());
    assert!(
        r.error_log.contains("could not create database"),
        "error log: {}",
        r.error_log
    );
    assert!(!r.log.contains(&unreachable), "log: {}", r.log);
}

#[tokio::test]
async fn static_site_deploy_and_delete() {
    let sites = tempfile::tempdir().expect("tempdir");
    open_to_runs(sites.path(), 0o777);
    let mut env = Env::new(
        unique_name("site"),
        vec![("SITES_ROOT".into(), sites.path().display().to_string())],
    );
    // Shell syntax in a parameter is data: it reaches the page escaped, never run.
    let marker = sites.path().join("pwned");
    let title = format!("<b>Shop</b> $(touch {}) `id` \"quoted\"", marker.display());
    let r = env
        .run(
            "static-site",
            Operation::Deploy,
            serde_json::json!({"title": title, "pages": 2}),
            None,
        )
        .await;
    assert_succeeded("deploy", &r);
    let path = PathBuf::from(output(&r, "path"));
    assert_eq!(path, sites.path().join(&env.name).join("index.html"));
    assert_eq!(output(&r, "url"), format!("file://{}", path.display()));
    let html = std::fs::read_to_string(&path).expect("index.html");
    assert!(
        html.contains("&lt;b&gt;Shop&lt;/b&gt; $(touch")
            && html.contains("`id` &quot;quoted&quot;"),
        "{html}"
    );
    assert!(!marker.exists(), "a parameter was run as shell code");
    assert!(path.with_file_name("page-2.html").is_file());

    // Redeploy with one page: the second page goes.
    let r = env
        .run(
            "static-site",
            Operation::Deploy,
            serde_json::json!({"pages": 1}),
            Some(r.storage.clone()),
        )
        .await;
    assert_succeeded("redeploy", &r);
    assert!(path.is_file());
    assert!(!path.with_file_name("page-2.html").exists());

    let d = env
        .run(
            "static-site",
            Operation::Delete,
            serde_json::json!({}),
            Some(r.storage.clone()),
        )
        .await;
    assert_succeeded("delete", &d);
    assert!(!path.exists(), "index.html left");
    assert!(!sites.path().join(&env.name).exists(), "site folder left");
}

#[tokio::test]
async fn static_site_status_tells_drift_from_a_site_that_matches() {
    let sites = tempfile::tempdir().expect("tempdir");
    open_to_runs(sites.path(), 0o777);
    let mut env = Env::new(
        unique_name("site"),
        vec![("SITES_ROOT".into(), sites.path().display().to_string())],
    );
    let params = serde_json::json!({"title": "Cart <preview>", "pages": 2});
    let r = env
        .run("static-site", Operation::Deploy, params.clone(), None)
        .await;
    assert_succeeded("deploy", &r);
    let storage = Some(r.storage.clone());
    let r1 = env
        .run(
            "static-site",
            Operation::Status,
            params.clone(),
            storage.clone(),
        )
        .await;
    assert_eq!(r1.outcome, RunOutcome::Succeeded, "in sync: {}", r1.log);
    assert!(r1.log.contains("matches its parameters"), "{}", r1.log);

    // Changed by hand: a page removed and the title edited. Exit 2, each difference said.
    let site = sites.path().join(&env.name);
    std::fs::remove_file(site.join("page-2.html")).expect("rm");
    let html = std::fs::read_to_string(site.join("index.html")).expect("index");
    std::fs::write(site.join("index.html"), html.replace("Cart", "Kart")).expect("edit");
    let r2 = env
        .run(
            "static-site",
            Operation::Status,
            params.clone(),
            storage.clone(),
        )
        .await;
    assert_eq!(
        r2.outcome,
        RunOutcome::Failed {
            exit_code: Some(2),
            signal: None
        },
        "{}",
        r2.log
    );
    assert!(r2.log.contains("page-2.html is missing"), "{}", r2.log);
    assert!(r2.log.contains("does not carry the title"), "{}", r2.log);
    // Parameters that match the site as it now is: in sync.
    let r3 = env
        .run(
            "static-site",
            Operation::Status,
            serde_json::json!({"title": "Kart <preview>"}),
            storage,
        )
        .await;
    assert_eq!(r3.outcome, RunOutcome::Succeeded, "{}", r3.log);
}

#[tokio::test]
async fn static_site_without_sites_root_lives_in_storage() {
    let mut env = Env::new(unique_name("site"), Vec::new());
    let r = env
        .run(
            "static-site",
            Operation::Deploy,
            serde_json::json!({}),
            None,
        )
        .await;
    assert_succeeded("deploy", &r);
    assert!(output(&r, "path").ends_with("/storage/site/index.html"));
    // The site is kept in ADE_STORAGE's archive, so the next operation finds it.
    let mut archive = tar::Archive::new(std::io::Cursor::new(r.storage.clone()));
    let names: Vec<String> = archive
        .entries()
        .expect("storage archive")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "site/index.html"),
        "{names:?}"
    );
    let d = env
        .run(
            "static-site",
            Operation::Delete,
            serde_json::json!({}),
            Some(r.storage.clone()),
        )
        .await;
    assert_succeeded("delete", &d);
    let mut archive = tar::Archive::new(std::io::Cursor::new(d.storage.clone()));
    let left = archive
        .entries()
        .expect("storage archive")
        .filter_map(|e| e.ok()?.path().ok().map(|p| p.display().to_string()))
        .filter(|n| n.contains("site/"))
        .count();
    assert_eq!(left, 0, "the site is gone from ADE_STORAGE");
}
