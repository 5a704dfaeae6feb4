//! `GET /api/v1/backstage/entities.yaml`: the Graph as Backstage catalog entities, a
//! multi-document YAML a Backstage catalog reads as a URL location. Every entity validates
//! against Backstage's own schemas (`tests/fixtures/backstage/`).
//!
//! - a `Group` per team (members included), a `User` per member;
//! - a `System` per environments repository, owned by its platform team;
//! - a `Resource` (`spec.type: environment`) per live environment, owned by its team, with
//!   annotations naming its repository, template, type and state, and links to its
//!   pull request and URL;
//! - a scaffolder `Template` (v1beta3) per catalog definition whose step opens the request
//!   through `POST /api/v1/requests` (Backstage's `http:backstage:request` action, through a
//!   proxy named `paved`, with the user's GitHub token).

use super::answers::ApiError;
use super::answers::Template;
use super::ApiState;
use crate::graph::Graph;
use crate::identity::Caller;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// A Backstage entity name from anything: `[A-Za-z0-9._-]`, at most 63 characters.
fn name_of(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    while out.ends_with(['-', '.', '_']) {
        out.pop();
    }
    out
}

fn entity(api: &str, kind: &str, metadata: Value, spec: Value) -> Value {
    json!({ "apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec })
}

/// The caller's part of the Graph as Backstage catalog entities.
#[utoipa::path(get, path = "/api/v1/backstage/entities.yaml", tag = "graph",
    responses((status = 200, description = "Multi-document YAML of Backstage entities",
        content_type = "application/yaml", body = String)))]
