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

use crate::authn::authenticate;
use crate::authz::Access::{Public, SelfService};
use crate::authz::{Access, TenantRoutes, needs};
use crate::error::ApiError;
use crate::metrics::RouteClass;
use crate::observe::{observe, panic_response};
use crate::ratelimit;
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
use identity::Permission::{
    ApiKeysManage, AuditRead, BillingManage, BillingRead, FlagsManage, JobsRead, MembersManage,
    ProjectsRead, ProjectsWrite, RolesManage, SsoManage, TasksRead, TasksWrite, UsersRead,
};

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

/// The operator API (`/admin/v1`): the operator token (checked by each handler's
/// [`crate::extract::admin::Operator`]), limited per client address.
fn admin() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
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
}

/// The tenant API's sign-in routes (`/api/v1/auth`): no credential (each carries its own
/// proof), limited per client address before authentication.
fn tenant_auth() -> TenantRoutes {
    TenantRoutes::default()
        .at(Public, routes!(signup::signup))
        .at(Public, routes!(login::login))
        .at(Public, routes!(login::verify))
        .at(Public, routes!(token::refresh))
        .at(Public, routes!(token::logout))
        .at(Public, routes!(accept::accept))
        .at(Public, routes!(email::verify))
        .at(Public, routes!(password::forgot))
        .at(Public, routes!(password::reset))
}

/// The rest of the tenant API (`/api/v1`): a credential, limited per tenant and principal, and
/// what each route requires.
fn tenant_api() -> TenantRoutes {
    TenantRoutes::default()
        // the signed-in user
        .at(SelfService, routes!(me::show, me::patch))
        .at(SelfService, routes!(sessions::list))
        .at(SelfService, routes!(sessions::revoke))
        .at(SelfService, routes!(sessions::revoke_others))
        .at(SelfService, routes!(me_email::resend))
        .at(SelfService, routes!(mfa::enroll, mfa::disable))
        .at(SelfService, routes!(mfa::confirm))
        // members, roles, keys
        .at(needs(UsersRead), routes!(users::list))
        .at(needs(MembersManage), routes!(users::patch))
        .at(needs(MembersManage), routes!(users::revoke_sessions))
        .at(needs(MembersManage), routes!(invitations::invite))
        .at(needs(UsersRead), routes!(roles::list))
        .at(needs(RolesManage), routes!(roles::create))
        .at(needs(RolesManage), routes!(roles::update, roles::delete))
        .at(
            needs(ApiKeysManage),
            routes!(tenant_keys::create, tenant_keys::list),
        )
        .at(needs(ApiKeysManage), routes!(tenant_keys::revoke))
        // feature flags
        .at(SelfService, routes!(tenant_flags::list))
        .at(needs(FlagsManage), routes!(tenant_flags::choose))
        // the tenant's own background jobs
        .at(needs(JobsRead), routes!(tenant_jobs::list))
        // the audit log
        .at(needs(AuditRead), routes!(audit::list_events))
        .at(needs(AuditRead), routes!(audit::export))
        // email (previews, branding, events, suppressions)
        .at(needs(MembersManage), routes!(mail::preview))
        .at(needs(MembersManage), routes!(mail::put_branding))
        .at(needs(AuditRead), routes!(mail::events))
        .at(
            needs(MembersManage),
            routes!(mail::suppressions, mail::suppress),
        )
        .at(needs(MembersManage), routes!(mail::unsuppress))
        .at(
            needs(MembersManage),
            routes!(mail::domain::get, mail::domain::put),
        )
        .at(needs(MembersManage), routes!(mail::domain::verify))
        .at(
            needs(MembersManage),
            routes!(mail::settings::get, mail::settings::put),
        )
        // billing
        .at(needs(BillingRead), routes!(billing::show))
        .at(needs(BillingManage), routes!(billing::checkout))
        .at(needs(BillingManage), routes!(billing::portal))
        .at(needs(BillingManage), routes!(billing::change))
        .at(needs(BillingManage), routes!(billing::preview))
        // the reference domain
        .at(needs(ProjectsRead), routes!(projects::list))
        .at(needs(ProjectsWrite), routes!(projects::create))
        .at(needs(ProjectsRead), routes!(projects::show))
        .at(
            needs(ProjectsWrite),
            routes!(projects::patch, projects::delete),
        )
        .at(needs(ProjectsRead), routes!(members::list))
        .at(needs(ProjectsWrite), routes!(members::add))
        .at(
            needs(ProjectsWrite),
            routes!(members::patch, members::remove),
        )
        .at(needs(TasksRead), routes!(tasks::list))
        .at(needs(TasksWrite), routes!(tasks::create))
        .at(needs(TasksRead), routes!(tasks::show))
        .at(needs(TasksWrite), routes!(tasks::patch, tasks::delete))
        // SSO connections and policy
        .at(
            needs(SsoManage),
            routes!(sso_admin::list, sso_admin::create),
        )
        .at(
            needs(SsoManage),
            routes!(sso_admin::show, sso_admin::patch, sso_admin::delete),
        )
        .at(
            needs(SsoManage),
            routes!(sso_admin::show_settings, sso_admin::put_settings),
        )
        .at(
            needs(SsoManage),
            routes!(sso_admin::domains::claim, sso_admin::domains::list),
        )
        .at(needs(SsoManage), routes!(sso_admin::domains::check))
        .at(needs(SsoManage), routes!(sso_admin::domains::remove))
        .at(needs(SsoManage), routes!(sso_admin::links::link))
        .at(needs(SsoManage), routes!(sso_admin::links::unlink))
}

