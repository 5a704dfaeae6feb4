//! `/api/v1/templates`, `/api/v1/entities`, `/api/v1/entities/{id}` and `/api/v1/graph`:
//! the catalog and the Graph ([`crate::graph`]), scoped like everything else.

use super::answers::{ApiError, Edge, EntityDetail, GraphAnswer, Node, Template};
use super::ApiState;
use crate::checks::Governance;
use crate::graph::{Entity, Graph, Links};
use crate::identity::{Access, Caller};
use crate::ids::RepoName;
use crate::manifest::definition::Parameter;
use crate::store::{EnvironmentFilter, EnvironmentRecord, KnownRepository, StoreError};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::params::{MAX_PER_PAGE, PER_PAGE};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(templates))
        .routes(routes!(entities))
        .routes(routes!(entity))
        .routes(routes!(graph))
}

/// A repository the caller has a role in, with what its default branch holds.
struct Visible {
    known: KnownRepository,
    governance: Option<Arc<Governance>>,
    access: Access,
}

/// The repositories the caller has any role in (`only`: just that one).
async fn visible_repositories(
    s: &ApiState,
    caller: &Caller,
    only: Option<&RepoName>,
) -> Result<Vec<Visible>, StoreError> {
    let mut out = Vec::new();
    for repo in s.directory.served().await {
        if only.is_some_and(|o| *o != repo) {
            continue;
        }
        let Some(known) = s.directory.known(&repo).await else {
            continue;
        };
        let access = s.access(caller, &known.repo).await;
        if !access.any() {
            continue;
        }
        let governance = s.directory.governance(&known.repo).await.map(|(_, g)| g);
        out.push(Visible {
            known,
            governance,
            access,
        });
    }
    Ok(out)
}

/// The web address of a repository, from its clone URL.
pub(crate) fn web_of(known: &KnownRepository) -> String {
    known
        .clone_url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .to_string()
}

/// A definition's parameters as a JSON Schema (what a form is generated from).
pub fn parameters_schema(params: &[Parameter]) -> serde_json::Value {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for p in params {
        let mut prop = serde_json::json!({ "type": p.param_type.to_string() });
        if let Some(n) = &p.name {
            prop["title"] = n.clone().into();
        }
        if let Some(d) = &p.description {
            prop["description"] = d.clone().into();
        }
        if let Some(d) = &p.default {
            prop["default"] = d.clone();
        }
        if let Some(a) = &p.allowed {
            prop["enum"] = serde_json::Value::Array(a.clone());
        }
        if p.read_only {
            prop["readOnly"] = true.into();
        }
        if p.required {
            required.push(serde_json::Value::String(p.id.clone()));
        }
        props.insert(p.id.clone(), prop);
    }
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RepoFilter {
    /// Only this repository (`owner/name`).
    repository: Option<String>,
}

/// `?repository=owner/name`, checked; `Err(())` when it is not a repository name.
/// The `repository` parameter, if given.
fn repo_param(v: Option<&str>) -> Result<Option<RepoName>, ApiError> {
    v.map(|r| {
        RepoName::parse(r)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "repository: write owner/name"))
    })
    .transpose()
}

/// `GET /api/v1/templates[?repository=owner/name]`: every catalog definition on the default
/// branch of the repositories the caller has a role in, with its parameters as a JSON
/// Schema and the environment types that allow it.
#[utoipa::path(get, path = "/api/v1/templates", tag = "graph",
    params(RepoFilter),
    responses(
        (status = 200, description = "The templates", body = Vec<Template>),
        (status = 400, description = "Not a repository name", body = ApiError),
    ))]
async fn templates(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<RepoFilter>,
) -> Result<Json<Vec<Template>>, ApiError> {
    let only = repo_param(f.repository.as_deref())?;
    Ok(Json(templates_of(&s, &caller, only.as_ref()).await?))
}

/// Every template the caller may use, in every repository they have a role in.
pub(crate) async fn visible_templates(
    s: &ApiState,
    caller: &Caller,
) -> Result<Vec<Template>, StoreError> {
    templates_of(s, caller, None).await
}