async fn export(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let graph: Graph = super::graph::build(&s, &caller, None).await?;
    let templates = super::graph::visible_templates(&s, &caller).await?;
    let mut docs: Vec<Value> = Vec::new();
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut memberships: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in graph.entities.values() {
        if e.kind != crate::graph::EntityKind::User {
            continue;
        }
        for r in e
            .relations
            .iter()
            .filter(|r| r.kind == crate::graph::RelationKind::MemberOf)
        {
            let team = r.target.rsplit('/').next().unwrap_or_default().to_string();
            members
                .entry(team.clone())
                .or_default()
                .insert(name_of(&e.name));
            memberships
                .entry(name_of(&e.name))
                .or_default()
                .insert(team);
        }
    }
    for e in graph.entities.values() {
        match e.kind.as_str() {
            "repository" => docs.push(entity(
                "backstage.io/v1alpha1",
                "System",
                json!({
                    "name": name_of(&e.name.replace('/', "-")),
                    "title": e.name,
                    "description": format!("Environments managed by Paved from {}", e.name),
                    "annotations": { "paved.dev/repository": e.name },
                    "links": e.links.get("repository").map(|u| vec![json!({"url": u, "title": "Repository"})]).unwrap_or_default(),
                }),
                json!({ "owner": owner_of(&s, &e.repository).await, "type": "environments" }),
            )),
            "team" => docs.push(entity(
                "backstage.io/v1alpha1",
                "Group",
                json!({ "name": name_of(&e.name), "annotations": { "paved.dev/repository": e.repository } }),
                json!({
                    "type": "team",
                    "children": [],
                    "members": members.get(&e.name).cloned().unwrap_or_default(),
                }),
            )),
            "user" => docs.push(entity(
                "backstage.io/v1alpha1",
                "User",
                json!({ "name": name_of(&e.name) }),
                json!({ "memberOf": memberships.get(&name_of(&e.name)).cloned().unwrap_or_default() }),
            )),
            "environment" if e.state.as_deref() != Some("deleted") => docs.push(resource(e)),
            _ => {}
        }
    }
    for t in templates {
        docs.push(template_entity(&s, &t).await);
    }
    let mut text = String::new();
    for d in docs {
        match serde_yaml::to_string(&d) {
            Ok(y) => {
                text.push_str("---\n");
                text.push_str(&y);
            }
            Err(e) => tracing::warn!(error = %e, "a Backstage entity did not serialise"),
        }
    }
    Ok((
        [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
        text,
    )
        .into_response())
}

/// A `Resource` (`spec.type: environment`) for an environment entity of the Graph.
fn resource(e: &crate::graph::Entity) -> Value {
    let mut annotations = serde_json::Map::new();
    annotations.insert("paved.dev/repository".into(), e.repository.clone().into());
    annotations.insert(
        "paved.dev/template".into(),
        e.provider.clone().unwrap_or_default().into(),
    );
    annotations.insert(
        "paved.dev/state".into(),
        e.state.clone().unwrap_or_default().into(),
    );
    if let Some(d) = &e.drift {
        annotations.insert("paved.dev/drift".into(), d.clone().into());
    }
    for r in &e.relations {
        if r.kind == crate::graph::RelationKind::OfType {
            let t = r.target.rsplit('/').next().unwrap_or_default();
            annotations.insert("paved.dev/type".into(), t.into());
        }
    }
    let mut links = Vec::new();
    if let Some(u) = e.links.get("pullRequest") {
        links.push(json!({"url": u, "title": "Pull request"}));
    }
    if let Some(u) = e.links.get("url") {
        links.push(json!({"url": u, "title": "Environment"}));
    }
    if let Some(u) = e.links.get("audit") {
        links.push(json!({"url": u, "title": "Paved"}));
    }
    entity(
        "backstage.io/v1alpha1",
        "Resource",
        json!({ "name": name_of(&e.name), "annotations": annotations, "links": links }),
        json!({
            "type": "environment",
            "owner": format!("group:default/{}", name_of(e.team.as_deref().unwrap_or_default())),
            "system": name_of(&e.repository.replace('/', "-")),
        }),
    )
}

/// The group that owns a repository's system and templates: its governance approvers'
/// team, else its first team.
async fn owner_of(s: &ApiState, repo: &str) -> String {
    let team = match crate::ids::RepoName::parse(repo) {
        Ok(r) => s.directory.governance(&r).await.and_then(|(_, g)| {
            let p = g.platform()?;
            p.governance
                .as_ref()
                .and_then(|gv| gv.approvers.teams().first().map(|t| t.to_string()))
                .or_else(|| p.teams.keys().next().cloned())
        }),
        Err(_) => None,
    };
    format!(
        "group:default/{}",
        name_of(&team.unwrap_or_else(|| "platform".into()))
    )
}

/// A scaffolder template whose form is the definition's parameters and whose one step
/// opens the request.
async fn template_entity(s: &ApiState, t: &Template) -> Value {
    let repo = t.repository.clone();
    let name = t.name.as_str();
    let mut properties = serde_json::Map::new();
    properties.insert("environment".into(), json!({"type": "string", "title": "Environment name", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}));
    properties.insert("team".into(), json!({"type": "string", "title": "Team"}));
    properties.insert(
        "type".into(),
        json!({"type": "string", "title": "Environment type", "enum": t.environment_types}),
    );
    properties.insert(
        "expiresAt".into(),
        json!({"type": "string", "title": "Expires at", "format": "date-time"}),
    );
    let mut body_params = serde_json::Map::new();
    for (k, v) in t.parameters["properties"].as_object().into_iter().flatten() {
        properties.insert(format!("param_{k}"), v.clone());
        body_params.insert(
            k.clone(),
            Value::String(format!("${{{{ parameters.param_{k} }}}}")),
        );
    }
    let mut required: Vec<Value> = vec!["environment".into(), "team".into(), "type".into()];
    for r in t.parameters["required"].as_array().into_iter().flatten() {
        if let Some(r) = r.as_str() {
            required.push(Value::String(format!("param_{r}")));
        }
    }
    entity(
        "scaffolder.backstage.io/v1beta3",
        "Template",
        json!({
            "name": name_of(&format!("paved-{name}")),
            "title": t.title,
            "description": t.description.as_deref().or(t.summary.as_deref()).unwrap_or("An environment from Paved's catalog"),
            "tags": ["paved", "environment"],
            "annotations": { "paved.dev/repository": repo, "paved.dev/template": name },
        }),
        json!({
            "owner": owner_of(s, &repo).await,
            "type": "environment",
            "parameters": [{
                "title": format!("Ask for a {name} environment"),
                "required": required,
                "properties": properties,
            }],
            "steps": [{
                "id": "request",
                "name": "Open the request (a pull request Paved governs)",
                "action": "http:backstage:request",
                "input": {
                    "method": "POST",
                    "path": "/proxy/paved/api/v1/requests",
                    "headers": {
                        "content-type": "application/json",
                        "authorization": "Bearer ${{ secrets.USER_OAUTH_TOKEN }}",
                    },
                    "body": {
                        "repository": repo,
                        "action": "create",
                        "template": name,
                        "environment": "${{ parameters.environment }}",
                        "team": "${{ parameters.team }}",
                        "type": "${{ parameters.type }}",
                        "expiresAt": "${{ parameters.expiresAt }}",
                        "parameters": body_params,
                    },
                },
            }],
            "output": {
                "links": [{ "title": "Pull request", "url": "${{ steps.request.output.body.pullRequest.url }}" }],
            },
        }),
    )
}
