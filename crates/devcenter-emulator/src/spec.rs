//! Microsoft's description of the DevCenter data plane (Swagger 2.0, version 2025-02-01),
//! embedded at compile time: its operations, their parameters, body and response schemas
//! with every `$ref` resolved, and route matching.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The description, as published (`tests/fixtures/azure-devcenter/`).
pub const DESCRIPTION: &str =
    include_str!("../../../tests/fixtures/azure-devcenter/devcenter-2025-02-01.json");

/// The only `api-version` the description is of.
pub const API_VERSION: &str = "2025-02-01";

/// One operation of the description.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// Path template, e.g. `/projects/{projectName}/environments`.
    pub path: String,
    pub operation_id: String,
    segments: Vec<Segment>,
    /// Path, query and header parameters by name, with their location.
    pub parameters: Vec<Parameter>,
    /// The body parameter's schema, and whether it is required.
    pub body: Option<(Value, bool)>,
    /// Response schemas by status (`"200"`, `"default"`); `Value::Null` when none.
    pub responses: BTreeMap<String, Value>,
    /// `x-ms-pageable`'s `nextLinkName`.
    pub next_link: Option<String>,
}

/// A parameter of an operation.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub location: String,
    pub required: bool,
    /// The parameter's constraints as a JSON Schema (`type`, `pattern`, `minLength`, …).
    pub schema: Value,
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// `{name}` with an optional literal after it in the same segment (`{actionName}:skip`).
    Param {
        name: String,
        suffix: String,
    },
}

/// An operation and its path parameters, decoded.
pub type Matched<'a> = (&'a Operation, BTreeMap<String, String>);

/// The description's operations.
pub struct Spec {
    pub operations: Vec<Operation>,
}

impl Spec {
    /// Loads the embedded description.
    pub fn load() -> anyhow::Result<Spec> {
        let doc: Value = serde_json::from_str(DESCRIPTION)?;
        let mut operations = Vec::new();
        let paths = doc["paths"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("the description has no paths"))?;
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let shared = item.get("parameters").cloned().unwrap_or(Value::Null);
            for (method, op) in item {
                if method == "parameters" {
                    continue;
                }
                operations.push(operation(&doc, path, method, op, &shared)?);
            }
        }
        Ok(Spec { operations })
    }

    /// The operation `method` + `path` names, with its path parameters; `None`: no operation
    /// of the description has that path (for that method: `Err(methods)`, those it has).
    pub fn find(&self, method: &str, path: &str) -> Option<Result<Matched<'_>, Vec<String>>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut methods = Vec::new();
        for op in &self.operations {
            let Some(params) = op.matches(&parts) else {
                continue;
            };
            if op.method.eq_ignore_ascii_case(method) {
                return Some(Ok((op, params)));
            }
            methods.push(op.method.clone());
        }
        (!methods.is_empty()).then_some(Err(methods))
    }

    pub fn by_id(&self, id: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.operation_id == id)
    }
}

impl Operation {
    fn matches(&self, parts: &[&str]) -> Option<BTreeMap<String, String>> {
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param { name, suffix } => {
                    let value = part.strip_suffix(suffix.as_str())?;
                    // A parameter without a suffix must not swallow another operation's
                    // `name:verb` segment.
                    if value.is_empty() || (suffix.is_empty() && value.contains(':')) {
                        return None;
                    }
                    let decoded = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    params.insert(name.clone(), decoded);
                }
            }
        }
        Some(params)
    }

    /// The schema of the response with `status`, or of `default`.
    pub fn response_schema(&self, status: u16) -> Option<&Value> {
        self.responses
            .get(&status.to_string())
            .or_else(|| self.responses.get("default"))
    }
}

