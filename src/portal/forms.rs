//! The request forms: each template's form, made from its parameters, and the post that
//! opens a request through the Orchestrator (the very call `POST /api/v1/requests` makes).
//! Types are checked in the browser (input types, `required`, `pattern`) and again here;
//! the pre-flight's problems are shown next to their fields.

use super::{form_session, html, refused, sign_in_page, Chrome, PortalState};
use crate::api::answers::Template as ApiTemplate;
use crate::identity::Caller;
use crate::ids::RepoName;
use crate::orchestrator::{RequestAction, RequestBody, RequestError};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use std::collections::BTreeMap;

/// The manifest's name pattern, written for HTML's `v`-mode regular expressions (a `-` in a
/// class escaped).
/// Problems to show on a form: the field each is about (`None`: the form as a whole), and
/// what to say.
type Problems = Vec<(Option<String>, String)>;

const NAME_PATTERN: &str = r"[a-z0-9]([a-z0-9\-]*[a-z0-9])?";

pub(crate) struct Field {
    pub name: String,
    pub label: String,
    /// `text`, `number`, `date`, `checkbox`…
    pub input: String,
    pub value: String,
    pub required: bool,
    pub options: Vec<String>,
    pub pattern: Option<String>,
    /// The latest date a date field allows.
    pub max: Option<String>,
    /// For the type's select: each type's latest expiry date, where it limits one (the
    /// script sets the date field's `max` and `required` from the type chosen).
    pub option_max: BTreeMap<String, String>,
    /// For a tag's field: the types that need it (the script makes the field required
    /// when one of them is chosen; the server checks it either way).
    pub needed_by: Vec<String>,
    pub help: Option<String>,
    pub error: Option<String>,
}

pub(crate) struct RequestForm {
    pub anchor: String,
    pub repository: String,
    pub name: String,
    pub title: String,
    pub description: Option<String>,
    pub fields: Vec<Field>,
    pub other_errors: Vec<String>,
}

#[derive(Template)]
#[template(path = "portal/templates.html")]
struct TemplatesPage {
    chrome: Chrome,
    error: Option<String>,
    forms: Vec<RequestForm>,
}

fn field(name: &str, label: &str, input: &str) -> Field {
    Field {
        name: name.into(),
        label: label.into(),
        input: input.into(),
        value: String::new(),
        required: false,
        options: Vec::new(),
        pattern: None,
        max: None,
        option_max: BTreeMap::new(),
        needed_by: Vec::new(),
        help: None,
        error: None,
    }
}

fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The form of template `t` for the teams `teams`, filled with `posted` (after a refusal).
fn form_of(
    t: &ApiTemplate,
    teams: &[String],
    platform: Option<&crate::manifest::platform::Platform>,
    posted: &BTreeMap<String, String>,
    today: chrono::DateTime<chrono::Utc>,
) -> RequestForm {
    let mut fields = Vec::new();
    let mut name = field("environment", "Environment name", "text");
    name.required = true;
    name.pattern = Some(NAME_PATTERN.into());
    name.help = Some("Lower case letters, digits and dashes.".into());
    fields.push(name);
    let mut team = field("team", "Team", "text");
    team.required = true;
    team.options = teams.to_vec();
    fields.push(team);
    let mut ty = field("type", "Environment type", "text");
    ty.required = true;
    ty.options = t.environment_types.clone();
    fields.push(ty);
    // What each allowed type asks: how long it may live, which tags it needs.
    let types: Vec<(&String, &crate::manifest::platform::EnvironmentType)> = t
        .environment_types
        .iter()
        .filter_map(|n| Some((n, platform?.environment_types.get(n)?)))
        .collect();
    let limits: Vec<String> = types
        .iter()
        .filter_map(|(n, ty)| Some(format!("{n}: at most {}", ty.max_ttl.as_ref()?)))
        .collect();
    let last_day = |secs: u64| {
        (today + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2)))
            .format("%Y-%m-%d")
            .to_string()
    };
    // The type's select knows each type's latest day, for the script.
    if let Some(ty_field) = fields.last_mut() {
        ty_field.option_max = types
            .iter()
            .filter_map(|(n, ty)| Some(((*n).clone(), last_day(ty.max_ttl.as_ref()?.seconds()))))
            .collect();
    }
    let mut expires = field("expiresAt", "Keep it until", "date");
    expires.help = Some(if limits.is_empty() {
        "Optional: no type of this template limits how long an environment lives.".into()
    } else {
        format!(
            "Required for a type that limits it ({}).",
            limits.join("; ")
        )
    });
    // Without a script, the browser refuses a date past the longest limit, when every type
    // has one (and then the date is required whichever is chosen).
    let longest = types
        .iter()
        .map(|(_, ty)| ty.max_ttl.as_ref().map(|d| d.seconds()))
        .collect::<Option<Vec<u64>>>()
        .and_then(|v| v.into_iter().max());
    expires.max = longest.map(last_day);
    expires.required = longest.is_some() && types.len() == t.environment_types.len();
    expires.needed_by = types
        .iter()
        .filter(|(_, ty)| ty.max_ttl.is_some())
        .map(|(n, _)| (*n).clone())
        .collect();
    fields.push(expires);
    // Each tag a type requires is a field of its own, required when the type chosen needs
    // it (always, when every type does).
    let mut needed: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (n, ty) in &types {
        for tag in &ty.required_tags {
            needed.entry(tag.as_str()).or_default().push((*n).clone());
        }
    }
    for (tag, by) in needed {
        let mut f = field(&format!("tag.{tag}"), &format!("Tag {tag}"), "text");
        f.required = by.len() == t.environment_types.len();
        f.help = Some(format!("Needed by {}.", by.join(", ")));
        f.needed_by = by;
        fields.push(f);
    }
    let mut tags = field("tags", "Other tags", "text");
    tags.help = Some("Optional: key=value, separated by commas.".into());
    fields.push(tags);
    let required: Vec<&str> = t.parameters["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    for (id, p) in t.parameters["properties"].as_object().into_iter().flatten() {
        if p["readOnly"] == true {
            continue;
        }
        let input = match p["type"].as_str() {
            Some("number") | Some("integer") => "number",
            Some("boolean") => "checkbox",
            _ => "text",
        };
        let mut f = field(
            &format!("param.{id}"),
            p["title"].as_str().unwrap_or(id),
            input,
        );
        f.required = required.contains(&id.as_str());
        f.help = p["description"].as_str().map(str::to_string);
        f.value = text_of(&p["default"]);
        if let Some(allowed) = p["enum"].as_array() {
            f.options = allowed.iter().map(text_of).collect();
        }
        if input == "checkbox" {
            // A checkbox cannot say "false" in a form: a select says both.
            f.options = vec!["true".into(), "false".into()];
        }
        fields.push(f);
    }
    for f in &mut fields {
        if let Some(v) = posted.get(&f.name) {
            f.value = v.clone();
        }
    }
    RequestForm {
        anchor: format!("{}-{}", t.repository.replace('/', "-"), t.name),
        repository: t.repository.clone(),
        name: t.name.clone(),
        title: t.title.clone(),
        description: t.description.clone().or(t.summary.clone()),
        fields,
        other_errors: Vec::new(),
    }
}

/// The teams `caller` may ask for in `repo`: theirs; every team for a platform admin.
async fn teams_for(s: &PortalState, caller: &Caller, repo: &RepoName) -> Vec<String> {
    let access = s.api.access(caller, repo).await;
    if access.admin {
        if let Some((_, g)) = s.api.directory.governance(repo).await {
            if let Some(p) = g.platform() {
                return p.teams.keys().cloned().collect();
            }
        }
    }
    access.teams.iter().cloned().collect()
}

/// Every template's form; `failed`: the one posted, with its values and errors.
async fn page(
    s: &PortalState,
    sess: &crate::portal::session::Session,
    failed: Option<(&BTreeMap<String, String>, Problems)>,
    error: Option<String>,
) -> Response {
    let caller = Caller::User(sess.login.clone());
    let templates = match crate::api::graph::visible_templates(&s.api, &caller).await {
        Ok(t) => t,
        Err(_) => {
            return refused(
                Some(sess),
                StatusCode::SERVICE_UNAVAILABLE,
                "Paved cannot read its database just now.",
            )
        }
    };
    let mut forms = Vec::new();
    for t in &templates {
        let Ok(repo) = RepoName::parse(&t.repository) else {
            continue;
        };
        let teams = teams_for(s, &caller, &repo).await;
        if teams.is_empty() {
            continue;
        }
        let this = failed.as_ref().filter(|(posted, _)| {
            posted.get("repository") == Some(&t.repository)
                && posted.get("template") == Some(&t.name)
        });
        let empty = BTreeMap::new();
        let governance = s.api.directory.governance(&repo).await;
        let platform = governance.as_ref().and_then(|(_, g)| g.platform());
        let mut form = form_of(
            t,
            &teams,
            platform,
            this.map_or(&empty, |(p, _)| p),
            s.api.clock.now(),
        );
        if let Some((_, problems)) = this {
            for (at, message) in problems {
                match at
                    .as_ref()
                    .and_then(|a| form.fields.iter_mut().find(|f| &f.name == a))
                {
                    Some(f) => f.error = Some(message.clone()),
                    None => form.other_errors.push(message.clone()),
                }
            }
        }
        forms.push(form);
    }
    // A form shown again with its errors is a page like any other (200): the errors are
    // in it, beside their fields.
    let status = StatusCode::OK;
    let body = TemplatesPage {
        chrome: Chrome::of(sess),
        error,
        forms,
    };
    (status, html(body.render())).into_response()
}

