//! The Orchestrator (SPEC 9): a request becomes the same governed pull request a person
//! would open. Pre-flight runs the PR's checks against the default branch with the change
//! applied (a refusal lists every error with its file and field, and nothing is written);
//! then the manifest change is committed on a new branch `paved/requests/<name>-<random>` with
//! Git (committer Paved, `Requested-by:` trailer), pushed with the installation's or the
//! configured token, and the pull request is opened through GitHub's API. From there the
//! PR is governed like any other; the requester counts as its author while its head is the
//! commit Paved pushed ([`crate::handlers`]' `with_requester`).

mod overlay;

use crate::checks::{Change, ChangeKind, CheckKind, PrContext};
use crate::forge::Forge;
use crate::identity::{Access, Caller, Directory, WithTeams};
use crate::ids::{CommitSha, EnvName, Login, RepoName, TeamName};
use crate::manifest::names;
use crate::repo::{RepoError, Repos};
use crate::store::{KnownRepository, NewRequest, RequestRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a request asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RequestAction {
    /// A new environment (its manifest added).
    Create,
    /// New parameters, type, template, tags or expiry.
    Update,
    /// A later `expiresAt`, nothing else.
    Extend,
    /// The environment torn down (its manifest deleted).
    Delete,
}

impl RequestAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestAction::Create => "create",
            RequestAction::Update => "update",
            RequestAction::Extend => "extend",
            RequestAction::Delete => "delete",
        }
    }

    /// The action a form or a command line names.
    pub fn parse(s: &str) -> Option<RequestAction> {
        [
            RequestAction::Create,
            RequestAction::Update,
            RequestAction::Extend,
            RequestAction::Delete,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for RequestAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /api/v1/requests`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequestBody {
    /// `owner/name` of the environments repository.
    pub repository: String,
    pub action: RequestAction,
    /// The environment's name (`metadata.name`).
    pub environment: String,
    /// The owning team (required for `create`).
    #[serde(default)]
    pub team: Option<String>,
    /// The environment type (`create`; `update` may change it).
    #[serde(default, rename = "type")]
    pub env_type: Option<String>,
    /// The catalog definition (`create`; `update` may change it).
    #[serde(default)]
    pub template: Option<String>,
    /// Parameters (`create`; `update` replaces the ones given).
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// RFC 3339 (`extend` needs it; `create` when the type has a `maxTtl`).
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// One reason a request was refused before anything was written.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Problem {
    pub file: String,
    pub field: Option<String>,
    pub line: Option<usize>,
    pub message: String,
    /// The check that found it (`paved/schema`, `paved/policy`, …).
    pub check: String,
}

/// Why a request was not opened. Nothing was pushed and no pull request was opened.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Not what the API allows (a field's format): 400.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but not a request that can be made (a field the action needs is
    /// missing, or one it cannot take): 422.
    #[error("{0}")]
    Unusable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        message: String,
        pull_request: Option<String>,
    },
    #[error("the request fails the checks")]
    Unprocessable(Vec<Problem>),
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for RequestError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "request: the store failed");
        RequestError::Unavailable("database unavailable".into())
    }
}

/// A request whose pull request is open.
#[derive(Debug, Clone, Serialize)]
pub struct Opened {
    pub id: i64,
    pub branch: String,
    pub pull_request: u64,
    pub pull_request_url: String,
}

/// Where a request stands (`GET /api/v1/requests/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum RequestState {
    /// Its pull request is open and its checks are not all in.
    #[serde(rename = "open")]
    Open,
    #[serde(rename = "checks failed")]
    ChecksFailed,
    /// Every check passes but `paved/approval`.
    #[serde(rename = "awaiting approval")]
    AwaitingApproval,
    /// Every check passes: it may be merged.
    #[serde(rename = "ready")]
    Ready,
    /// Merged; no operation is recorded yet.
    #[serde(rename = "merged")]
    Merged,
    #[serde(rename = "provisioning")]
    Provisioning,
    #[serde(rename = "succeeded")]
    Succeeded,
    #[serde(rename = "failed")]
    Failed,
    /// Its pull request was closed unmerged (or never opened).
    #[serde(rename = "abandoned")]
    Abandoned,
}

/// A pull request, by number and web address.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PullRequestLink {
    pub number: u64,
    pub url: String,
}

/// An operation the request's merge started.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OperationSummary {
    pub id: crate::ids::OperationId,
    pub kind: crate::store::OpKind,
    pub state: crate::store::OpState,
}