fn operation(
    doc: &Value,
    path: &str,
    method: &str,
    op: &Value,
    shared: &Value,
) -> anyhow::Result<Operation> {
    let segments = path
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|r| r.split_once('}')) {
                Some((name, suffix)) => Segment::Param {
                    name: name.to_string(),
                    suffix: suffix.to_string(),
                },
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect();
    let mut parameters = Vec::new();
    let mut body = None;
    let listed = shared
        .as_array()
        .into_iter()
        .flatten()
        .chain(op["parameters"].as_array().into_iter().flatten());
    for p in listed {
        let p = resolve(doc, p, 0)?;
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let location = p["in"].as_str().unwrap_or_default().to_string();
        let required = p["required"].as_bool() == Some(true);
        if location == "body" {
            body = Some((p["schema"].clone(), required));
            continue;
        }
        let mut schema = Map::new();
        for k in [
            "type",
            "format",
            "pattern",
            "minLength",
            "maxLength",
            "minimum",
            "maximum",
            "enum",
            "items",
        ] {
            if let Some(v) = p.get(k) {
                schema.insert(k.to_string(), v.clone());
            }
        }
        parameters.push(Parameter {
            name,
            location,
            required,
            schema: Value::Object(schema),
        });
    }
    let mut responses = BTreeMap::new();
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let r = resolve(doc, r, 0)?;
        responses.insert(
            status.clone(),
            r.get("schema").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(Operation {
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        operation_id: op["operationId"].as_str().unwrap_or_default().to_string(),
        segments,
        parameters,
        body,
        responses,
        next_link: op["x-ms-pageable"]["nextLinkName"]
            .as_str()
            .map(str::to_string),
    })
}

/// `value` with every `$ref` (`#/definitions/…`, `#/parameters/…`) replaced by what it
/// names, and the annotations the validator does not know dropped (`readOnly` stays an
/// annotation there). A recursive definition (an error's `innererror`) is cut at depth 12
/// to an open schema: deeper values are not checked.
fn resolve(doc: &Value, value: &Value, depth: usize) -> anyhow::Result<Value> {
    if depth > 12 {
        return Ok(Value::Object(Map::new()));
    }
    Ok(match value {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let pointer = r
                    .strip_prefix('#')
                    .ok_or_else(|| anyhow::anyhow!("external $ref {r} in the description"))?;
                let target = doc
                    .pointer(pointer)
                    .ok_or_else(|| anyhow::anyhow!("$ref {r} names nothing"))?;
                return resolve(doc, target, depth + 1);
            }
            let mut out = Map::new();
            for (k, v) in map {
                // Swagger 2.0 keywords the validator would call unsupported: annotations
                // (`discriminator` only says which property names the variant; the
                // variants are `allOf`s checked as such).
                if matches!(k.as_str(), "discriminator" | "x-nullable") {
                    continue;
                }
                let inner = if matches!(k.as_str(), "enum" | "example" | "default") {
                    v.clone()
                } else {
                    resolve(doc, v, depth)?
                };
                out.insert(k.clone(), inner);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve(doc, v, depth))
                .collect::<anyhow::Result<_>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_environment_operation_of_the_description_is_loaded_and_matched() {
        let spec = Spec::load().unwrap();
        assert_eq!(spec.operations.len(), 61);
        // `{actionName}` alone never swallows a `name:verb` segment.
        assert!(matches!(
            spec.find("GET", "/projects/p1/users/me/environments/e-1/actions/a-1:skip"),
            Some(Err(m)) if m == ["POST"]
        ));
        let (op, params) = spec
            .find("GET", "/projects/p1/users/me/environments/e-1/actions/a-1")
            .unwrap()
            .unwrap();
        assert_eq!(op.operation_id, "Environments_GetAction");
        assert_eq!(params["actionName"], "a-1");
        let (op, _) = spec
            .find(
                "POST",
                "/projects/p1/users/me/environments/e-1/actions/a-1:skip",
            )
            .unwrap()
            .unwrap();
        assert_eq!(op.operation_id, "Environments_SkipAction");
        let (op, params) = spec
            .find("GET", "/projects/p1/environments")
            .unwrap()
            .unwrap();
        assert_eq!(op.operation_id, "Environments_ListEnvironments");
        assert_eq!(op.next_link.as_deref(), Some("nextLink"));
        assert_eq!(params["projectName"], "p1");
        assert!(matches!(
            spec.find("DELETE", "/projects/p1/environments"),
            Some(Err(m)) if m == ["GET"]
        ));
        assert!(spec.find("GET", "/nothing").is_none());
        // Resolved: no $ref is left in what the validator sees.
        let text = serde_json::to_string(&op.responses["200"]).unwrap();
        assert!(!text.contains("$ref") && text.contains("environmentDefinitionName"));
    }
}