/// `GET /templates`.
pub(super) async fn templates(State(s): State<PortalState>, headers: HeaderMap) -> Response {
    match s.session(&headers) {
        Some(sess) => page(&s, &sess, None, None).await,
        None => sign_in_page(&s, &headers, "/templates"),
    }
}

/// Which form field a pre-flight problem is about (`None`: the form as a whole).
fn field_of(problem_field: Option<&str>, message: &str) -> Option<String> {
    let f = problem_field?;
    let f = f.trim_start_matches('/').replace('/', ".");
    if let Some(p) = f.split("parameters.").nth(1) {
        return Some(format!("param.{}", p.split('.').next().unwrap_or(p)));
    }
    // `spec.tags.<key>` (a tag given empty), or `spec.tags` naming a missing `tag "<key>"`.
    if let Some(tag) = f.split("tags.").nth(1) {
        return Some(format!("tag.{tag}"));
    }
    if f.ends_with("tags") {
        if let Some(tag) = message
            .strip_prefix("tag \"")
            .and_then(|m| m.split('"').next())
        {
            return Some(format!("tag.{tag}"));
        }
    }
    let last = f.rsplit('.').next().unwrap_or(&f);
    Some(
        match last {
            "name" => "environment",
            "team" => "team",
            "type" | "environmentType" => "type",
            "expiresAt" => "expiresAt",
            "tags" => "tags",
            _ => return None,
        }
        .to_string(),
    )
}

/// A value of the parameter `id` as its type says, or the error to show beside it.
fn typed(kind: &str, raw: &str) -> Result<serde_json::Value, String> {
    match kind {
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        "integer" => raw
            .parse::<i64>()
            .map(serde_json::Value::from)
            .map_err(|_| format!("{raw:?} is not a whole number")),
        "boolean" => match raw {
            "true" => Ok(true.into()),
            "false" => Ok(false.into()),
            _ => Err("true or false".into()),
        },
        "array" | "object" => serde_json::from_str(raw).map_err(|_| "write JSON".to_string()),
        _ => Ok(serde_json::Value::String(raw.to_string())),
    }
}

