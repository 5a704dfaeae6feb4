//! Every parameter the API takes, with what it allows: one table that both the OpenAPI
//! document ([`super::openapi::finish`] writes each rule into the parameter's schema) and
//! the handlers ([`check`]) read, so a value the document allows is never refused as
//! malformed and one it forbids is refused with 400 naming the parameter.

use crate::problem::Problem;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

/// One part of a repository name, as GitHub allows it: 1–100 of letters, digits, `.`, `_`
/// and `-`, but not `.` or `..` (the second and third branches spell out "starts with a dot"
/// without look-ahead, which not every JSON Schema engine has). A macro, so the two
/// patterns below are made of the one spelling.
macro_rules! repo_part {
    () => {
        r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,98}|\.\.[A-Za-z0-9._-]{1,98})"
    };
}
pub const REPO_PART: &str = concat!("^", repo_part!(), "$");
/// `owner/name`: two parts.
pub const REPOSITORY: &str = concat!("^", repo_part!(), "/", repo_part!(), "$");
/// A DNS label: environment and team names (their lengths are separate rules).
pub const DNS_LABEL: &str = r"^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$";
/// A commit SHA, 40 hex digits.
pub const SHA: &str = r"^[0-9a-fA-F]{40}$";
/// GitHub's `X-GitHub-Delivery`, as Paved keeps it.
pub const DELIVERY_ID: &str = r"^[A-Za-z0-9_-]{1,100}$";
/// An entity's id: its kind, `:`, and printable ASCII (`environment:owner/repo/name`).
pub const ENTITY_ID: &str = r"^[A-Za-z]+:[!-~]+$";
/// A schema file's name (`environment.json`, `platform.json`; another is 404).
pub const SCHEMA_FILE: &str = r"^[a-z][a-z0-9-]*\.json$";
/// Free text in a query: no control characters.
pub const TEXT: &str = r"^[^\x00-\x1f\x7f]*$";

/// Entities per page unless `per_page` says otherwise, and the most it may say.
pub const PER_PAGE: usize = 30;
pub const MAX_PER_PAGE: usize = 100;
/// The last page one may ask for (far past any inventory; a page past the end is empty).
pub const MAX_PAGE: usize = 100_000;

/// What one parameter allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rule {
    pub pattern: Option<&'static str>,
    /// What the pattern allows, in words (the refusal's message).
    pub words: &'static str,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub one_of: Option<&'static [&'static str]>,
    /// An integer between these.
    pub range: Option<(i64, i64)>,
}

const fn text(pattern: &'static str, words: &'static str, min: usize, max: usize) -> Rule {
    Rule {
        pattern: Some(pattern),
        words,
        min_length: Some(min),
        max_length: Some(max),
        one_of: None,
        range: None,
    }
}

const fn integer(min: i64, max: i64) -> Rule {
    Rule {
        pattern: None,
        words: "",
        min_length: None,
        max_length: None,
        one_of: None,
        range: Some((min, max)),
    }
}

const REPO_PART_WORDS: &str = "letters, digits, '.', '_' and '-', as GitHub allows";
const DNS_LABEL_WORDS: &str =
    "lower-case letters, digits and '-', starting and ending with a letter or digit";

/// The rule of parameter `name` of the route `path` (`None`: any string).
pub fn rule(path: &str, name: &str) -> Option<Rule> {
    Some(match (name, path) {
        ("owner" | "repo", _) => text(REPO_PART, REPO_PART_WORDS, 1, 100),
        ("repository", _) => text(
            REPOSITORY,
            "owner/name, as GitHub spells a repository",
            3,
            201,
        ),
        ("name", _) => text(DNS_LABEL, DNS_LABEL_WORDS, 3, 40),
        ("team", _) => text(DNS_LABEL, DNS_LABEL_WORDS, 1, 63),
        ("sha", _) => text(SHA, "a commit SHA of 40 hex digits", 40, 40),
        ("kind", _) => Rule {
            one_of: Some(crate::graph::KINDS),
            ..Rule::default()
        },
        ("q", _) => text(TEXT, "text without control characters", 0, 200),
        ("page", _) => integer(1, MAX_PAGE as i64),
        ("per_page", _) => integer(1, MAX_PER_PAGE as i64),
        ("file", _) => text(SCHEMA_FILE, "a file name ending in .json", 6, 100),
        ("id", p) if p.starts_with("/api/v1/deliveries/") => {
            text(DELIVERY_ID, "letters, digits, '_' and '-'", 1, 100)
        }
        ("id", p)
            if p.starts_with("/api/v1/runs/")
                || p.starts_with("/api/v1/operations/")
                || p.starts_with("/api/v1/requests/") =>
        {
            integer(1, i64::MAX)
        }
        ("id", p) if p.starts_with("/api/v1/entities/") => text(
            ENTITY_ID,
            "kind:id, e.g. environment:owner/repo/name",
            3,
            400,
        ),
        _ => return None,
    })
}

