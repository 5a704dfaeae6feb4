//! The operations, each with state.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

pub(crate) fn create_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let sha = ctx.s("sha");
    if !is_full_sha(sha) {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {sha}"));
    }
    let sha = sha.to_lowercase();
    let description = ctx.body_str("description");
    if let Some(d) = &description {
        if d.chars().count() > MAX_STATUS_DESCRIPTION {
            return Answer::validation_failed(
                ctx.docs,
                "Status",
                "description",
                format!("description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)"),
            );
        }
    }
    let context = ctx
        .body_str("context")
        .unwrap_or_else(|| "default".to_string());
    let existing = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| r.statuses.get(&sha))
        .map_or(0, |list| {
            list.iter()
                .filter(|s| s.context.to_lowercase() == context.to_lowercase())
                .count()
        });
    if existing >= MAX_STATUSES_PER_CONTEXT {
        return Answer::validation_failed(
            ctx.docs,
            "Status",
            "context",
            "This SHA and context has reached the maximum number of statuses.".to_string(),
        );
    }
    let id = w.new_id();
    let status = Status {
        id,
        sha: sha.clone(),
        state: ctx.body_str("state").unwrap_or_default(),
        context,
        description,
        target_url: ctx.body_str("target_url"),
        creator: issues::actor(ctx, w),
        created_at: ctx.now,
    };
    let body = ctx.shared.status_json(owner, repo, &status);
    w.repo_mut(owner, repo)
        .statuses
        .entry(sha.clone())
        .or_default()
        .push(status);
    let location = format!("{}/statuses/{sha}", ctx.repo_api());
    Answer::ok(201, body).header("location", location)
}

pub(crate) fn resolve_ref(r: Option<&RepoState>, git_ref: &str) -> Option<String> {
    if is_full_sha(git_ref) {
        return Some(git_ref.to_lowercase());
    }
    r.and_then(|r| r.refs.get(normalize_ref(git_ref)).cloned())
}

pub(crate) fn combined_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let full = format!("{owner}/{repo}");
    let git_ref = ctx.s("ref");
    let r = w.repo(&full);
    let Some(sha) = resolve_ref(r, git_ref) else {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {git_ref}"));
    };
    let statuses = r
        .and_then(|r| r.statuses.get(&sha).cloned())
        .unwrap_or_default();
    let latest = latest_by_context(&statuses);
    let state = combined_state(latest.values());
    let mut ordered: Vec<&Status> = latest.values().collect();
    ordered.sort_by_key(|s| std::cmp::Reverse(s.id));
    let total = ordered.len();
    let mut item_template = template(
        "repos/get-combined-status-for-ref",
        200,
        "application/json",
        None,
    )["statuses"][0]
        .clone();
    rebase_urls(&mut item_template, &ctx.shared.base, None);
    let items: Vec<Value> = ordered
        .iter()
        .map(|s| {
            let mut v = item_template.clone();
            set_fields(
                &mut v,
                json!({
                    "url": format!("{}/statuses/{}", ctx.repo_api(), s.sha),
                    "avatar_url": format!("{}/_avatars/{}", ctx.shared.base, ctx.shared.config.bot_id),
                    "id": s.id,
                    "node_id": node_id("StatusContext", s.id),
                    "state": s.state,
                    "description": s.description,
                    "target_url": s.target_url,
                    "context": s.context,
                    "created_at": timestamp(&s.created_at),
                    "updated_at": timestamp(&s.created_at),
                }),
            );
            v
        })
        .collect();
    let (page, link) = ctx.paginate(items);
    let mut body = template(
        "repos/get-combined-status-for-ref",
        200,
        "application/json",
        None,
    );
    let mut repository = body["repository"].clone();
    rebase_urls(&mut repository, &ctx.shared.base, Some(&full));
    let repo_id = r.map_or(0, |r| r.id);
    set_fields(
        &mut repository,
        json!({
            "id": repo_id,
            "node_id": node_id("Repository", repo_id),
            "name": repo,
            "full_name": full,
            "owner": ctx.shared.login_json(owner),
        }),
    );
    set_fields(
        &mut body,
        json!({
            "state": state,
            "statuses": page,
            "sha": sha,
            "total_count": total,
            "repository": repository,
            "commit_url": format!("{}/commits/{sha}", ctx.repo_api()),
            "url": format!("{}/commits/{sha}/status", ctx.repo_api()),
        }),
    );
    with_link(Answer::ok(200, body), link)
}

