//! `/api/v1/openapi.json`: the API's OpenAPI 3.1 document, generated from the handlers'
//! own `#[utoipa::path]` annotations and answer types as the router is built (every route
//! is registered through `utoipa_axum`, which adds it to the router and the document at
//! once). It answers without an identity, like the webhook and health routes: it holds
//! nothing of any repository.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, RefOr, ResponseBuilder,
    SecurityRequirement,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answers::ApiError;

/// The document as served, set once the router is built.
#[derive(Clone, Default)]
pub(super) struct Published(Arc<OnceLock<Bytes>>);

/// The top of the document: what the API is and how a caller identifies itself. Paths and
/// schemas are added by the routers.
pub(super) fn document() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Paved")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Environments by pull request, under the platform team's governance. \
                     Every route but the webhook, health, metrics and this document needs \
                     `Authorization: Bearer` with a GitHub token or a Paved service token. \
                     Every refusal is problem details (RFC 9457, `application/problem+json`): \
                     the ones listed for each route, and 404 for a path no route serves and \
                     405 for a method a route does not take (with `Allow`).",
                ))
                .build(),
        )
        .security(Some([SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]))
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A GitHub token, or a service token from `[[api.tokens]]`",
                    ))
                    .build(),
            ),
        );
    doc
}

/// The route that serves the document (to be merged before the router is split).
pub(super) fn routes<S: Clone + Send + Sync + 'static>(published: Published) -> OpenApiRouter<S> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .with_state(published)
}

/// Finishes `doc` (see [`finish`] and [`constrain_bodies`]) and publishes it.
pub(super) fn publish(published: &Published, doc: OpenApi) {
    let mut doc = match serde_json::to_value(finish(doc)) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document did not serialise");
            return;
        }
    };
    constrain_bodies(&mut doc);
    match serde_json::to_vec_pretty(&doc) {
        Ok(bytes) => {
            let _ = published.0.set(Bytes::from(bytes));
        }
        Err(e) => tracing::error!(error = %e, "the OpenAPI document did not serialise"),
    }
}

/// What the annotations leave implicit, so that the document lists every answer a client
/// can get:
/// - axum's catch-all segments (`{*id}`) are plain parameters in OpenAPI (`{id}`);
/// - every refusal (4xx, 5xx) is problem details, `application/problem+json`
///   ([`crate::problem`]), whatever the annotation's body;
/// - every route that needs an identity answers 401 without one, 429 to a client that sent
///   too many bad tokens, and 503 when GitHub cannot say whose a token is;
/// - a route with parameters or a body answers 400 when they are not what it allows (the
///   extractors' refusals included), and every route 408 when a request takes too long.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, mut item) in paths {
        let path = path.replace("{*", "{");
        for op in [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            // Each parameter's schema says what the handlers allow (one table, `params`).
            for p in op.parameters.iter_mut().flatten() {
                use utoipa::openapi::path::ParameterIn;
                let RefOr::T(p) = p else { continue };
                if matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query) {
                    if let Some(rule) = super::params::rule(&path, &p.name) {
                        p.schema = Some(super::params::schema(&rule));
                    }
                }
            }
            let mut implied = vec![("408", "The request took too long")];
            let takes_input = op.request_body.is_some()
                || op.parameters.as_ref().is_some_and(|p| {
                    p.iter().any(|p| {
                        !matches!(p, RefOr::T(p) if matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Header))
                    })
                });
            if takes_input {
                implied.push((
                    "400",
                    "A parameter or the body is not what this route allows",
                ));
            }
            if op.security.is_none() {
                implied.extend([
                    ("401", "No token, or one Paved does not accept"),
                    (
                        "429",
                        "Too many refused tokens from this client: wait `Retry-After` seconds",
                    ),
                    ("503", "GitHub cannot say whose the token is"),
                ]);
            }
            for (status, description) in implied {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        RefOr::T(ResponseBuilder::new().description(description).build())
                    });
            }
            for (status, response) in op.responses.responses.iter_mut() {
                let refusal = status.starts_with('4') || status.starts_with('5');
                if let (true, RefOr::T(r)) = (refusal, response) {
                    r.content.clear();
                    r.content.insert(
                        crate::problem::CONTENT_TYPE.to_string(),
                        RefOr::T(
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                    ApiError::name(),
                                ))))
                                .build(),
                        ),
                    );
                }
            }
        }
        doc.paths.paths.insert(path, item);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry(ApiError::name().into_owned())
        .or_insert_with(ApiError::schema);
    components
        .schemas
        .entry(crate::problem::FieldError::name().into_owned())
        .or_insert_with(crate::problem::FieldError::schema);
    doc
}

/// The request bodies' fields get the same rules as the parameters of the same name
/// ([`super::params`]): `POST /api/v1/requests`'s `repository`, `environment` and `team`,
/// and its `expiresAt` is a date-time.
fn constrain_bodies(doc: &mut serde_json::Value) {
    use super::params::{rule, schema};
    let Some(props) = doc
        .pointer_mut("/components/schemas/RequestBody/properties")
        .and_then(|p| p.as_object_mut())
    else {
        tracing::error!("the OpenAPI document has no RequestBody");
        return;
    };
    for (field, param) in [
        ("repository", "repository"),
        ("environment", "name"),
        ("team", "team"),
    ] {
        let (Some(prop), Some(r)) = (props.get_mut(field), rule("", param)) else {
            continue;
        };
        let Ok(mut constrained) = serde_json::to_value(schema(&r)) else {
            continue;
        };
        // An optional field stays nullable.
        if prop["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "null"))
        {
            constrained["type"] = serde_json::json!(["string", "null"]);
        }
        if let Some(d) = prop.get("description").cloned() {
            constrained["description"] = d;
        }
        *prop = constrained;
    }
    if let Some(p) = props.get_mut("expiresAt") {
        p["format"] = "date-time".into();
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        body = serde_json::Value, content_type = "application/json")))]
async fn openapi_json(State(p): State<Published>) -> Result<Response, crate::problem::Problem> {
    // Written once when the router is built, before the server listens: never missing in
    // a running server.
    let bytes = p.0.get().ok_or_else(|| {
        tracing::error!("the OpenAPI document was asked for before it was written");
        crate::problem::Problem::new(StatusCode::SERVICE_UNAVAILABLE, "starting")
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response())
}