/// Whether `value` is what `rule` allows.
pub fn allows(rule: &Rule, value: &str) -> bool {
    if let Some((min, max)) = rule.range {
        // Digits only, as a client writes an integer (no sign, no spaces).
        return !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit())
            && value.parse::<i64>().is_ok_and(|n| n >= min && n <= max);
    }
    let chars = value.chars().count();
    if rule.min_length.is_some_and(|m| chars < m) || rule.max_length.is_some_and(|m| chars > m) {
        return false;
    }
    if let Some(list) = rule.one_of {
        return list.contains(&value);
    }
    match rule.pattern {
        Some(p) => compiled(p).is_some_and(|re| re.is_match(value)),
        None => true,
    }
}

/// The patterns, compiled once.
fn compiled(pattern: &'static str) -> Option<regex::Regex> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static CACHE: LazyLock<Mutex<HashMap<&'static str, regex::Regex>>> =
        LazyLock::new(Mutex::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Some(re.clone());
    }
    let re = regex::Regex::new(pattern).ok()?;
    cache.insert(pattern, re.clone());
    Some(re)
}

/// The layer of every API route: each path and query parameter the route's template names
/// is checked against its rule before the handler runs, so every handler gets only values
/// the document allows (and a client gets 400 naming the parameter otherwise).
pub async fn validate(
    matched: Option<axum::extract::MatchedPath>,
    raw: Result<axum::extract::RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let template = matched.as_ref().map(|m| m.as_str()).unwrap_or_default();
    if let Ok(raw) = &raw {
        for (name, value) in raw.iter() {
            if let Err(p) = check(template, name, value) {
                return p.into_response();
            }
        }
    }
    if let Some(query) = req.uri().query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if let Err(p) = check(template, &name, &value) {
                return p.into_response();
            }
        }
    }
    next.run(req).await
}

/// Checks `value` of parameter `name` on route `path`: 400 naming it when the document does
/// not allow it.
pub fn check(path: &str, name: &str, value: &str) -> Result<(), Box<Problem>> {
    match rule(path, name) {
        Some(r) if !allows(&r, value) => Err(Box::new(Problem::bad_parameter(name, &describe(&r)))),
        _ => Ok(()),
    }
}

/// What a rule allows, in words.
fn describe(r: &Rule) -> String {
    if let Some((min, max)) = r.range {
        return format!("an integer from {min} to {max}");
    }
    if let Some(list) = r.one_of {
        return format!("one of {}", list.join(", "));
    }
    let mut s = if r.words.is_empty() {
        "text".to_string()
    } else {
        r.words.to_string()
    };
    if let (Some(min), Some(max)) = (r.min_length, r.max_length) {
        s.push_str(&format!(", {min} to {max} characters"));
    }
    s
}

/// The schema a rule stands for in the document.
pub fn schema(r: &Rule) -> RefOr<Schema> {
    let b = ObjectBuilder::new();
    let b = if let Some((min, max)) = r.range {
        b.schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
    } else {
        b.schema_type(Type::String)
            .pattern(r.pattern)
            .min_length(r.min_length)
            .max_length(r.max_length)
            .enum_values(r.one_of.map(|l| l.to_vec()))
    };
    RefOr::T(Schema::Object(b.build()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RepoName;

    /// The patterns say exactly what the parsers accept.
    #[test]
    fn the_patterns_agree_with_the_parsers() {
        let parts = [
            "a", "octo-org", "a.b", ".x", "..x", "...", ".", "..", "a/b", "", "é", "a b", "_", "-",
            ".git", "x..",
        ];
        for p in parts {
            let rule = rule("/api/v1/repos/{owner}/{repo}/environments", "owner").expect("rule");
            assert_eq!(
                allows(&rule, p),
                RepoName::new(p, "x").is_ok(),
                "owner {p:?}"
            );
        }
        let long = "a".repeat(101);
        assert!(!allows(&rule("", "owner").expect("rule"), &long));
        for full in ["octo-org/envs", "a/..", "./b", "a/b/c", "ab", "a/.b"] {
            assert_eq!(
                allows(&rule("", "repository").expect("rule"), full),
                RepoName::parse(full).is_ok(),
                "{full:?}"
            );
        }
        for name in ["web", "ab", "a-b-c", "-ab", "ab-", "Web", &"a".repeat(41)] {
            assert_eq!(
                allows(&rule("", "name").expect("rule"), name),
                crate::manifest::names::check_environment_name(name).is_ok(),
                "{name:?}"
            );
        }
        for id in ["abc-123", "x y", "", &"a".repeat(101)] {
            assert_eq!(
                allows(&rule("/api/v1/deliveries/{id}", "id").expect("rule"), id),
                crate::ids::DeliveryId::parse(id).is_ok(),
                "{id:?}"
            );
        }
    }

    #[test]
    fn integers_are_digits_within_their_range() {
        let per_page = rule("", "per_page").expect("rule");
        assert!(allows(&per_page, "1") && allows(&per_page, "100"));
        for bad in [
            "0",
            "101",
            "-1",
            "+5",
            " 5",
            "5x",
            "",
            "99999999999999999999",
        ] {
            assert!(!allows(&per_page, bad), "{bad:?}");
        }
        let p = check("", "per_page", "0").expect_err("refused");
        assert_eq!(p.status, 400);
        assert_eq!(p.detail, "per_page: an integer from 1 to 100");
    }
}
