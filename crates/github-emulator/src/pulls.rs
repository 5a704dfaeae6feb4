//! Pull requests opened through the API (`POST /repos/{owner}/{repo}/pulls`), as Paved's
//! orchestrator opens them: the head and base branches are resolved in the repository
//! served from [`EmulatorConfig::git_root`] (or the refs set with
//! [`EmulatorHandle::set_ref`]).

#![allow(clippy::wildcard_imports)]
use super::*;

/// A branch's commit: a ref set on the handle, else the served repository's branch.
fn branch_sha(shared: &Shared, w: &World, owner: &str, repo: &str, branch: &str) -> Option<String> {
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
    let number = r.pulls.keys().max().copied().unwrap_or(0) + 1;
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
    Answer::ok(201, pull)
}

impl EmulatorHandle {
    /// The pull request `number` of `repo` as the emulator holds it.
    pub fn pull(&self, repo: &str, number: u64) -> Option<Value> {
        self.world()
            .repo(repo)
            .and_then(|r| r.pulls.get(&number).cloned())
    }
}
