//! Roles (SPEC 8), read from `.paved/platform.yaml` on a repository's default branch:
//! - a member of team T sees T's environments, requests and operation logs, and may
//!   request for T;
//! - members of the `governance.approvers` teams (platform admins) see and act on
//!   everything in the repository;
//! - `auditors` (logins and/or teams) read everything and act on nothing;
//! - service tokens read everything, in every repository;
//! - anyone else sees nothing, and cannot tell whether a thing exists.
//!
//! Team members are the logins listed under a team plus, for a team with
//! `github: org/team-slug`, the members of that GitHub team, read through
//! `GET /orgs/{org}/teams/{team_slug}/members` and cached for `api.identity_ttl`.

use super::Caller;
use crate::checks::Governance;
use crate::config::RepoFilter;
use crate::forge::Forge;
use crate::ids::{CommitSha, InstallationId, RepoName};
use crate::manifest::platform::Platform;
use crate::policy::Membership;
use crate::repo::{RepoError, Repos};
use crate::store::{KnownRepository, Store};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one caller may do in one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    /// A member of a `governance.approvers` team: sees and acts on everything.
    pub admin: bool,
    /// Named under `auditors`: reads everything, acts on nothing.
    pub auditor: bool,
    /// A service token: reads everything, acts on nothing.
    pub reader: bool,
    /// The teams the caller is a member of.
    pub teams: BTreeSet<String>,
}

impl Access {
    /// Reads everything in the repository.
    pub fn reads_all(&self) -> bool {
        self.admin || self.auditor || self.reader
    }

    /// Sees what belongs to `team`.
    pub fn sees_team(&self, team: &str) -> bool {
        self.reads_all() || self.teams.contains(team)
    }

    /// Has any role in the repository at all.
    pub fn any(&self) -> bool {
        self.reads_all() || !self.teams.is_empty()
    }

    /// May ask for changes to `team`'s environments.
    pub fn acts_for(&self, team: &str) -> bool {
        self.admin || self.teams.contains(team)
    }

    /// The names of the roles, for `GET /api/v1/me`.
    pub fn role_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.admin {
            out.push("admin".to_string());
        }
        if self.auditor {
            out.push("auditor".to_string());
        }
        if self.reader {
            out.push("reader".to_string());
        }
        out.extend(self.teams.iter().map(|t| format!("member:{t}")));
        out
    }
}

/// The roles of one repository: its platform settings and the members of the GitHub
/// teams they name.
#[derive(Debug, Clone)]
pub struct RepoRoles {
    platform: Arc<Platform>,
    /// Team name (under `teams`) → the members of its GitHub team.
    github: BTreeMap<String, Arc<Vec<String>>>,
}

impl RepoRoles {
    pub fn new(platform: Arc<Platform>, github: BTreeMap<String, Arc<Vec<String>>>) -> Self {
        RepoRoles { platform, github }
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// What `caller` may do here.
    pub fn access(&self, caller: &Caller) -> Access {
        let login = match caller {
            Caller::Service(_) => {
                return Access {
                    reader: true,
                    ..Access::default()
                }
            }
            Caller::User(login) => login.as_str(),
        };
        let teams: BTreeSet<String> = self
            .platform
            .teams
            .keys()
            .filter(|t| self.is_member(t, login))
            .cloned()
            .collect();
        let admin = self
            .platform
            .governance
            .as_ref()
            .is_some_and(|g| g.approvers.teams().iter().any(|t| teams.contains(*t)));
        let auditor = self.platform.auditors.as_ref().is_some_and(|a| {
            a.members.iter().any(|m| m.eq_ignore_ascii_case(login))
                || a.teams.iter().any(|t| teams.contains(t))
        });
        Access {
            admin,
            auditor,
            reader: false,
            teams,
        }
    }
}

impl Membership for RepoRoles {
    fn is_member(&self, team: &str, login: &str) -> bool {
        self.platform.is_member(team, login)
            || self
                .github
                .get(team)
                .is_some_and(|m| m.iter().any(|l| l.eq_ignore_ascii_case(login)))
    }
}

/// GitHub teams' members as last listed, by `org/slug` (lower case).
#[derive(Debug, Clone, Default)]
pub struct TeamSnapshot(BTreeMap<String, Arc<Vec<String>>>);

/// Team membership for the checks: `platform.yaml`'s member lists, plus for a team with
/// `github: org/slug` the members GitHub listed (a team never listed has none from
/// GitHub: membership fails closed).
pub struct WithTeams<'a> {
    pub platform: &'a Platform,
    pub teams: &'a TeamSnapshot,
}

