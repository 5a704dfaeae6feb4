//! Helpers shared by the routes.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

pub(crate) fn check_against(operation_id: &str, status: u16, value: &Value) -> anyhow::Result<()> {
    let schema = response_schema(operation_id, status, "application/json")
        .ok_or_else(|| anyhow!("no response schema for {operation_id} {status}"))?;
    schema::validate(schema, value).map_err(|errors| {
        anyhow!(
            "the value does not match GitHub's {operation_id} response schema: {}",
            errors.join("; ")
        )
    })
}

/// Deep-merges `patch` into `target`: objects merge key by key, anything else replaces.
pub fn deep_merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        t.insert(k, v);
                    }
                }
            }
        }
        (t, p) => *t = p,
    }
}

pub(crate) fn is_full_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub(crate) fn normalize_ref(r: &str) -> &str {
    let r = r.strip_prefix("refs/").unwrap_or(r);
    r.strip_prefix("heads/")
        .or_else(|| r.strip_prefix("tags/"))
        .unwrap_or(r)
}

pub(crate) fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) const B64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard Base64 (line breaks allowed, as GitHub's own `content` has them); `None` when
/// it is not Base64.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if !compact.len().is_multiple_of(4) || compact.bytes().any(|b| b == b'-' || b == b'_') {
        return None;
    }
    base64url_decode(&compact)
}

pub(crate) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

pub(crate) fn node_id(kind: &str, id: u64) -> String {
    base64_encode(format!("{kind}{id}").as_bytes())
}

pub(crate) fn url_escape_login(login: &str) -> String {
    login.replace('[', "%5B").replace(']', "%5D")
}

/// Rewrites `https://api.github.com` and `https://github.com` URLs in every string of
/// `value` to live under `base`, and `octocat/Hello-World` to `full_name` when given.
pub(crate) fn rebase_urls(value: &mut Value, base: &str, full_name: Option<&str>) {
    match value {
        Value::String(s) if s.contains("github.com") => {
            let mut t = s
                .replace("https://api.github.com", base)
                .replace("https://github.com", &format!("{base}/_web"));
            if let Some(full) = full_name {
                t = t.replace("octocat/Hello-World", full);
            }
            *s = t;
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rebase_urls(v, base, full_name)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| rebase_urls(v, base, full_name)),
        _ => {}
    }
}

pub(crate) fn set_fields(target: &mut Value, fields: Value) {
    if let (Value::Object(t), Value::Object(f)) = (target, fields) {
        for (k, v) in f {
            t.insert(k, v);
        }
    }
}

pub(crate) fn template(operation_id: &str, status: u16, media: &str, name: Option<&str>) -> Value {
    operation(operation_id)
        .and_then(|op| op.response_example(status, media, name))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

pub(crate) fn new_comment(
    base: &str,
    r: &RepoState,
    id: u64,
    issue_number: u64,
    user: &str,
    body: &str,
    now: DateTime<Utc>,
) -> Comment {
    Comment {
        id,
        issue_number,
        body: body.to_string(),
        user: user.to_string(),
        created_at: now,
        updated_at: now,
        url: format!("{base}/repos/{}/{}/issues/comments/{id}", r.owner, r.name),
        html_url: format!(
            "{base}/_web/{}/{}/issues/{issue_number}#issuecomment-{id}",
            r.owner, r.name
        ),
        edits: 0,
    }
}

/// A 302 to `redirect` with `code` (and `state`, when given) added to its query: how GitHub
/// hands a browser back after its OAuth and App manifest pages.
pub(crate) fn redirect_with_code(redirect: &str, code: &str, state: Option<&str>) -> Response {
    let mut target = url::Url::parse(redirect).unwrap_or_else(|_| {
        url::Url::parse("http://invalid.redirect/").expect("a literal URL parses")
    });
    target.query_pairs_mut().append_pair("code", code);
    if let Some(state) = state {
        target.query_pairs_mut().append_pair("state", state);
    }
    Response::builder()
        .status(302)
        .header("location", target.as_str())
        .body(Body::empty())
        .unwrap_or_default()
}

/// A plain-text page, as GitHub's web pages answer what the emulator plays of them.
pub(crate) fn text_page(status: u16, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(text.to_string()))
        .unwrap_or_default()
}
