//! `paved audit ENV`: an environment's history from Git alone (no database, no server):
//! the commits that touched its manifest, plus the audit records in their notes.

use super::{parse, AuditRecord};
use crate::repo::notes::NOTES_REF;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use git2::{Commit, ErrorCode, ObjectType, Oid, Repository, Sort, Tree};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    InvalidEnvironment(String),
    #[error("{0}")]
    NoCommits(String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// How a commit changed the environment's manifest, compared with its first parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Modified,
    Deleted,
    /// The manifest moved from one team's folder to another's (`from_path` → `path`).
    Moved,
    /// The manifest is unchanged; the commit is listed for the records in its note.
    None,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Modified => "modified",
            Change::Deleted => "deleted",
            Change::Moved => "moved",
            Change::None => "none",
        }
    }
}

/// One commit of an environment's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub commit: String,
    pub author: String,
    /// Author date, RFC 3339 with the author's offset.
    pub date: String,
    pub summary: String,
    pub change: Change,
    /// `environments/<team>/<env>.yaml`: the path changed, or for [`Change::None`] the
    /// manifest at that commit (`null` when there is none).
    pub path: Option<String>,
    /// For [`Change::Moved`]: where the manifest was before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// The records for this environment in the commit's `refs/notes/paved` note.
    pub records: Vec<AuditRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub environment: String,
    /// Oldest first.
    pub entries: Vec<Entry>,
}

/// The `environments` subtree of `tree`, if it is a folder.
fn environments_dir(tree: &Tree) -> Result<Option<Oid>, git2::Error> {
    match tree.get_name("environments") {
        Some(e) if e.kind() == Some(ObjectType::Tree) => Ok(Some(e.id())),
        _ => Ok(None),
    }
}

/// `team -> blob id` of `<team>/<file>` in the `environments` folder `dir`.
fn manifests_in(
    repo: &Repository,
    dir: Option<Oid>,
    file: &str,
) -> Result<BTreeMap<String, Oid>, git2::Error> {
    let mut out = BTreeMap::new();
    let Some(dir) = dir else {
        return Ok(out);
    };
    let dir = repo.find_tree(dir)?;
    for team in dir.iter() {
        if team.kind() != Some(ObjectType::Tree) {
            continue;
        }
        let Some(team_name) = team.name() else {
            continue;
        };
        let team_tree = repo.find_tree(team.id())?;
        let found = team_tree
            .get_name(file)
            .filter(|m| m.kind() != Some(ObjectType::Tree))
            .map(|m| m.id());
        if let Some(id) = found {
            out.insert(team_name.to_string(), id);
        }
    }
    Ok(out)
}

fn manifest_path(team: &str, env: &str) -> String {
    format!("environments/{team}/{env}.yaml")
}

/// How `commit` changed `environments/*/<env>.yaml` compared with its first parent (a root
/// commit with the empty tree). `None` when it did not.
fn manifest_change(
    repo: &Repository,
    commit: &Commit,
    env: &str,
) -> Result<Option<(Change, String, Option<String>)>, git2::Error> {
    let new_dir = environments_dir(&commit.tree()?)?;
    let old_dir = match commit.parent_count() {
        0 => None,
        _ => environments_dir(&commit.parent(0)?.tree()?)?,
    };
    if old_dir == new_dir {
        return Ok(None);
    }
    let file = format!("{env}.yaml");
    let old = manifests_in(repo, old_dir, &file)?;
    let new = manifests_in(repo, new_dir, &file)?;
    let mut added = Vec::new();
    let mut deleted = Vec::new();
    let mut modified = Vec::new();
    for (team, id) in &new {
        match old.get(team) {
            None => added.push(manifest_path(team, env)),
            Some(o) if o != id => modified.push(manifest_path(team, env)),
            Some(_) => {}
        }
    }
    for team in old.keys() {
        if !new.contains_key(team) {
            deleted.push(manifest_path(team, env));
        }
    }
    // Names are unique in a repository, so one path changes at a time, or two when the
    // manifest moves between teams. Anything stranger is shown by its first path.
    Ok(
        match (added.as_slice(), deleted.as_slice(), modified.as_slice()) {
            ([], [], []) => None,
            ([to], [from], []) => Some((Change::Moved, to.clone(), Some(from.clone()))),
            ([p, ..], _, _) => Some((Change::Added, p.clone(), None)),
            (_, _, [p, ..]) => Some((Change::Modified, p.clone(), None)),
            (_, [p, ..], _) => Some((Change::Deleted, p.clone(), None)),
        },
    )
}

