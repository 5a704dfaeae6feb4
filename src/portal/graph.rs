//! The Graph page: the entities around one (a team, an environment, …), drawn as SVG on
//! the server: the entity in the middle, what it relates to and what relates to it on a
//! circle around it, each a link that centres the graph on it.

use super::{html, sign_in_page, Chrome, PortalState};
use crate::identity::Caller;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::collections::BTreeMap;

pub(crate) struct Node {
    pub id: String,
    pub kind: String,
    /// The kind, short enough for its circle.
    pub kind_label: String,
    pub name: String,
    pub x: i64,
    pub y: i64,
    pub r: i64,
}

pub(crate) struct Edge {
    pub x1: i64,
    pub y1: i64,
    pub x2: i64,
    pub y2: i64,
    pub lx: i64,
    pub ly: i64,
    pub label: String,
    pub from_id: String,
    pub from_kind: String,
    pub from_name: String,
    pub to_id: String,
    pub to_kind: String,
    pub to_name: String,
}

#[derive(Template)]
#[template(path = "portal/graph.html")]
struct GraphPage {
    chrome: Chrome,
    focus: String,
    focus_label: String,
    choices: Vec<(String, String)>,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    width: i64,
    height: i64,
}

#[derive(serde::Deserialize)]
pub(super) struct Around {
    around: Option<String>,
}

fn short_kind(kind: &str) -> String {
    match kind {
        "environmentType" => "type".into(),
        "environment" => "env".into(),
        "repository" => "repo".into(),
        other => other.into(),
    }
}

const WIDTH: i64 = 900;
const HEIGHT: i64 = 620;

/// `GET /graph?around=<entity id>` (default: the user's first team).
pub(super) async fn page(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Query(q): Query<Around>,
) -> Response {
    let Some(sess) = s.session(&headers) else {
        return sign_in_page(&s, &headers, "/graph");
    };
    let caller = Caller::User(sess.login.clone());
    let graph = match crate::api::graph::build(&s.api, &caller, None).await {
        Ok(g) => g,
        Err(_) => {
            return super::refused(
                Some(&sess),
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "Paved cannot read its database just now.",
            )
        }
    };
    // Teams and environments to centre on; the asked one, if the caller sees it.
    let choices: Vec<(String, String)> = graph
        .entities
        .values()
        .filter(|e| {
            e.kind == crate::graph::EntityKind::Team
                || e.kind == crate::graph::EntityKind::Environment
        })
        .map(|e| {
            (
                e.id.clone(),
                format!("{} {} ({})", e.kind, e.name, e.repository),
            )
        })
        .collect();
    let focus = q
        .around
        .filter(|id| graph.entities.contains_key(id))
        .or_else(|| {
            let mine = graph.entities.values().find(|e| {
                e.kind == crate::graph::EntityKind::User
                    && e.name.eq_ignore_ascii_case(&sess.login)
                    && e.relations
                        .iter()
                        .any(|r| r.kind == crate::graph::RelationKind::MemberOf)
            });
            mine.and_then(|u| {
                u.relations
                    .iter()
                    .find(|r| r.kind == crate::graph::RelationKind::MemberOf)
            })
            .map(|r| r.target.clone())
        })
        .or_else(|| choices.first().map(|c| c.0.clone()))
        .unwrap_or_default();
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let mut focus_label = String::from("nothing");
    if let Some(center) = graph.entities.get(&focus) {
        focus_label = format!("{} {}", center.kind, center.name);
        // Neighbours, each with the relations that join it to the centre.
        let mut around: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
        for r in &center.relations {
            around
                .entry(r.target.clone())
                .or_default()
                .push((r.kind.to_string(), true));
        }
        for r in graph.incoming(&focus) {
            around
                .entry(r.target)
                .or_default()
                .push((r.kind.to_string(), false));
        }
        around.retain(|id, _| graph.entities.contains_key(id) && *id != focus);
        let (cx, cy) = (WIDTH / 2, HEIGHT / 2);
        nodes.push(Node {
            id: center.id.clone(),
            kind: center.kind.to_string(),
            kind_label: short_kind(center.kind.as_str()),
            name: center.name.clone(),
            x: cx,
            y: cy,
            r: 34,
        });
        let n = around.len().max(1) as f64;
        for (i, (id, rels)) in around.iter().enumerate() {
            let Some(e) = graph.entities.get(id) else {
                continue;
            };
            let angle = std::f64::consts::TAU * (i as f64) / n - std::f64::consts::FRAC_PI_2;
            let x = cx + (angle.cos() * 240.0) as i64;
            let y = cy + (angle.sin() * 230.0) as i64;
            nodes.push(Node {
                id: id.clone(),
                kind: e.kind.to_string(),
                kind_label: short_kind(e.kind.as_str()),
                name: e.name.clone(),
                x,
                y,
                r: 26,
            });
            for (k, (kind, outgoing)) in rels.iter().enumerate() {
                let (from, to) = if *outgoing { (center, e) } else { (e, center) };
                edges.push(Edge {
                    x1: cx,
                    y1: cy,
                    x2: x,
                    y2: y,
                    lx: (cx + x) / 2,
                    ly: (cy + y) / 2 - 4 + 12 * k as i64,
                    label: kind.clone(),
                    from_id: from.id.clone(),
                    from_kind: from.kind.to_string(),
                    from_name: from.name.clone(),
                    to_id: to.id.clone(),
                    to_kind: to.kind.to_string(),
                    to_name: to.name.clone(),
                });
            }
        }
    }
    html(
        GraphPage {
            chrome: Chrome::of(&sess),
            focus,
            focus_label,
            choices,
            nodes,
            edges,
            width: WIDTH,
            height: HEIGHT,
        }
        .render(),
    )
}
