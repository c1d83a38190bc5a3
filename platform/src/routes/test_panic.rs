//! Test-only routes for the Sentry tests ([`crate::errors`]): `POST /_test/panic` resolves and
//! authenticates the tenant, then panics; `POST /_test/fail` runs a statement that fails in the
//! tenant's database and answers the 500 every unexpected database error gets (no panic), or
//! one that outlasts the statement timeout.
//! Registered only in debug builds started with `PLATFORM_TEST_PANIC_ROUTE=true`; a release
//! build never has them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, header};
use axum::middleware;
use axum::routing::post;

use identity::Permission;

use crate::authz::Access;
use crate::error::ApiResult;
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::state::AppState;

/// The routes when enabled, else an empty router. They sit behind the tenant API's
/// authentication and a declared access like any tenant route: `projects:read`, which every
/// built-in role holds (users and API keys alike).
pub fn routes(state: &AppState) -> Router<AppState> {
    let on = cfg!(debug_assertions)
        && std::env::var("PLATFORM_TEST_PANIC_ROUTE").is_ok_and(|v| v == "true");
    if !on {
        return Router::new();
    }
    Router::new()
        .route("/_test/panic", post(panic_route))
        .route("/_test/fail", post(fail_route))
        .route_layer(middleware::from_fn_with_state(
            (
                Arc::new(state.clone()),
                Access::Permission(Permission::ProjectsRead),
            ),
            crate::authz::authorize,
        ))
        .route_layer(middleware::from_fn_with_state(
            Arc::new(state.clone()),
            crate::authn::authenticate,
        ))
}

/// A statement the tenant's database refuses, with the caller's email in it as careless code
/// might put it: the handler's `?` turns the database error into a 500 like any other. With
/// `{"sleep": seconds}` instead, a statement that sleeps that long (to meet the statement
/// timeout).
async fn fail_route(db: TenantDb, body: String) -> ApiResult<&'static str> {
    let body = serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default();
    if let Some(seconds) = body["sleep"].as_f64() {
        db.begin()
            .await?
            .query_opt_and_commit("SELECT pg_sleep($1)", &[&seconds])
            .await?;
        return Ok("slept");
    }
    let email = body["email"].as_str().unwrap_or_default();
    db.begin()
        .await?
        .query_opt_and_commit("SELECT $1::text::int", &[&email])
        .await?;
    Ok("unreachable: the statement fails")
}

/// Panics with a message that names the caller's credential, address and email (from the body),
/// as careless code might: the scrubber must mask them before the event leaves.
async fn panic_route(
    auth: Authenticated,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let email = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["email"].as_str().map(str::to_owned))
        .unwrap_or_default();
    panic!(
        "test panic route (tenant {}): {email} from {} with {credential}",
        auth.tenant.id,
        peer.ip()
    );
}