/// `POST /requests`: a request from a form (a template's, or an environment's extend and
/// delete buttons). Refused without this session's CSRF token; a good one goes to the
/// request's page, a refused one back to its form with the errors beside the fields.
pub(super) async fn submit(
    State(s): State<PortalState>,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let posted: BTreeMap<String, String> = pairs.into_iter().collect();
    let sess = match form_session(&s, &headers, posted.get("csrf").map_or("", String::as_str)) {
        Ok(sess) => sess,
        Err(r) => return *r,
    };
    let get = |k: &str| {
        posted
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let Some(repository) = get("repository") else {
        return refused(
            Some(&sess),
            StatusCode::BAD_REQUEST,
            "The form has no repository.",
        );
    };
    let Ok(repo) = RepoName::parse(&repository) else {
        return refused(
            Some(&sess),
            StatusCode::BAD_REQUEST,
            "The form's repository is not owner/name.",
        );
    };
    let caller = Caller::User(sess.login.clone());
    // The form's action, read once where it enters.
    let raw_action = get("action").unwrap_or_else(|| "create".into());
    let Some(action) = RequestAction::parse(&raw_action) else {
        return refused(
            Some(&sess),
            StatusCode::BAD_REQUEST,
            &format!("{raw_action:?} is not something a request can do."),
        );
    };
    // Parameters, typed by the template's schema.
    let mut problems: Problems = Vec::new();
    let mut parameters = serde_json::Map::new();
    if action == RequestAction::Create {
        let templates = crate::api::graph::visible_templates(&s.api, &caller)
            .await
            .unwrap_or_default();
        let t = templates.iter().find(|t| {
            Some(&t.repository) == Some(&repository) && posted.get("template") == Some(&t.name)
        });
        for (id, p) in t
            .map(|t| &t.parameters["properties"])
            .and_then(|p| p.as_object())
            .into_iter()
            .flatten()
        {
            if let Some(raw) = get(&format!("param.{id}")) {
                match typed(p["type"].as_str().unwrap_or("string"), &raw) {
                    Ok(v) => {
                        parameters.insert(id.clone(), v);
                    }
                    Err(e) => problems.push((Some(format!("param.{id}")), e)),
                }
            }
        }
    }
    let mut tags = BTreeMap::new();
    for (key, value) in &posted {
        if let Some(tag) = key.strip_prefix("tag.") {
            if !value.trim().is_empty() {
                tags.insert(tag.to_string(), value.trim().to_string());
            }
        }
    }
    for item in get("tags")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        match item.split_once('=') {
            Some((k, v)) => match tags.get(k.trim()) {
                Some(given) if given != v.trim() => problems.push((
                    Some("tags".into()),
                    format!("{}: given twice, as {given:?} and {:?}", k.trim(), v.trim()),
                )),
                _ => {
                    tags.insert(k.trim().to_string(), v.trim().to_string());
                }
            },
            None => problems.push((Some("tags".into()), format!("{item:?}: write key=value"))),
        }
    }
    let expires_at = match get("expiresAt") {
        Some(d) => match chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d") {
            Ok(day) => Some(format!("{}T23:59:59Z", day.format("%Y-%m-%d"))),
            Err(_) => {
                problems.push((Some("expiresAt".into()), "a date, YYYY-MM-DD".into()));
                None
            }
        },
        None => None,
    };
    if !problems.is_empty() {
        return back(&s, &sess, &posted, action, problems).await;
    }
    let body = RequestBody {
        repository,
        action,
        environment: get("environment").unwrap_or_default(),
        team: get("team"),
        env_type: get("type"),
        template: get("template"),
        parameters: (action == RequestAction::Create).then_some(parameters),
        expires_at,
        tags: (!tags.is_empty()).then_some(tags),
    };
    let access = s.api.access(&caller, &repo).await;
    match s.api.orchestrator.open(&caller, &access, body).await {
        Ok(o) => Redirect::to(&format!("/requests/{}", o.id)).into_response(),
        Err(RequestError::Unprocessable(found)) => {
            let problems = found
                .into_iter()
                .map(|p| {
                    let at = field_of(p.field.as_deref(), &p.message);
                    let message = match &p.field {
                        Some(f) if at.is_none() => format!("{}: {f}: {}", p.file, p.message),
                        _ => p.message.clone(),
                    };
                    (at, message)
                })
                .collect();
            back(&s, &sess, &posted, action, problems).await
        }
        Err(e) => {
            let status = match &e {
                RequestError::Forbidden(_) => StatusCode::FORBIDDEN,
                RequestError::NotFound(_) => StatusCode::NOT_FOUND,
                RequestError::Conflict { .. } => StatusCode::CONFLICT,
                RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            if action == RequestAction::Create {
                let mut r = page(&s, &sess, None, Some(e.to_string())).await;
                *r.status_mut() = status;
                r
            } else {
                refused(Some(&sess), status, &e.to_string())
            }
        }
    }
}

/// Back to the form that was posted, with its errors (an environment's buttons: a page
/// listing them).
async fn back(
    s: &PortalState,
    sess: &crate::portal::session::Session,
    posted: &BTreeMap<String, String>,
    action: RequestAction,
    problems: Problems,
) -> Response {
    if action == RequestAction::Create {
        page(s, sess, Some((posted, problems)), None).await
    } else {
        let text: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
        refused(
            Some(sess),
            StatusCode::UNPROCESSABLE_ENTITY,
            &text.join(" "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn a_tag_problem_goes_beside_the_tags_own_field() {
        // A required tag left out: the policy names `spec.tags` and the tag in its message.
        assert_eq!(
            field_of(
                Some("spec.tags"),
                "tag \"cost-center\" is required for type quick"
            ),
            Some("tag.cost-center".into())
        );
        // A tag given empty: its own path.
        assert_eq!(
            field_of(Some("/spec/tags/cost-center"), "must not be empty"),
            Some("tag.cost-center".into())
        );
        // Anything else about the tags stays with the free field.
        assert_eq!(
            field_of(Some("spec.tags"), "too many tags"),
            Some("tags".into())
        );
        assert_eq!(
            field_of(Some("spec.parameters.size"), "x"),
            Some("param.size".into())
        );
        assert_eq!(
            field_of(Some("spec.expiresAt"), "x"),
            Some("expiresAt".into())
        );
    }
}
