//! Branches and files written through the REST API: `GET /repos/{owner}/{repo}/git/ref/{ref}`,
//! `POST /repos/{owner}/{repo}/git/refs`, and `PUT`/`DELETE
//! /repos/{owner}/{repo}/contents/{path}`. Files live in the same state `GET .../contents`
//! serves (by branch); each write moves its branch to a new commit id, as GitHub's do.

#![allow(clippy::wildcard_imports)]
use super::*;

/// A ref object (`git/get-ref`, `git/create-ref`).
fn ref_json(ctx: &Ctx<'_>, name: &str, sha: &str) -> Value {
    let api = ctx.repo_api();
    json!({
        "ref": format!("refs/heads/{name}"),
        "node_id": format!("REF_{}", &sha[..12]),
        "url": format!("{api}/git/refs/heads/{name}"),
        "object": {"type": "commit", "sha": sha, "url": format!("{api}/git/commits/{sha}")},
    })
}

/// `GET /repos/{owner}/{repo}/git/ref/heads/{branch}`: a branch set on the handle, written
/// through the API, or in the repository served from `git_root`; 404 otherwise.
pub(crate) fn get_ref(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let Some(branch) = ctx.s("ref").strip_prefix("heads/").map(str::to_string) else {
        return ctx.not_found(format!(
            "only branch refs (heads/…) are kept, not {}",
            ctx.s("ref")
        ));
    };
    match crate::pulls::branch_sha(ctx.shared, w, &owner, &repo, &branch) {
        Some(sha) => Answer::ok(200, ref_json(ctx, &branch, &sha)),
        None => ctx.not_found(format!("no branch {branch} in {owner}/{repo}")),
    }
}

/// `POST /repos/{owner}/{repo}/git/refs`: a new branch at `sha` (`refs/heads/…` only);
/// 422 when it exists.
pub(crate) fn create_ref(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let full = ctx.body_str("ref").unwrap_or_default();
    let sha = ctx.body_str("sha").unwrap_or_default().to_ascii_lowercase();
    let Some(branch) = full.strip_prefix("refs/heads/").filter(|b| !b.is_empty()) else {
        return Answer::unprocessable(
            ctx.docs,
            format!("Reference name {full:?} is not valid; write refs/heads/<branch>"),
        );
    };
    if !is_full_sha(&sha) {
        return Answer::unprocessable(ctx.docs, "Object does not exist".into());
    }
    if crate::pulls::branch_sha(ctx.shared, w, &owner, &repo, branch).is_some() {
        return Answer::unprocessable(ctx.docs, "Reference already exists".into());
    }
    w.repo_mut(&owner, &repo)
        .refs
        .insert(branch.to_string(), sha.clone());
    Answer::ok(201, ref_json(ctx, branch, &sha)).header(
        "location",
        format!("{}/git/refs/heads/{branch}", ctx.repo_api()),
    )
}

/// The branch a contents write goes to: `branch`, else the default branch.
fn target_branch(ctx: &Ctx<'_>) -> String {
    ctx.body_str("branch")
        .map(|b| normalize_ref(&b).to_string())
        .unwrap_or_else(|| ctx.shared.config.default_branch.clone())
}

/// The commit a write makes: a new id after the branch's tip, and GitHub's commit object.
fn commit_for(ctx: &Ctx<'_>, parent: Option<&str>, path: &str, content: &[u8]) -> (String, Value) {
    let message = ctx.body_str("message").unwrap_or_default();
    let mut seed = Vec::new();
    for part in [
        parent.unwrap_or_default().as_bytes(),
        path.as_bytes(),
        message.as_bytes(),
        content,
        ctx.now.to_rfc3339().as_bytes(),
    ] {
        seed.extend_from_slice(part);
        seed.push(0);
    }
    let sha = content_sha(&seed);
    let api = ctx.repo_api();
    let web = format!(
        "{}/_web/{}/{}",
        ctx.shared.base,
        ctx.s("owner"),
        ctx.s("repo")
    );
    let person = |key: &str| {
        let given = ctx.body.get(key);
        json!({
            "date": timestamp(&ctx.now),
            "name": given.and_then(|g| g["name"].as_str()).unwrap_or("Paved"),
            "email": given.and_then(|g| g["email"].as_str()).unwrap_or("paved@users.noreply.github.com"),
        })
    };
    let tree = content_sha(sha.as_bytes());
    let commit = json!({
        "sha": sha,
        "node_id": format!("C_{}", &sha[..12]),
        "url": format!("{api}/git/commits/{sha}"),
        "html_url": format!("{web}/commit/{sha}"),
        "author": person("author"),
        "committer": person("committer"),
        "message": message,
        "tree": {"url": format!("{api}/git/trees/{tree}"), "sha": tree},
        "parents": parent.map(|p| vec![json!({
            "url": format!("{api}/git/commits/{p}"),
            "html_url": format!("{web}/commit/{p}"),
            "sha": p,
        })]).unwrap_or_default(),
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
    });
    (sha, commit)
}

