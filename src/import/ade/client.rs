//! A thin client of ADE's DevCenter data plane (version 2025-02-01): sign-in with the
//! variables Azure's SDKs read, GETs only, lists followed through `nextLink`, 429 answered
//! by waiting as `Retry-After` says. Every error names what failed.

use serde_json::Value;
use std::time::Duration;

/// The only version of the data plane Paved speaks.
pub const API_VERSION: &str = "2025-02-01";
/// The scope of a DevCenter data-plane token.
pub const SCOPE: &str = "https://devcenter.azure.com/.default";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How often a throttled request is tried again, and the longest wait accepted.
const RETRIES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Pages followed at most in one list (a nextLink loop ends here).
const MAX_PAGES: usize = 10_000;

/// Why the import could not read ADE. Nothing was pushed.
#[derive(Debug, thiserror::Error)]
pub enum AdeError {
    #[error("{0}")]
    BadInput(String),
    #[error("sign-in: {0}")]
    SignIn(String),
    #[error("{what}: {url} could not be reached: {error}")]
    Unreachable {
        what: String,
        url: String,
        error: String,
    },
    #[error("{what}: {url} answered {status}: {message}")]
    Refused {
        what: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{what}: {url} answered something that is not the data plane's JSON: {error}")]
    Unreadable {
        what: String,
        url: String,
        error: String,
    },
}

/// The Entra sign-in, from the environment (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, and
/// `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE`; `AZURE_AUTHORITY_HOST`).
#[derive(Clone)]
pub struct Credentials {
    pub tenant: String,
    pub client_id: String,
    pub authority: String,
    pub proof: Proof,
}

/// What proves the client's identity to Entra.
#[derive(Clone)]
pub enum Proof {
    Secret(crate::config::Secret),
    /// A file holding a federated token (re-read at each sign-in: it rotates).
    FederatedTokenFile(std::path::PathBuf),
}

impl Credentials {
    /// From the variables `var` reads (the process environment in `paved import ade`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Credentials, AdeError> {
        let need = |k: &str| {
            var(k)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| AdeError::SignIn(format!("{k} is not set")))
        };
        let tenant = need("AZURE_TENANT_ID")?;
        let client_id = need("AZURE_CLIENT_ID")?;
        let proof = match (
            var("AZURE_CLIENT_SECRET"),
            var("AZURE_FEDERATED_TOKEN_FILE"),
        ) {
            (Some(s), _) if !s.is_empty() => Proof::Secret(crate::config::Secret::new(s)),
            (_, Some(f)) if !f.is_empty() => Proof::FederatedTokenFile(f.into()),
            _ => {
                return Err(AdeError::SignIn(
                    "set AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE".into(),
                ))
            }
        };
        let authority = var("AZURE_AUTHORITY_HOST")
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_AUTHORITY.into());
        Ok(Credentials {
            tenant,
            client_id,
            authority: authority.trim_end_matches('/').to_string(),
            proof,
        })
    }
}

/// A signed-in client of one dev center's data plane.
pub struct Client {
    http: reqwest::Client,
    endpoint: url::Url,
    token: crate::config::Secret,
}

impl Client {
    /// Signs in at Entra and returns a client of `endpoint`.
    pub async fn sign_in(endpoint: &str, credentials: &Credentials) -> Result<Client, AdeError> {
        let endpoint = url::Url::parse(endpoint.trim_end_matches('/')).map_err(|e| {
            AdeError::BadInput(format!("--endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("paved/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AdeError::SignIn(e.to_string()))?;
        let token = sign_in(&http, credentials).await?;
        Ok(Client {
            http,
            endpoint,
            token,
        })
    }

    /// `GET path` (under the endpoint, with `api-version`).
    pub async fn get(&self, what: &str, path: &str) -> Result<Value, AdeError> {
        let url = self.url(path);
        self.get_url(what, url).await
    }

    /// Every item of a list, following `nextLink` (which must stay on the endpoint).
    pub async fn list(&self, what: &str, path: &str) -> Result<Vec<Value>, AdeError> {
        let mut url = self.url(path);
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.get_url(what, url.clone()).await?;
            let unreadable = |error: String| AdeError::Unreadable {
                what: what.to_string(),
                url: url.to_string(),
                error,
            };
            let value = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| unreadable("the page has no \"value\" list".into()))?;
            items.extend(value.iter().cloned());
            match page.get("nextLink").and_then(Value::as_str) {
                None => return Ok(items),
                Some(next) => {
                    let next = url::Url::parse(next)
                        .map_err(|e| unreadable(format!("nextLink is not a URL: {e}")))?;
                    if next.origin() != self.endpoint.origin() {
                        return Err(unreadable(format!(
                            "nextLink {next} leaves the endpoint {}",
                            self.endpoint
                        )));
                    }
                    url = next;
                }
            }
        }
        Err(AdeError::Unreadable {
            what: what.to_string(),
            url: url.to_string(),
            error: format!("more than {MAX_PAGES} pages"),
        })
    }

    fn url(&self, path: &str) -> url::Url {
        let mut url = self.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        url
    }

    async fn get_url(&self, what: &str, url: url::Url) -> Result<Value, AdeError> {
        let mut tries = 0;
        loop {
            let r = self
                .http
                .get(url.clone())
                .bearer_auth(self.token.expose())
                .send()
                .await
                .map_err(|e| AdeError::Unreachable {
                    what: what.to_string(),
                    url: url.to_string(),
                    error: e.to_string(),
                })?;
            let status = r.status().as_u16();
            if status == 429 && tries < RETRIES {
                tries += 1;
                let wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|h| h.to_str().ok())
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_WAIT);
                tracing::info!(%url, ?wait, "ADE throttled the import; waiting as Retry-After says");
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = r.text().await.unwrap_or_default();
            if !(200..300).contains(&status) {
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let message = body["error"]["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(200).collect());
                return Err(AdeError::Refused {
                    what: what.to_string(),
                    url: url.to_string(),
                    status,
                    message,
                });
            }
            return serde_json::from_str(&text).map_err(|e| AdeError::Unreadable {
                what: what.to_string(),
                url: url.to_string(),
                error: e.to_string(),
            });
        }
    }
}

/// The client-credentials grant at `<authority>/<tenant>/oauth2/v2.0/token`.
async fn sign_in(
    http: &reqwest::Client,
    c: &Credentials,
) -> Result<crate::config::Secret, AdeError> {
    let url = format!("{}/{}/oauth2/v2.0/token", c.authority, c.tenant);
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", c.client_id.clone()),
        ("scope", SCOPE.to_string()),
    ];
    match &c.proof {
        Proof::Secret(s) => form.push(("client_secret", s.expose().to_string())),
        Proof::FederatedTokenFile(path) => {
            let token = std::fs::read_to_string(path).map_err(|e| {
                AdeError::SignIn(format!(
                    "AZURE_FEDERATED_TOKEN_FILE {} could not be read: {e}",
                    path.display()
                ))
            })?;
            form.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
            form.push(("client_assertion", token.trim().to_string()));
        }
    }
    let r = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .map_err(|e| AdeError::SignIn(format!("Entra at {url} could not be reached: {e}")))?;
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let why = body["error_description"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        return Err(AdeError::SignIn(format!(
            "Entra at {url} refused the sign-in ({status}): {why}"
        )));
    }
    body["access_token"]
        .as_str()
        .map(crate::config::Secret::new)
        .ok_or_else(|| AdeError::SignIn(format!("Entra at {url} answered no access_token")))
}