impl Membership for WithTeams<'_> {
    fn is_member(&self, team: &str, login: &str) -> bool {
        self.platform.is_member(team, login)
            || self
                .platform
                .teams
                .get(team)
                .and_then(|t| t.github.as_deref())
                .and_then(|g| self.teams.0.get(&g.to_ascii_lowercase()))
                .is_some_and(|m| m.iter().any(|l| l.eq_ignore_ascii_case(login)))
    }
}

/// Governance last read on a repository's default branch, by commit.
#[derive(Clone)]
struct AtDefault {
    sha: CommitSha,
    governance: Arc<Governance>,
    platform: Option<Arc<Platform>>,
}

/// A GitHub team's members, and when GitHub listed them.
type Listed = (Instant, Arc<Vec<String>>);

/// Reads and caches every repository's roles (see the module documentation).
pub struct Directory {
    store: Arc<dyn Store>,
    /// The repositories Paved serves (`github.repositories`).
    filter: RepoFilter,
    repos: Arc<Repos>,
    forge: Forge,
    ttl: Duration,
    platforms: Mutex<HashMap<RepoName, AtDefault>>,
    teams: Mutex<HashMap<String, Listed>>,
}

impl Directory {
    pub fn new(
        store: Arc<dyn Store>,
        repos: Arc<Repos>,
        forge: Forge,
        ttl: Duration,
        filter: RepoFilter,
    ) -> Self {
        Directory {
            store,
            filter,
            repos,
            forge,
            ttl,
            platforms: Mutex::new(HashMap::new()),
            teams: Mutex::new(HashMap::new()),
        }
    }

    /// The roles of `repo`, from `platform.yaml` on its default branch as last fetched.
    /// `None` when Paved has not seen the repository yet, or its `platform.yaml` is missing
    /// or invalid: then only service tokens read it (nobody is known to be anyone).
    pub async fn roles(&self, repo: &RepoName) -> Option<RepoRoles> {
        let known = self.known(repo).await?;
        let platform = self.platform(&known).await?;
        let github = self.github_members(known.installation, &platform).await;
        Some(RepoRoles::new(platform, github))
    }

    /// The members of each GitHub team `platform` names, by team name. A team GitHub
    /// cannot list (an error, no access) has no members from GitHub: roles fail closed.
    pub async fn github_members(
        &self,
        installation: Option<InstallationId>,
        platform: &Platform,
    ) -> BTreeMap<String, Arc<Vec<String>>> {
        let mut out = BTreeMap::new();
        for (name, team) in &platform.teams {
            if let Some((org, slug)) = team.github_team() {
                out.insert(
                    name.clone(),
                    self.team_members(installation, org, slug).await,
                );
            }
        }
        out
    }

    /// The members of every GitHub team listed so far, by `org/slug` (lower case): for
    /// checks that run on a blocking thread, after [`Directory::github_members`] has
    /// refreshed the teams their governance names.
    pub fn teams_snapshot(&self) -> TeamSnapshot {
        let teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
        TeamSnapshot(
            teams
                .iter()
                .map(|(k, (_, m))| (k.clone(), m.clone()))
                .collect(),
        )
    }

    async fn team_members(
        &self,
        installation: Option<InstallationId>,
        org: &str,
        slug: &str,
    ) -> Arc<Vec<String>> {
        let key = format!("{org}/{slug}").to_ascii_lowercase();
        let cached = {
            let teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
            teams.get(&key).cloned()
        };
        if let Some((at, members)) = &cached {
            if at.elapsed() < self.ttl {
                return members.clone();
            }
        }
        let listed = match self.forge.client(installation) {
            Ok(gh) => gh.team_members(org, slug).await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(members) => {
                let members = Arc::new(members);
                let mut teams = self.teams.lock().unwrap_or_else(|p| p.into_inner());
                teams.insert(key, (Instant::now(), members.clone()));
                members
            }
            Err(e) => {
                tracing::warn!(team = %key, error = %e, "listing a GitHub team's members failed");
                Arc::new(Vec::new())
            }
        }
    }

    async fn platform(&self, known: &KnownRepository) -> Option<Arc<Platform>> {
        self.at_default(known).await.and_then(|d| d.platform)
    }