/// A request and where it stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestStatus {
    pub id: i64,
    pub repository: String,
    pub action: String,
    pub environment: String,
    pub team: String,
    pub requester: String,
    pub branch: String,
    pub state: RequestState,
    pub pull_request: Option<PullRequestLink>,
    /// The `paved/*` statuses of the open pull request's head.
    pub verdicts: Vec<crate::forge::people::CommitStatus>,
    pub operations: Vec<OperationSummary>,
}

pub struct Orchestrator {
    pub store: Arc<dyn Store>,
    pub repos: Arc<Repos>,
    pub forge: Forge,
    pub directory: Arc<Directory>,
    /// The lifecycle's clock: `expiresAt` is judged by it, as at merge.
    pub clock: crate::clock::Clock,
    /// The deploy identities the server defines (the pre-flight checks them as the PR's
    /// checks will).
    pub identities: std::collections::BTreeSet<String>,
}

/// What the default branch holds for the environment, after a fetch.
struct Current {
    tip: CommitSha,
    /// `(path, text)` of the environment's manifest, when it exists.
    existing: Option<(String, String)>,
}

impl Orchestrator {
    /// Checks and opens a request (see the module documentation).
    pub async fn open(
        &self,
        caller: &Caller,
        access: &Access,
        body: RequestBody,
    ) -> Result<Opened, RequestError> {
        let Some(login) = caller.login() else {
            return Err(RequestError::Forbidden(
                "service tokens read; only people ask for environments".into(),
            ));
        };
        let repo = RepoName::parse(&body.repository)
            .map_err(|_| RequestError::BadRequest("repository: write owner/name".into()))?;
        names::check_environment_name(&body.environment)
            .map_err(|e| RequestError::BadRequest(format!("environment: {e}")))?;
        // A repository Paved does not serve and one where the caller has no role are
        // answered alike: a stranger learns nothing of which repositories exist.
        let unknown = || {
            RequestError::NotFound(format!(
                "no repository {repo} where you may ask for environments"
            ))
        };
        if !access.admin && access.teams.is_empty() {
            return Err(unknown());
        }
        let known = self.directory.known(&repo).await.ok_or_else(unknown)?;
        // Who may ask is settled before anything about the environment is looked at, so a
        // refusal says nothing of whether it exists.
        let forbidden = |team: &str| {
            RequestError::Forbidden(format!(
                "you are not a member of team {team} (nor a platform admin): you may not ask for its environments"
            ))
        };
        if let Some(team) = &body.team {
            if !access.acts_for(team) {
                return Err(forbidden(team));
            }
        }
        let current = self.current(&known, &body.environment).await?;
        if let Some((path, _)) = &current.existing {
            // Another team's environment is answered as a missing one.
            let owner = names::parse_manifest_path(path)
                .map(|m| m.team.to_string())
                .unwrap_or_default();
            if body.action != RequestAction::Create && !access.acts_for(&owner) {
                return Err(RequestError::NotFound(format!(
                    "no environment {} on the default branch",
                    body.environment
                )));
            }
        }
        let (team, path) = self.target(&body, current.existing.as_ref())?;
        if !access.acts_for(&team) {
            return Err(forbidden(&team));
        }
        let content = content_of(&body, login, &team, current.existing.as_ref())?;
        let kind = match (body.action, &current.existing) {
            (RequestAction::Create, _) => ChangeKind::Added,
            (RequestAction::Delete, _) => ChangeKind::Deleted,
            _ => ChangeKind::Modified,
        };
        let problems = self
            .preflight(&known, &current.tip, &path, content.clone(), kind, login)
            .await?;
        if !problems.is_empty() {
            return Err(RequestError::Unprocessable(problems));
        }
        self.write(&known, &body, login, &team, &path, content, &current.tip)
            .await
    }

