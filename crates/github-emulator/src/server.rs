//! Request handling: strictness checks, faults, responses.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------

pub(crate) enum Payload {
    Json(Value),
    Raw(Vec<u8>, &'static str),
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) payload: Payload,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) outcome: Outcome,
    pub(crate) reason: Option<String>,
    pub(crate) media: &'static str,
}

impl Answer {
    pub(crate) fn ok(status: u16, body: Value) -> Answer {
        Answer {
            status,
            payload: Payload::Json(body),
            headers: Vec::new(),
            outcome: Outcome::Served,
            reason: None,
            media: "application/json",
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> Answer {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn error(
        status: u16,
        outcome: Outcome,
        message: &str,
        docs: &str,
        reason: String,
    ) -> Answer {
        Answer {
            status,
            payload: Payload::Json(json!({
                "message": message,
                "documentation_url": docs,
                "status": status.to_string(),
            })),
            headers: Vec::new(),
            outcome,
            reason: Some(reason),
            media: "application/json",
        }
    }

    pub(crate) fn reject(status: u16, message: &str, docs: &str, reason: String) -> Answer {
        Answer::error(status, Outcome::Rejected, message, docs, reason)
    }

    pub(crate) fn not_found(docs: &str, reason: String) -> Answer {
        Answer::error(404, Outcome::NotFound, "Not Found", docs, reason)
    }

    /// GitHub's 422 with an `errors` entry.
    pub(crate) fn validation_failed(
        docs: &str,
        resource: &str,
        field: &str,
        message: String,
    ) -> Answer {
        Answer {
            status: 422,
            payload: Payload::Json(json!({
                "message": "Validation Failed",
                "errors": [{"resource": resource, "code": "custom", "field": field, "message": message}],
                "documentation_url": docs,
                "status": "422",
            })),
            headers: Vec::new(),
            outcome: Outcome::Rejected,
            reason: Some(format!("{resource}.{field}: {message}")),
            media: "application/json",
        }
    }

    /// GitHub's 422 with a plain message (e.g. "No commit found for SHA: x").
    pub(crate) fn unprocessable(docs: &str, message: String) -> Answer {
        Answer::reject(422, &message, docs, message.clone())
    }
}

pub(crate) fn fault_answer(fault: &Fault, seq_hint: u64) -> Answer {
    let status = if StatusCode::from_u16(fault.status).is_ok() {
        fault.status
    } else {
        500
    };
    let (message, docs) = match status {
        403 | 429 if fault.rate_limit_reset_secs.is_some() => (
            "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.".to_string(),
            "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api".to_string(),
        ),
        403 | 429 => (
            format!("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID EMU-{seq_hint}."),
            SECONDARY_RATE_LIMIT_DOCS.to_string(),
        ),
        500 => ("Server Error".to_string(), DOCS_ROOT.to_string()),
        502 => ("Bad Gateway".to_string(), DOCS_ROOT.to_string()),
        503 => ("Service Unavailable".to_string(), DOCS_ROOT.to_string()),
        _ => ("Injected fault".to_string(), DOCS_ROOT.to_string()),
    };
    let message = fault.message.clone().unwrap_or(message);
    let mut answer = Answer::error(
        status,
        Outcome::Injected,
        &message,
        &docs,
        format!("injected fault {status}"),
    );
    if let Some(secs) = fault.retry_after_secs {
        answer = answer.header("retry-after", secs.to_string());
    }
    if let Some(secs) = fault.rate_limit_reset_secs {
        let reset = Utc::now().timestamp() + i64::try_from(secs).unwrap_or(i64::MAX / 2);
        answer = answer
            .header("x-ratelimit-remaining", "0".to_string())
            .header("x-ratelimit-reset", reset.to_string());
    }
    answer
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let route = match_route(shared.ops, method.as_str(), &path);
    let operation_id = route.as_ref().map(|(op, _)| op.operation_id.clone());
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let user_agent = header_str(header::USER_AGENT);
    let token = header_str(header::AUTHORIZATION)
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_string()));
    let json_body = serde_json::from_slice::<Value>(&body).ok();

    let mut fault = shared.world().take_fault(operation_id.as_deref());
    let lose_answer = fault.as_ref().is_some_and(|f| f.lose_answer);
    if lose_answer {
        fault = None;
    }
    if let Some(delay) = fault.as_ref().and_then(|f| f.delay) {
        // Simulates a slow GitHub (client timeouts); not a synchronisation device.
        tokio::time::sleep(delay).await;
    }
    let mut w = shared.world();
    let answer = match fault {
        Some(fault) => fault_answer(&fault, w.requests.len() as u64 + 1),
        None => process(
            &shared,
            &mut w,
            &method,
            &path,
            query.as_deref(),
            &headers,
            &body,
            route,
        ),
    };

    let mut response_schema_errors = Vec::new();
    if let (Payload::Json(value), Some(op_id)) = (&answer.payload, &operation_id) {
        if (200..300).contains(&answer.status) {
            match response_schema(op_id, answer.status, answer.media) {
                Some(schema) => {
                    if let Err(errors) = schema::validate(schema, value) {
                        response_schema_errors = errors;
                    }
                }
                None => response_schema_errors.push(format!(
                    "no response schema for {op_id} {} {}",
                    answer.status, answer.media
                )),
            }
        }
    }
    if !response_schema_errors.is_empty() {
        tracing::error!(
            operation = operation_id.as_deref().unwrap_or("?"),
            errors = ?response_schema_errors,
            "GitHub emulator produced a response that does not match GitHub's schema"
        );
    }

    let seq = w.requests.len() as u64 + 1;
    w.requests.push(RequestRecord {
        seq,
        method: method.to_string(),
        path,
        query,
        operation_id,
        status: answer.status,
        outcome: answer.outcome,
        reason: answer.reason.clone(),
        body: json_body,
        user_agent,
        token,
        response_schema_errors,
        at: Utc::now(),
    });
    drop(w);
    shared.changed();
    if let Some(reason) = &answer.reason {
        tracing::debug!(seq, status = answer.status, reason = %reason, "GitHub emulator answered an error");
    }
    if lose_answer {
        // The effect happened; the answer breaks off mid-body.
        let broken = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("answer lost (injected)"))
        });
        let mut response = Response::new(Body::from_stream(broken));
        *response.status_mut() =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return response;
    }
    into_response(answer, seq)
}

