//! The data plane: one handler that matches the request against the description, checks
//! it, answers it from the state, and validates its own answer.

use crate::spec::{Operation, API_VERSION};
use crate::{RequestRecord, Shared, World, DEVCENTER_SCOPE};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use github_emulator::schema;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// What a request is answered with.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
    rejected: Option<String>,
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"error": {"code": code, "message": message}}),
        retry_after: None,
        rejected: None,
    }
}

fn refuse(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        rejected: Some(message.to_string()),
        ..error(status, code, message)
    }
}

fn ok(body: Value) -> Answer {
    Answer {
        status: 200,
        body,
        retry_after: None,
        rejected: None,
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.to_string());
    let found = shared.spec.find(method.as_str(), uri.path());
    let op = match &found {
        Some(Ok((op, _))) => Some(*op),
        _ => None,
    };
    let answer = {
        let mut w = shared.world();
        if w.throttle > 0 {
            w.throttle -= 1;
            Answer {
                retry_after: Some(w.retry_after),
                ..error(
                    429,
                    "TooManyRequests",
                    "Rate limit is exceeded. Try again later.",
                )
            }
        } else {
            match found {
                None => refuse(
                    404,
                    "NotFound",
                    &format!("no operation has the path {}", uri.path()),
                ),
                Some(Err(methods)) => refuse(
                    405,
                    "MethodNotAllowed",
                    &format!(
                        "{} {} is not an operation (allowed: {})",
                        method,
                        uri.path(),
                        methods.join(", ")
                    ),
                ),
                Some(Ok((op, params))) => {
                    match check(&mut w, op, &params, uri.query().unwrap_or(""), &headers) {
                        Err(a) => a,
                        Ok(query) => answer(&shared, &mut w, op, &params, &query),
                    }
                }
            }
        }
    };
    let mut w = shared.world();
    if let Some(op) = op {
        if let Some(schema) = op.response_schema(answer.status).filter(|s| !s.is_null()) {
            if let Err(errors) = schema::validate(schema, &answer.body) {
                w.response_errors.push(format!(
                    "{} {} → {}: {}",
                    op.operation_id,
                    target,
                    answer.status,
                    errors.join("; ")
                ));
            }
        }
    }
    w.requests.push(RequestRecord {
        method: method.to_string(),
        target,
        operation_id: op.map(|o| o.operation_id.clone()),
        status: answer.status,
        rejected: answer.rejected.clone(),
    });
    drop(w);
    let mut response = Response::new(Body::from(answer.body.to_string()));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if answer.status >= 400 {
        if let Some(code) = answer.body["error"]["code"].as_str() {
            if let Ok(v) = HeaderValue::from_str(code) {
                h.insert("x-ms-error-code", v);
            }
        }
    }
    if let Some(s) = answer.retry_after {
        h.insert("retry-after", HeaderValue::from(s));
    }
    response
}

/// The request's query, checked against the operation; or the refusal.
fn check(
    w: &mut World,
    op: &Operation,
    params: &BTreeMap<String, String>,
    query: &str,
    headers: &HeaderMap,
) -> Result<BTreeMap<String, String>, Answer> {
    let mut q = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let known = op
            .parameters
            .iter()
            .any(|p| p.location == "query" && p.name == k)
            || (k == "$skipToken" && op.next_link.is_some());
        if !known {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!("{} has no query parameter {k}", op.operation_id),
            ));
        }
        if q.insert(k.to_string(), v.to_string()).is_some() {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!("query parameter {k} given twice"),
            ));
        }
    }
    match q.get("api-version").map(String::as_str) {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(refuse(
                400,
                "UnsupportedApiVersion",
                &format!("the api-version '{other}' is not supported; supported: {API_VERSION}"),
            ))
        }
        None => {
            return Err(refuse(
                400,
                "MissingApiVersionParameter",
                "the api-version query parameter is required",
            ))
        }
    }
    for p in &op.parameters {
        let value = match p.location.as_str() {
            "path" => params.get(&p.name),
            "query" => q.get(&p.name),
            _ => continue,
        };
        let Some(value) = value else {
            if p.required {
                return Err(refuse(
                    400,
                    "InvalidParameter",
                    &format!("{} is required", p.name),
                ));
            }
            continue;
        };
        let typed = match p.schema["type"].as_str() {
            Some("boolean") => value.parse::<bool>().map(Value::from).ok(),
            Some("integer") => value.parse::<i64>().map(Value::from).ok(),
            _ => Some(Value::from(value.as_str())),
        };
        let valid = typed.is_some_and(|t| schema::validate(&p.schema, &t).is_ok());
        if !valid {
            return Err(refuse(
                400,
                "InvalidParameter",
                &format!(
                    "{} {value:?} does not match its schema {}",
                    p.name, p.schema
                ),
            ));
        }
    }
    if let Some(token) = q.get("$skipToken") {
        let mut path = op.path.clone();
        for (k, v) in params {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        if w.skip_tokens
            .get(token)
            .is_none_or(|(issued_for, _)| *issued_for != path)
        {
            return Err(refuse(
                400,
                "InvalidParameter",
                "$skipToken was not issued by this endpoint",
            ));
        }
    }
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let valid = bearer
        .and_then(|t| w.tokens.get(t))
        .is_some_and(|(scope, expires)| scope == DEVCENTER_SCOPE && *expires > Instant::now());
    if !valid {
        let why = if bearer.is_none() {
            "the request has no bearer token"
        } else {
            "the bearer token is not one Entra issued for the DevCenter data plane, or it expired"
        };
        return Err(refuse(401, "Unauthorized", why));
    }
    Ok(q)
}