    /// Fetches the default branch and finds the environment's manifest on it.
    async fn current(&self, known: &KnownRepository, name: &str) -> Result<Current, RequestError> {
        let name = name.to_string();
        self.repos
            .with_branch(
                &known.repo,
                &known.clone_url,
                known.installation,
                &known.default_branch,
                move |mirror, tip| -> Result<Current, RepoError> {
                    let tree = mirror.tree_at(tip)?;
                    let mut existing = None;
                    use crate::tree::TreeReader as _;
                    for team in tree.list("environments").unwrap_or_default() {
                        let path = format!("environments/{team}/{name}.yaml");
                        if let Ok(Some(bytes)) = tree.read(&path) {
                            existing = Some((path, String::from_utf8_lossy(&bytes).into_owned()));
                            break;
                        }
                    }
                    Ok(Current {
                        tip: tip.clone(),
                        existing,
                    })
                },
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "request: reading the default branch failed");
                RequestError::Unavailable("the repository could not be fetched; try again".into())
            })
    }

    /// The team and manifest path the request is about.
    fn target(
        &self,
        body: &RequestBody,
        existing: Option<&(String, String)>,
    ) -> Result<(String, String), RequestError> {
        let name = &body.environment;
        match (body.action, existing) {
            (RequestAction::Create, Some(_)) => Err(RequestError::Conflict {
                message: format!(
                    "an environment named {name} already exists: choose another name, or ask to update it"
                ),
                pull_request: None,
            }),
            (RequestAction::Create, None) => {
                let team = body.team.clone().ok_or_else(|| {
                    RequestError::Unusable("team: required to create an environment".into())
                })?;
                names::check_team_name(&team)
                    .map_err(|e| RequestError::BadRequest(format!("team: {e}")))?;
                Ok((team.clone(), format!("environments/{team}/{name}.yaml")))
            }
            (_, None) => Err(RequestError::NotFound(format!(
                "no environment {name} on the default branch"
            ))),
            (_, Some((path, _))) => {
                let team = names::parse_manifest_path(path)
                    .map(|m| m.team.to_string())
                    .map_err(RequestError::Unusable)?;
                if body.team.as_deref().is_some_and(|t| t != team) {
                    return Err(RequestError::Unusable(format!(
                        "team: {name} belongs to team {team}; a request cannot move it"
                    )));
                }
                Ok((team, path.clone()))
            }
        }
    }

    /// Runs the PR's checks on the default branch with the change applied. Approvals are
    /// left out: they come on the pull request.
    async fn preflight(
        &self,
        known: &KnownRepository,
        tip: &CommitSha,
        path: &str,
        content: Option<Vec<u8>>,
        kind: ChangeKind,
        login: &str,
    ) -> Result<Vec<Problem>, RequestError> {
        let files = BTreeMap::from([(path.to_string(), content)]);
        let changes = vec![Change {
            path: path.to_string(),
            kind,
        }];
        self.preflight_files(known, tip, files, changes, login)
            .await
    }

    /// Runs the PR's checks on the default branch at `tip` with `files` changed (`changes`
    /// names the manifests among them and how), as `login`'s pull request. Approvals are left
    /// out: they come on the pull request.
    pub async fn preflight_files(
        &self,
        known: &KnownRepository,
        tip: &CommitSha,
        files: BTreeMap<String, Option<Vec<u8>>>,
        changes: Vec<Change>,
        login: &str,
    ) -> Result<Vec<Problem>, RequestError> {
        let Some((_, governance)) = self.directory.governance(&known.repo).await else {
            return Err(RequestError::Unavailable(
                "the repository's governance could not be read".into(),
            ));
        };
        if let Some(p) = governance.platform() {
            self.directory.github_members(known.installation, p).await;
        }
        let teams = self.directory.teams_snapshot();
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in self.store.environments(Some(&known.repo)).await? {
            if e.state.is_live() {
                live.entry(e.team.to_string())
                    .or_default()
                    .insert(e.name.to_string());
            }
        }
        let ctx = PrContext {
            author: login.to_string(),
            approvers: Vec::new(),
            live,
            reviews: Vec::new(),
            head_sha: None,
            identities: Some(self.identities.clone()),
            previews: None,
        };
        let tip = tip.clone();
        let now = self.clock.now();
        self.repos
            .read(&known.repo, move |m| -> Result<Vec<Problem>, RepoError> {
                let base = m.tree_at(&tip)?;
                let head = overlay::Overlay { base: &base, files };
                let report = match governance.platform() {
                    Some(platform) => crate::checks::evaluate_with_membership(
                        &governance,
                        &head,
                        &base,
                        &changes,
                        &ctx,
                        now,
                        &WithTeams {
                            platform,
                            teams: &teams,
                        },
                    ),
                    None => {
                        crate::checks::evaluate_at(&governance, &head, &base, &changes, &ctx, now)
                    }
                };
                let mut out = Vec::new();
                for env in &report.environments {
                    for o in env.checks.iter().filter(|o| o.check != CheckKind::Approval) {
                        out.extend(o.errors.iter().map(|d| Problem {
                            file: d.file.clone(),
                            field: d.field.clone(),
                            line: d.line,
                            message: d.message.clone(),
                            check: o.check.context().to_string(),
                        }));
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "request: pre-flight failed to read the repository");
                RequestError::Unavailable("the repository could not be read; try again".into())
            })
    }

    /// Records the request, pushes its branch and opens its pull request.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        known: &KnownRepository,
        body: &RequestBody,
        login: &str,
        team: &str,
        path: &str,
        content: Option<Vec<u8>>,
        tip: &CommitSha,
    ) -> Result<Opened, RequestError> {
        let name = &body.environment;
        // A name no one can guess, so no one can push it first (SPEC 12).
        let branch = crate::repo::unguessable_branch("requests", name);
        // Each was checked before (the parameters' rules, the team's, the caller's
        // identity); typed here, where they enter the store.
        let bad = |e: crate::ids::NameError| RequestError::BadRequest(e.to_string());
        let new = NewRequest {
            repo: known.repo.clone(),
            action: body.action.to_string(),
            env_name: EnvName::parse(name).map_err(bad)?,
            team: TeamName::parse(team).map_err(bad)?,
            requester: Login::parse(login).map_err(bad)?,
            branch: branch.clone(),
            manifest_path: path.to_string(),
        };
        let Some(id) = self.store.open_request(&new).await? else {
            let other = self.store.open_request_for(&known.repo, name).await?;
            return Err(RequestError::Conflict {
                message: format!("{name} already has an open request; wait for its pull request to be merged or closed"),
                pull_request: other.and_then(|o| o.pr_url),
            });
        };
        let message = format!(
            "{} environment {team}/{name}\n\nAsked for through Paved (request {id}).\n\nRequested-by: {login}\n",
            capitalised(body.action.as_str())
        );
        let pushed = {
            let (branch, path, tip) = (branch.clone(), path.to_string(), tip.clone());
            self.repos
                .with_remote(
                    &known.repo,
                    &known.clone_url,
                    known.installation,
                    move |s| {
                        s.mirror.commit_and_push_branch(
                            &s.url,
                            s.token.as_ref(),
                            &crate::repo::BranchChange {
                                base: &tip,
                                branch: &branch,
                                path: &path,
                                content: content.as_deref(),
                                message: &message,
                            },
                        )
                    },
                )
                .await
        };
        let head = match pushed {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(error = %e, "request: pushing its branch failed");
                self.store.close_request(id).await?;
                return Err(RequestError::Unavailable(
                    "the request's branch could not be pushed; try again".into(),
                ));
            }
        };
        // The requester is the pull request's author only while its head is this commit.
        self.store.set_request_head(id, head.as_str()).await?;
        let title = format!(
            "{} {team}/{name} (requested by @{login})",
            capitalised(body.action.as_str())
        );
        let text = format!(
            "Opened by Paved for @{login} (request {id}): {} `{path}`.\n\nThe checks, approvals and merge work as for any pull request; @{login} counts as its author.\n",
            body.action
        );
        let opened = match self.forge.client(known.installation) {
            Ok(gh) => {
                gh.create_pull(&known.repo, &branch, &known.default_branch, &title, &text)
                    .await
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(pull) => {
                self.store
                    .set_request_pr(id, pull.number, &pull.html_url)
                    .await?;
                Ok(Opened {
                    id,
                    branch,
                    pull_request: pull.number,
                    pull_request_url: pull.html_url,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "request: opening its pull request failed");
                self.store.close_request(id).await?;
                Err(RequestError::Unavailable(format!(
                    "the branch {branch} was pushed but the pull request could not be opened: {e}"
                )))
            }
        }
    }

    /// Where a request stands: `open` → `checks failed` | `awaiting approval` | `ready` →
    /// `merged` → `provisioning` → `succeeded` | `failed`, or `abandoned`.
    pub async fn status(&self, req: &RequestRecord) -> Result<RequestStatus, RequestError> {
        let repo = req.repo.clone();
        let known = self.store.repository(&repo).await?;
        let mut verdicts = Vec::new();
        let mut operations = Vec::new();
        let state = match (req.pr_number, known) {
            (None, _) | (_, None) => RequestState::Abandoned,
            (Some(n), Some(known)) => {
                let gh = self
                    .forge
                    .client(known.installation)
                    .map_err(|e| RequestError::Unavailable(e.to_string()))?;
                let pull = gh
                    .get_pull(&repo, crate::ids::PrNumber(n))
                    .await
                    .map_err(|e| RequestError::Unavailable(format!("GitHub: {e}")))?;
                let merged = pull["merged"].as_bool().unwrap_or(false);
                if (merged || pull["state"] == "closed") && req.open {
                    // Its merge (or closing) event may not have been handled yet.
                    self.store.close_request(req.id).await?;
                }
                if merged {
                    let sha = pull["merge_commit_sha"].as_str().unwrap_or_default();
                    let ops = match CommitSha::parse(sha) {
                        Ok(sha) => self.store.operations_for_merge(&repo, &sha).await?,
                        Err(_) => Vec::new(),
                    };
                    let ops: Vec<_> = ops
                        .into_iter()
                        .filter(|o| o.op.env_name == req.env_name)
                        .collect();
                    for o in &ops {
                        operations.push(OperationSummary {
                            id: o.id,
                            kind: o.op.kind,
                            state: o.state,
                        });
                    }
                    state_after_merge(&ops)
                } else if pull["state"] == "closed" {
                    RequestState::Abandoned
                } else {
                    let head = pull["head"]["sha"].as_str().unwrap_or_default().to_string();
                    let statuses = gh
                        .commit_statuses(&repo, &head)
                        .await
                        .map_err(|e| RequestError::Unavailable(format!("GitHub: {e}")))?;
                    let paved: Vec<_> = statuses
                        .into_iter()
                        .filter(|s| s.context.starts_with("paved/"))
                        .collect();
                    let state = state_while_open(&paved);
                    verdicts = paved;
                    state
                }
            }
        };
        Ok(RequestStatus {
            id: req.id,
            repository: req.repo.to_string(),
            action: req.action.clone(),
            environment: req.env_name.to_string(),
            team: req.team.to_string(),
            requester: req.requester.to_string(),
            branch: req.branch_name(),
            state,
            pull_request: req.pr_number.map(|number| PullRequestLink {
                number,
                url: req.pr_url.clone().unwrap_or_default(),
            }),
            verdicts,
            operations,
        })
    }
}

