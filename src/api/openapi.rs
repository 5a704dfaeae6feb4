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
                     `Authorization: Bearer` with a GitHub token or a Paved service token.",
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

/// Finishes `doc` (see [`finish`]) and publishes it.
pub(super) fn publish(published: &Published, doc: OpenApi) {
    match serde_json::to_vec_pretty(&finish(doc)) {
        Ok(bytes) => {
            let _ = published.0.set(Bytes::from(bytes));
        }
        Err(e) => tracing::error!(error = %e, "the OpenAPI document did not serialise"),
    }
}

/// What the annotations leave implicit:
/// - axum's catch-all segments (`{*id}`) are plain parameters in OpenAPI (`{id}`);
/// - every route that needs an identity answers 401 without one (and 503 when GitHub
///   cannot say whose a token is), so each such operation lists those answers.
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
            if op.security.is_some() {
                continue; // `security(())`: open
            }
            for (status, description) in [
                ("401", "No token, or one Paved does not accept"),
                ("503", "GitHub cannot say whose the token is"),
            ] {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                            ApiError::name(),
                                        ))))
                                        .build(),
                                )
                                .build(),
                        )
                    });
            }
        }
        doc.paths.paths.insert(path, item);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry(ApiError::name().into_owned())
        .or_insert_with(ApiError::schema);
    doc
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        body = serde_json::Value, content_type = "application/json")))]
async fn openapi_json(State(p): State<Published>) -> Response {
    match p.0.get() {
        Some(bytes) => {
            ([(header::CONTENT_TYPE, "application/json")], bytes.clone()).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response(),
    }
}