/// Every tenant API operation with what it requires: method, path (as registered), access.
#[must_use]
pub fn declared() -> Vec<(String, String, Access)> {
    let mut all = tenant_auth().declared();
    all.extend(tenant_api().declared());
    all
}

/// The browser side of SSO (`/sso`, tenant host, no credential): limited per client address,
/// then the tenant context.
fn sso() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sso::saml_metadata))
        .routes(routes!(sso::saml_login))
        .routes(routes!(sso::saml_acs))
        .routes(routes!(sso::oidc_login))
        .routes(routes!(sso::oidc_callback))
        .routes(routes!(sso::github_login))
        .routes(routes!(sso::github_callback))
}

/// Email's public routes (no credential, no tenant host; each may write to a tenant's
/// database, so a flood must not exhaust it): the provider's webhooks, one-click unsubscribe
/// and the open-tracking image, limited per client address.
fn email_public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhooks::receive))
        .routes(routes!(unsubscribe::one_click))
        .routes(routes!(tracking::pixel))
}

/// Routes without a limit: Stripe's webhook (a signed body), health and the JWKS.
fn unlimited() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stripe_webhook::stripe))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(wellknown::jwks))
}

/// Every route with its OpenAPI description, each router of a route class with its layers.
pub fn api(state: &AppState) -> OpenApiRouter<AppState> {
    // One shared copy for the per-request layers (a clone per request is one reference count).
    let shared = Arc::new(state.clone());
    let authn = || middleware::from_fn_with_state(Arc::clone(&shared), authenticate);
    let limits = state.limits.clone();
    let per_address = || middleware::from_fn_with_state(limits.clone(), ratelimit::per_address);
    // The operator API last: two request bodies share the schema name `PlanBody`, and the
    // document has always kept the tenant API's (the first merged wins).
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(
            tenant_auth()
                .into_router(&shared)
                .route_layer(authn())
                .route_layer(per_address()),
        )
        .merge(
            tenant_api()
                .into_router(&shared)
                .route_layer(middleware::from_fn_with_state(
                    limits.clone(),
                    ratelimit::tenant,
                ))
                .route_layer(authn()),
        )
        .merge(
            sso()
                .route_layer(authn())
                .route_layer(per_address())
                .route_layer(middleware::map_response(RouteClass::sso)),
        )
        .merge(email_public().route_layer(per_address()))
        .merge(unlimited())
        .merge(
            admin()
                .route_layer(middleware::from_fn_with_state(
                    limits.clone(),
                    ratelimit::admin,
                ))
                .route_layer(middleware::map_response(RouteClass::operator)),
        )
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

/// The complete router with its middleware. The walk of a request, outermost first:
/// `observe` (request id, span, metrics, the log line), panic catching, the body limit; then,
/// on every route, the client address and audit context; then the layers of the route's class
/// (see [`api`]); then, on a tenant API route, its declared access ([`crate::authz`]).
pub fn router(state: AppState) -> Router {
    let (router, doc) = api(&state).split_for_parts();
    let doc = Arc::new(problem_content_types(doc));
    router
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::audit::context,
        ))
        .merge(crate::routes::test_panic::routes(&state))
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
