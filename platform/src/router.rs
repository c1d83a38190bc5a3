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
use crate::routes::admin::{
    api_keys, audit as admin_audit, billing as admin_billing, db_servers, domains,
    email as admin_email, flags as admin_flags, invitations as admin_invitations,
    jobs as admin_jobs, jwt_keys, placement, plans, sso_domains, tenants, users as admin_users,
};
use crate::routes::api::auth::{email, invitations as accept, login, password, signup, token};
use crate::routes::api::me::{self, email as me_email, mfa, sessions};
use crate::routes::api::sso as sso_admin;
use crate::routes::api::{
    api_keys as tenant_keys, audit, billing, flags as tenant_flags, invitations,
    jobs as tenant_jobs, mail, members, projects, roles, tasks, users,
};
use crate::routes::{health, sso, stripe_webhook, tracking, unsubscribe, webhooks, wellknown};
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
        components.add_security_scheme(
            "bearer",
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
        .routes(routes!(sso_domains::verify))
        .routes(routes!(api_keys::create, api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(db_servers::register, db_servers::list))
        .routes(routes!(placement::change))
        .routes(routes!(placement::show))
        .routes(routes!(placement::cancel))
        .routes(routes!(admin_invitations::invite))
        .routes(routes!(admin_users::revoke_sessions))
        .routes(routes!(jwt_keys::rotate))
        .routes(routes!(plans::list))
        .routes(routes!(plans::put))
        .routes(routes!(admin_audit::list))
        .routes(routes!(admin_flags::list, admin_flags::create))
        .routes(routes!(
            admin_flags::show,
            admin_flags::put,
            admin_flags::delete
        ))
        .routes(routes!(admin_flags::disable))
        .routes(routes!(admin_flags::enable))
        .routes(routes!(admin_flags::kill, admin_flags::lift))
        .routes(routes!(admin_flags::import))
        .routes(routes!(admin_flags::evaluate))
        .routes(routes!(admin_jobs::list))
        .routes(routes!(admin_jobs::retry))
        .routes(routes!(admin_jobs::discard))
        .routes(routes!(admin_jobs::pause))
        .routes(routes!(admin_jobs::resume))
        .routes(routes!(admin_email::dkim))
        .routes(routes!(admin_billing::show))
        .routes(routes!(admin_billing::grant))
        .routes(routes!(admin_billing::reconcile))
        // tenant API: auth (no credential)
        .routes(routes!(signup::signup))
        .routes(routes!(login::login))
        .routes(routes!(login::verify))
        .routes(routes!(token::refresh))
        .routes(routes!(token::logout))
        .routes(routes!(accept::accept))
        .routes(routes!(email::verify))
        .routes(routes!(password::forgot))
        .routes(routes!(password::reset))
        // tenant API: the signed-in user
        .routes(routes!(me::show, me::patch))
        .routes(routes!(sessions::list))
        .routes(routes!(sessions::revoke))
        .routes(routes!(sessions::revoke_others))
        .routes(routes!(me_email::resend))
        .routes(routes!(mfa::enroll, mfa::disable))
        .routes(routes!(mfa::confirm))
        // tenant API: members, roles, keys
        .routes(routes!(users::list))
        .routes(routes!(users::patch))
        .routes(routes!(users::revoke_sessions))
        .routes(routes!(invitations::invite))
        .routes(routes!(roles::list, roles::create))
        .routes(routes!(roles::update, roles::delete))
        .routes(routes!(tenant_keys::create, tenant_keys::list))
        .routes(routes!(tenant_keys::revoke))
        // tenant API: feature flags
        .routes(routes!(tenant_flags::list))
        .routes(routes!(tenant_flags::choose))
        // tenant API: the tenant's own background jobs
        .routes(routes!(tenant_jobs::list))
        // tenant API: the audit log
        .routes(routes!(audit::list_events))
        .routes(routes!(audit::export))
        // tenant API: email (previews, branding, events, suppressions)
        .routes(routes!(mail::preview))
        .routes(routes!(mail::put_branding))
        .routes(routes!(mail::events))
        .routes(routes!(mail::suppressions, mail::suppress))
        .routes(routes!(mail::unsuppress))
        .routes(routes!(mail::domain::get, mail::domain::put))
        .routes(routes!(mail::domain::verify))
        .routes(routes!(mail::settings::get, mail::settings::put))
        // email: the provider's webhooks and one-click unsubscribe (no credential, no tenant host)
        .routes(routes!(webhooks::receive))
        .routes(routes!(unsubscribe::one_click))
        .routes(routes!(tracking::pixel))
        // tenant API: billing
        .routes(routes!(billing::show))
        .routes(routes!(billing::checkout))
        .routes(routes!(billing::portal))
        .routes(routes!(billing::change))
        .routes(routes!(billing::preview))
        // tenant API: the reference domain
        .routes(routes!(projects::create, projects::list))
        .routes(routes!(projects::show, projects::patch, projects::delete))
        .routes(routes!(members::list, members::add))
        .routes(routes!(members::patch, members::remove))
        .routes(routes!(tasks::create, tasks::list))
        .routes(routes!(tasks::show, tasks::patch, tasks::delete))
        // tenant API: SSO connections and policy
        .routes(routes!(sso_admin::list, sso_admin::create))
        .routes(routes!(
            sso_admin::show,
            sso_admin::patch,
            sso_admin::delete
        ))
        .routes(routes!(sso_admin::show_settings, sso_admin::put_settings))
        .routes(routes!(sso_admin::domains::claim, sso_admin::domains::list))
        .routes(routes!(sso_admin::domains::check))
        .routes(routes!(sso_admin::domains::remove))
        .routes(routes!(sso_admin::links::link))
        .routes(routes!(sso_admin::links::unlink))
        // SSO, browser side (tenant host, no credential)
        .routes(routes!(sso::saml_metadata))
        .routes(routes!(sso::saml_login))
        .routes(routes!(sso::saml_acs))
        .routes(routes!(sso::oidc_login))
        .routes(routes!(sso::oidc_callback))
        .routes(routes!(sso::github_login))
        .routes(routes!(sso::github_callback))
        // Stripe's webhook (signed body, no credential)
        .routes(routes!(stripe_webhook::stripe))
        // health
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(wellknown::jwks))
}

/// The OpenAPI document as served: every error response (a `Problem` body) is declared as
/// `application/problem+json`, the content type the server sends (RFC 9457), rather than the
/// `application/json` the annotations default to.
fn problem_content_types(doc: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut v = serde_json::to_value(doc).unwrap_or_default();
    let problem = |c: &serde_json::Value| {
        c.pointer("/schema/$ref")
            .and_then(serde_json::Value::as_str)
            == Some("#/components/schemas/Problem")
    };
    let responses = v
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses"))
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|responses| responses.values_mut());
    for r in responses {
        let Some(content) = r
            .get_mut("content")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        if content.get("application/json").is_some_and(problem) {
            let c = content.remove("application/json").unwrap_or_default();
            content.insert("application/problem+json".into(), c);
        }
    }
    v
}

/// The complete router with its middleware.
pub fn router(state: AppState) -> Router {
    let (router, doc) = api().split_for_parts();
    let doc = Arc::new(problem_content_types(doc));
    // Route layers, outermost last: audit context and client address, then rate limits (they
    // authenticate tenant routes, kept in the request), then authorization.
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::authz::authorize,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::limit,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::context,
        ))
        .merge(crate::routes::test_panic::routes())
        .route(
            "/openapi.json",
            get(move || async move { Json(Arc::clone(&doc)).into_response() }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            observe,
        ))
        .with_state(state)
}