/// The state of an open pull request from its `paved/*` statuses.
fn state_while_open(statuses: &[crate::forge::people::CommitStatus]) -> RequestState {
    if statuses.is_empty() || statuses.iter().any(|s| s.state == "pending") {
        return RequestState::Open;
    }
    let failing: Vec<&str> = statuses
        .iter()
        .filter(|s| s.state != "success")
        .map(|s| s.context.as_str())
        .collect();
    match failing.as_slice() {
        [] => RequestState::Ready,
        only if only.iter().all(|c| *c == "paved/approval") => RequestState::AwaitingApproval,
        _ => RequestState::ChecksFailed,
    }
}

/// The state after the merge, from the environment's operations on the merge commit.
fn state_after_merge(ops: &[crate::store::OperationRecord]) -> RequestState {
    use crate::store::OpState;
    let Some(last) = ops.iter().max_by_key(|o| o.id.0) else {
        return RequestState::Merged;
    };
    match last.state {
        OpState::Succeeded => RequestState::Succeeded,
        OpState::Planned | OpState::Running => RequestState::Provisioning,
        _ => RequestState::Failed,
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The manifest the request leaves (`None`: deleted).
fn content_of(
    body: &RequestBody,
    login: &str,
    team: &str,
    existing: Option<&(String, String)>,
) -> Result<Option<Vec<u8>>, RequestError> {
    match (body.action, existing) {
        (RequestAction::Delete, _) => Ok(None),
        (RequestAction::Create, _) => yaml_bytes(&new_manifest(body, login, team)?),
        (_, None) => Err(RequestError::NotFound(format!(
            "no environment {} on the default branch",
            body.environment
        ))),
        (_, Some((path, text))) => yaml_bytes(&edited_manifest(body, path, text)?),
    }
}

fn key(k: &str) -> serde_yaml::Value {
    serde_yaml::Value::String(k.to_string())
}

fn json_to_yaml(v: &serde_json::Value) -> Result<serde_yaml::Value, RequestError> {
    serde_yaml::to_value(v).map_err(|e| RequestError::Unusable(e.to_string()))
}

/// A new manifest: `metadata` (name, team, the requester as owner) and `spec` from the body.
fn new_manifest(
    body: &RequestBody,
    login: &str,
    team: &str,
) -> Result<serde_yaml::Value, RequestError> {
    use serde_yaml::{Mapping, Value};
    let mut metadata = Mapping::new();
    metadata.insert(key("name"), key(&body.environment));
    metadata.insert(key("team"), key(team));
    metadata.insert(key("owner"), key(login));
    let mut spec = Mapping::new();
    if let Some(t) = &body.env_type {
        spec.insert(key("type"), key(t));
    }
    if let Some(t) = &body.template {
        spec.insert(key("definition"), key(t));
    }
    if let Some(p) = &body.parameters {
        spec.insert(
            key("parameters"),
            json_to_yaml(&serde_json::Value::Object(p.clone()))?,
        );
    }
    if let Some(x) = &body.expires_at {
        spec.insert(key("expiresAt"), key(x));
    }
    if let Some(tags) = &body.tags {
        spec.insert(
            key("tags"),
            json_to_yaml(&serde_json::to_value(tags).unwrap_or_default())?,
        );
    }
    let mut doc = Mapping::new();
    doc.insert(key("apiVersion"), key("paved/v1"));
    doc.insert(key("kind"), key("Environment"));
    doc.insert(key("metadata"), Value::Mapping(metadata));
    doc.insert(key("spec"), Value::Mapping(spec));
    Ok(Value::Mapping(doc))
}

/// The manifest on the default branch (`path`, `text`) with the body's changes: `extend`
/// moves `expiresAt` only; `update` sets what the body gives, merging parameters.
fn edited_manifest(
    body: &RequestBody,
    path: &str,
    text: &str,
) -> Result<serde_yaml::Value, RequestError> {
    use serde_yaml::{Mapping, Value};
    let mut doc: Value = serde_yaml::from_str(text).map_err(|e| {
        RequestError::Unprocessable(vec![Problem {
            file: path.to_string(),
            field: None,
            line: e.location().map(|l| l.line()),
            message: format!("the manifest on the default branch does not parse: {e}"),
            check: "paved/schema".into(),
        }])
    })?;
    let spec = doc
        .get_mut("spec")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| RequestError::Unusable(format!("{path}: no spec")))?;
    if body.action == RequestAction::Extend {
        let Some(x) = &body.expires_at else {
            return Err(RequestError::Unusable(
                "expiresAt: required to extend an environment".into(),
            ));
        };
        if body.parameters.is_some()
            || body.env_type.is_some()
            || body.template.is_some()
            || body.tags.is_some()
        {
            return Err(RequestError::Unusable(
                "extend only moves expiresAt: ask to update for anything else".into(),
            ));
        }
        spec.insert(key("expiresAt"), key(x));
        return Ok(doc);
    }
    if let Some(t) = &body.env_type {
        spec.insert(key("type"), key(t));
    }
    if let Some(t) = &body.template {
        spec.insert(key("definition"), key(t));
    }
    if let Some(p) = &body.parameters {
        let params = spec
            .entry(key("parameters"))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if let Some(m) = params.as_mapping_mut() {
            for (k, v) in p {
                m.insert(key(k), json_to_yaml(v)?);
            }
        }
    }
    if let Some(x) = &body.expires_at {
        spec.insert(key("expiresAt"), key(x));
    }
    if let Some(tags) = &body.tags {
        spec.insert(
            key("tags"),
            json_to_yaml(&serde_json::to_value(tags).unwrap_or_default())?,
        );
    }
    Ok(doc)
}

fn yaml_bytes(v: &serde_yaml::Value) -> Result<Option<Vec<u8>>, RequestError> {
    serde_yaml::to_string(v)
        .map(|s| Some(s.into_bytes()))
        .map_err(|e| RequestError::Unusable(e.to_string()))
}
