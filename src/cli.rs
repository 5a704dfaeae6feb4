//! The command line: `serve`, `check`, `demo`, `migrate`, `audit`, `schema`, `init`,
//! `backup`, `restore`, and the API's client commands `env` and `templates` (see
//! [`crate::client`]).

use crate::config::{Config, Overrides};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "paved",
    version,
    about = "Developer environments by pull request, under the platform team's governance"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServiceFlags {
    /// Configuration file (default: ./paved.toml if present; or PAVED_CONFIG).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (PAVED_LISTEN, `listen`).
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for the SQLite database and Git mirrors (PAVED_DATA_DIR, `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://… (default) or postgres://… (PAVED_DATABASE_URL, `database_url`).
    #[arg(long)]
    pub database_url: Option<String>,
}

impl ServiceFlags {
    fn overrides(&self) -> Overrides {
        Overrides {
            config_path: self.config.clone(),
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

/// Where the API is, for the client commands (the token comes from `PAVED_TOKEN`).
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteFlags {
    /// The Paved server's URL.
    #[arg(long, global = true, env = "PAVED_SERVER", default_value = crate::client::DEFAULT_SERVER)]
    pub server: String,
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// The environments you may see: name, team, type, template, state, owner.
    List {
        /// Only this team's.
        #[arg(long)]
        team: Option<String>,
        /// Only this repository's (owner/name).
        #[arg(long)]
        repository: Option<String>,
    },
    /// One environment: its public outputs and its recent operations.
    Show {
        name: String,
        /// The repository (owner/name), when the name is in several.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Ask for a new environment: Paved checks it and opens the pull request for you.
    Request {
        name: String,
        #[arg(long)]
        team: String,
        #[arg(long = "type")]
        env_type: String,
        /// The catalog definition (see `paved templates`).
        #[arg(long)]
        template: String,
        /// A parameter, `key=value` (repeat).
        #[arg(long = "param")]
        params: Vec<String>,
        /// RFC 3339, e.g. 2026-12-31T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
        /// A tag, `key=value` (repeat).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        repository: Option<String>,
    },
    /// Move an environment's expiry (a pull request that changes only `expiresAt`).
    Extend {
        name: String,
        #[arg(long)]
        expires_at: String,
        #[arg(long)]
        repository: Option<String>,
    },
    /// Ask for an environment to be deleted (a pull request that removes its manifest).
    Delete {
        name: String,
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Bring an Azure Deployment Environments project's live environments under Paved,
    /// without redeploying them (SPEC 15). Signs in with AZURE_TENANT_ID, AZURE_CLIENT_ID and
    /// AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (AZURE_AUTHORITY_HOST). Read-only
    /// against ADE.
    Ade {
        #[command(flatten)]
        opts: crate::import::ade::ImportOptions,
        #[command(flatten)]
        service: ServiceFlags,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Register Paved as a GitHub App with GitHub's App manifest flow, and write the
    /// `paved.toml` (and private key) that use it. Serves a page on this machine to open in
    /// a browser signed in to GitHub; nothing is written over an existing file.
    Github {
        /// Where GitHub reaches Paved (`public_url`): `<URL>/webhooks/github` and
        /// `<URL>/oauth/callback`.
        #[arg(long)]
        public_url: String,
        /// The organization to own the App (default: your own account).
        #[arg(long)]
        org: Option<String>,
        /// The App's name on GitHub (unique there; default: "Paved" and the public host).
        #[arg(long)]
        name: Option<String>,
        /// The configuration file to write.
        #[arg(long, default_value = "paved.toml")]
        config: PathBuf,
        /// The private key's file (default: paved-app.pem beside the configuration).
        #[arg(long)]
        key: Option<PathBuf>,
        /// An environments repository Paved serves (owner/name; repeat for more).
        #[arg(long = "repository")]
        repositories: Vec<String>,
        /// GitHub's web address (GitHub Enterprise Server: its host).
        #[arg(long, default_value = crate::config::DEFAULT_WEB_URL)]
        web_url: String,
        /// GitHub's API (GitHub Enterprise Server: `https://HOST/api/v3`).
        #[arg(long, default_value = crate::config::DEFAULT_API_URL)]
        api_url: String,
        /// Where this machine serves the page that starts the flow.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: webhook receiver, worker and API.
    Serve(ServiceFlags),
    /// Run the PR checks on a local checkout, without a server or GitHub.
    Check {
        /// The environments repository (default: the current folder).
        #[arg(default_value = ".")]
        path: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Show the whole flow on this machine: a real server, a real Git repository made from
    /// examples/, signed pull request events, and GitHub answered by the strict emulator.
    #[cfg(feature = "demo")]
    Demo {
        /// Keep the demo's files (repository, database) in this folder instead of a temp dir.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Then keep serving: print the portal's URL and serve it until Ctrl-C.
        #[arg(long)]
        serve: bool,
    },
    /// Environments on a running server (token from PAVED_TOKEN).
    Env {
        #[command(subcommand)]
        command: EnvCommand,
        #[command(flatten)]
        remote: RemoteFlags,
    },
    /// The templates (catalog definitions) you may request from, with their parameters.
    Templates {
        #[command(flatten)]
        remote: RemoteFlags,
    },
    /// Apply database migrations and exit.
    Migrate(ServiceFlags),
    /// Write a platform repository to push as it is: governance (`.paved/platform.yaml`),
    /// the example definitions and policies, schemas for editors, a README in
    /// `environments/` and a CI workflow running `paved check`. Never writes over a file.
    Init {
        /// Where (made if missing; default: the current folder).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The first team that asks for environments (a team name: a-z, 0-9, -).
        #[arg(long)]
        team: String,
        /// Your GitHub login: a member of the platform team, which administers Paved and
        /// approves governance changes (repeat for more).
        #[arg(long = "admin", required = true)]
        admins: Vec<String>,
        /// A member of the team (repeat for more; default: the first admin).
        #[arg(long = "member")]
        members: Vec<String>,
        /// The platform team's name.
        #[arg(long, default_value = "platform")]
        platform_team: String,
    },
    /// Register Paved with GitHub (`paved setup github`).
    Setup {
        #[command(subcommand)]
        command: SetupCommand,
    },
    /// Copy the SQLite database while the server runs (a consistent snapshot) into a new
    /// file. With PostgreSQL, says how to use pg_dump instead.
    Backup {
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        service: ServiceFlags,
    },
    /// Put a backup back in place of the SQLite database, keeping the one it replaces
    /// beside it. Refuses while a server holds the data folder.
    Restore {
        /// The backup file (`paved backup --out`).
        file: PathBuf,
        #[command(flatten)]
        service: ServiceFlags,
    },
    /// Bring environments from another tool under Paved.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print the JSON Schema of environment manifests or `platform.yaml`, or write both
    /// into a folder (`--out`), for editors to validate as people type.
    Schema {
        /// `environment` or `platform` (printed to stdout).
        #[arg(required_unless_present = "out", value_parser = ["environment", "platform"])]
        name: Option<String>,
        /// Write `environment.schema.json` and `platform.schema.json` into this folder.
        #[arg(long, conflicts_with = "name")]
        out: Option<PathBuf>,
    },
    /// Print an environment's history from Git alone: the commits that touched its manifest
    /// and Paved's audit records in their notes (refs/notes/paved). No database or server.
    /// Exit 0 with the history, 1 when there is none, 2 on bad input.
    Audit {
        /// The environment's name (metadata.name, the manifest's file stem).
        env: String,
        /// A local repository (bare or not) or a URL to clone (its default branch).
        #[arg(long, default_value = ".")]
        repo: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Paved's database (its `database_url`): also show the records still waiting in
        /// its notes outbox, not yet in Git.
        #[arg(long)]
        database: Option<String>,
    },
}

/// `paved schema`: one schema to stdout, or both into a folder.
fn schema_command(name: Option<&str>, out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use crate::manifest::schema::{by_name, SCHEMAS};
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v).map(|t| t + "\n");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        for (name, file, _) in SCHEMAS {
            let text = pretty(by_name(name).unwrap_or_default())?;
            let path = dir.join(file);
            std::fs::write(&path, text)?;
            println!("wrote {}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    match name.and_then(by_name) {
        Some(schema) => {
            print!("{}", pretty(schema)?);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("name a schema: environment or platform"),
    }
}

/// The log on stderr: text for people (colours only on a terminal, so a log file holds no
/// escape codes) or one JSON object per line for collectors, each carrying the fields of the
/// spans it is in (delivery id, repository, environment, operation).
fn init_tracing(format: crate::config::LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAVED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        crate::config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        crate::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

fn load_config(flags: &ServiceFlags) -> anyhow::Result<Config> {
    Ok(Config::load(&flags.overrides(), &|k| {
        std::env::var(k).ok()
    })?)
}

pub fn run(cli: Cli) -> ExitCode {
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Check { path, format } => check_command(&path, format),
        Command::Schema { name, out } => schema_command(name.as_deref(), out.as_deref()),
        Command::Audit {
            env,
            repo,
            format,
            database,
        } => (|| {
            let pending = match database {
                Some(url) => runtime()?.block_on(crate::service::pending_notes(&url))?,
                None => Vec::new(),
            };
            crate::audit::run_cli(&env, &repo, matches!(format, Format::Json), &pending)
        })(),
        Command::Env { command, remote } => client_command(&remote, |c, json| async move {
            match command {
                EnvCommand::List { team, repository } => {
                    crate::client::env_list(&c, team.as_deref(), repository.as_deref(), json).await
                }
                EnvCommand::Show { name, repository } => {
                    crate::client::env_show(&c, &name, repository.as_deref(), json).await
                }
                EnvCommand::Request {
                    name,
                    team,
                    env_type,
                    template,
                    params,
                    expires_at,
                    tags,
                    repository,
                } => {
                    let ask = crate::client::Ask {
                        action: "create",
                        name: &name,
                        repository: repository.as_deref(),
                        team: Some(&team),
                        env_type: Some(&env_type),
                        template: Some(&template),
                        params: &params,
                        expires_at: expires_at.as_deref(),
                        tags: &tags,
                    };
                    crate::client::ask(&c, &ask, json).await
                }
                EnvCommand::Extend {
                    name,
                    expires_at,
                    repository,
                } => {
                    let ask = crate::client::Ask {
                        action: "extend",
                        name: &name,
                        repository: repository.as_deref(),
                        team: None,
                        env_type: None,
                        template: None,
                        params: &[],
                        expires_at: Some(&expires_at),
                        tags: &[],
                    };
                    crate::client::ask(&c, &ask, json).await
                }
                EnvCommand::Delete { name, repository } => {
                    let ask = crate::client::Ask {
                        action: "delete",
                        name: &name,
                        repository: repository.as_deref(),
                        team: None,
                        env_type: None,
                        template: None,
                        params: &[],
                        expires_at: None,
                        tags: &[],
                    };
                    crate::client::ask(&c, &ask, json).await
                }
            }
        }),
        Command::Templates { remote } => client_command(&remote, |c, json| async move {
            crate::client::templates(&c, json).await
        }),
        Command::Serve(flags) => runtime().and_then(|rt| {
            let config = load_config(&flags)?;
            init_tracing(config.log_format);
            crate::chaos::arm_from_env();
            crate::service::harden_process(&config);
            rt.block_on(crate::service::serve(config))?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Migrate(flags) => runtime().and_then(|rt| {
            let config = load_config(&flags)?;
            init_tracing(config.log_format);
            rt.block_on(crate::service::migrate(&config))?;
            println!(
                "migrations applied to {}",
                crate::service::redact_url(&config.database_url)
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Import { command } => import_command(command),
        Command::Init {
            dir,
            team,
            admins,
            members,
            platform_team,
        } => init_command(
            &dir,
            crate::setup::init::InitOptions {
                members: if members.is_empty() {
                    admins.iter().take(1).cloned().collect()
                } else {
                    members
                },
                team,
                platform_team,
                admins,
            },
        ),
        Command::Setup { command } => setup_command(command),
        Command::Backup { out, service } => runtime().and_then(|rt| {
            let config = load_config(&service)?;
            let facts = rt.block_on(crate::setup::backup::backup(&config, &out))?;
            println!(
                "wrote {}: {} deliveries, {} environments, {} operations (integrity checked)",
                out.display(),
                facts.deliveries,
                facts.environments,
                facts.operations
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Restore { file, service } => runtime().and_then(|rt| {
            let config = load_config(&service)?;
            let done = rt.block_on(crate::setup::backup::restore(&config, &file))?;
            println!(
                "restored {} to {}: {} deliveries, {} environments, {} operations",
                file.display(),
                done.database.display(),
                done.facts.deliveries,
                done.facts.environments,
                done.facts.operations
            );
            if let Some(p) = done.previous {
                println!("the database it replaced is at {}", p.display());
            }
            println!("start Paved (`paved serve`): it goes on from the backup");
            Ok(ExitCode::SUCCESS)
        }),
        #[cfg(feature = "demo")]
        Command::Demo { keep, serve } => runtime().and_then(|rt| {
            if std::env::var_os("PAVED_LOG").is_some() {
                init_tracing(crate::config::LogFormat::Text);
            }
            rt.block_on(crate::demo::run(keep, serve))?;
            Ok(ExitCode::SUCCESS)
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("paved: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `paved setup github`: the page to open, then what was made and what comes next.
fn setup_command(command: SetupCommand) -> anyhow::Result<ExitCode> {
    let SetupCommand::Github {
        public_url,
        org,
        name,
        config,
        key,
        repositories,
        web_url,
        api_url,
        listen,
    } = command;
    let host = url::Url::parse(&public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let name = name.unwrap_or_else(|| format!("Paved {host}").chars().take(34).collect());
    let key_path = key.unwrap_or_else(|| config.with_file_name("paved-app.pem"));
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let options = crate::setup::github::SetupOptions {
        public_url,
        org: org.clone(),
        name,
        web_url,
        api_url,
        config_path: absolute(config),
        key_path: absolute(key_path),
        repositories,
        listen,
    };
    let done = runtime()?.block_on(crate::setup::github::run(options, |url| {
        println!(
            "Open {url} in a browser signed in to GitHub{}, and press its button: GitHub shows the App and asks you to confirm.",
            org.as_deref()
                .map(|o| format!(" as an owner of {o}"))
                .unwrap_or_default()
        );
    }))?;
    println!(
        "GitHub made the App {} (id {}).\nwrote {} (readable by you only)\nwrote {} (readable by you only)\nNext:\n\
         \x20 1. Install the App on the environments repositories: {}/installations/new\n\
         \x20 2. `paved serve --config {}`",
        done.slug,
        done.app_id,
        done.config_path.display(),
        done.key_path.display(),
        done.html_url,
        done.config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `paved init`: the files, then what to do with them.
fn init_command(
    dir: &std::path::Path,
    options: crate::setup::init::InitOptions,
) -> anyhow::Result<ExitCode> {
    let written = crate::setup::init::write(dir, &options)?;
    for p in &written {
        println!("wrote {}", p.display());
    }
    println!(
        "\nA platform repository for team {} with {} as platform admin. Next:\n\
         \x20 1. `paved check {}`: the same checks Paved runs on pull requests.\n\
         \x20 2. Push it to GitHub (e.g. `git init && git add . && git commit -m 'Paved' && git push`).\n\
         \x20 3. `paved setup github --public-url https://paved.example.com`: register Paved's GitHub App.\n\
         \x20 4. `paved serve`.",
        options.team,
        options.admins.join(", "),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `paved import ade`: exit 0 when read and mapped (and, without `--dry-run`, the pull
/// request opened), 2 on bad input or a failed read, with nothing pushed.
fn import_command(command: ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Ade { opts, service } = command;
    let credentials = crate::import::ade::client::Credentials::from_env(|k| std::env::var(k).ok())?;
    let rt = runtime()?;
    let (project, mapping) = rt.block_on(crate::import::ade::plan(&opts, &credentials))?;
    if opts.dry_run {
        crate::import::ade::print_dry_run(&project, &mapping);
        return Ok(ExitCode::SUCCESS);
    }
    let config = load_config(&service)?;
    let outcome = rt.block_on(async {
        let mirrors = tempfile::tempdir()?;
        let orch = crate::service::orchestrator(config, mirrors.path()).await?;
        let repo = crate::ids::RepoName::parse(&opts.repository)?;
        let source = format!(
            "ade:{}/projects/{}",
            opts.endpoint.trim_end_matches('/'),
            opts.project
        );
        crate::import::ade::write::open(&orch, &repo, &source, &project, &mapping).await
    })?;
    print!("{}", crate::import::ade::report(&project, &mapping));
    use crate::import::ade::write::Outcome;
    match outcome {
        Outcome::Governance { url } => println!(
            "\nOpened {url}: the environment types and definitions first (governance is read from the default branch). Merge it, then run this import again to adopt the environments."
        ),
        Outcome::Environments { url, adopted } => {
            println!("\nOpened {url}: merging it adopts {adopted} environment(s); no script runs.")
        }
        Outcome::AlreadyOpen { url } => {
            println!("\nThis import's pull request is open already: {url}. Nothing was pushed.")
        }
        Outcome::Nothing => println!("\nEverything this project has is Paved's already or left out. Nothing was pushed."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a client command against `remote.server` with `PAVED_TOKEN`, printing its text.
fn client_command<F, Fut>(remote: &RemoteFlags, f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(crate::client::ApiClient, bool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let client = crate::client::ApiClient::new(&remote.server, std::env::var("PAVED_TOKEN").ok())?;
    let out = runtime()?.block_on(f(client, matches!(remote.format, Format::Json)))?;
    // JSON escapes control characters itself; text is stripped of them (every cell already
    // is; this catches any string a command prints whole).
    print!("{}", crate::client::printable(&out));
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `paved check`: exit 0 when every check passes, 1 when anything is denied, 2 on usage or
/// I/O trouble.
fn check_command(path: &std::path::Path, format: Format) -> anyhow::Result<ExitCode> {
    if !path.is_dir() {
        anyhow::bail!("{}: not a folder", path.display());
    }
    let report = crate::checks::check_local(path);
    // Identities live in the server's configuration: say what could not be checked here.
    let named = crate::checks::named_identities_local(path);
    if !named.is_empty() {
        eprintln!(
            "note: {} names deploy identities ({}); only the Paved server knows which it defines, so they are checked on the pull request, not here",
            crate::manifest::platform::PLATFORM_PATH,
            named.join(", ")
        );
    }
    match format {
        Format::Text => print!("{}", crate::checks::render_text(&report)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    let denied = report.contexts().iter().any(|c| !c.verdict.is_pass());
    Ok(if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