/// Answers a checked request from the state.
fn answer(
    shared: &Shared,
    w: &mut World,
    op: &Operation,
    params: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
) -> Answer {
    let p = |k: &str| params.get(k).cloned().unwrap_or_default();
    let project_name = p("projectName");
    let list = |w: &mut World, items: Vec<Value>| page(shared, w, op, params, query, items);
    let id = op.operation_id.as_str();
    if id == "DevCenter_ListProjects" {
        let items = w
            .projects
            .keys()
            .map(|n| json!({"uri": format!("{}/projects/{n}", shared.base), "name": n}))
            .collect();
        return list(w, items);
    }
    let Some(project) = w.projects.get(&project_name) else {
        if op.path.starts_with("/projects/{projectName}") {
            return error(
                404,
                "NotFound",
                &format!("project {project_name} was not found"),
            );
        }
        return refuse(501, "NotImplemented", &format!("{id} is not emulated"));
    };
    let env_of = |user: &str, name: &str| {
        project
            .environments
            .iter()
            .find(|e| e["name"] == name && (user == "me" || e["user"] == user))
            .cloned()
    };
    match id {
        "DevCenter_GetProject" => ok(json!({
            "uri": format!("{}/projects/{project_name}", shared.base),
            "name": project_name,
        })),
        "Environments_ListEnvironmentTypes" => {
            let items = project.environment_types.clone();
            list(w, items)
        }
        "Environments_GetEnvironmentTypes" => {
            match project
                .environment_types
                .iter()
                .find(|t| t["name"] == p("environmentTypeName"))
            {
                Some(t) => ok(t.clone()),
                None => error(404, "NotFound", "environment type not found"),
            }
        }
        "Environments_ListCatalogsByProject" => {
            let items = project
                .catalogs
                .keys()
                .map(|c| {
                    json!({"uri": format!("{}/projects/{project_name}/catalogs/{c}", shared.base), "name": c})
                })
                .collect();
            list(w, items)
        }
        "Environments_GetCatalog" => match project.catalogs.get(&p("catalogName")) {
            Some(_) => ok(json!({
                "uri": format!("{}/projects/{project_name}/catalogs/{}", shared.base, p("catalogName")),
                "name": p("catalogName"),
            })),
            None => error(404, "NotFound", "catalog not found"),
        },
        "Environments_ListEnvironmentDefinitionsByProject" => {
            let items = project.catalogs.values().flatten().cloned().collect();
            list(w, items)
        }
        "Environments_ListEnvironmentDefinitionsByCatalog" => {
            match project.catalogs.get(&p("catalogName")) {
                Some(defs) => {
                    let items = defs.clone();
                    list(w, items)
                }
                None => error(404, "NotFound", "catalog not found"),
            }
        }
        "Environments_GetEnvironmentDefinition" => {
            let found = project
                .catalogs
                .get(&p("catalogName"))
                .and_then(|defs| defs.iter().find(|d| d["name"] == p("definitionName")));
            match found {
                Some(d) => ok(d.clone()),
                None => error(404, "NotFound", "environment definition not found"),
            }
        }
        "Environments_ListEnvironments" => {
            let items = project.environments.clone();
            list(w, items)
        }
        "Environments_ListEnvironmentsByUser" => {
            let user = p("userId");
            let items = project
                .environments
                .iter()
                .filter(|e| user == "me" || e["user"] == user.as_str())
                .cloned()
                .collect();
            list(w, items)
        }
        "Environments_GetEnvironmentByUser" => match env_of(&p("userId"), &p("environmentName")) {
            Some(e) => ok(e),
            None => error(404, "NotFound", "environment not found"),
        },
        "Environments_GetOutputs" => match env_of(&p("userId"), &p("environmentName")) {
            Some(e) => {
                let key = (
                    e["user"].as_str().unwrap_or_default().to_string(),
                    p("environmentName"),
                );
                ok(project
                    .outputs
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| json!({"outputs": {}})))
            }
            None => error(404, "NotFound", "environment not found"),
        },
        _ => refuse(501, "NotImplemented", &format!("{id} is not emulated")),
    }
}

/// One page of `items`, with a `nextLink` when more follow.
fn page(
    shared: &Shared,
    w: &mut World,
    op: &Operation,
    params: &BTreeMap<String, String>,
    query: &BTreeMap<String, String>,
    items: Vec<Value>,
) -> Answer {
    let from = query
        .get("$skipToken")
        .and_then(|t| w.skip_tokens.get(t))
        .map_or(0, |(_, offset)| *offset);
    let mut size = w.page_size;
    if let Some(top) = query.get("top").and_then(|t| t.parse::<usize>().ok()) {
        size = size.min(top.max(1));
    }
    let end = (from + size).min(items.len());
    let mut body = json!({"value": items.get(from..end).unwrap_or_default()});
    if end < items.len() {
        let token = format!("{:032x}", rand::random::<u128>());
        let mut path = op.path.clone();
        for (k, v) in params {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        w.skip_tokens.insert(token.clone(), (path.clone(), end));
        body[op.next_link.as_deref().unwrap_or("nextLink")] = json!(format!(
            "{}{path}?api-version={API_VERSION}&$skipToken={token}",
            shared.base
        ));
    }
    ok(body)
}
