//! The pages that show: my environments, an environment, a request. Each reads through
//! the API's state as the signed-in user, so it shows what the API would answer them.

use super::session::Session;
use super::{html, sign_in_page, Chrome, PortalState};
use crate::api::answers::{RequestAnswer, RequestLinks};
use crate::identity::Caller;
use crate::ids::RepoName;
use crate::orchestrator::RequestState;
use crate::store::{EnvironmentRecord, OperationRecord};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::collections::BTreeMap;

#[derive(Template)]
#[template(path = "portal/signin.html")]
pub(super) struct SignIn {
    pub chrome: Chrome,
    pub configured: bool,
    pub next: String,
    pub callback: String,
}

pub(crate) struct Row {
    pub name: String,
    /// `expiresAt` on the default branch: (UTC, "in 3 days").
    pub expires: Option<(String, String)>,
    /// The state of its last operation.
    pub last_operation: Option<String>,
    pub href: String,
    pub state: String,
    pub env_type: String,
    pub template: String,
    pub links: Vec<(String, String)>,
    /// The `url` output when it is no web address: shown as text, never linked.
    pub url_text: Option<String>,
}

pub(crate) struct Group {
    pub repository: String,
    pub team: String,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "portal/environments.html")]
struct EnvironmentsPage {
    chrome: Chrome,
    /// A platform admin of a repository: the Operations page is theirs.
    admin: bool,
    teams: Vec<String>,
    filter_team: Option<String>,
    filter_q: String,
    filtered: bool,
    groups: Vec<Group>,
}

#[derive(serde::Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    q: Option<String>,
}

/// A page that says it is not there (the same for hidden and missing things).
pub(crate) fn not_found(sess: &Session, what: &str) -> Response {
    super::refused(
        Some(sess),
        StatusCode::NOT_FOUND,
        &format!("No such {what}."),
    )
}

fn unavailable(sess: &Session) -> Response {
    super::refused(
        Some(sess),
        StatusCode::SERVICE_UNAVAILABLE,
        "Paved cannot read its database or GitHub just now: try again in a moment.",
    )
}

/// The last segment of an entity id (`team:o/r/payments` → `payments`).
fn last_segment(id: &str) -> String {
    id.rsplit('/').next().unwrap_or(id).to_string()
}

/// `GET /`: the environments the user sees, by repository and team, from the Graph.
pub(super) async fn environments(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Query(f): Query<Filters>,
) -> Response {
    let Some(sess) = s.session(&headers) else {
        return sign_in_page(&s, &headers, "/");
    };
    let caller = Caller::User(sess.login.clone());
    let graph = match crate::api::graph::build(&s.api, &caller, None).await {
        Ok(g) => g,
        Err(_) => return unavailable(&sess),
    };
    let q = f.q.clone().unwrap_or_default().to_ascii_lowercase();
    let team = f.team.clone().filter(|t| !t.is_empty());
    let mut teams: Vec<String> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for e in graph
        .entities
        .values()
        .filter(|e| e.kind == crate::graph::EntityKind::Environment)
    {
        let Some(t) = e.team.clone() else { continue };
        if !teams.contains(&t) {
            teams.push(t.clone());
        }
        if team.as_deref().is_some_and(|x| x != t) || !e.name.to_ascii_lowercase().contains(&q) {
            continue;
        }
        let of = |kind: crate::graph::RelationKind| {
            e.relations
                .iter()
                .find(|r| r.kind == kind)
                .map(|r| last_segment(&r.target))
                .unwrap_or_default()
        };
        let mut links = Vec::new();
        for (key, label) in [
            ("pullRequest", "PR"),
            ("mergeCommit", "merge"),
            ("deployment", "deployment"),
            ("url", "open"),
        ] {
            if let Some(u) = e.links.get(key) {
                links.push((label.to_string(), u.clone()));
            }
        }
        let last_operation = graph
            .incoming(&e.id)
            .into_iter()
            .filter(|r| r.target.starts_with("operation:"))
            .filter_map(|r| graph.entities.get(&r.target))
            .find_map(|o| o.state.clone());
        groups
            .entry((e.repository.clone(), t))
            .or_default()
            .push(Row {
                expires: None,
                last_operation,
                href: format!("/environments/{}/{}", e.repository, e.name),
                name: e.name.clone(),
                state: e.state.clone().unwrap_or_default(),
                env_type: of(crate::graph::RelationKind::OfType),
                template: e
                    .provider
                    .clone()
                    .unwrap_or_else(|| of(crate::graph::RelationKind::InstanceOf)),
                links,
                url_text: e.url_text.clone(),
            });
    }
    teams.sort();
    // Expiry dates, from the manifests on each repository's default branch: one fetch
    // per repository, whatever its number of teams.
    let now = s.api.clock.now();
    let mut wanted: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for ((repository, team), rows) in &groups {
        wanted
            .entry(repository.clone())
            .or_default()
            .extend(rows.iter().map(|r| (team.clone(), r.name.clone())));
    }
    let mut expiries: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (repository, names) in wanted {
        if let Ok(repo) = RepoName::parse(&repository) {
            expiries.insert(repository, super::git::expiries(&s, &repo, names).await);
        }
    }
    for ((repository, _), rows) in groups.iter_mut() {
        for r in rows.iter_mut() {
            r.expires = expiries
                .get(repository)
                .and_then(|e| e.get(&r.name))
                .and_then(|at| super::git::countdown(at, now).map(|left| (at.clone(), left)));
        }
    }
    let mut admin = false;
    for repo in s.api.directory.served().await {
        admin |= s.api.access(&caller, &repo).await.admin;
    }
    let page = EnvironmentsPage {
        chrome: Chrome::of(&sess),
        admin,
        teams,
        filtered: team.is_some() || !q.is_empty(),
        filter_team: team,
        filter_q: f.q.unwrap_or_default(),
        groups: groups
            .into_iter()
            .map(|((repository, team), rows)| Group {
                repository,
                team,
                rows,
            })
            .collect(),
    };
    html(page.render())
}