async fn templates_of(
    s: &ApiState,
    caller: &Caller,
    only: Option<&RepoName>,
) -> Result<Vec<Template>, StoreError> {
    let repos = visible_repositories(s, caller, only).await?;
    let mut out = Vec::new();
    for v in repos {
        let Some(g) = v.governance else { continue };
        let types = g.platform().map(|p| &p.environment_types);
        for (name, def) in g.catalog() {
            let Ok(def) = def else { continue };
            let allowed: Vec<String> = types
                .into_iter()
                .flatten()
                .filter(|(_, t)| t.definitions.as_ref().is_none_or(|d| d.contains(name)))
                .map(|(n, _)| n.clone())
                .collect();
            out.push(Template {
                id: crate::graph::id(crate::graph::EntityKind::Template, &v.known.repo, name),
                repository: v.known.repo.to_string(),
                name: name.clone(),
                title: def.definition.name.clone(),
                summary: def.definition.summary.clone(),
                description: def.definition.description.clone(),
                runner: def.definition.runner.kind().to_string(),
                parameters: parameters_schema(&def.definition.parameters),
                environment_types: allowed,
            });
        }
    }
    Ok(out)
}

/// The graph of the repositories the caller has a role in, trimmed to what they see.
pub(crate) async fn build(
    s: &ApiState,
    caller: &Caller,
    only: Option<&RepoName>,
) -> Result<Graph, StoreError> {
    let repos = visible_repositories(s, caller, only).await?;
    build_scoped(s, &repos, Scope::All).await
}

/// Which environments a graph is built with.
enum Scope<'a> {
    /// Every one (relations from the whole inventory).
    All,
    /// These, by repository: one environment's entity, or a page of them.
    These(&'a BTreeMap<String, Vec<EnvironmentRecord>>),
}

/// The graph of `repos` with the environments of `scope` and their last operations (read
/// without logs): a page or one entity is read in time that does not grow with the
/// inventory.
async fn build_scoped(
    s: &ApiState,
    repos: &[Visible],
    scope: Scope<'_>,
) -> Result<Graph, StoreError> {
    let mut graph = Graph::default();
    let mut access: BTreeMap<String, Access> = BTreeMap::new();
    for v in repos {
        let (envs, ops) = match scope {
            Scope::These(by_repo) => {
                let envs = by_repo
                    .get(&v.known.repo.to_string())
                    .cloned()
                    .unwrap_or_default();
                let mut ops = Vec::new();
                for e in &envs {
                    if let Some(id) = e.last_operation {
                        ops.extend(s.store.operation_without_log(id).await?);
                    }
                }
                (envs, ops)
            }
            Scope::All => (
                s.store.environments(Some(&v.known.repo)).await?,
                s.store.latest_operations(&v.known.repo).await?,
            ),
        };
        let members = match v.governance.as_ref().and_then(|g| g.platform()) {
            Some(p) => s
                .directory
                .github_members(v.known.installation, p)
                .await
                .into_iter()
                .map(|(k, m)| (k, m.as_ref().clone()))
                .collect(),
            None => BTreeMap::new(),
        };
        let web = web_of(&v.known);
        graph.add_repository(
            &v.known.repo,
            v.governance.as_deref(),
            &members,
            &envs,
            &ops,
            &Links {
                public_url: &s.public_url,
                web: &web,
            },
        );
        access.insert(v.known.repo.to_string(), v.access.clone());
    }
    graph.retain(|e| {
        access
            .get(&e.repository)
            .is_some_and(|a| match e.kind.as_str() {
                "environment" | "operation" => e.team.as_deref().is_some_and(|t| a.sees_team(t)),
                _ => a.any(),
            })
    });
    // A user is shown only when tied to something the caller sees: a member of a team, or
    // someone an environment or operation the caller sees names (owner, requester,
    // approver, merger). One named only by another team's environments stays unseen.
    let mut named: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for e in graph
        .entities
        .values()
        .filter(|e| e.kind != crate::graph::EntityKind::User)
    {
        named.extend(e.relations.iter().map(|r| r.target.clone()));
        if let (Some(owner), Ok(repo)) = (&e.user, RepoName::parse(&e.repository)) {
            named.insert(crate::graph::id(
                crate::graph::EntityKind::User,
                &repo,
                owner,
            ));
        }
    }
    graph.retain(|e| {
        e.kind != crate::graph::EntityKind::User
            || named.contains(&e.id)
            || e.relations
                .iter()
                .any(|r| r.kind == crate::graph::RelationKind::MemberOf)
    });
    Ok(graph)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EntityQuery {
    /// One kind: `repository`, `team`, `user`, `environmentType`, `template`,
    /// `environment`, `operation`.
    kind: Option<String>,
    /// Owned by this team (or this team itself).
    team: Option<String>,
    /// Name or description contains this (case-insensitive).
    q: Option<String>,
    /// Only this repository (`owner/name`).
    repository: Option<String>,
    /// Page number, from 1 (a page past the last is empty).
    page: Option<usize>,
    /// Entities per page (30 unless given; at most 100).
    per_page: Option<usize>,
}

/// `GET /api/v1/entities?kind=&team=&q=&repository=&page=&per_page=`: the caller's
/// entities, filtered, by id, paginated with a `Link` header as GitHub does.
#[utoipa::path(get, path = "/api/v1/entities", tag = "graph",
    params(EntityQuery),
    responses(
        (status = 200, description = "A page of entities", body = Vec<Entity>,
            headers(("Link" = String, description = "`next`, `last`, `first`, `prev` pages, as GitHub paginates"))),
        (status = 400, description = "An unknown kind, or not a repository name", body = ApiError),
    ))]
