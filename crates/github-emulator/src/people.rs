//! People: the user a token belongs to (`GET /user`) and the members of organisation teams
//! (`GET /orgs/{org}/teams/{team_slug}/members`), with the state tests set on the handle.

#![allow(clippy::wildcard_imports)]
use super::*;

/// `GET /user`: the login of a user token registered with
/// [`EmulatorHandle::add_user_token`]; any other token (an installation token, a revoked
/// one) gets GitHub's 401 `Bad credentials`.
pub(crate) fn get_authenticated(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let Some(login) = w.user_tokens.get(ctx.token).cloned() else {
        return Answer::reject(
            401,
            "Bad credentials",
            ctx.docs,
            "GET /user with a token that is not a registered user token".to_string(),
        );
    };
    let mut user = template("users/get-authenticated", 200, "application/json", None);
    set_fields(&mut user, ctx.shared.login_json(&login));
    Answer::ok(200, user)
}

/// `GET /orgs/{org}/teams/{team_slug}/members`, paginated; 404 for a team not set.
pub(crate) fn list_team_members(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let key = format!("{}/{}", ctx.s("org"), ctx.s("team_slug")).to_ascii_lowercase();
    let Some(members) = w.teams.get(&key) else {
        return ctx.not_found(format!("no team {key}"));
    };
    let items = members
        .iter()
        .map(|login| ctx.shared.login_json(login))
        .collect();
    let (page, link) = ctx.paginate(items);
    with_link(Answer::ok(200, Value::Array(page)), link)
}

impl EmulatorHandle {
    /// Registers a user token (personal or OAuth): `GET /user` with it answers `login`.
    pub fn add_user_token(&self, token: &str, login: &str) {
        self.mutate(|w| {
            w.user_tokens.insert(token.to_string(), login.to_string());
        });
    }

    /// Revokes a user token: GitHub answers 401 to it from now on.
    pub fn revoke_user_token(&self, token: &str) {
        self.mutate(|w| {
            w.user_tokens.remove(token);
        });
    }

    /// Sets the members of the organisation team `org/slug`.
    pub fn set_team_members(&self, team: &str, logins: &[&str]) {
        self.mutate(|w| {
            w.teams.insert(
                team.to_ascii_lowercase(),
                logins.iter().map(ToString::to_string).collect(),
            );
        });
    }
}

/// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`: the permission set with
/// [`EmulatorHandle::set_permission`]; `none` for a user the emulator knows otherwise (a
/// token, a team, an OAuth sign-in); 404 for a login it has never heard of.
pub(crate) fn collaborator_permission(ctx: &Ctx<'_>, w: &mut World) -> Answer {
    let (owner, repo, login) = (ctx.s("owner"), ctx.s("repo"), ctx.s("username"));
    let set = w
        .repo(&format!("{owner}/{repo}"))
        .and_then(|r| {
            r.collaborators
                .iter()
                .find(|(l, _)| l.eq_ignore_ascii_case(login))
        })
        .map(|(l, p)| (l.clone(), p.clone()));
    let known = || {
        w.user_tokens
            .values()
            .any(|l| l.eq_ignore_ascii_case(login))
            || w.teams
                .values()
                .flatten()
                .any(|l| l.eq_ignore_ascii_case(login))
            || w.oauth_user
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(login))
            || login.eq_ignore_ascii_case(owner)
    };
    let (login, permission) = match set {
        Some(found) => found,
        None if known() => (login.to_string(), "none".to_string()),
        None => return ctx.not_found(format!("no user {login}")),
    };
    // GitHub's legacy `permission` folds `maintain` into `write` and `triage` into `read`.
    let legacy = match permission.as_str() {
        "maintain" => "write",
        "triage" => "read",
        p => p,
    };
    let mut answer = template(
        "repos/get-collaborator-permission-level",
        200,
        "application/json",
        None,
    );
    let mut user = ctx.shared.login_json(&login);
    let p = permission.as_str();
    let (admin, maintain) = (p == "admin", ["admin", "maintain"].contains(&p));
    let push = maintain || p == "write";
    let (triage, pull) = (push || p == "triage", p != "none");
    set_fields(
        &mut user,
        json!({"role_name": permission, "permissions": {
            "admin": admin, "maintain": maintain, "push": push, "triage": triage, "pull": pull,
        }}),
    );
    set_fields(
        &mut answer,
        json!({"permission": legacy, "role_name": permission, "user": user}),
    );
    Answer::ok(200, answer)
}

impl EmulatorHandle {
    /// Sets `login`'s permission in `repo`: `admin`, `maintain`, `write`, `triage`, `read`.
    pub fn set_permission(&self, repo: &str, login: &str, permission: &str) {
        let (owner, name) = setup_repo(repo);
        self.mutate(|w| {
            w.repo_mut(owner, name)
                .collaborators
                .insert(login.to_string(), permission.to_string());
        });
    }
}