pub(crate) fn into_response(answer: Answer, seq: u64) -> Response {
    let (bytes, content_type) = match answer.payload {
        Payload::Json(v) => (
            serde_json::to_vec(&v).unwrap_or_default(),
            "application/json; charset=utf-8",
        ),
        Payload::Raw(bytes, ct) => (bytes, ct),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("x-github-request-id", HeaderValue::from(seq));
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
    let reset = Utc::now().timestamp() + 3600;
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert("x-ratelimit-used", HeaderValue::from_static("1"));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

/// What the client asked for in `Accept`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Media {
    Json,
    Object,
    Raw,
}

pub(crate) fn negotiate(op: &Operation, headers: &HeaderMap) -> Result<Media, String> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(Media::Json);
    };
    let accept = accept
        .to_str()
        .map_err(|_| "the Accept header is not ASCII".to_string())?;
    let mut chosen = Media::Json;
    for item in accept.split(',') {
        let media = item
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some(rest) = media.strip_prefix("application/vnd.github") else {
            continue; // */*, application/json, anything else: GitHub answers JSON.
        };
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let rest = rest.strip_prefix("v3").unwrap_or(rest);
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        let kind = rest.strip_suffix("+json").unwrap_or(rest);
        let kind = kind.strip_prefix('+').unwrap_or(kind);
        match kind {
            "" | "json" => {}
            k if k.ends_with("-preview") => {}
            "object" if op.operation_id == "repos/get-content" => chosen = Media::Object,
            "raw" if op.operation_id == "repos/get-content" => chosen = Media::Raw,
            other => {
                return Err(format!(
                    "the emulator does not implement the media type {media:?} (`{other}`) for {}",
                    op.operation_id
                ))
            }
        }
    }
    Ok(chosen)
}

