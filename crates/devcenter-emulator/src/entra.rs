//! Microsoft Entra's token endpoint (`POST /{tenant}/oauth2/v2.0/token`), the
//! client-credentials grant as Microsoft documents it: with a client secret, or with a
//! federated client assertion (`client_assertion_type` =
//! `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`) that must be a JWT signed RS256
//! by a key the assertion's issuer publishes, for the subject and audience the app's
//! federated credential names. Errors are Entra's `{"error", "error_description"}` bodies.

use crate::{RequestRecord, Shared, DEVCENTER_SCOPE};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// A workload identity federation credential of an app registration.
#[derive(Debug, Clone)]
pub struct FederatedCredential {
    /// The assertion's `iss` (its OpenID configuration is fetched from here).
    pub issuer: String,
    /// The assertion's `sub`.
    pub subject: String,
    /// The assertion's `aud` (Entra's default: `api://AzureADTokenExchange`).
    pub audience: String,
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .with_state(shared)
}

fn refused(status: StatusCode, error: &str, description: &str) -> (StatusCode, String, Value) {
    (
        status,
        description.to_string(),
        json!({"error": error, "error_description": description}),
    )
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, why, body) = match issue(&shared, &tenant, &headers, &body).await {
        Ok(answer) => (StatusCode::OK, String::new(), answer),
        Err(r) => r,
    };
    shared.world().requests.push(RequestRecord {
        method: "POST".into(),
        target: format!("/{tenant}/oauth2/v2.0/token"),
        operation_id: None,
        status: status.as_u16(),
        rejected: (!why.is_empty()).then_some(why),
    });
    (status, Json(body)).into_response()
}

async fn issue(
    shared: &Shared,
    tenant: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, (StatusCode, String, Value)> {
    let form_type = headers
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: the request body must be application/x-www-form-urlencoded",
        ));
    }
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if form.insert(k.to_string(), v.to_string()).is_some() {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("AADSTS90014: {k} was given twice"),
            ));
        }
    }
    let field = |k: &str| form.get(k).map(String::as_str);
    if field("grant_type") != Some("client_credentials") {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: only the client_credentials grant is supported",
        ));
    }
    let Some(client_id) = field("client_id") else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: the request body must contain client_id",
        ));
    };
    if field("scope") != Some(DEVCENTER_SCOPE) {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("AADSTS70011: the scope must be {DEVCENTER_SCOPE}"),
        ));
    }
    let key = (tenant.to_string(), client_id.to_string());
    let (secret, federated) = {
        let w = shared.world();
        (w.secrets.get(&key).cloned(), w.federated.get(&key).cloned())
    };
    match (field("client_secret"), field("client_assertion_type"), field("client_assertion")) {
        (Some(given), None, None) => {
            let good = secret.is_some_and(|s| {
                s.len() == given.len()
                    && s.bytes().zip(given.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
            });
            if !good {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS7000215: invalid client secret provided",
                ));
            }
        }
        (None, Some(ASSERTION_TYPE), Some(assertion)) => {
            let Some(credential) = federated else {
                return Err(refused(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS70021: no matching federated identity record found for the presented assertion",
                ));
            };
            if let Err(why) = verify(shared, &credential, assertion).await {
                return Err(refused(StatusCode::UNAUTHORIZED, "invalid_client", &why));
            }
        }
        _ => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "AADSTS7000218: the request body must contain client_secret or client_assertion (with client_assertion_type jwt-bearer), not both",
            ))
        }
    }
    let token = format!("ey.devcenter.{:032x}", rand::random::<u128>());
    let lifetime = {
        let mut w = shared.world();
        let lifetime = w.token_lifetime;
        w.tokens.insert(
            token.clone(),
            (DEVCENTER_SCOPE.to_string(), Instant::now() + lifetime),
        );
        lifetime
    };
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": token,
    }))
}

/// Checks a federated assertion: RS256, signed by a key of the issuer's JWKS (from its
/// OpenID configuration), with the credential's issuer, subject and audience, unexpired.
async fn verify(
    shared: &Shared,
    credential: &FederatedCredential,
    assertion: &str,
) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| format!("AADSTS50027: the assertion is not a JWT: {e}"))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(format!(
            "AADSTS5002738: the assertion is signed {:?}, not RS256",
            header.alg
        ));
    }
    let kid = header.kid.ok_or("AADSTS700027: the assertion has no kid")?;
    let config_url = format!(
        "{}/.well-known/openid-configuration",
        credential.issuer.trim_end_matches('/')
    );
    let fetch = |url: String| async move {
        let r =
            shared.http.get(&url).send().await.map_err(|e| {
                format!("AADSTS50166: the issuer could not be reached at {url}: {e}")
            })?;
        if !r.status().is_success() {
            return Err(format!("AADSTS50166: {url} answered {}", r.status()));
        }
        r.json::<Value>()
            .await
            .map_err(|e| format!("AADSTS50166: {url} is not JSON: {e}"))
    };
    let config = fetch(config_url).await?;
    let jwks_uri = config["jwks_uri"]
        .as_str()
        .ok_or("AADSTS50166: the issuer's OpenID configuration has no jwks_uri")?
        .to_string();
    let jwks = fetch(jwks_uri).await?;
    let key = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("AADSTS700027: no key {kid} in the issuer's JWKS"))?;
    let (n, e) = (
        key["n"].as_str().unwrap_or_default(),
        key["e"].as_str().unwrap_or_default(),
    );
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(n, e)
        .map_err(|e| format!("AADSTS700027: the issuer's key {kid} is unusable: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[&credential.issuer]);
    validation.set_audience(&[&credential.audience]);
    validation.sub = Some(credential.subject.clone());
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(assertion, &decoding, &validation)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "AADSTS700024: the client assertion is not valid for the federated credential: {e}"
            )
        })
}
