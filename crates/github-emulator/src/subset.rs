//! The embedded OpenAPI subset: operations, route matching.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// The embedded OpenAPI subset
// ---------------------------------------------------------------------------------------

/// One operation of the embedded OpenAPI subset.
#[derive(Debug)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path template, e.g. `/repos/{owner}/{repo}/statuses/{sha}`.
    pub path: String,
    /// GitHub's operationId, e.g. `repos/create-commit-status`.
    pub operation_id: String,
    /// The documentation page of the operation.
    pub docs_url: String,
    segments: Vec<Segment>,
    raw: Value,
}

#[derive(Debug)]
pub(crate) enum Segment {
    Literal(String),
    Param { name: String, multi: bool },
}

impl Operation {
    /// The operation as it appears in the subset file.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The path and query parameters (resolved OpenAPI parameter objects).
    pub fn parameters(&self) -> &[Value] {
        self.raw["parameters"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether the operation has a request body and requires it.
    pub fn request_body_required(&self) -> bool {
        self.raw["requestBody"]["required"].as_bool() == Some(true)
    }

    /// The JSON schema of the request body, if the operation has one.
    pub fn request_schema(&self) -> Option<&Value> {
        self.raw["requestBody"]["content"]["application/json"].get("schema")
    }

    /// The JSON schema of the 2xx response `status` in media type `media`.
    pub fn response_schema(&self, status: u16, media: &str) -> Option<&Value> {
        self.raw["responses_2xx"][status.to_string()]["content"][media].get("schema")
    }

    /// An example of the 2xx response `status` in `media`: the one called `name`, or the
    /// first one.
    pub fn response_example(&self, status: u16, media: &str, name: Option<&str>) -> Option<&Value> {
        let examples = self.raw["responses_2xx"][status.to_string()]["content"][media]
            .get("examples")?
            .as_object()?;
        match name {
            Some(name) => examples.get(name),
            None => examples.values().next(),
        }
    }

    pub(crate) fn param_def(&self, name: &str, location: &str) -> Option<&Value> {
        self.parameters()
            .iter()
            .find(|p| p["name"].as_str() == Some(name) && p["in"].as_str() == Some(location))
    }

    pub(crate) fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

pub(crate) static SUBSET: OnceLock<Result<Vec<Operation>, String>> = OnceLock::new();

pub(crate) fn parse_subset() -> Result<Vec<Operation>, String> {
    let doc: Value = serde_json::from_str(SUBSET_JSON)
        .map_err(|e| format!("openapi-subset.json is not JSON: {e}"))?;
    let ops = doc["operations"]
        .as_array()
        .ok_or("openapi-subset.json has no `operations` array")?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let field = |name: &str| -> Result<String, String> {
            op[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("an operation in openapi-subset.json has no `{name}`"))
        };
        let method = field("method")?.to_ascii_uppercase();
        let path = field("path")?;
        let operation_id = field("operationId")?;
        let docs_url = op["docs_url"].as_str().unwrap_or(DOCS_ROOT).to_string();
        let params = op["parameters"].as_array();
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        let multi = params.into_iter().flatten().any(|p| {
                            p["name"].as_str() == Some(name) && p["x-multi-segment"] == json!(true)
                        });
                        Segment::Param {
                            name: name.to_string(),
                            multi,
                        }
                    }
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        out.push(Operation {
            method,
            path,
            operation_id,
            docs_url,
            segments,
            raw: op.clone(),
        });
    }
    Ok(out)
}

/// The operations of the embedded subset (parsed once).
pub fn operations() -> anyhow::Result<&'static [Operation]> {
    match SUBSET.get_or_init(parse_subset) {
        Ok(ops) => Ok(ops.as_slice()),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The operation with this operationId, e.g. `issues/create-comment`.
pub fn operation(operation_id: &str) -> Option<&'static Operation> {
    operations()
        .ok()?
        .iter()
        .find(|op| op.operation_id == operation_id)
}

/// The JSON schema of an operation's 2xx response, for tests validating what they received.
pub fn response_schema(operation_id: &str, status: u16, media: &str) -> Option<&'static Value> {
    operation(operation_id)?.response_schema(status, media)
}

pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn match_segments(
    template: &[Segment],
    parts: &[String],
    out: &mut Vec<(String, String)>,
) -> bool {
    let Some((first, rest)) = template.split_first() else {
        return parts.is_empty();
    };
    match first {
        Segment::Literal(lit) => {
            parts.first().is_some_and(|p| p == lit) && match_segments(rest, &parts[1..], out)
        }
        Segment::Param { name, multi } => {
            let max = if *multi {
                parts.len()
            } else {
                parts.len().min(1)
            };
            for take in (1..=max).rev() {
                if parts[..take].iter().any(String::is_empty) {
                    continue;
                }
                out.push((name.clone(), parts[..take].join("/")));
                if match_segments(rest, &parts[take..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

pub(crate) type Route = (&'static Operation, Vec<(String, String)>);

pub(crate) fn match_route(ops: &'static [Operation], method: &str, path: &str) -> Option<Route> {
    let parts: Option<Vec<String>> = path
        .strip_prefix('/')?
        .split('/')
        .map(percent_decode)
        .collect();
    let parts = parts?;
    let mut best: Option<Route> = None;
    for op in ops.iter().filter(|op| op.method == method) {
        let mut params = Vec::new();
        if match_segments(&op.segments, &parts, &mut params)
            && best
                .as_ref()
                .is_none_or(|(b, _)| op.literal_count() > b.literal_count())
        {
            best = Some((op, params));
        }
    }
    best
}
