//! Who people are on GitHub: the login a user token belongs to (`GET /user`) and the
//! members of an organisation team (`GET /orgs/{org}/teams/{team_slug}/members`).

use super::client::{build_octocrab, Auth, ForgeError, GitHub, Method};
use super::Forge;
use crate::config::Secret;
use serde::Deserialize;

/// Team listings are read at most this many pages (100 members each).
const MAX_TEAM_PAGES: u32 = 50;

#[derive(Deserialize)]
struct Login {
    login: String,
}

impl Forge {
    /// The login `token` belongs to, asking GitHub as that user; `None` when GitHub refuses
    /// the token (401: unknown, expired or revoked). The token is never logged.
    pub async fn user_login(&self, token: &Secret) -> Result<Option<String>, ForgeError> {
        let octo = build_octocrab(&self.api_url, Auth::Token(token.expose()))?;
        let gh = GitHub::fixed(octo, self.retry.clone(), self.metrics.clone());
        match gh
            .send("the caller's identity", Method::Get, "/user", None::<&()>)
            .await
        {
            Ok(a) => {
                let u: Login = serde_json::from_slice(&a.body)
                    .map_err(|e| ForgeError::Transient(format!("GET /user: bad JSON: {e}")))?;
                Ok(Some(u.login))
            }
            Err(ForgeError::Refused { status: 401, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl GitHub {
    /// The logins of the members of `org/slug` (every page).
    pub async fn team_members(&self, org: &str, slug: &str) -> Result<Vec<String>, ForgeError> {
        let mut out = Vec::new();
        for page in 1..=MAX_TEAM_PAGES {
            let path = format!("/orgs/{org}/teams/{slug}/members?per_page=100&page={page}");
            let a = self
                .send("team members", Method::Get, &path, None::<&()>)
                .await?;
            let logins: Vec<Login> = serde_json::from_slice(&a.body)
                .map_err(|e| ForgeError::Transient(format!("team members: bad JSON: {e}")))?;
            let n = logins.len();
            out.extend(logins.into_iter().map(|l| l.login));
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }
}
