//! A strict, stateful emulator of Azure's DevCenter data plane (what Azure Deployment
//! Environments answers at a dev center's endpoint) and of Microsoft Entra's token endpoint,
//! served on loopback, for `paved import ade`'s tests and bench.
//!
//! **What it serves.** The read operations of Microsoft's description
//! (`tests/fixtures/azure-devcenter/devcenter-2025-02-01.json`, embedded) that an import
//! calls, from the state a test sets: projects, environment types, catalogs, environment
//! definitions, environments (by project and by user) and an environment's outputs. Every
//! other operation of the description answers 501 and is recorded as rejected, so a test
//! notices a call it did not expect.
//!
//! **Strictness.** A request is refused (and recorded as rejected, nothing changed) with
//! the status and `ErrorResponse` body Azure answers when:
//! - no operation of the description has its path → 404, or its method → 405;
//! - `api-version` is missing or is not `2025-02-01` → 400 `UnsupportedApiVersion`;
//! - a query parameter the operation does not have, or one given twice → 400; a path or
//!   query parameter that does not validate against its schema (pattern, length, type) → 400;
//! - no `Authorization: Bearer` token the Entra endpoint issued for
//!   `https://devcenter.azure.com/.default`, or an expired one → 401;
//! - a project, catalog, definition, environment type or environment that does not exist →
//!   404 (a valid request: not a rejection).
//!
//! **Paging.** Lists are cut into pages of [`DevCenter::set_page_size`] items; `nextLink` is
//! an absolute URL carrying an opaque `$skipToken` the emulator issued (Azure's nextLinks are
//! opaque to clients, who follow them as they are). A `$skipToken` it did not issue is refused.
//!
//! **Throttling.** [`DevCenter::throttle_next`] answers the next requests 429 with
//! `Retry-After`, as Azure Resource Manager does.
//!
//! **Responses** are validated against the operation's response schema before they are
//! sent; violations are recorded ([`DevCenter::response_schema_errors`]) and the tests
//! assert there are none.
//!
//! **Entra** (the `entra` module): `POST /{tenant}/oauth2/v2.0/token` on its own listener
//! ([`DevCenter::authority`]), the client-credentials grant with a client secret
//! ([`DevCenter::add_client_secret`]) or a federated client assertion
//! ([`DevCenter::add_federated_credential`]: a JWT whose issuer, subject and audience match,
//! signed RS256 by a key of the issuer's JWKS, fetched from its OpenID configuration).

mod entra;
mod server;
pub mod spec;

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use entra::FederatedCredential;

/// The scope a DevCenter data-plane token is issued for.
pub const DEVCENTER_SCOPE: &str = "https://devcenter.azure.com/.default";

/// One request the emulator answered.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    pub operation_id: Option<String>,
    pub status: u16,
    /// Why the request was refused, when it was one the description does not allow.
    pub rejected: Option<String>,
}

#[derive(Default)]
pub(crate) struct Project {
    pub environment_types: Vec<Value>,
    /// Catalog name → its definitions.
    pub catalogs: BTreeMap<String, Vec<Value>>,
    pub environments: Vec<Value>,
    /// (user, environment) → the `EnvironmentOutputs` body.
    pub outputs: HashMap<(String, String), Value>,
}

pub(crate) struct World {
    pub projects: BTreeMap<String, Project>,
    pub page_size: usize,
    /// Issued `$skipToken`s: the path they continue and the offset.
    pub skip_tokens: HashMap<String, (String, usize)>,
    pub throttle: usize,
    pub retry_after: u64,
    /// Access tokens issued by the Entra endpoint, with their scope and expiry.
    pub tokens: HashMap<String, (String, Instant)>,
    pub secrets: HashMap<(String, String), String>,
    pub federated: HashMap<(String, String), FederatedCredential>,
    pub token_lifetime: Duration,
    pub requests: Vec<RequestRecord>,
    pub response_errors: Vec<String>,
}

pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub spec: spec::Spec,
    pub base: String,
    pub authority: String,
    pub http: reqwest::Client,
}

