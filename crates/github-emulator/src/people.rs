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
