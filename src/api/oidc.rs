//! Paved's OpenID Connect issuer, as clouds read it (SPEC 13): the discovery document and
//! the JWKS it names, open to anyone (a cloud's token service fetches them without any
//! identity of Paved's), both cached so they answer without touching the database.

use super::answers::ApiError;
use super::ApiState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// The discovery document: `issuer` (Paved's `public_url`) and where its keys are.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "operations", security(()),
    responses((status = 200, description = "OpenID Connect discovery document of Paved's issuer", body = Object)))]
pub(super) async fn openid_configuration(State(s): State<ApiState>) -> Response {
    json(s.issuer.discovery())
}

/// The keys that verify the tokens Paved signs for runs (RS256): the one signing now, the
/// next one, and any older one until the tokens it signed have expired.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations", security(()),
    responses(
        (status = 200, description = "The issuer's JSON Web Key Set", body = Object),
        (status = 503, description = "The keys could not be read", body = ApiError),
    ))]
pub(super) async fn jwks(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let body = s.issuer.jwks().await.map_err(|e| {
        tracing::warn!(error = %e, "the JWKS could not be read");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the keys could not be read",
        )
    })?;
    Ok(json(body))
}

fn json(body: bytes::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        body,
    )
        .into_response()
}
