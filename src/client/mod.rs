//! The command line's side of the API (SPEC 9): `paved env list|show` and
//! `paved templates` against a running server (`--server` or `PAVED_SERVER`), with the
//! caller's token from `PAVED_TOKEN`. Tables for people, `--format json` for scripts.
//! Errors say what to do.

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// The server when neither `--server` nor `PAVED_SERVER` names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// A client of one Paved server.
pub struct ApiClient {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("paved-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(ApiClient {
            server: server.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.trim().is_empty()),
            http,
        })
    }

    /// `GET path` as JSON; `Ok(None)` for 404.
    pub async fn get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let Some(token) = &self.token else {
            bail!("no token: set PAVED_TOKEN to a GitHub token (or a Paved service token)");
        };
        let url = format!("{}{path}", self.server);
        let r = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the Paved server at {}: {e} (set --server or PAVED_SERVER)",
                    self.server
                )
            })?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            401 => bail!(
                "the server did not accept your token: set PAVED_TOKEN to a GitHub token (or a Paved service token) that is still valid"
            ),
            403 => bail!("your token may not do this: {}", message(&body)),
            _ => bail!("the server answered {status}: {}", message(&body)),
        }
    }
}

impl ApiClient {
    /// `POST path` with a JSON body; the status and the answer, whatever the status (the
    /// caller explains refusals).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let Some(token) = &self.token else {
            bail!("no token: set PAVED_TOKEN to a GitHub token");
        };
        let r = self
            .http
            .post(format!("{}{path}", self.server))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "cannot reach the Paved server at {}: {e} (set --server or PAVED_SERVER)",
                    self.server
                )
            })?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        if status == 401 {
            bail!("the server did not accept your token: set PAVED_TOKEN to a GitHub token that is still valid");
        }
        Ok((status, body))
    }
}

/// What `paved env request|extend|delete` sends.
pub struct Ask<'a> {
    pub action: &'a str,
    pub name: &'a str,
    pub repository: Option<&'a str>,
    pub team: Option<&'a str>,
    pub env_type: Option<&'a str>,
    pub template: Option<&'a str>,
    /// `key=value`; a value that parses as JSON (`3`, `true`) is sent as such.
    pub params: &'a [String],
    pub expires_at: Option<&'a str>,
    pub tags: &'a [String],
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("{what} {item:?}: write key=value");
        };
        let value = if what == "--param" {
            serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
        } else {
            Value::String(v.to_string())
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// `paved env request|extend|delete`: opens a request (a pull request) and says where it is.
pub async fn ask(c: &ApiClient, a: &Ask<'_>, json: bool) -> anyhow::Result<String> {
    let repository = match a.repository {
        Some(r) => r.to_string(),
        None => {
            let me = c.get("/api/v1/me").await?.unwrap_or(Value::Null);
            let repos: Vec<String> = me["repositories"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            match repos.as_slice() {
                [one] => one.clone(),
                [] => bail!("you have no role in any repository Paved serves"),
                many => bail!("add --repository: you have roles in {}", many.join(", ")),
            }
        }
    };
    let mut body = serde_json::json!({
        "repository": repository, "action": a.action, "environment": a.name,
    });
    let set = |body: &mut Value, k: &str, v: Option<&str>| {
        if let Some(v) = v {
            body[k] = Value::String(v.to_string());
        }
    };
    set(&mut body, "team", a.team);
    set(&mut body, "type", a.env_type);
    set(&mut body, "template", a.template);
    set(&mut body, "expiresAt", a.expires_at);
    if !a.params.is_empty() {
        body["parameters"] = Value::Object(pairs(a.params, "--param")?);
    }
    if !a.tags.is_empty() {
        body["tags"] = Value::Object(pairs(a.tags, "--tag")?);
    }
    let (status, answer) = c.post("/api/v1/requests", &body).await?;
    if json && status == 201 {
        return Ok(serde_json::to_string_pretty(&answer)? + "\n");
    }
    match status {
        201 => Ok(format!(
            "opened pull request #{}: {}\nfollow it: paved's /api/v1/requests/{} (state, checks, approvals, provisioning)\n",
            text(&answer["pullRequest"]["number"]),
            text(&answer["pullRequest"]["url"]),
            text(&answer["id"]),
        )),
        422 => {
            let mut out = String::from("the request fails the checks; nothing was opened:\n");
            for p in answer["errors"].as_array().into_iter().flatten() {
                let at = match p["line"].as_u64() {
                    Some(l) => format!("{}:{l}", text(&p["file"])),
                    None => text(&p["file"]),
                };
                let field = p["field"].as_str().map(|f| format!(" {f}:")).unwrap_or_default();
                out.push_str(&format!(
                    "  {at}{field} {} ({})\n",
                    text(&p["message"]),
                    text(&p["check"])
                ));
            }
            bail!("{}", out.trim_end())
        }
        409 => match answer["pullRequest"].as_str() {
            Some(pr) => bail!("{} ({pr})", message(&answer)),
            None => bail!("{}", message(&answer)),
        },
        _ => bail!("{}", message(&answer)),
    }
}

fn message(body: &Value) -> String {
    printable(
        &body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => printable(s),
        other => printable(&other.to_string()),
    }
}

/// `s` without terminal control characters: C0 controls but newline and tab, DEL, and C1
/// controls (an escape sequence loses its ESC, so it prints as harmless text). A server's
/// strings (names, outputs, error texts) come from repositories and scripts; printed raw,
/// `\x1b]52;…` could write the clipboard, `\x1b[2J` clear the screen or a `\r` forge a line.
pub fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, '\n' | '\t') || !c.is_control())
        .collect()
}

/// Columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// `paved env list`: the environments the caller may see.
pub async fn env_list(
    c: &ApiClient,
    team: Option<&str>,
    repository: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let path = match repository {
        Some(r) => format!("/api/v1/repos/{r}/environments"),
        None => "/api/v1/environments".to_string(),
    };
    let list = c.get(&path).await?.unwrap_or(Value::Array(Vec::new()));
    let envs: Vec<&Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| team.is_none_or(|t| e["team"] == t))
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&envs)? + "\n");
    }
    if envs.is_empty() {
        return Ok("no environments you may see; ask for one with a pull request that adds environments/<team>/<name>.yaml\n".into());
    }
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            vec![
                text(&e["name"]),
                text(&e["team"]),
                text(&e["env_type"]),
                text(&e["definition"]),
                text(&e["state"]),
                text(&e["owner"]),
                text(&e["repo"]),
            ]
        })
        .collect();
    Ok(table(
        &[
            "NAME",
            "TEAM",
            "TYPE",
            "TEMPLATE",
            "STATE",
            "OWNER",
            "REPOSITORY",
        ],
        &rows,
    ))
}

/// `paved env show NAME`: one environment, its public outputs and recent operations.
pub async fn env_show(
    c: &ApiClient,
    name: &str,
    repository: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let repo = match repository {
        Some(r) => r.to_string(),
        None => {
            let all = c
                .get("/api/v1/environments")
                .await?
                .unwrap_or(Value::Array(Vec::new()));
            let found: Vec<String> = all
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["name"] == name)
                .filter_map(|e| e["repo"].as_str().map(str::to_string))
                .collect();
            match found.as_slice() {
                [one] => one.clone(),
                [] => bail!("no environment {name:?} that you may see"),
                many => bail!(
                    "{name:?} is in several repositories ({}): add --repository",
                    many.join(", ")
                ),
            }
        }
    };
    let v = c
        .get(&format!("/api/v1/repos/{repo}/environments/{name}"))
        .await?
        .ok_or_else(|| anyhow!("no environment {name:?} in {repo} that you may see"))?;
    if json {
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let e = &v["environment"];
    let mut out = String::new();
    for (k, f) in [
        ("name", "name"),
        ("repository", "repo"),
        ("team", "team"),
        ("owner", "owner"),
        ("type", "env_type"),
        ("template", "definition"),
        ("state", "state"),
        ("updated", "updated_at"),
    ] {
        out.push_str(&format!("{k:<11} {}\n", text(&e[f])));
    }
    if let Some(outputs) = e["outputs"].as_object().filter(|o| !o.is_empty()) {
        out.push_str("outputs:\n");
        for (k, o) in outputs {
            out.push_str(&format!("  {k} = {}\n", text(&o["value"])));
        }
    }
    let ops: Vec<Vec<String>> = v["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            vec![
                text(&o["id"]),
                text(&o["kind"]),
                text(&o["state"]),
                text(&o["pr"]),
                text(&o["finished_at"]),
            ]
        })
        .collect();
    if !ops.is_empty() {
        out.push_str("operations:\n");
        out.push_str(&table(&["ID", "KIND", "STATE", "PR", "FINISHED"], &ops));
    }
    Ok(out)
}

/// `paved templates`: the catalog definitions the caller may request from.
pub async fn templates(c: &ApiClient, json: bool) -> anyhow::Result<String> {
    let list = c
        .get("/api/v1/templates")
        .await?
        .context("the server has no /api/v1/templates")?;
    if json {
        return Ok(serde_json::to_string_pretty(&list)? + "\n");
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return Ok("no templates you may use\n".into());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let types: Vec<String> = t["environmentTypes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let params: Vec<String> = t["parameters"]["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            vec![
                text(&t["name"]),
                text(&t["repository"]),
                types.join(","),
                params.join(","),
                text(&t["summary"]),
            ]
        })
        .collect();
    Ok(table(
        &["TEMPLATE", "REPOSITORY", "TYPES", "PARAMETERS", "SUMMARY"],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::{message, printable, text};
    #[test]
    fn terminal_control_characters_never_reach_the_terminal() {
        let hostile = "site\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\rok\u{9b}31m\u{7f}";
        let clean = printable(hostile);
        assert_eq!(clean, "site]52;c;ZXZpbA==[2Jok31m");
        assert!(!clean.chars().any(|c| c.is_control()));
        assert_eq!(printable("a\tb\nc"), "a\tb\nc");
        assert_eq!(text(&serde_json::json!("x\u{1b}[31m")), "x[31m");
        assert_eq!(
            message(&serde_json::json!({"error": "no\u{1b}[2J"})),
            "no[2J"
        );
    }

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let t = super::table(
            &["A", "BB"],
            &[vec!["long".into(), "x".into()], vec!["s".into(), "".into()]],
        );
        assert_eq!(t, "A     BB\nlong  x\ns\n");
    }
}