    /// The repositories Paved serves that it knows of: those it had deliveries from, and
    /// those `github.repositories` names without a glob.
    pub async fn served(&self) -> Vec<RepoName> {
        let mut out: Vec<RepoName> = match self.store.repositories().await {
            Ok(r) => r.into_iter().map(|k| k.repo).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing repositories failed");
                Vec::new()
            }
        };
        for name in self.filter.literal_names() {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out.sort_by_key(|r| r.to_string());
        out
    }

    /// What Paved knows of `repo`: from its last delivery, or, for a repository that
    /// `github.repositories` names literally but has sent no delivery yet, from
    /// `GET /repos/{owner}/{repo}` (with the configured token; a GitHub App needs a
    /// delivery first, which names its installation). A name that only matches a glob is
    /// never looked up: anyone could otherwise make Paved ask GitHub about, and mirror,
    /// `acme/<anything>`, and learn from the answer whether it exists (issue 19, item 5).
    pub async fn known(&self, repo: &RepoName) -> Option<KnownRepository> {
        match self.store.repository(repo).await {
            Ok(Some(k)) => return Some(k),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading a repository's record failed");
                return None;
            }
        }
        if !self.filter.literal_names().contains(repo) || self.forge.is_app() {
            return None;
        }
        let facts = self.forge.client(None).ok()?.repository(repo).await;
        match facts {
            Ok(f) => {
                let known = KnownRepository {
                    repo: repo.clone(),
                    default_branch: f.default_branch,
                    clone_url: f.clone_url,
                    installation: None,
                };
                if let Err(e) = self.store.note_repository(&known).await {
                    tracing::warn!(error = %e, "recording a repository failed");
                }
                Some(known)
            }
            Err(e) => {
                tracing::warn!(repo = %repo, error = %e, "GitHub could not describe a served repository");
                None
            }
        }
    }

    /// Governance (platform, catalog) on `repo`'s default branch as last fetched, with the
    /// repository's record; `None` when Paved has not seen the repository or its mirror.
    pub async fn governance(&self, repo: &RepoName) -> Option<(KnownRepository, Arc<Governance>)> {
        let known = self.known(repo).await?;
        let at = self.at_default(&known).await?;
        Some((known, at.governance))
    }

    /// What the default branch holds, read again only when it moved.
    async fn at_default(&self, known: &KnownRepository) -> Option<AtDefault> {
        let cached = {
            let p = self.platforms.lock().unwrap_or_else(|p| p.into_inner());
            p.get(&known.repo).cloned()
        };
        let branch = known.default_branch.clone();
        let default_ref = format!("refs/remotes/origin/{branch}");
        let present = {
            let default_ref = default_ref.clone();
            self.repos
                .read(&known.repo, move |m| -> Result<bool, RepoError> {
                    Ok(m.resolve(&default_ref).is_some())
                })
                .await
                .unwrap_or(false)
        };
        if !present {
            // Never fetched (no delivery handled yet): fetch the default branch once.
            let spec = format!("+refs/heads/{branch}:{default_ref}");
            let fetched = self
                .repos
                .with_remote(
                    &known.repo,
                    &known.clone_url,
                    known.installation,
                    move |s| s.mirror.fetch(&s.url, &[spec], s.token.as_ref()),
                )
                .await;
            if let Err(e) = fetched {
                tracing::warn!(repo = %known.repo, error = %e, "fetching the default branch for roles failed");
            }
        }
        let read = self
            .repos
            .read(
                &known.repo,
                move |m| -> Result<Option<AtDefault>, RepoError> {
                    let Some(sha) = m.resolve(&format!("refs/remotes/origin/{branch}")) else {
                        return Ok(None);
                    };
                    if let Some(c) = cached.filter(|c| c.sha == sha) {
                        return Ok(Some(c));
                    }
                    let tree = m.tree_at(&sha)?;
                    let governance = Arc::new(Governance::load(&tree));
                    let platform = governance.platform().cloned().map(Arc::new);
                    Ok(Some(AtDefault {
                        sha,
                        governance,
                        platform,
                    }))
                },
            )
            .await;
        match read {
            Ok(Some(at)) => {
                let mut p = self.platforms.lock().unwrap_or_else(|p| p.into_inner());
                p.insert(known.repo.clone(), at.clone());
                Some(at)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(repo = %known.repo, error = %e, "reading the default branch's governance failed");
                None
            }
        }
    }
}