pub(crate) fn typed_param(raw: &str, schema: &Value) -> Result<Value, String> {
    let ty = schema["type"].as_str().unwrap_or("string");
    match ty {
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        "boolean" => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{raw:?} is not a boolean")),
        },
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn process(
    shared: &Shared,
    w: &mut World,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    route: Option<Route>,
) -> Answer {
    let Some((op, path_params)) = route else {
        return Answer::reject(
            404,
            "Not Found",
            DOCS_ROOT,
            format!("no operation of the GitHub subset matches {method} {path}"),
        );
    };
    let docs = op.docs_url.as_str();

    // User-Agent.
    let ua_ok = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    if !ua_ok {
        return Answer::reject(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.",
            docs,
            "no User-Agent header".to_string(),
        );
    }

    // Authorization. The manifest flow's conversion takes none: its one-time code is the
    // credential (GitHub's docs: no authentication).
    static NO_AUTH: HeaderValue = HeaderValue::from_static("token none");
    let anonymous = op.operation_id == crate::apps::CONVERSION;
    let auth = match headers.get(header::AUTHORIZATION) {
        Some(a) => Some(a),
        None if anonymous => Some(&NO_AUTH),
        None => None,
    };
    let Some(auth) = auth else {
        return Answer::reject(
            401,
            "Requires authentication",
            docs,
            "no Authorization header".to_string(),
        );
    };
    let auth = auth.to_str().unwrap_or("");
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    let scheme = scheme.to_ascii_lowercase();
    let token = token.trim();
    if !(scheme == "token" || scheme == "bearer") || token.is_empty() || token.contains(' ') {
        return Answer::reject(
            401,
            "Bad credentials",
            docs,
            "the Authorization header is not `token X` or `Bearer X`".to_string(),
        );
    }
    let now = Utc::now();
    if op.operation_id == "apps/create-installation-access-token" {
        if scheme != "bearer" {
            return Answer::reject(
                401,
                "A JSON web token could not be decoded",
                docs,
                "the installation-token endpoint needs `Authorization: Bearer <app JWT>`"
                    .to_string(),
            );
        }
        if let Err(why) = check_app_jwt(token, now.timestamp())
            .and_then(|()| crate::apps::check_signature(w, token))
        {
            return Answer::reject(401, &why, docs, format!("app JWT refused: {why}"));
        }
    } else if shared.config.require_issued_token && !anonymous {
        let issued = w
            .tokens
            .iter()
            .any(|t| t.token == token && t.expires_at > now);
        let user = w.user_tokens.contains_key(token);
        if !issued && !user && !shared.config.static_tokens.iter().any(|t| t == token) {
            return Answer::reject(
                401,
                "Bad credentials",
                docs,
                "the token is not an unexpired installation token issued by the emulator"
                    .to_string(),
            );
        }
    }

    // Accept.
    let media = match negotiate(op, headers) {
        Ok(m) => m,
        Err(why) => return Answer::reject(415, "Unsupported 'Accept' header", docs, why),
    };

    // Parameters.
    let mut params: BTreeMap<String, Value> = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, raw) in &path_params {
        let schema = op
            .param_def(name, "path")
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| json!({"type": "string"}));
        match typed_param(raw, &schema) {
            Ok(v) => match schema::validate(&schema, &v) {
                Ok(()) => {
                    params.insert(name.clone(), v);
                }
                Err(errs) => problems.push(format!("path parameter `{name}`: {}", errs.join("; "))),
            },
            Err(e) => problems.push(format!("path parameter `{name}`: {e}")),
        }
    }
    let mut query_pairs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, raw) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let (name, raw) = (name.into_owned(), raw.into_owned());
        let Some(def) = op.param_def(&name, "query") else {
            if shared.config.deny_unlisted_properties {
                let known: Vec<&str> = op
                    .parameters()
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                problems.push(format!(
                    "unknown query parameter `{name}` (the operation accepts: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            continue;
        };
        if !seen.insert(name.clone()) {
            problems.push(format!("query parameter `{name}` is given more than once"));
            continue;
        }
        let schema = &def["schema"];
        match typed_param(&raw, schema) {
            Ok(v) => match schema::validate(schema, &v) {
                Ok(()) => {
                    params.insert(name.clone(), v);
                    query_pairs.push((name, raw));
                }
                Err(errs) => {
                    problems.push(format!("query parameter `{name}`: {}", errs.join("; ")))
                }
            },
            Err(e) => problems.push(format!("query parameter `{name}`: {e}")),
        }
    }
    for def in op.parameters() {
        if def["in"] == "query" && def["required"] == json!(true) {
            if let Some(name) = def["name"].as_str() {
                if !params.contains_key(name) {
                    problems.push(format!("query parameter `{name}` is required"));
                }
            }
        }
    }
    if !problems.is_empty() {
        let detail = problems.join("\n");
        return Answer::reject(400, &format!("Invalid request.\n\n{detail}"), docs, detail);
    }

    // Body.
    let mut body_value = Value::Null;
    if let Some(schema) = op.request_schema() {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        if blank {
            if op.request_body_required() {
                return Answer::reject(
                    400,
                    "Invalid request.\n\nA JSON request body is required.",
                    docs,
                    format!("{} requires a JSON body and none was sent", op.operation_id),
                );
            }
        } else {
            match serde_json::from_slice::<Value>(body) {
                Err(e) => {
                    return Answer::reject(
                        400,
                        "Problems parsing JSON",
                        docs,
                        format!("the body is not JSON: {e}"),
                    )
                }
                Ok(v) => {
                    let opts = schema::Options {
                        deny_unlisted_properties: shared.config.deny_unlisted_properties,
                    };
                    if let Err(errs) = schema::validate_with(schema, &v, opts) {
                        let detail = errs.join("\n");
                        return Answer::reject(
                            400,
                            &format!("Invalid request.\n\n{detail}"),
                            docs,
                            format!(
                                "the body does not match the {} schema: {}",
                                op.operation_id,
                                errs.join("; ")
                            ),
                        );
                    }
                    body_value = v;
                }
            }
        }
    }

    let ctx = Ctx {
        shared,
        op,
        docs,
        params,
        query_pairs,
        body: body_value,
        media,
        now,
        path,
        token,
    };
    dispatch(&ctx, w)
}

pub(crate) fn check_app_jwt(token: &str, now: i64) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err("A JSON web token could not be decoded".to_string());
    }
    let claims = base64url_decode(parts[1])
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .ok_or("A JSON web token could not be decoded")?;
    let iat = claims["iat"]
        .as_i64()
        .ok_or("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")?;
    let exp = claims["exp"]
        .as_i64()
        .ok_or("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")?;
    if claims.get("iss").is_none_or(Value::is_null) {
        return Err("'Issuer' claim ('iss') must be an Integer".to_string());
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_string());
    }
    // GitHub: at most 10 minutes ahead (a little clock drift tolerated).
    if exp > now + 600 + 30 {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    if iat > now + 60 {
        return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".to_string());
    }
    Ok(())
}

pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) op: &'static Operation,
    pub(crate) docs: &'a str,
    pub(crate) params: BTreeMap<String, Value>,
    pub(crate) query_pairs: Vec<(String, String)>,
    pub(crate) body: Value,
    pub(crate) media: Media,
    pub(crate) now: DateTime<Utc>,
    pub(crate) path: &'a str,
    /// The token the request was sent with (checked above).
    pub(crate) token: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn s(&self, name: &str) -> &str {
        self.params.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub(crate) fn int(&self, name: &str) -> i64 {
        self.params.get(name).and_then(Value::as_i64).unwrap_or(0)
    }

    pub(crate) fn page(&self) -> (usize, usize) {
        let per_page = self
            .params
            .get("per_page")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        let per_page = if per_page < 1 { 30 } else { per_page.min(100) };
        let page = self
            .params
            .get("page")
            .and_then(Value::as_i64)
            .unwrap_or(1)
            .max(1);
        (
            usize::try_from(per_page).unwrap_or(30),
            usize::try_from(page).unwrap_or(1),
        )
    }

    pub(crate) fn body_str(&self, name: &str) -> Option<String> {
        self.body
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    pub(crate) fn repo_api(&self) -> String {
        format!(
            "{}/repos/{}/{}",
            self.shared.base,
            self.s("owner"),
            self.s("repo")
        )
    }

    pub(crate) fn not_found(&self, what: String) -> Answer {
        Answer::not_found(self.docs, what)
    }

    /// Paginates `items` like GitHub (`Link` with prev/next/last/first).
    pub(crate) fn paginate(&self, items: Vec<Value>) -> (Vec<Value>, Option<String>) {
        let (per_page, page) = self.page();
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let start = (page - 1).saturating_mul(per_page);
        let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
        if last <= 1 {
            return (slice, None);
        }
        let mut keep: Vec<(String, String)> = self
            .query_pairs
            .iter()
            .filter(|(k, _)| k != "page" && k != "per_page")
            .cloned()
            .collect();
        keep.push(("per_page".to_string(), per_page.to_string()));
        let link_to = |p: usize| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &keep {
                ser.append_pair(k, v);
            }
            ser.append_pair("page", &p.to_string());
            format!("<{}{}?{}>", self.shared.base, self.path, ser.finish())
        };
        let mut links = Vec::new();
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", link_to((page - 1).min(last))));
        }
        if page < last {
            links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
            links.push(format!("{}; rel=\"last\"", link_to(last)));
        }
        if page > 1 {
            links.push(format!("{}; rel=\"first\"", link_to(1)));
        }
        (slice, Some(links.join(", ")))
    }
}

