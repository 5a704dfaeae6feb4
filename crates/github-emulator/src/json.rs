//! JSON builders: responses made from the schema's own examples.

#![allow(clippy::wildcard_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// JSON builders
// ---------------------------------------------------------------------------------------

impl Shared {
    pub(crate) fn user_json(&self, login: &str, id: u64, kind: &str) -> Value {
        let mut user = template("repos/create-commit-status", 201, "application/json", None)
            .get("creator")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let api = format!("{}/users/{}", self.base, url_escape_login(login));
        set_fields(
            &mut user,
            json!({
                "login": login,
                "id": id,
                "node_id": node_id(if kind == "Bot" { "Bot" } else { "User" }, id),
                "avatar_url": format!("{}/_avatars/{id}", self.base),
                "gravatar_id": "",
                "url": api,
                "html_url": format!("{}/_web/{}", self.base, url_escape_login(login)),
                "followers_url": format!("{api}/followers"),
                "following_url": format!("{api}/following{{/other_user}}"),
                "gists_url": format!("{api}/gists{{/gist_id}}"),
                "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
                "subscriptions_url": format!("{api}/subscriptions"),
                "organizations_url": format!("{api}/orgs"),
                "repos_url": format!("{api}/repos"),
                "events_url": format!("{api}/events{{/privacy}}"),
                "received_events_url": format!("{api}/received_events"),
                "type": kind,
                "site_admin": false,
            }),
        );
        user
    }

    /// A user object for a login the emulator knows: the bot, or an ordinary user.
    pub(crate) fn login_json(&self, login: &str) -> Value {
        if login == self.config.bot_login {
            self.user_json(login, self.config.bot_id, "Bot")
        } else {
            let id = login
                .bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                % 10_000_000
                + 100;
            self.user_json(login, id, "User")
        }
    }

    pub(crate) fn repo_json(&self, r: &RepoState, meta: &Value) -> Value {
        let mut repo = template("repos/get", 200, "application/json", None);
        if let Value::Object(map) = &mut repo {
            for optional in ["parent", "source", "template_repository", "organization"] {
                map.remove(optional);
            }
        }
        let full = format!("{}/{}", r.owner, r.name);
        rebase_urls(&mut repo, &self.base, Some(&full));
        set_fields(
            &mut repo,
            json!({
                "id": r.id,
                "node_id": node_id("Repository", r.id),
                "name": r.name,
                "full_name": full,
                "owner": self.login_json(&r.owner),
                "default_branch": self.config.default_branch,
                // GitHub's example predates `language` being required.
                "language": null,
            }),
        );
        deep_merge(&mut repo, meta.clone());
        repo
    }

    pub(crate) fn pull_template(&self, r: &RepoState, number: u64) -> anyhow::Result<Value> {
        let mut pull = template("pulls/get", 200, "application/json", None);
        let full = format!("{}/{}", r.owner, r.name);
        rebase_urls(&mut pull, &self.base, Some(&full));
        let api = format!("{}/repos/{full}", self.base);
        let web = format!("{}/_web/{full}", self.base);
        set_fields(
            &mut pull,
            json!({
                "number": number,
                "url": format!("{api}/pulls/{number}"),
                "html_url": format!("{web}/pull/{number}"),
                "diff_url": format!("{web}/pull/{number}.diff"),
                "patch_url": format!("{web}/pull/{number}.patch"),
                "issue_url": format!("{api}/issues/{number}"),
                "commits_url": format!("{api}/pulls/{number}/commits"),
                "review_comments_url": format!("{api}/pulls/{number}/comments"),
                "comments_url": format!("{api}/issues/{number}/comments"),
                // GitHub's example predates the team `type` field.
                "requested_teams": [],
            }),
        );
        let owner_json = self.login_json(&r.owner);
        for side in ["base", "head"] {
            if let Some(repo) = pull.get_mut(side).and_then(|s| s.get_mut("repo")) {
                set_fields(
                    repo,
                    json!({
                        "id": r.id,
                        "node_id": node_id("Repository", r.id),
                        "name": r.name,
                        "full_name": full,
                        "owner": owner_json.clone(),
                        "default_branch": self.config.default_branch,
                    }),
                );
            }
        }
        if let Some(base) = pull.get_mut("base") {
            set_fields(base, json!({"ref": self.config.default_branch}));
        }
        Ok(pull)
    }

    pub(crate) fn status_json(&self, owner: &str, repo: &str, s: &Status) -> Value {
        let mut v = template("repos/create-commit-status", 201, "application/json", None);
        set_fields(
            &mut v,
            json!({
                "url": format!("{}/repos/{owner}/{repo}/statuses/{}", self.base, s.sha),
                "avatar_url": format!("{}/_avatars/{}", self.base, self.config.bot_id),
                "id": s.id,
                "node_id": node_id("StatusContext", s.id),
                "state": s.state,
                "description": s.description,
                "target_url": s.target_url,
                "context": s.context,
                "created_at": timestamp(&s.created_at),
                "updated_at": timestamp(&s.created_at),
                "creator": self.login_json(&s.creator),
            }),
        );
        v
    }