impl Shared {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running emulator; the servers stop when it is dropped.
pub struct DevCenter {
    shared: Arc<Shared>,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DevCenter {
    fn drop(&mut self) {
        for s in &self._servers {
            s.abort();
        }
    }
}

impl DevCenter {
    /// Starts the data plane and the Entra endpoint on loopback ports.
    pub async fn start() -> anyhow::Result<DevCenter> {
        let data = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let auth = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                projects: BTreeMap::new(),
                page_size: 100,
                skip_tokens: HashMap::new(),
                throttle: 0,
                retry_after: 1,
                tokens: HashMap::new(),
                secrets: HashMap::new(),
                federated: HashMap::new(),
                token_lifetime: Duration::from_secs(3599),
                requests: Vec::new(),
                response_errors: Vec::new(),
            }),
            spec: spec::Spec::load()?,
            base: format!("http://{}", data.local_addr()?),
            authority: format!("http://{}", auth.local_addr()?),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        });
        let data_app = server::router(shared.clone());
        let auth_app = entra::router(shared.clone());
        let servers = vec![
            tokio::spawn(async move {
                let _ = axum::serve(data, data_app).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(auth, auth_app).await;
            }),
        ];
        Ok(DevCenter {
            shared,
            _servers: servers,
        })
    }

    /// The dev center's endpoint (what `--endpoint` names).
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// The Entra authority host (what `AZURE_AUTHORITY_HOST` names).
    pub fn authority(&self) -> String {
        self.shared.authority.clone()
    }

    pub fn add_project(&self, name: &str) {
        self.shared
            .world()
            .projects
            .entry(name.to_string())
            .or_default();
    }

    /// An environment type of `project` (`status`: `Enabled` or `Disabled`).
    pub fn add_environment_type(&self, project: &str, name: &str, status: &str) {
        let uri = format!(
            "{}/projects/{project}/environmentTypes/{name}",
            self.shared.base
        );
        let t = json!({
            "uri": uri, "name": name, "status": status,
            "deploymentTargetId": "/subscriptions/00000000-0000-0000-0000-000000000000",
            "displayName": name,
        });
        self.project(project, |p| p.environment_types.push(t));
    }

    /// A catalog of `project` with its definitions: each `{"name", "parameters": [...],
    /// "templatePath"?}` (the emulator adds `uri`, `id` and `catalogName`).
    pub fn add_catalog(&self, project: &str, catalog: &str, definitions: Vec<Value>) {
        let base = self.shared.base.clone();
        let defs = definitions
            .into_iter()
            .map(|mut d| {
                let name = d["name"].as_str().unwrap_or_default().to_string();
                d["uri"] = json!(format!(
                    "{base}/projects/{project}/catalogs/{catalog}/environmentDefinitions/{name}"
                ));
                d["id"] = json!(format!(
                    "/projects/{project}/catalogs/{catalog}/environmentDefinitions/{name}"
                ));
                d["catalogName"] = json!(catalog);
                d
            })
            .collect();
        self.project(project, |p| {
            p.catalogs.insert(catalog.to_string(), defs);
        });
    }

    /// An environment of `project`, as the description's `Environment` without `uri` (the
    /// emulator adds it from `user` and `name`), and its outputs (`EnvironmentOutputs`).
    pub fn add_environment(&self, project: &str, mut environment: Value, outputs: Value) {
        let user = environment["user"].as_str().unwrap_or_default().to_string();
        let name = environment["name"].as_str().unwrap_or_default().to_string();
        environment["uri"] = json!(format!(
            "{}/projects/{project}/users/{user}/environments/{name}",
            self.shared.base
        ));
        self.project(project, |p| {
            p.environments.push(environment);
            p.outputs.insert((user, name), outputs);
        });
    }

    fn project(&self, name: &str, f: impl FnOnce(&mut Project)) {
        f(self
            .shared
            .world()
            .projects
            .entry(name.to_string())
            .or_default());
    }

    /// Items per page of every list.
    pub fn set_page_size(&self, n: usize) {
        self.shared.world().page_size = n.max(1);
    }

    /// Answers the next `n` data-plane requests 429 with `Retry-After: seconds`.
    pub fn throttle_next(&self, n: usize, seconds: u64) {
        let mut w = self.shared.world();
        w.throttle = n;
        w.retry_after = seconds;
    }

    /// A client that signs in with a secret.
    pub fn add_client_secret(&self, tenant: &str, client_id: &str, secret: &str) {
        self.shared.world().secrets.insert(
            (tenant.to_string(), client_id.to_string()),
            secret.to_string(),
        );
    }

    /// A client that signs in with a federated assertion (a workload identity federation
    /// credential of an app registration).
    pub fn add_federated_credential(
        &self,
        tenant: &str,
        client_id: &str,
        credential: FederatedCredential,
    ) {
        self.shared
            .world()
            .federated
            .insert((tenant.to_string(), client_id.to_string()), credential);
    }

    /// How long the tokens it issues last.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.world().token_lifetime = lifetime;
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.world().requests.clone()
    }

    /// The requests refused as the description does not allow them.
    pub fn rejected(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.rejected.is_some())
            .collect()
    }

    /// Responses the emulator sent that do not validate against their schema (its own bugs).
    pub fn response_schema_errors(&self) -> Vec<String> {
        self.shared.world().response_errors.clone()
    }

    /// Requests that changed anything in ADE (none of the import's calls may).
    pub fn writes(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && !r.target.contains("/oauth2/"))
            .collect()
    }
}
