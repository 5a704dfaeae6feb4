//! Pull requests opened through the API (`POST /repos/{owner}/{repo}/pulls`), as Paved's
//! orchestrator opens them: the head and base branches are resolved in the repository
//! served from [`EmulatorConfig::git_root`] (or the refs set with
//! [`EmulatorHandle::set_ref`]).

#![allow(clippy::wildcard_imports)]
use super::*;

/// A branch's commit: a ref set on the handle, else the served repository's branch.
pub(crate) fn branch_sha(
    shared: &Shared,
    w: &World,
    owner: &str,
    repo: &str,
    branch: &str,
) -> Option<String> {
    if let Some(sha) = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| r.refs.get(branch))
    {
        return Some(sha.clone());
    }
    let root = shared.config.git_root.as_ref()?;
    let dir = root.join(owner).join(format!("{repo}.git"));
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&dir)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .ok()?;
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && is_full_sha(&sha)).then_some(sha)
}

/// `POST /repos/{owner}/{repo}/pulls`: opens a pull request from `head` into `base`, by the
/// token's identity (the bot).
pub(crate) fn create_pull(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let head = ctx.body_str("head").unwrap_or_default();
    let head = head
        .split_once(':')
        .map_or(head.as_str(), |(_, b)| b)
        .to_string();
    let base = ctx.body_str("base").unwrap_or_default();
    let Some(head_sha) = branch_sha(ctx.shared, w, &owner, &repo, &head) else {
        return Answer::validation_failed(
            ctx.docs,
            "PullRequest",
            "head",
            format!("no branch {head}"),
        );
    };
    let Some(base_sha) = branch_sha(ctx.shared, w, &owner, &repo, &base) else {
        return Answer::validation_failed(
            ctx.docs,
            "PullRequest",
            "base",
            format!("no branch {base}"),
        );
    };
    let r = w.repo_mut(&owner, &repo);
    if r.pulls
        .values()
        .any(|p| p["state"] == "open" && p["head"]["ref"] == head.as_str())
    {
        return Answer::unprocessable(
            ctx.docs,
            format!("A pull request already exists for {owner}:{head}."),
        );
    }
    let number = r.next_number();
    let mut pull = match ctx.shared.pull_template(r, number) {
        Ok(p) => p,
        Err(e) => return Answer::reject(500, "Server Error", ctx.docs, e.to_string()),
    };
    set_fields(
        &mut pull,
        json!({
            "title": ctx.body_str("title").unwrap_or_default(),
            "body": ctx.body_str("body"),
            "state": "open",
            "merged": false,
            "merged_at": null,
            "closed_at": null,
            "merge_commit_sha": null,
            "draft": ctx.body.get("draft").and_then(Value::as_bool).unwrap_or(false),
            "user": ctx.shared.login_json(&ctx.shared.config.bot_login),
            "created_at": ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "updated_at": ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true),
        }),
    );
    for (side, branch, sha) in [("head", &head, &head_sha), ("base", &base, &base_sha)] {
        if let Some(s) = pull.get_mut(side) {
            set_fields(
                s,
                json!({"ref": branch, "sha": sha, "label": format!("{owner}:{branch}")}),
            );
        }
    }
    r.pulls.insert(number, pull.clone());
    publish_pull_ref(ctx.shared, &owner, &repo, number, &head_sha);
    Answer::ok(201, pull)
}

/// As GitHub does when a pull request opens: `refs/pull/<n>/head` in the served repository
/// names its head commit (what Paved fetches a pull request's head by).
fn publish_pull_ref(shared: &Shared, owner: &str, repo: &str, number: u64, sha: &str) {
    let Some(root) = shared.config.git_root.as_ref() else {
        return;
    };
    let dir = root.join(owner).join(format!("{repo}.git"));
    let done = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&dir)
        .args(["update-ref", &format!("refs/pull/{number}/head"), sha])
        .status();
    if !done.is_ok_and(|s| s.success()) {
        tracing::warn!(%owner, %repo, number, "could not publish refs/pull/N/head");
    }
}

impl EmulatorHandle {
    /// The pull request `number` of `repo` as the emulator holds it.
    pub fn pull(&self, repo: &str, number: u64) -> Option<Value> {
        self.world()
            .repo(repo)
            .and_then(|r| r.pulls.get(&number).cloned())
    }

    /// Every pull request of `repo` the emulator holds, by number.
    pub fn pulls(&self, repo: &str) -> Vec<Value> {
        self.world()
            .repo(repo)
            .map(|r| r.pulls.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// `GET /repos/{owner}/{repo}/pulls`: filtered by `state` (`open` unless given), `head`
/// (`owner:branch`) and `base`, ordered by `sort` (`created` unless given) and
/// `direction` (`desc` unless given), paginated.
pub(crate) fn list_pulls(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let state = ctx
        .params
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("open");
    let head = ctx.params.get("head").and_then(Value::as_str);
    let base = ctx.params.get("base").and_then(Value::as_str);
    let sort = ctx
        .params
        .get("sort")
        .and_then(Value::as_str)
        .unwrap_or("created");
    let ascending = ctx.params.get("direction").and_then(Value::as_str) == Some("asc");
    let mut items: Vec<Value> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.pulls
                .values()
                .filter(|p| state == "all" || p["state"] == state)
                .filter(|p| head.is_none_or(|h| p["head"]["label"] == h))
                .filter(|p| base.is_none_or(|b| p["base"]["ref"] == b))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let key = match sort {
        "updated" => "updated_at",
        _ => "created_at",
    };
    // Numbers break ties (and order pull requests set without times).
    items.sort_by(|a, b| {
        (a[key].as_str(), a["number"].as_u64()).cmp(&(b[key].as_str(), b["number"].as_u64()))
    });
    if !ascending {
        items.reverse();
    }
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

/// `PATCH /repos/{owner}/{repo}/pulls/{pull_number}`: a new title, body, base or state
/// (closing sets `closed_at`; a merged pull request cannot be reopened).
pub(crate) fn update_pull(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let Some(number) = u64::try_from(ctx.int("pull_number")).ok() else {
        return ctx.not_found("a pull request number".into());
    };
    let base_sha = match ctx.body_str("base") {
        Some(b) => match branch_sha(ctx.shared, w, &owner, &repo, &b) {
            Some(sha) => Some((b, sha)),
            None => {
                return Answer::validation_failed(
                    ctx.docs,
                    "PullRequest",
                    "base",
                    format!("no branch {b}"),
                )
            }
        },
        None => None,
    };
    let now = ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let Some(pull) = w.repo_mut(&owner, &repo).pulls.get_mut(&number) else {
        return ctx.not_found(format!("pull request {number} of {owner}/{repo}"));
    };
    if let Some(state) = ctx.body_str("state") {
        if state == "open" && pull["merged"] == true {
            return Answer::unprocessable(
                ctx.docs,
                "state cannot be changed. The pull request cannot be reopened.".into(),
            );
        }
        let closed_at = if state == "closed" {
            json!(now)
        } else {
            Value::Null
        };
        set_fields(pull, json!({"state": state, "closed_at": closed_at}));
    }
    for field in ["title", "body"] {
        if let Some(v) = ctx.body.get(field) {
            set_fields(pull, json!({ field: v }));
        }
    }
    if let Some((b, sha)) = base_sha {
        if let Some(side) = pull.get_mut("base") {
            set_fields(
                side,
                json!({"ref": b, "sha": sha, "label": format!("{owner}:{b}")}),
            );
        }
    }
    set_fields(pull, json!({ "updated_at": now }));
    Answer::ok(200, pull.clone())
}
