//! The route table: the API's table of contents. The OpenAPI document is generated from these
//! same registrations, so it cannot drift from what is served.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router, middleware};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::observe::{observe, panic_response};
use crate::routes::admin::{api_keys, db_servers, domains, placement, tenants};
use crate::routes::api::{projects, tasks};
use crate::routes::health;
use crate::state::AppState;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Platform API", description = "Operator API (/admin/v1) and tenant API (/api/v1)."),
    modifiers(&Security)
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        // operator API
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::show, tenants::patch, tenants::delete))
        .routes(routes!(domains::add, domains::list))
        .routes(routes!(domains::remove))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(db_servers::register, db_servers::list))
        .routes(routes!(placement::change))
        .routes(routes!(placement::show))
        .routes(routes!(placement::cancel))
        // tenant API
        .routes(routes!(projects::create, projects::list))
        .routes(routes!(projects::show, projects::patch, projects::delete))
        .routes(routes!(tasks::create, tasks::list))
        .routes(routes!(tasks::show, tasks::patch, tasks::delete))
        // health
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The complete router with its middleware.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api().split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/openapi.json",
            get(move || async move { Json(Arc::clone(&doc)).into_response() }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn(observe))
        .with_state(state)
}