/// Whether `branch` exists: set or written here, or in the served repository.
fn branch_exists(ctx: &Ctx<'_>, w: &World, owner: &str, repo: &str, branch: &str) -> bool {
    branch == ctx.shared.config.default_branch
        || w.repo(&format!("{owner}/{repo}"))
            .is_some_and(|r| r.contents.contains_key(branch))
        || crate::pulls::branch_sha(ctx.shared, w, owner, repo, branch).is_some()
}

/// `PUT /repos/{owner}/{repo}/contents/{path}`: creates (201) or replaces (200, with the
/// `sha` of the file it replaces) a file on a branch.
pub(crate) fn put_content(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let path = ctx.s("path").trim_matches('/').to_string();
    let branch = target_branch(ctx);
    let Some(bytes) = ctx.body_str("content").and_then(|c| base64_decode(&c)) else {
        return Answer::validation_failed(
            ctx.docs,
            "Content",
            "content",
            "content is not valid Base64".into(),
        );
    };
    if !branch_exists(ctx, w, &owner, &repo, &branch) {
        return ctx.not_found(format!("Branch {branch} not found"));
    }
    let parent = crate::pulls::branch_sha(ctx.shared, w, &owner, &repo, &branch);
    let r = w.repo_mut(&owner, &repo);
    let existing = r
        .contents
        .get(&branch)
        .and_then(|f| f.get(&path))
        .map(|b| content_sha(b));
    let given = ctx.body_str("sha");
    match (&existing, &given) {
        (Some(_), None) => {
            return Answer::unprocessable(
                ctx.docs,
                "Invalid request.\n\n\"sha\" wasn't supplied.".into(),
            )
        }
        (Some(have), Some(given)) if have != given => {
            return Answer::reject(
                409,
                &format!("{path} does not match {given}"),
                ctx.docs,
                "the sha is not the file's".into(),
            )
        }
        _ => {}
    }
    let (sha, commit) = commit_for(ctx, parent.as_deref(), &path, &bytes);
    let size = bytes.len();
    let blob = content_sha(&bytes);
    r.contents
        .entry(branch.clone())
        .or_default()
        .insert(path.clone(), bytes);
    r.refs.insert(branch.clone(), sha);
    let status = if existing.is_some() { 200 } else { 201 };
    let mut answer = template(
        "repos/create-or-update-file-contents",
        status,
        "application/json",
        None,
    );
    let api = ctx.repo_api();
    let web = format!("{}/_web/{owner}/{repo}", ctx.shared.base);
    let self_url = format!("{api}/contents/{path}?ref={branch}");
    let git_url = format!("{api}/git/blobs/{blob}");
    let html_url = format!("{web}/blob/{branch}/{path}");
    set_fields(
        &mut answer,
        json!({
            "content": {
                "name": path.rsplit('/').next().unwrap_or(&path),
                "path": path,
                "sha": blob,
                "size": size,
                "url": self_url,
                "html_url": html_url,
                "git_url": git_url,
                "download_url": format!("{}/_raw/{owner}/{repo}/{branch}/{path}", ctx.shared.base),
                "type": "file",
                "_links": {"self": self_url, "git": git_url, "html": html_url},
            },
            "commit": commit,
        }),
    );
    Answer::ok(status, answer)
}

/// `DELETE /repos/{owner}/{repo}/contents/{path}`: removes a file, given its `sha`.
pub(crate) fn delete_content(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo) = (ctx.s("owner").to_string(), ctx.s("repo").to_string());
    let path = ctx.s("path").trim_matches('/').to_string();
    let branch = target_branch(ctx);
    let parent = crate::pulls::branch_sha(ctx.shared, w, &owner, &repo, &branch);
    let r = w.repo_mut(&owner, &repo);
    let Some(have) = r
        .contents
        .get(&branch)
        .and_then(|f| f.get(&path))
        .map(|b| content_sha(b))
    else {
        return ctx.not_found(format!("no file {path} on {branch}"));
    };
    let given = ctx.body_str("sha").unwrap_or_default();
    if have != given {
        return Answer::reject(
            409,
            &format!("{path} does not match {given}"),
            ctx.docs,
            "the sha is not the file's".into(),
        );
    }
    let (sha, commit) = commit_for(ctx, parent.as_deref(), &path, &[]);
    if let Some(files) = r.contents.get_mut(&branch) {
        files.remove(&path);
    }
    r.refs.insert(branch, sha);
    let mut answer = template("repos/delete-file", 200, "application/json", None);
    set_fields(&mut answer, json!({"content": null, "commit": commit}));
    Answer::ok(200, answer)
}
