//! The emulator's state.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

#[derive(Default)]
pub(crate) struct World {
    pub(crate) next_id: u64,
    pub(crate) repos: BTreeMap<String, RepoState>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) faults: VecDeque<(usize, Fault)>,
    pub(crate) tokens: Vec<InstallationToken>,
    pub(crate) git_requests: Vec<GitRequest>,
    /// Personal or OAuth user tokens → the login they belong to (`GET /user`).
    pub(crate) user_tokens: BTreeMap<String, String>,
    /// `org/team-slug` → member logins (`GET /orgs/{org}/teams/{team_slug}/members`).
    pub(crate) teams: BTreeMap<String, Vec<String>>,
    /// OAuth apps: `client_id` → `client_secret`.
    pub(crate) oauth_apps: BTreeMap<String, String>,
    /// Who authorizes OAuth sign-ins.
    pub(crate) oauth_user: Option<String>,
    /// Codes issued by `/login/oauth/authorize`, not yet exchanged.
    pub(crate) oauth_codes: BTreeMap<String, crate::oauth::OauthCode>,
    /// Codes of the App manifest flow, not yet converted.
    pub(crate) manifest_codes: BTreeMap<String, crate::apps::PendingManifest>,
    /// Apps made through the manifest flow.
    pub(crate) apps: Vec<crate::apps::CreatedApp>,
}

pub(crate) struct RepoState {
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) id: u64,
    pub(crate) meta: Value,
    pub(crate) refs: BTreeMap<String, String>,
    pub(crate) statuses: BTreeMap<String, Vec<Status>>,
    pub(crate) comments: Vec<Comment>,
    pub(crate) check_runs: Vec<CheckRun>,
    pub(crate) deployments: Vec<Deployment>,
    pub(crate) pulls: BTreeMap<u64, Value>,
    pub(crate) pull_files: BTreeMap<u64, Vec<Value>>,
    pub(crate) reviews: BTreeMap<u64, Vec<Value>>,
    pub(crate) contents: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Issues opened through the API, by number (shared with pull requests).
    pub(crate) issues: BTreeMap<u64, Value>,
    /// Labels on issues and pull requests, by number.
    pub(crate) labels: BTreeMap<u64, Vec<String>>,
    /// Collaborators' permissions (`admin`, `maintain`, `write`, `triage`, `read`).
    pub(crate) collaborators: BTreeMap<String, String>,
}

impl RepoState {
    /// The next issue or pull request number: they share one sequence.
    pub(crate) fn next_number(&self) -> u64 {
        let last = |m: &BTreeMap<u64, Value>| m.keys().max().copied().unwrap_or(0);
        last(&self.pulls).max(last(&self.issues)) + 1
    }
}

pub(crate) fn repo_key(owner: &str, name: &str) -> String {
    format!("{}/{}", owner.to_lowercase(), name.to_lowercase())
}

/// `split_repo` for the test-setup helpers, which panic on misuse.
pub(crate) fn setup_repo(full: &str) -> (&str, &str) {
    split_repo(full).unwrap_or_else(|e| panic!("{e:#}"))
}

pub(crate) fn split_repo(full: &str) -> anyhow::Result<(&str, &str)> {
    match full.split_once('/') {
        Some((o, n)) if !o.is_empty() && !n.is_empty() && !n.contains('/') => Ok((o, n)),
        _ => Err(anyhow!("repository must be \"owner/name\", got {full:?}")),
    }
}

impl World {
    pub(crate) fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn repo(&self, full: &str) -> Option<&RepoState> {
        let (o, n) = split_repo(full).ok()?;
        self.repos.get(&repo_key(o, n))
    }

    pub(crate) fn repo_mut(&mut self, owner: &str, name: &str) -> &mut RepoState {
        let World { repos, next_id, .. } = self;
        repos.entry(repo_key(owner, name)).or_insert_with(|| {
            *next_id += 1;
            RepoState {
                owner: owner.to_string(),
                name: name.to_string(),
                id: *next_id + 1_296_000,
                meta: json!({}),
                refs: BTreeMap::new(),
                statuses: BTreeMap::new(),
                comments: Vec::new(),
                check_runs: Vec::new(),
                deployments: Vec::new(),
                pulls: BTreeMap::new(),
                pull_files: BTreeMap::new(),
                reviews: BTreeMap::new(),
                contents: BTreeMap::new(),
                issues: BTreeMap::new(),
                labels: BTreeMap::new(),
                collaborators: BTreeMap::new(),
            }
        })
    }

    pub(crate) fn take_fault(&mut self, operation_id: Option<&str>) -> Option<Fault> {
        let idx = self
            .faults
            .iter()
            .position(|(_, f)| match &f.operation_id {
                Some(id) => Some(id.as_str()) == operation_id,
                None => true,
            })?;
        let (remaining, fault) = self.faults.get_mut(idx)?;
        let fault = fault.clone();
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.remove(idx);
        }
        Some(fault)
    }
}

pub(crate) fn latest_by_context(statuses: &[Status]) -> BTreeMap<String, Status> {
    // Contexts are case-insensitive on GitHub; the key is the latest status's spelling.
    let mut latest: BTreeMap<String, &Status> = BTreeMap::new();
    for s in statuses {
        latest.insert(s.context.to_lowercase(), s);
    }
    latest
        .into_values()
        .map(|s| (s.context.clone(), s.clone()))
        .collect()
}

/// GitHub's combined state: `failure` if any latest status is `error` or `failure`,
/// `pending` if there are none or any is `pending`, else `success`.
pub fn combined_state<'a>(latest: impl IntoIterator<Item = &'a Status>) -> &'static str {
    let mut any = false;
    let mut pending = false;
    for s in latest {
        any = true;
        match s.state.as_str() {
            "error" | "failure" => return "failure",
            "pending" => pending = true,
            _ => {}
        }
    }
    if !any || pending {
        "pending"
    } else {
        "success"
    }
}