pub(crate) fn check_run_fields(ctx: &Ctx<'_>, run: &mut CheckRun) -> Result<(), Answer> {
    if let Some(v) = ctx.body_str("name") {
        run.name = v;
    }
    if let Some(v) = ctx.body_str("details_url") {
        run.details_url = Some(v);
    }
    if let Some(v) = ctx.body_str("external_id") {
        run.external_id = Some(v);
    }
    if let Some(v) = ctx.body_str("started_at") {
        run.started_at = Some(v);
    }
    if let Some(v) = ctx.body_str("completed_at") {
        run.completed_at = Some(v);
    }
    if let Some(v) = ctx.body.get("output") {
        let mut output = v.clone();
        if let Some(list) = output.as_object_mut().and_then(|o| o.remove("annotations")) {
            run.annotations
                .extend(list.as_array().cloned().unwrap_or_default());
        }
        run.output = Some(output);
    }
    if let Some(v) = ctx.body_str("status") {
        run.status = v;
    }
    if let Some(v) = ctx.body_str("conclusion") {
        // "Providing conclusion will automatically set the status parameter to completed."
        run.conclusion = Some(v);
        run.status = "completed".to_string();
    }
    if run.status == "completed" && run.conclusion.is_none() {
        return Err(Answer::validation_failed(
            ctx.docs,
            "CheckRun",
            "conclusion",
            "conclusion is required when status is completed".to_string(),
        ));
    }
    if run.completed_at.is_some() && run.conclusion.is_none() {
        return Err(Answer::validation_failed(
            ctx.docs,
            "CheckRun",
            "conclusion",
            "conclusion is required when completed_at is provided".to_string(),
        ));
    }
    if run.status == "completed" && run.completed_at.is_none() {
        run.completed_at = Some(timestamp(&ctx.now));
    }
    if run.started_at.is_none() {
        run.started_at = Some(timestamp(&ctx.now));
    }
    Ok(())
}

pub(crate) fn create_check_run(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let head_sha = ctx.body_str("head_sha").unwrap_or_default();
    if !is_full_sha(&head_sha) {
        return Answer::unprocessable(ctx.docs, format!("No commit found for SHA: {head_sha}"));
    }
    let mut run = CheckRun {
        id: 0,
        name: String::new(),
        head_sha: head_sha.to_lowercase(),
        status: "queued".to_string(),
        conclusion: None,
        details_url: None,
        external_id: None,
        started_at: None,
        completed_at: None,
        output: None,
        created_at: ctx.now,
        updates: 0,
        annotations: Vec::new(),
    };
    if let Err(answer) = check_run_fields(ctx, &mut run) {
        return answer;
    }
    run.id = w.new_id();
    let body = ctx.shared.check_run_json(owner, repo, &run);
    w.repo_mut(owner, repo).check_runs.push(run);
    Answer::ok(201, body)
}