/// Records for `env` in every note of `refs/notes/paved`, by annotated commit.
fn notes_for_env(
    repo: &Repository,
    env: &str,
) -> Result<HashMap<Oid, Vec<AuditRecord>>, git2::Error> {
    let mut out = HashMap::new();
    let notes = match repo.notes(Some(NOTES_REF)) {
        Ok(n) => n,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for item in notes {
        let (blob, annotated) = item?;
        let blob = repo.find_blob(blob)?;
        let records: Vec<AuditRecord> = parse(&String::from_utf8_lossy(blob.content()))
            .into_iter()
            .filter(|r| r.environment == env)
            .collect();
        if !records.is_empty() {
            out.insert(annotated, records);
        }
    }
    Ok(out)
}

fn rfc3339(time: git2::Time) -> String {
    let offset = FixedOffset::east_opt(time.offset_minutes() * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
    DateTime::from_timestamp(time.seconds(), 0)
        .map(|t| {
            t.with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| time.seconds().to_string())
}

/// The history of environment `env` reachable from HEAD of `repo`, oldest first: every
/// commit whose change (against its first parent) touches `environments/<any team>/<env>.yaml`,
/// and every commit whose `refs/notes/paved` note holds a record for `env`.
pub fn history(repo: &Repository, env: &str) -> Result<History, AuditError> {
    history_from(repo, env, head_commit(repo)?)
}

/// [`history`] from the commit `head` (a mirror's default branch, which is not its HEAD).
pub fn history_from(repo: &Repository, env: &str, head: Oid) -> Result<History, AuditError> {
    crate::manifest::names::check_environment_name(env).map_err(AuditError::InvalidEnvironment)?;
    let notes = notes_for_env(repo, env)?;
    let mut walk = repo.revwalk()?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME | Sort::REVERSE)?;
    walk.push(head)?;
    let mut entries = Vec::new();
    for oid in walk {
        let oid = oid?;
        let commit = repo.find_commit(oid)?;
        let change = manifest_change(repo, &commit, env)?;
        let records = notes.get(&oid).cloned().unwrap_or_default();
        let (change, path, from_path) = match change {
            Some(c) => c,
            None if records.is_empty() => continue,
            None => {
                let dir = environments_dir(&commit.tree()?)?;
                let path = manifests_in(repo, dir, &format!("{env}.yaml"))?
                    .keys()
                    .next()
                    .map(|team| manifest_path(team, env));
                (Change::None, path.unwrap_or_default(), None)
            }
        };
        let author = commit.author();
        entries.push(Entry {
            commit: oid.to_string(),
            author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
            date: rfc3339(author.when()),
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default())
                .into_owned(),
            change,
            path: Some(path).filter(|p| !p.is_empty()),
            from_path,
            records,
        });
    }
    Ok(History {
        environment: env.to_string(),
        entries,
    })
}

/// The commit HEAD points at. When HEAD is unborn (a bare repository whose HEAD names a
/// branch that was never created) and the repository has exactly one branch, that branch.
fn head_commit(repo: &Repository) -> Result<Oid, AuditError> {
    match repo.head() {
        Ok(h) => return Ok(h.peel_to_commit()?.id()),
        Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let mut branches = Vec::new();
    for b in repo.branches(Some(git2::BranchType::Local))? {
        let (b, _) = b?;
        if let Ok(c) = b.get().peel_to_commit() {
            branches.push((b.name().ok().flatten().unwrap_or("?").to_string(), c.id()));
        }
    }
    let head_name = repo
        .find_reference("HEAD")
        .ok()
        .and_then(|r| r.symbolic_target().map(str::to_string))
        .unwrap_or_else(|| "HEAD".into());
    match branches.as_slice() {
        [(_, id)] => Ok(*id),
        [] => Err(AuditError::NoCommits(format!(
            "the repository has no commits ({head_name} is unborn)"
        ))),
        _ => Err(AuditError::NoCommits(format!(
            "{head_name} has no commits, and the repository has several branches ({}): point HEAD at the default branch",
            branches
                .iter()
                .map(|b| b.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Control characters out, for printing text that came from Git to a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The text form: one paragraph per commit, its records indented below it.
pub fn render_text(history: &History, repository: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let n = history.entries.len();
    let _ = writeln!(
        out,
        "History of environment {} in {} ({n} commit{}, oldest first)",
        history.environment,
        printable(repository),
        if n == 1 { "" } else { "s" }
    );
    for e in &history.entries {
        out.push('\n');
        let _ = writeln!(
            out,
            "commit {}  {}  {}",
            e.commit,
            printable(&e.date),
            printable(&e.author)
        );
        let _ = writeln!(out, "    {}", printable(&e.summary));
        match (&e.from_path, &e.path) {
            (Some(from), Some(to)) => {
                let _ = writeln!(out, "    moved: {} -> {}", printable(from), printable(to));
            }
            (_, Some(path)) => {
                let _ = writeln!(out, "    {}: {}", e.change.as_str(), printable(path));
            }
            (_, None) => {
                let _ = writeln!(out, "    {}: (no manifest)", e.change.as_str());
            }
        }
        if e.records.is_empty() {
            let _ = writeln!(out, "    (no Paved audit record)");
        }
        for r in &e.records {
            render_record_text(&mut out, r);
        }
    }
    out
}

fn render_record_text(out: &mut String, r: &AuditRecord) {
    use std::fmt::Write as _;
    let mut head = format!(
        "    - {} {}",
        printable(&r.operation),
        printable(&r.outcome)
    );
    if let Some(run) = r.run_id {
        let _ = write!(head, ", run {run}");
    }
    if let Some(a) = r.attempt {
        let _ = write!(head, ", attempt {a}");
    }
    let _ = writeln!(out, "{head}");
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "        {label:<12} {value}");
    };
    let mut who = Vec::new();
    if let Some(pr) = r.pull_request {
        who.push(format!("#{pr}"));
    }
    if let Some(v) = &r.requester {
        who.push(format!("by {}", printable(v)));
    }
    if let Some(v) = &r.merger {
        who.push(format!("merged by {}", printable(v)));
    }
    let repo_and_team = format!("{} (team {})", printable(&r.repository), printable(&r.team));
    line("repository", repo_and_team);
    if !who.is_empty() {
        line("pull request", who.join(", "));
    }
    if !r.approvers.is_empty() {
        line("approvers", printable(&r.approvers.join(", ")));
    }
    if !r.checks.is_empty() {
        let checks: Vec<String> = r
            .checks
            .iter()
            .map(|c| format!("{}={}", printable(&c.context), printable(&c.verdict)))
            .collect();
        line("checks", checks.join(", "));
    }
    if let Some(v) = &r.governance_commit {
        line("governance", printable(v));
    }
    match (&r.started_at, &r.finished_at) {
        (Some(s), Some(f)) => line("time", format!("{} .. {}", printable(s), printable(f))),
        (Some(s), None) => line("started", printable(s)),
        (None, Some(f)) => line("finished", printable(f)),
        (None, None) => {}
    }
    if let Some(v) = &r.message {
        line("message", printable(v));
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    environment: &'a str,
    repository: &'a str,
    entries: &'a [Entry],
    /// Records Paved made and has not written to Git yet (with `--database`).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pending: &'a [Pending],
}

/// A record waiting in Paved's notes outbox, for `commit`.
#[derive(Serialize)]
struct Pending {
    commit: String,
    #[serde(flatten)]
    record: AuditRecord,
}

fn is_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("file:")
}

/// Credentials for cloning a URL: the user's own Git credential helpers, as `git` would use
/// them. Asked once; a second request means they were refused.
fn clone_callbacks<'a>() -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut asked = false;
    callbacks.credentials(move |url, user, allowed| {
        if asked || !allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            return Err(git2::Error::from_str("no usable credentials for this URL"));
        }
        asked = true;
        let config = git2::Config::open_default()?;
        git2::Cred::credential_helper(&config, url, user)
    });
    callbacks
}

/// Clones `url` bare into `dir`: its branches and its `refs/notes/paved` (when it has one),
/// with HEAD at the remote's default branch.
fn clone_bare(url: &str, dir: &Path) -> anyhow::Result<Repository> {
    let repo = Repository::init_bare(dir)?;
    let (has_notes, default_branch) = {
        let mut remote = repo.remote_anonymous(url)?;
        let conn = remote.connect_auth(git2::Direction::Fetch, Some(clone_callbacks()), None)?;
        let heads = conn.list()?;
        let has_notes = heads.iter().any(|h| h.name() == NOTES_REF);
        let from_list = heads
            .iter()
            .find(|h| h.name() == "HEAD")
            .and_then(|h| h.symref_target().map(str::to_string));
        let default_branch = match from_list {
            Some(b) => Some(b),
            None => conn
                .default_branch()
                .ok()
                .and_then(|b| b.as_str().map(str::to_string)),
        };
        (has_notes, default_branch)
    };
    let mut specs = vec!["+refs/heads/*:refs/heads/*".to_string()];
    if has_notes {
        specs.push(format!("+{NOTES_REF}:{NOTES_REF}"));
    }
    let mut opts = git2::FetchOptions::new();
    opts.remote_callbacks(clone_callbacks());
    opts.download_tags(git2::AutotagOption::None);
    repo.remote_anonymous(url)?
        .fetch(&specs, Some(&mut opts), None)?;
    if let Some(branch) = default_branch.filter(|b| b.starts_with("refs/heads/")) {
        repo.set_head(&branch)?;
    }
    Ok(repo)
}

/// `paved audit ENV [--repo PATH_OR_URL] [--format text|json]`: exit 0 with the history,
/// 1 when the environment has none, 2 (an `Err`) on bad input or Git trouble.
///
/// `pending`: notes Paved queued and has not pushed yet, as (commit, text) (from its
/// database with `--database`); this environment's records among them are shown apart,
/// marked as not in Git yet.
pub fn run_cli(
    env: &str,
    repository: &str,
    json: bool,
    pending: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    crate::manifest::names::check_environment_name(env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _clone_dir;
    let repo = if is_url(repository) {
        let dir = tempfile::Builder::new().prefix("paved-audit-").tempdir()?;
        let repo = clone_bare(repository, dir.path())
            .map_err(|e| anyhow::anyhow!("cloning {repository}: {e:#}"))?;
        _clone_dir = dir;
        repo
    } else {
        let path = Path::new(repository);
        if !path.exists() {
            anyhow::bail!("{repository}: no such folder (and not a URL)");
        }
        let repo = Repository::discover(path)
            .map_err(|e| anyhow::anyhow!("{repository}: not a Git repository ({})", e.message()))?;
        if repo.find_reference(NOTES_REF).is_err() && repo.find_remote("origin").is_ok() {
            eprintln!(
                "paved: hint: this clone has no {NOTES_REF}, so Paved's audit records are not shown; \
                 fetch them with: git fetch origin {NOTES_REF}:{NOTES_REF}"
            );
        }
        repo
    };
    let history = history(&repo, env)?;
    let pending: Vec<Pending> = pending
        .iter()
        .flat_map(|(commit, text)| {
            super::parse(text)
                .into_iter()
                .filter(|r| r.environment == env)
                .map(|record| Pending {
                    commit: commit.clone(),
                    record,
                })
        })
        .collect();
    if history.entries.is_empty() && pending.is_empty() {
        eprintln!("paved: no history for environment {env} in {repository}");
        return Ok(ExitCode::from(1));
    }
    if json {
        let report = JsonReport {
            environment: &history.environment,
            repository,
            entries: &history.entries,
            pending: &pending,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&history, repository));
        if !pending.is_empty() {
            println!("\nNot in Git yet (waiting in Paved's notes outbox):");
            for p in &pending {
                let r = &p.record;
                println!(
                    "  commit {}  {} {}{}",
                    printable(&p.commit),
                    printable(&r.operation),
                    printable(&r.outcome),
                    r.run_id
                        .map(|id| format!(" (run {id})"))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
