//! Issues opened through the API (`POST /repos/{owner}/{repo}/issues`) and labels on issues
//! and pull requests (`POST /repos/{owner}/{repo}/issues/{issue_number}/labels`). Issues and
//! pull requests share one sequence of numbers, as on GitHub.

#![allow(clippy::wildcard_imports)]
use super::*;

/// The login a request acts as: the user of a registered user token, else the App's bot.
pub(crate) fn actor(ctx: &Ctx<'_>, w: &World) -> String {
    w.user_tokens
        .get(ctx.token)
        .cloned()
        .unwrap_or_else(|| ctx.shared.config.bot_login.clone())
}

/// GitHub's label object for `name` in `owner/repo`.
fn label_json(ctx: &Ctx<'_>, name: &str) -> Value {
    let id = name
        .bytes()
        .fold(11u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000_000
        + 1;
    json!({
        "id": id,
        "node_id": format!("LA_{id}"),
        "url": format!("{}/labels/{}", ctx.repo_api(), url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()),
        "name": name,
        "description": null,
        "color": "ededed",
        "default": false,
    })
}

/// The names in a `labels` list: strings, or objects with a `name`.
fn label_names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().or_else(|| l["name"].as_str()))
        .map(str::to_string)
        .collect()
}

fn add_labels_to(list: &mut Vec<String>, names: Vec<String>) {
    for n in names {
        if !list.iter().any(|l| l.eq_ignore_ascii_case(&n)) {
            list.push(n);
        }
    }
}

/// `POST /repos/{owner}/{repo}/issues`: a new open issue by the caller.
pub(crate) fn create_issue(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let user = actor(ctx, w);
    let labels = label_names(ctx.body.get("labels"));
    let label_values: Vec<Value> = labels.iter().map(|l| label_json(ctx, l)).collect();
    let id = w.new_id();
    let r = w.repo_mut(&owner, &repo);
    let number = r.next_number();
    let mut issue = template("issues/create", 201, "application/json", None);
    rebase_urls(
        &mut issue,
        &ctx.shared.base,
        Some(&format!("{owner}/{repo}")),
    );
    if let Value::Object(map) = &mut issue {
        for optional in [
            "pull_request",
            "milestone",
            "closed_by",
            "assignee",
            "performed_via_github_app",
            "type",
        ] {
            map.remove(optional);
        }
    }
    let api = ctx.repo_api();
    let now = ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    set_fields(
        &mut issue,
        json!({
            "id": id,
            "node_id": format!("I_{id}"),
            "number": number,
            "url": format!("{api}/issues/{number}"),
            "html_url": format!("{}/_web/{owner}/{repo}/issues/{number}", ctx.shared.base),
            "comments_url": format!("{api}/issues/{number}/comments"),
            "events_url": format!("{api}/issues/{number}/events"),
            "labels_url": format!("{api}/issues/{number}/labels{{/name}}"),
            "title": ctx.body_str("title").unwrap_or_default(),
            "body": ctx.body_str("body"),
            "state": "open",
            "state_reason": null,
            "locked": false,
            "comments": 0,
            "labels": label_values,
            "assignee": null,
            "assignees": [],
            "milestone": null,
            "user": ctx.shared.login_json(&user),
            "created_at": now,
            "updated_at": now,
            "closed_at": null,
        }),
    );
    r.issues.insert(number, issue.clone());
    add_labels_to(r.labels.entry(number).or_default(), labels);
    Answer::ok(201, issue)
}

/// `POST /repos/{owner}/{repo}/issues/{issue_number}/labels`: adds to the labels of an
/// issue or pull request; answers every label it now has. 404 for a number never used.
pub(crate) fn add_labels(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let Some(number) = u64::try_from(ctx.int("issue_number")).ok() else {
        return ctx.not_found("an issue number".into());
    };
    let names = label_names(ctx.body.get("labels"));
    let r = w.repo_mut(&owner, &repo);
    if !r.issues.contains_key(&number) && !r.pulls.contains_key(&number) {
        return ctx.not_found(format!("issue {number} of {owner}/{repo}"));
    }
    let list = r.labels.entry(number).or_default();
    add_labels_to(list, names);
    let all: Vec<Value> = list.iter().map(|l| label_json(ctx, l)).collect();
    if let Some(issue) = r.issues.get_mut(&number) {
        set_fields(issue, json!({ "labels": all.clone() }));
    }
    if let Some(pull) = r.pulls.get_mut(&number) {
        set_fields(pull, json!({ "labels": all.clone() }));
    }
    Answer::ok(200, Value::Array(all))
}

/// `PATCH /repos/{owner}/{repo}/issues/{issue_number}`: edits an issue's title, body, state
/// and labels; closing sets `closed_at` and `state_reason`, reopening clears them. 404 for
/// a number that is no issue.
pub(crate) fn update_issue(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let Some(number) = u64::try_from(ctx.int("issue_number")).ok() else {
        return ctx.not_found("an issue number".into());
    };
    let labels = ctx.body.get("labels").map(|l| label_names(Some(l)));
    let label_values: Option<Vec<Value>> = labels
        .as_ref()
        .map(|ls| ls.iter().map(|l| label_json(ctx, l)).collect());
    let now = ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let r = w.repo_mut(&owner, &repo);
    let Some(issue) = r.issues.get_mut(&number) else {
        return ctx.not_found(format!("issue {number} of {owner}/{repo}"));
    };
    let mut changes = json!({ "updated_at": now });
    if let Some(t) = ctx.body.get("title").filter(|t| !t.is_null()) {
        changes["title"] = Value::String(t.as_str().map_or_else(|| t.to_string(), str::to_string));
    }
    if let Some(b) = ctx.body.get("body") {
        changes["body"] = b.clone();
    }
    match ctx.body_str("state").as_deref() {
        Some("closed") if issue["state"] != "closed" => {
            changes["state"] = json!("closed");
            changes["closed_at"] = json!(now);
            changes["state_reason"] = ctx
                .body
                .get("state_reason")
                .filter(|r| !r.is_null())
                .cloned()
                .unwrap_or_else(|| json!("completed"));
        }
        Some("open") if issue["state"] == "closed" => {
            changes["state"] = json!("open");
            changes["closed_at"] = Value::Null;
            changes["state_reason"] = json!("reopened");
        }
        _ => {}
    }
    if let Some(values) = label_values {
        changes["labels"] = Value::Array(values);
    }
    set_fields(issue, changes);
    let answer = issue.clone();
    if let Some(ls) = labels {
        r.labels.insert(number, ls);
    }
    Answer::ok(200, answer)
}

impl EmulatorHandle {
    /// The labels of issue or pull request `number` of `repo`.
    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        self.world()
            .repo(repo)
            .and_then(|r| r.labels.get(&number).cloned())
            .unwrap_or_default()
    }

    /// Issue `number` of `repo` as the emulator holds it.
    pub fn issue(&self, repo: &str, number: u64) -> Option<Value> {
        self.world()
            .repo(repo)
            .and_then(|r| r.issues.get(&number).cloned())
    }
}