pub(crate) fn update_check_run(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let id = ctx.int("check_run_id");
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.check_runs
            .iter()
            .position(|c| i64::try_from(c.id).ok() == Some(id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no check run {id} in {owner}/{repo}"));
    };
    let r = w.repo_mut(owner, repo);
    let mut run = r.check_runs[idx].clone();
    if let Err(answer) = check_run_fields(ctx, &mut run) {
        return answer;
    }
    run.updates += 1;
    let body = ctx.shared.check_run_json(owner, repo, &run);
    r.check_runs[idx] = run;
    Answer::ok(200, body)
}

pub(crate) fn check_comment_body(ctx: &Ctx<'_>, body: &str) -> Result<(), Answer> {
    if body.chars().count() > MAX_COMMENT_BODY {
        return Err(Answer::validation_failed(
            ctx.docs,
            "IssueComment",
            "data",
            format!("Body is too long (maximum is {MAX_COMMENT_BODY} characters)"),
        ));
    }
    Ok(())
}

pub(crate) fn create_comment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let number = ctx.int("issue_number");
    let Ok(number) = u64::try_from(number) else {
        return ctx.not_found(format!("no issue {number}"));
    };
    if number == 0 {
        return ctx.not_found("no issue 0".to_string());
    }
    let text = ctx.body_str("body").unwrap_or_default();
    if let Err(answer) = check_comment_body(ctx, &text) {
        return answer;
    }
    let id = w.new_id();
    // Written by whoever the token is: a user token's user, else the App's bot.
    let author = crate::issues::actor(ctx, w);
    let r = w.repo_mut(owner, repo);
    let comment = new_comment(&ctx.shared.base, r, id, number, &author, &text, ctx.now);
    let body = ctx.shared.comment_json(owner, repo, &comment);
    let location = comment.url.clone();
    r.comments.push(comment);
    Answer::ok(201, body).header("location", location)
}

pub(crate) fn update_comment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let id = ctx.int("comment_id");
    let text = ctx.body_str("body").unwrap_or_default();
    if let Err(answer) = check_comment_body(ctx, &text) {
        return answer;
    }
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.comments
            .iter()
            .position(|c| i64::try_from(c.id).ok() == Some(id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no comment {id} in {owner}/{repo}"));
    };
    let r = w.repo_mut(owner, repo);
    let comment = &mut r.comments[idx];
    comment.body = text;
    comment.updated_at = ctx.now;
    comment.edits += 1;
    let comment = comment.clone();
    Answer::ok(200, ctx.shared.comment_json(owner, repo, &comment))
}

pub(crate) fn list_comments(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let number = ctx.int("issue_number");
    let since = ctx
        .params
        .get("since")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc).timestamp());
    let comments: Vec<Comment> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.comments
                .iter()
                .filter(|c| i64::try_from(c.issue_number).ok() == Some(number))
                .filter(|c| since.is_none_or(|s| c.updated_at.timestamp() >= s))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let items = comments
        .iter()
        .map(|c| ctx.shared.comment_json(owner, repo, c))
        .collect();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

/// `GET /repos/{owner}/{repo}/deployments`, newest first, filtered by `sha`, `ref`, `task`
/// and `environment` as GitHub does.
pub(crate) fn list_deployments(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let filter = |name: &str| {
        ctx.params
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| *v != "none")
            .map(str::to_string)
    };
    let (sha, git_ref, task, environment) = (
        filter("sha"),
        filter("ref"),
        filter("task"),
        filter("environment"),
    );
    let items: Vec<Value> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.deployments
                .iter()
                .rev()
                .filter(|d| sha.as_ref().is_none_or(|s| *s == d.sha))
                .filter(|d| git_ref.as_ref().is_none_or(|s| *s == d.git_ref))
                .filter(|d| task.as_ref().is_none_or(|s| *s == d.task))
                .filter(|d| environment.as_ref().is_none_or(|s| *s == d.environment))
                .map(|d| ctx.shared.deployment_json(&r.owner, &r.name, d))
                .collect()
        })
        .unwrap_or_default();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