    pub(crate) fn comment_json(&self, owner: &str, repo: &str, c: &Comment) -> Value {
        let mut v = template("issues/create-comment", 201, "application/json", None);
        set_fields(
            &mut v,
            json!({
                "id": c.id,
                "node_id": node_id("IssueComment", c.id),
                "url": c.url,
                "html_url": c.html_url,
                "body": c.body,
                "user": self.login_json(&c.user),
                "created_at": timestamp(&c.created_at),
                "updated_at": timestamp(&c.updated_at),
                "issue_url": format!("{}/repos/{owner}/{repo}/issues/{}", self.base, c.issue_number),
                "author_association": "NONE",
            }),
        );
        v
    }

    pub(crate) fn check_run_json(&self, owner: &str, repo: &str, c: &CheckRun) -> Value {
        let mut v = template(
            "checks/create",
            201,
            "application/json",
            Some("example-of-in-progress-conclusion"),
        );
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        let output = c.output.clone().unwrap_or_else(|| json!({}));
        let annotations = c.annotations.len();
        let mut app = v.get("app").cloned().unwrap_or(Value::Null);
        rebase_urls(&mut app, &self.base, None);
        if app.is_object() {
            set_fields(
                &mut app,
                json!({"id": self.config.app_id, "slug": self.config.app_slug, "name": self.config.app_slug}),
            );
        }
        if let Value::Object(map) = &mut v {
            map.remove("deployment");
        }
        set_fields(
            &mut v,
            json!({
                "id": c.id,
                "head_sha": c.head_sha,
                "node_id": node_id("CheckRun", c.id),
                "external_id": c.external_id.clone().unwrap_or_default(),
                "url": format!("{api}/check-runs/{}", c.id),
                "html_url": format!("{}/_web/{owner}/{repo}/runs/{}", self.base, c.id),
                "details_url": c.details_url,
                "status": c.status,
                "conclusion": c.conclusion,
                "started_at": c.started_at,
                "completed_at": c.completed_at,
                "output": {
                    "title": output.get("title").cloned().unwrap_or(Value::Null),
                    "summary": output.get("summary").cloned().unwrap_or(Value::Null),
                    "text": output.get("text").cloned().unwrap_or(Value::Null),
                    "annotations_count": annotations,
                    "annotations_url": format!("{api}/check-runs/{}/annotations", c.id),
                },
                "name": c.name,
                "check_suite": {"id": 5},
                "app": app,
                "pull_requests": [],
            }),
        );
        v
    }

    pub(crate) fn deployment_json(&self, owner: &str, repo: &str, d: &Deployment) -> Value {
        let mut v = template("repos/create-deployment", 201, "application/json", None);
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        set_fields(
            &mut v,
            json!({
                "url": format!("{api}/deployments/{}", d.id),
                "id": d.id,
                "node_id": node_id("Deployment", d.id),
                "sha": d.sha,
                "ref": d.git_ref,
                "task": d.task,
                "payload": d.payload,
                "original_environment": d.environment,
                "environment": d.environment,
                "description": d.description,
                "creator": self.login_json(&d.creator),
                "created_at": timestamp(&d.created_at),
                "updated_at": timestamp(&d.created_at),
                "statuses_url": format!("{api}/deployments/{}/statuses", d.id),
                "repository_url": api,
                "transient_environment": d.transient_environment,
                "production_environment": d.production_environment,
            }),
        );
        v
    }

    pub(crate) fn deployment_status_json(
        &self,
        owner: &str,
        repo: &str,
        s: &DeploymentStatus,
    ) -> Value {
        let mut v = template(
            "repos/create-deployment-status",
            201,
            "application/json",
            None,
        );
        let api = format!("{}/repos/{owner}/{repo}", self.base);
        set_fields(
            &mut v,
            json!({
                "url": format!("{api}/deployments/{}/statuses/{}", s.deployment_id, s.id),
                "id": s.id,
                "node_id": node_id("DeploymentStatus", s.id),
                "state": s.state,
                "creator": self.login_json(&s.creator),
                "description": s.description,
                "environment": s.environment,
                "target_url": s.target_url,
                "created_at": timestamp(&s.created_at),
                "updated_at": timestamp(&s.created_at),
                "deployment_url": format!("{api}/deployments/{}", s.deployment_id),
                "repository_url": api,
                "environment_url": s.environment_url,
                "log_url": s.log_url,
            }),
        );
        v
    }
}
