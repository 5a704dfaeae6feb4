//! Problem details (RFC 9457): the one shape of every refusal the API and the webhook give,
//! `application/problem+json`, and the layer that gives that shape to the refusals made
//! outside Paved's handlers (axum's extractors, unknown routes, 405, the request timeout,
//! body limits), so a client reads every non-2xx answer the same way.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The media type of a problem.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A refusal. `type` is `about:blank` (the status says what kind of problem it is, RFC 9457
/// §4.2.1), `title` the status's reason phrase, `detail` what went wrong for this request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// The same as `detail`: what Paved's refusals said before they were problem details,
    /// kept for the clients written then.
    pub error: String,
    /// Each field or file the request got wrong: a query parameter, or every problem the
    /// pre-flight of a request found (422), with file, field and line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// The open pull request already asking for that environment (409 of a request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<String>,
}

/// One thing a request got wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The file, for a problem in one (a request's manifest); `null` for a parameter.
    pub file: Option<String>,
    /// The field: a query parameter, or a key of the file.
    pub field: Option<String>,
    /// The line in the file, where there is one.
    pub line: Option<usize>,
    pub message: String,
    /// The check that found it (`paved/schema`, `paved/policy`, …), for a file's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl FieldError {
    /// A query or path parameter that is not what the API allows.
    pub fn parameter(name: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            file: None,
            field: Some(name.to_string()),
            line: None,
            message: message.into(),
            check: None,
        }
    }
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        Problem {
            problem_type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            error: detail.clone(),
            detail,
            errors: None,
            pull_request: None,
        }
    }

    /// A bad parameter: 400 naming it.
    pub fn bad_parameter(name: &str, message: &str) -> Problem {
        let mut p = Problem::new(StatusCode::BAD_REQUEST, format!("{name}: {message}"));
        p.errors = Some(vec![FieldError::parameter(name, message)]);
        p
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            body,
        )
            .into_response()
    }
}

/// How much of a refusal made elsewhere is read to become its `detail`.
const MAX_DETAIL_BYTES: usize = 4096;

/// The outermost layer of the server: every 4xx and 5xx answer that is not a problem yet
/// (and not one of the portal's HTML pages) becomes one, its text (or its JSON `error`) the
/// `detail`, its headers (`Allow`, `Retry-After`, `WWW-Authenticate`) kept. Every 5xx is
/// logged here, so none leaves without a log line.
pub async fn answer_as_problem(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let media = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if media.starts_with(CONTENT_TYPE) || media.starts_with("text/html") {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), %path, "answered with a server error");
        }
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_DETAIL_BYTES)
        .await
        .unwrap_or_default();
    let detail = detail_of(&bytes).unwrap_or_else(|| match status {
        StatusCode::NOT_FOUND => format!("no route {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take this method"),
        StatusCode::REQUEST_TIMEOUT => "the request took too long".into(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    });
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), %path, %detail, "answered with a server error");
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut answer = Problem::new(status, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The text of a refusal: its JSON `error`, or its text.
fn detail_of(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            return Some(e.to_string());
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_its_status_and_keeps_the_error_member() {
        let p = Problem::bad_parameter("per_page", "at most 100");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Bad Request");
        assert_eq!(v["status"], 400);
        assert_eq!(v["detail"], "per_page: at most 100");
        assert_eq!(v["error"], v["detail"]);
        assert_eq!(v["errors"][0]["field"], "per_page");
    }

    #[test]
    fn the_detail_of_a_refusal_is_its_json_error_or_its_text() {
        assert_eq!(
            detail_of(br#"{"ok":false,"error":"bad"}"#).as_deref(),
            Some("bad")
        );
        assert_eq!(
            detail_of(b"Failed to deserialize query string: per_page: invalid digit\n").as_deref(),
            Some("Failed to deserialize query string: per_page: invalid digit")
        );
        assert_eq!(detail_of(b""), None);
    }
}