pub(crate) fn create_deployment(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let full = format!("{owner}/{repo}");
    let git_ref = ctx.body_str("ref").unwrap_or_default();
    let r = w.repo(&full);
    let Some(sha) = resolve_ref(r, &git_ref) else {
        return Answer::unprocessable(
            ctx.docs,
            format!("No ref found for: {git_ref} (emulator: register branch names with set_ref)"),
        );
    };
    let latest = latest_by_context(
        &r.and_then(|r| r.statuses.get(&sha).cloned())
            .unwrap_or_default(),
    );
    let required: Option<Vec<String>> = ctx.body.get("required_contexts").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    });
    // GitHub: without required_contexts, every context must be `success`.
    let failing: Vec<Value> = match &required {
        None => latest
            .values()
            .filter(|s| s.state != "success")
            .map(|s| json!({"context": s.context, "state": s.state}))
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|c| {
                let s = latest
                    .values()
                    .find(|s| s.context.to_lowercase() == c.to_lowercase());
                match s {
                    Some(s) if s.state == "success" => None,
                    Some(s) => Some(json!({"context": s.context, "state": s.state})),
                    None => Some(json!({"context": c, "state": "missing"})),
                }
            })
            .collect(),
    };
    if !failing.is_empty() {
        let message = format!("Conflict: Commit status checks failed for {git_ref}.");
        let mut answer = Answer::error(
            409,
            Outcome::Conflict,
            &message,
            ctx.docs,
            format!("{message} {}", Value::Array(failing.clone())),
        );
        answer.payload = Payload::Json(json!({
            "message": message,
            "errors": [{"contexts": failing, "resource": "Deployment", "field": "required_contexts", "code": "invalid"}],
            "documentation_url": ctx.docs,
            "status": "409",
        }));
        return answer;
    }
    let environment = ctx
        .body_str("environment")
        .unwrap_or_else(|| "production".to_string());
    let production = ctx
        .body
        .get("production_environment")
        .and_then(Value::as_bool)
        .unwrap_or(environment == "production");
    let id = w.new_id();
    let deployment = Deployment {
        id,
        sha,
        git_ref,
        task: ctx.body_str("task").unwrap_or_else(|| "deploy".to_string()),
        environment,
        description: ctx.body_str("description"),
        payload: ctx
            .body
            .get("payload")
            .cloned()
            .unwrap_or_else(|| json!({})),
        transient_environment: ctx
            .body
            .get("transient_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        production_environment: production,
        required_contexts: required,
        creator: ctx.shared.config.bot_login.clone(),
        created_at: ctx.now,
        statuses: Vec::new(),
    };
    let body = ctx.shared.deployment_json(owner, repo, &deployment);
    w.repo_mut(owner, repo).deployments.push(deployment);
    Answer::ok(201, body)
}

pub(crate) fn create_deployment_status(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let deployment_id = ctx.int("deployment_id");
    let description = ctx.body_str("description").unwrap_or_default();
    if description.chars().count() > MAX_STATUS_DESCRIPTION {
        return Answer::validation_failed(
            ctx.docs,
            "DeploymentStatus",
            "description",
            format!("description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)"),
        );
    }
    let found = w.repo(&format!("{owner}/{repo}")).and_then(|r| {
        r.deployments
            .iter()
            .position(|d| i64::try_from(d.id).ok() == Some(deployment_id))
    });
    let Some(idx) = found else {
        return ctx.not_found(format!("no deployment {deployment_id} in {owner}/{repo}"));
    };
    let state = ctx.body_str("state").unwrap_or_default();
    let auto_inactive = ctx
        .body
        .get("auto_inactive")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let id = w.new_id();
    let bot = ctx.shared.config.bot_login.clone();
    let r = w.repo_mut(owner, repo);
    let environment = ctx
        .body_str("environment")
        .unwrap_or_else(|| r.deployments[idx].environment.clone());
    let target_url = ctx.body_str("target_url").unwrap_or_default();
    let status = DeploymentStatus {
        id,
        deployment_id: r.deployments[idx].id,
        state: state.clone(),
        description,
        environment: environment.clone(),
        environment_url: ctx.body_str("environment_url").unwrap_or_default(),
        log_url: ctx
            .body_str("log_url")
            .unwrap_or_else(|| target_url.clone()),
        target_url,
        creator: bot.clone(),
        created_at: ctx.now,
        automatic: false,
    };
    let body = ctx.shared.deployment_status_json(owner, repo, &status);
    r.deployments[idx].environment = environment.clone();
    r.deployments[idx].statuses.push(status);
    // GitHub's auto_inactive: a success marks earlier non-transient, non-production
    // deployments of the same environment inactive.
    if state == "success" && auto_inactive {
        let this = r.deployments[idx].id;
        let mut extra = Vec::new();
        for d in r.deployments.iter().filter(|d| {
            d.id != this
                && d.environment == environment
                && !d.transient_environment
                && !d.production_environment
                && d.statuses.last().is_some_and(|s| s.state != "inactive")
        }) {
            extra.push(d.id);
        }
        for did in extra {
            let sid = w.new_id();
            let r = w.repo_mut(owner, repo);
            if let Some(d) = r.deployments.iter_mut().find(|d| d.id == did) {
                let env = d.environment.clone();
                d.statuses.push(DeploymentStatus {
                    id: sid,
                    deployment_id: did,
                    state: "inactive".to_string(),
                    description: String::new(),
                    environment: env,
                    environment_url: String::new(),
                    log_url: String::new(),
                    target_url: String::new(),
                    creator: bot.clone(),
                    created_at: ctx.now,
                    automatic: true,
                });
            }
        }
    }
    let location = format!(
        "{}/deployments/{deployment_id}/statuses/{id}",
        ctx.repo_api()
    );
    Answer::ok(201, body).header("location", location)
}