#[derive(Template)]
#[template(path = "portal/environment.html")]
struct EnvironmentPage {
    chrome: Chrome,
    env: EnvironmentRecord,
    /// Its audit history, newest first (`None`: the repository could not be read).
    history: Option<Vec<crate::audit::Entry>>,
    /// Name, value, and whether the value is a web address (only those become links).
    outputs: Vec<(String, String, bool)>,
    operations: Vec<OperationRecord>,
    pulls_url: String,
    today: String,
    /// What the scheduler will do next: (kind, when), soonest first.
    upcoming: Vec<(String, String)>,
    /// The drift issue's address, when one is open.
    drift_issue_url: Option<String>,
    /// The caller may ask for a reconcile.
    may_act: bool,
    /// The deploy identity its type's runs get (SPEC 13).
    identity: Option<String>,
}

/// `GET /environments/{owner}/{repo}/{name}`: for those who see its team; the same page
/// as a missing one for anyone else.
pub(super) async fn environment(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Path((owner, repo, name)): Path<(String, String, String)>,
) -> Response {
    let here = format!("/environments/{owner}/{repo}/{name}");
    let Some(sess) = s.session(&headers) else {
        return sign_in_page(&s, &headers, &here);
    };
    let Ok(repo) = RepoName::new(&owner, &repo) else {
        return not_found(&sess, "environment");
    };
    let caller = Caller::User(sess.login.clone());
    let access = s.api.access(&caller, &repo).await;
    let env = match s.api.store.environment(&repo, &name).await {
        Ok(Some(e)) if access.sees_team(&e.team) => e.public(),
        Ok(_) => return not_found(&sess, "environment"),
        Err(_) => return unavailable(&sess),
    };
    let timers = match s.api.store.timers_of(&repo, &name).await {
        Ok(t) => t,
        Err(_) => return unavailable(&sess),
    };
    let upcoming = crate::api::routes::upcoming_of(timers)
        .into_iter()
        .map(|(kind, u)| {
            let what = match kind {
                crate::store::TimerKind::Warn => "expiry warning",
                crate::store::TimerKind::Expire => "expires (deleted)",
                crate::store::TimerKind::Stop => "stops (schedule)",
                crate::store::TimerKind::Start => "starts (schedule)",
                crate::store::TimerKind::Drift => "next drift check",
                crate::store::TimerKind::Reconcile => "reconcile (asked for)",
            };
            (what.to_string(), u.due_at)
        })
        .collect();
    let operations = match s
        .api
        .store
        .operations_for_environment(&repo, &name, 20)
        .await
    {
        Ok(ops) => ops
            .into_iter()
            .filter(|o| env.owns(o))
            .map(crate::api::routes::public_operation)
            .collect(),
        Err(_) => return unavailable(&sess),
    };
    let outputs = env
        .outputs
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let value = match &v["value"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let link = crate::links::web_url(&value).is_some();
            (k.clone(), value, link)
        })
        .collect();
    let web = match s.api.directory.known(&repo).await {
        Some(k) => crate::api::graph::web_of(&k),
        None => String::new(),
    };
    let history = super::git::history(&s, &repo, &name)
        .await
        .map(|h| h.entries.into_iter().rev().collect());
    let drift_issue_url = env
        .drift
        .as_ref()
        .and_then(|d| d.issue)
        .map(|n| format!("{web}/issues/{n}"));
    let may_act = access.acts_for(&env.team) && env.state.is_live();
    let identity = crate::api::routes::identity_of_type(&s.api, &repo, &env.env_type).await;
    let page = EnvironmentPage {
        identity,
        chrome: Chrome::of(&sess),
        history,
        env,
        outputs,
        operations,
        pulls_url: format!("{web}/pull"),
        today: s.api.clock.now().format("%Y-%m-%d").to_string(),
        upcoming,
        drift_issue_url,
        may_act,
    };
    html(page.render())
}