async fn entities(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<EntityQuery>,
) -> Result<Response, ApiError> {
    if let Some(k) = &f.kind {
        if !crate::graph::KINDS.contains(&k.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("kind: one of {}", crate::graph::KINDS.join(", ")),
            ));
        }
    }
    let only = repo_param(f.repository.as_deref())?;
    if f.kind.as_deref() == Some("environment") {
        let (items, page, per_page, last) =
            environments_page(&s, &caller, only.as_ref(), &f).await?;
        return Ok(paged(&s, &f, items, page, per_page, last));
    }
    let graph = build(&s, &caller, only.as_ref()).await?;
    let q = f.q.as_deref().map(str::to_ascii_lowercase);
    let matching: Vec<&Entity> = graph
        .entities
        .values()
        .filter(|e| f.kind.as_deref().is_none_or(|k| e.kind.as_str() == k))
        .filter(|e| {
            f.team.as_deref().is_none_or(|t| {
                e.team.as_deref() == Some(t)
                    || (e.kind == crate::graph::EntityKind::Team && e.name == t)
            })
        })
        .filter(|e| {
            q.as_deref().is_none_or(|q| {
                e.name.to_ascii_lowercase().contains(q)
                    || e.description
                        .as_deref()
                        .is_some_and(|d| d.to_ascii_lowercase().contains(q))
            })
        })
        .collect();
    let per_page = f.per_page.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
    let last = matching.len().div_ceil(per_page).max(1);
    let page = f.page.unwrap_or(1).max(1);
    let items: Vec<Entity> = matching
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|e| (*e).clone())
        .collect();
    Ok(paged(&s, &f, items, page, per_page, last))
}