pub(crate) fn pull_number(ctx: &Ctx<'_>) -> Option<u64> {
    u64::try_from(ctx.int("pull_number")).ok()
}

pub(crate) fn get_pull(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let pull = pull_number(ctx).and_then(|n| {
        w.repo(&format!("{owner}/{repo}"))
            .and_then(|r| r.pulls.get(&n).cloned())
    });
    match pull {
        Some(p) => Answer::ok(200, p),
        None => ctx.not_found(format!(
            "pull request {} of {owner}/{repo} was not set (set_pull)",
            ctx.int("pull_number")
        )),
    }
}

/// `GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls`: the pull requests (as set with
/// `set_pull`) whose head is the commit, or that were merged as it, by number.
pub(crate) fn pulls_for_commit(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let sha = ctx.s("commit_sha");
    let items: Vec<Value> = w
        .repo(&format!("{owner}/{repo}"))
        .map(|r| {
            r.pulls
                .values()
                .filter(|p| {
                    p["merge_commit_sha"].as_str() == Some(sha)
                        || p["head"]["sha"].as_str() == Some(sha)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

pub(crate) fn list_pull_items(ctx: &Ctx<'_>, w: &mut World, files: bool) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let r = w.repo(&format!("{owner}/{repo}"));
    let items = pull_number(ctx).and_then(|n| {
        let r = r?;
        let list = if files { &r.pull_files } else { &r.reviews };
        match list.get(&n) {
            Some(items) => Some(items.clone()),
            None if r.pulls.contains_key(&n) => Some(Vec::new()),
            None => None,
        }
    });
    match items {
        Some(items) => {
            let (page, link) = ctx.paginate(items);
            with_link(Answer::ok(200, Value::Array(page)), link)
        }
        None => ctx.not_found(format!(
            "pull request {} of {owner}/{repo} was not set (set_pull / set_pull_{})",
            ctx.int("pull_number"),
            if files { "files" } else { "reviews" }
        )),
    }
}

/// A stable 40-hex "blob SHA" for served contents. It is not Git's SHA-1 of the blob (the
/// crate has no SHA-1); nothing in Paved compares it with Git.
pub(crate) fn content_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    hex::encode(h.finalize())[..40].to_string()
}

pub(crate) fn get_content(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let path = ctx.s("path").trim_matches('/').to_string();
    let git_ref = ctx
        .params
        .get("ref")
        .and_then(Value::as_str)
        .map(|r| normalize_ref(r).to_string())
        .unwrap_or_else(|| ctx.shared.config.default_branch.clone());
    let Some(files) = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| r.contents.get(&git_ref))
    else {
        return ctx.not_found(format!(
            "no content at ref {git_ref:?} of {owner}/{repo} (set_content)"
        ));
    };
    let base = &ctx.shared.base;
    let api = ctx.repo_api();
    let web = format!("{base}/_web/{owner}/{repo}");
    let entry = |p: &str, kind: &str, bytes: Option<&Vec<u8>>| -> Value {
        let sha = content_sha(bytes.map_or(p.as_bytes(), |b| b.as_slice()));
        let name = p.rsplit('/').next().unwrap_or(p);
        let self_url = format!("{api}/contents/{p}?ref={git_ref}");
        let git_url = format!(
            "{api}/git/{}/{sha}",
            if kind == "file" { "blobs" } else { "trees" }
        );
        let html_url = format!(
            "{web}/{}/{git_ref}/{p}",
            if kind == "file" { "blob" } else { "tree" }
        );
        let download = if kind == "file" {
            json!(format!("{base}/_raw/{owner}/{repo}/{git_ref}/{p}"))
        } else {
            Value::Null
        };
        json!({
            "type": kind,
            "size": bytes.map_or(0, Vec::len),
            "name": name,
            "path": p,
            "sha": sha,
            "url": self_url,
            "git_url": git_url,
            "html_url": html_url,
            "download_url": download,
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        })
    };
    if let Some(bytes) = files.get(&path) {
        if ctx.media == Media::Raw {
            let mut answer = Answer::ok(200, Value::Null);
            answer.payload = Payload::Raw(bytes.clone(), "application/vnd.github.raw");
            return answer;
        }
        let mut v = entry(&path, "file", Some(bytes));
        let encoded = base64_encode(bytes);
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(60)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        set_fields(
            &mut v,
            json!({"encoding": "base64", "content": format!("{}\n", wrapped.join("\n"))}),
        );
        let mut answer = Answer::ok(200, v);
        if ctx.media == Media::Object {
            answer.media = "application/vnd.github.object";
        }
        return answer;
    }
    // A directory: the direct children of `path`.
    let prefix = format!("{path}/");
    let mut children: BTreeMap<String, Value> = BTreeMap::new();
    for (p, bytes) in files {
        let Some(rest) = p.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            None => {
                children.insert(p.clone(), entry(p, "file", Some(bytes)));
            }
            Some((dir, _)) => {
                let d = format!("{path}/{dir}");
                let e = entry(&d, "dir", None);
                children.entry(d).or_insert(e);
            }
        }
    }
    if children.is_empty() {
        return ctx.not_found(format!(
            "no file or directory {path:?} at {git_ref} in {owner}/{repo}"
        ));
    }
    let entries: Vec<Value> = children.into_values().collect();
    if ctx.media == Media::Object {
        let mut v = entry(&path, "dir", None);
        set_fields(&mut v, json!({"entries": entries}));
        let mut answer = Answer::ok(200, v);
        answer.media = "application/vnd.github.object";
        answer
    } else {
        Answer::ok(200, Value::Array(entries))
    }
}

pub(crate) fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let tail: String = (0..36)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ghs_{tail}")
}

pub(crate) fn create_token(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let Ok(installation_id) = u64::try_from(ctx.int("installation_id")) else {
        return ctx.not_found(format!("no installation {}", ctx.int("installation_id")));
    };
    let permissions = ctx.body.get("permissions").cloned().unwrap_or_else(|| {
        json!({
            "checks": "write", "contents": "read", "deployments": "write", "issues": "write",
            "metadata": "read", "pull_requests": "write", "statuses": "write"
        })
    });
    let repositories: Option<Vec<String>> = ctx.body.get("repositories").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
    });
    let selected = repositories.is_some() || ctx.body.get("repository_ids").is_some();
    let token = InstallationToken {
        token: random_token(),
        installation_id,
        created_at: ctx.now,
        expires_at: ctx.now + chrono::Duration::hours(1),
        permissions: permissions.clone(),
        repositories,
    };
    let body = json!({
        "token": token.token,
        "expires_at": timestamp(&token.expires_at),
        "permissions": permissions,
        "repository_selection": if selected { "selected" } else { "all" },
    });
    w.tokens.push(token);
    Answer::ok(201, body)
}

pub(crate) fn get_repo(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner"), ctx.s("repo"));
    let r = w.repo_mut(owner, repo);
    let meta = r.meta.clone();
    Answer::ok(200, ctx.shared.repo_json(r, &meta))
}
