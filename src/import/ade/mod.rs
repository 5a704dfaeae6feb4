//! `paved import ade` (SPEC 15): reads an ADE project through the DevCenter data plane
//! ([`client`], [`read`]), maps it to Paved's files ([`map`]) and reports what it adopts and
//! what it leaves out. Read-only against ADE.

pub mod client;
pub mod map;
pub mod read;
pub mod write;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;

/// The flags of `paved import ade`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportOptions {
    /// The dev center's data-plane endpoint, e.g. https://<id>-<devcenter>.<region>.devcenter.azure.com
    #[arg(long)]
    pub endpoint: String,
    /// The ADE project.
    #[arg(long)]
    pub project: String,
    /// The environments repository (owner/name) the pull request is opened on.
    #[arg(long)]
    pub repository: String,
    /// The team the project's environments go to.
    #[arg(long)]
    pub team: String,
    /// A CSV file of `<Entra object id>,<GitHub login>` lines, for the owners.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// A tag on every manifest, `key=value` (repeat).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// An ADE environment type's Paved type, `ADE=paved` (repeat); others keep their name,
    /// lower-cased.
    #[arg(long = "type-map")]
    pub type_map: Vec<String>,
    /// A local checkout of the ADE catalog repository: definitions are copied from it.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Print the manifests and the report; push nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `key=value` tags.
pub fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for t in tags {
        let (k, v) = t
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| format!("--tag {t:?}: write key=value"))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// The mapping options from the flags (reads `--users`).
pub fn map_options(opts: &ImportOptions) -> Result<map::MapOptions, String> {
    let users = match &opts.users {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--users {}: {e}", path.display()))?;
            map::parse_users(&path.display().to_string(), &text)?
        }
        None => Default::default(),
    };
    let type_map = parse_tags(&opts.type_map)
        .map_err(|e| e.replace("--tag", "--type-map"))?
        .into_iter()
        .map(|(ade, paved)| (ade.to_ascii_lowercase(), paved))
        .collect();
    Ok(map::MapOptions {
        team: opts.team.clone(),
        users,
        tags: parse_tags(&opts.tags)?,
        type_map,
        catalog: opts.catalog.clone(),
    })
}

/// Reads the project and maps it; `credentials` sign in at Entra.
pub async fn plan(
    opts: &ImportOptions,
    credentials: &client::Credentials,
) -> anyhow::Result<(read::AdeProject, map::Mapping)> {
    crate::ids::RepoName::parse(&opts.repository)
        .map_err(|_| anyhow::anyhow!("--repository {:?}: write owner/name", opts.repository))?;
    let map_opts = map_options(opts).map_err(anyhow::Error::msg)?;
    if !read::is_ade_name(&opts.project) {
        anyhow::bail!(
            "--project {:?} is not an ADE project name (3-63 letters, digits, '-', '_', '.')",
            opts.project
        );
    }
    let client = client::Client::sign_in(&opts.endpoint, credentials).await?;
    let tty = std::io::stderr().is_terminal();
    let progress = |what: &str, done: usize, total: usize| {
        if tty && total > 1 {
            eprint!("\rreading {what}: {done}/{total}   ");
            if done == total {
                eprintln!();
            }
        }
    };
    let project = read::read(&client, &opts.project, &progress).await?;
    // Mapping reads the --catalog checkout from disk: off the async threads.
    let (project, mapping) = tokio::task::spawn_blocking(move || {
        let mapping = map::map(&project, &map_opts);
        (project, mapping)
    })
    .await?;
    Ok((project, mapping.map_err(anyhow::Error::msg)?))
}

/// What the import adopts and leaves out, for people (the pull request's body and
/// `--dry-run`'s report).
pub fn report(project: &read::AdeProject, mapping: &map::Mapping) -> String {
    let mut out = format!(
        "Import of ADE project `{}`: {} environment(s) adopted, {} left out.\n",
        project.name,
        mapping.adopted.len(),
        mapping.skipped.len()
    );
    if !mapping.adopted.is_empty() {
        out.push_str("\n### Adopted (no script runs at merge)\n\n");
        for a in &mapping.adopted {
            out.push_str(&format!(
                "- `{}` ({} from {}, owner @{}): `{}`\n",
                a.name, a.env_type, a.definition, a.owner, a.path
            ));
        }
    }
    if !mapping.skipped.is_empty() {
        out.push_str("\n### Left out (nothing is written for them)\n\n");
        for s in &mapping.skipped {
            out.push_str(&format!("- `{}`: {}\n", s.name, s.reason));
        }
    }
    let made: Vec<&str> = mapping
        .definitions
        .iter()
        .filter(|d| d.from_api)
        .map(|d| d.name.as_str())
        .collect();
    if !made.is_empty() {
        out.push_str(&format!(
            "\n### Definitions without scripts\n\n{} made from the data plane's description of their parameters (no --catalog copy was given or found): add their scripts before anything is deployed or deleted with them.\n",
            made.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

/// `--dry-run`: the files and the report, printed; nothing pushed.
pub fn print_dry_run(project: &read::AdeProject, mapping: &map::Mapping) {
    for a in &mapping.adopted {
        println!("--- {}\n{}", a.path, a.manifest);
    }
    for d in &mapping.definitions {
        for (path, bytes) in &d.files {
            println!("--- {path} ({} bytes)", bytes.len());
        }
    }
    println!("{}", report(project, mapping));
    println!("(dry run: nothing was pushed)");
}