/// A page of entities with its `Link` header.
fn paged(
    s: &ApiState,
    f: &EntityQuery,
    items: Vec<Entity>,
    page: usize,
    per_page: usize,
    last: usize,
) -> Response {
    let link = link_header(&s.public_url, f, page, per_page, last);
    let mut r = Json(items).into_response();
    if let Some(link) = link {
        if let Ok(v) = header::HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

/// The graph one entity is looked up in: with only environment `one` when given.
async fn entity_graph(
    s: &ApiState,
    caller: &Caller,
    repo: &RepoName,
    one: Option<&str>,
) -> Result<Graph, StoreError> {
    let repos = visible_repositories(s, caller, Some(repo)).await?;
    match one {
        Some(name) => {
            let mut by_repo = BTreeMap::new();
            let envs: Vec<EnvironmentRecord> =
                s.store.environment(repo, name).await?.into_iter().collect();
            by_repo.insert(repo.to_string(), envs);
            build_scoped(s, &repos, Scope::These(&by_repo)).await
        }
        None => build_scoped(s, &repos, Scope::All).await,
    }
}

/// The teams whose environments `access` sees, narrowed to `team` when given (`None`:
/// every team's).
fn visible_teams(access: &Access, team: Option<&str>) -> Option<Vec<String>> {
    match team {
        Some(t) if access.sees_team(t) => Some(vec![t.to_string()]),
        Some(_) => Some(Vec::new()),
        None if access.reads_all() => None,
        None => Some(access.teams.iter().cloned().collect()),
    }
}

/// `?kind=environment`: the page is chosen in the database (what the caller sees, `team`
/// and `q`), and the graph is built for that page only, so a page takes time that does not
/// grow with the inventory.
async fn environments_page(
    s: &ApiState,
    caller: &Caller,
    only: Option<&RepoName>,
    f: &EntityQuery,
) -> Result<(Vec<Entity>, usize, usize, usize), StoreError> {
    let mut repos = visible_repositories(s, caller, only).await?;
    // Entities are ordered by id, `environment:owner/repo/name`: the repositories' blocks
    // in the order of `owner/repo/` (one such prefix is never a prefix of another), and by
    // name (bytes) within each.
    repos.sort_by_cached_key(|v| format!("{}/", v.known.repo));
    let per_page = f.per_page.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
    let page = f.page.unwrap_or(1).max(1);
    let mut skip = (page - 1).saturating_mul(per_page) as u64;
    let mut want = per_page as u64;
    let mut total = 0u64;
    let mut by_repo: BTreeMap<String, Vec<EnvironmentRecord>> = BTreeMap::new();
    let mut ids = Vec::new();
    for v in &repos {
        let filter = EnvironmentFilter {
            teams: visible_teams(&v.access, f.team.as_deref()),
            name_contains: f.q.clone(),
        };
        if filter.teams.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        let (count, rows) = s
            .store
            .environment_page(&v.known.repo, &filter, skip, want)
            .await?;
        total += count;
        skip = skip.saturating_sub(count);
        want = want.saturating_sub(rows.len() as u64);
        ids.extend(rows.iter().map(|e| {
            crate::graph::id(
                crate::graph::EntityKind::Environment,
                &v.known.repo,
                &e.name,
            )
        }));
        if !rows.is_empty() {
            by_repo.insert(v.known.repo.to_string(), rows);
        }
    }
    let last = usize::try_from(total.div_ceil(per_page as u64))
        .unwrap_or(usize::MAX)
        .max(1);
    let graph = build_scoped(s, &repos, Scope::These(&by_repo)).await?;
    let items = ids
        .iter()
        .filter_map(|id| graph.entities.get(id).cloned())
        .collect();
    Ok((items, page, per_page, last))
}

/// `<url>; rel="next"`, `prev`, `first`, `last`, as GitHub paginates.
fn link_header(
    base: &str,
    f: &EntityQuery,
    page: usize,
    per_page: usize,
    last: usize,
) -> Option<String> {
    if last <= 1 && page <= 1 {
        return None;
    }
    let url = |p: usize| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("kind", &f.kind),
            ("team", &f.team),
            ("q", &f.q),
            ("repository", &f.repository),
        ] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        q.append_pair("page", &p.to_string());
        q.append_pair("per_page", &per_page.to_string());
        format!("<{base}/api/v1/entities?{}>", q.finish())
    };
    let mut parts = Vec::new();
    if page < last {
        parts.push(format!("{}; rel=\"next\"", url(page + 1)));
        parts.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        parts.push(format!("{}; rel=\"first\"", url(1)));
        parts.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    Some(parts.join(", "))
}

/// `GET /api/v1/entities/{kind:owner/repo/name}`: one entity with its relations both ways.
/// One the caller may not see is answered as a missing one.
#[utoipa::path(get, path = "/api/v1/entities/{*id}", tag = "graph",
    params(("id" = String, Path, description = "`kind:owner/repo/name`; the rest of the path")),
    responses(
        (status = 200, description = "The entity and the relations to it", body = EntityDetail),
        (status = 404, description = "No such entity, or not one the caller may see", body = ApiError),
    ))]
async fn entity(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<EntityDetail>, ApiError> {
    let missing = || super::routes::missing("entity");
    // `kind:owner/repo[/name]`: only that repository's graph is built.
    let (_, rest) = id.split_once(':').ok_or_else(missing)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(owner), Some(name)) = (parts.next(), parts.next()) else {
        return Err(missing());
    };
    let repo = RepoName::new(owner, name).map_err(|_| missing())?;
    // An environment's or an operation's entity needs only that environment; the other
    // kinds have relations from the whole inventory pointing at them.
    let one = match id.split_once(':') {
        Some(("environment", _)) => parts.next(),
        _ => None,
    };
    let graph = entity_graph(&s, &caller, &repo, one).await?;
    let e = graph.entities.get(&id).ok_or_else(missing)?;
    Ok(Json(EntityDetail {
        entity: e.clone(),
        incoming: graph.incoming(&id),
    }))
}

/// `GET /api/v1/graph[?repository=owner/name]`: nodes and edges.
#[utoipa::path(get, path = "/api/v1/graph", tag = "graph",
    params(RepoFilter),
    responses(
        (status = 200, description = "Nodes and edges", body = GraphAnswer),
        (status = 400, description = "Not a repository name", body = ApiError),
    ))]
async fn graph(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(f): Query<RepoFilter>,
) -> Result<Json<GraphAnswer>, ApiError> {
    let only = repo_param(f.repository.as_deref())?;
    let graph = build(&s, &caller, only.as_ref()).await?;
    let edges = graph
        .entities
        .values()
        .flat_map(|e| {
            e.relations.iter().map(|r| Edge {
                source: e.id.clone(),
                kind: r.kind.to_string(),
                target: r.target.clone(),
            })
        })
        .collect();
    let nodes = graph
        .entities
        .values()
        .map(|e| Node {
            id: e.id.clone(),
            kind: e.kind.to_string(),
            name: e.name.clone(),
            team: e.team.clone(),
        })
        .collect();
    Ok(Json(GraphAnswer { nodes, edges }))
}