/// `POST /environments/{owner}/{repo}/{name}/reconcile`: the Reconcile button. For those
/// who may act for the environment's team; anyone else gets the page a missing one gets.
pub(super) async fn reconcile(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Path((owner, repo, name)): Path<(String, String, String)>,
    axum::Form(f): axum::Form<super::CsrfOnly>,
) -> Response {
    let sess = match super::form_session(&s, &headers, &f.csrf) {
        Ok(sess) => sess,
        Err(r) => return *r,
    };
    let Ok(repo_name) = RepoName::new(&owner, &repo) else {
        return not_found(&sess, "environment");
    };
    let caller = Caller::User(sess.login.clone());
    let access = s.api.access(&caller, &repo_name).await;
    match s.api.store.environment(&repo_name, &name).await {
        Ok(Some(e)) if access.acts_for(&e.team) && e.state.is_live() => {}
        Ok(_) => return not_found(&sess, "environment"),
        Err(_) => return unavailable(&sess),
    }
    let now = s.api.clock.now();
    if crate::timers::ask_reconcile(s.api.store.as_ref(), &repo_name, &name, &sess.login, now)
        .await
        .is_err()
    {
        return unavailable(&sess);
    }
    s.api.lifecycle_wake.notify_one();
    axum::response::IntoResponse::into_response(axum::response::Redirect::to(&format!(
        "/environments/{owner}/{repo}/{name}"
    )))
}

#[derive(Template)]
#[template(path = "portal/request.html")]
struct RequestPage {
    chrome: Chrome,
    r: RequestAnswer,
    state: String,
    state_class: String,
    in_progress: bool,
    env_href: String,
}

/// `GET /requests/{id}`: for its requester and whoever sees its team's environments;
/// refreshes itself while the request is under way.
pub(super) async fn request(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(sess) = s.session(&headers) else {
        return sign_in_page(&s, &headers, &format!("/requests/{id}"));
    };
    let Ok(id) = id.parse::<i64>() else {
        return not_found(&sess, "request");
    };
    let req = match s.api.store.request(id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(&sess, "request"),
        Err(_) => return unavailable(&sess),
    };
    let repo = req.repo.clone();
    let caller = Caller::User(sess.login.clone());
    if !crate::api::requests::sees_request(&s.api, &caller, &repo, &req).await {
        return not_found(&sess, "request");
    }
    let status = match s.cache.request(req.id) {
        Some(st) => st,
        None => match s.api.orchestrator.status(&req).await {
            Ok(st) => {
                s.cache.remember_request(req.id, &st);
                st
            }
            Err(_) => return unavailable(&sess),
        },
    };
    let in_progress = !matches!(
        status.state,
        RequestState::Succeeded | RequestState::Failed | RequestState::Abandoned
    );
    let state = serde_json::to_value(status.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let page = RequestPage {
        chrome: Chrome::of(&sess),
        state_class: state.replace(' ', "-"),
        state,
        in_progress,
        env_href: format!("/environments/{}/{}", req.repo, req.env_name),
        r: RequestAnswer {
            status,
            links: RequestLinks {
                this: format!("/requests/{id}"),
                pull_request: req.pr_url.clone(),
                environment: format!("/environments/{}/{}", req.repo, req.env_name),
            },
        },
    };
    html(page.render())
}