pub(crate) fn with_link(answer: Answer, link: Option<String>) -> Answer {
    match link {
        Some(l) => answer.header("link", l),
        None => answer,
    }
}

pub(crate) fn dispatch(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    match ctx.op.operation_id.as_str() {
        "repos/create-commit-status" => create_status(ctx, w),
        "repos/get-combined-status-for-ref" => combined_status(ctx, w),
        "checks/create" => create_check_run(ctx, w),
        "checks/update" => update_check_run(ctx, w),
        "issues/create-comment" => create_comment(ctx, w),
        "issues/update-comment" => update_comment(ctx, w),
        "issues/list-comments" => list_comments(ctx, w),
        "repos/create-deployment" => create_deployment(ctx, w),
        "repos/create-deployment-status" => create_deployment_status(ctx, w),
        "repos/list-deployments" => list_deployments(ctx, w),
        "pulls/get" => get_pull(ctx, w),
        "pulls/create" => crate::pulls::create_pull(ctx, w),
        "repos/list-pull-requests-associated-with-commit" => pulls_for_commit(ctx, w),
        "pulls/list-files" => list_pull_items(ctx, w, true),
        "pulls/list-reviews" => list_pull_items(ctx, w, false),
        "repos/get-content" => get_content(ctx, w),
        "apps/create-installation-access-token" => create_token(ctx, w),
        "repos/get" => get_repo(ctx, w),
        "users/get-authenticated" => crate::people::get_authenticated(ctx, w),
        "teams/list-members-in-org" => crate::people::list_team_members(ctx, w),
        "repos/get-collaborator-permission-level" => crate::people::collaborator_permission(ctx, w),
        "pulls/list" => crate::pulls::list_pulls(ctx, w),
        "pulls/update" => crate::pulls::update_pull(ctx, w),
        "issues/create" => crate::issues::create_issue(ctx, w),
        "issues/add-labels" => crate::issues::add_labels(ctx, w),
        "issues/update" => crate::issues::update_issue(ctx, w),
        "git/get-ref" => crate::contents::get_ref(ctx, w),
        "git/create-ref" => crate::contents::create_ref(ctx, w),
        "repos/create-or-update-file-contents" => crate::contents::put_content(ctx, w),
        "repos/delete-file" => crate::contents::delete_content(ctx, w),
        crate::apps::CONVERSION => crate::apps::convert(ctx, w),
        other => Answer::reject(
            501,
            "Not Implemented",
            ctx.docs,
            format!("the emulator has no implementation for {other}"),
        ),
    }
}
