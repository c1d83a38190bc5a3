//! A test-only route: `POST /_test/panic` resolves and authenticates the tenant, then panics
//! (the Sentry test's panic, [`crate::errors`]). Registered only in debug builds started with
//! `PLATFORM_TEST_PANIC_ROUTE=true`; a release build never has it.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, header};
use axum::routing::post;

use crate::extract::tenant::Authenticated;
use crate::state::AppState;

/// The route when enabled, else an empty router.
pub fn routes() -> Router<AppState> {
    let on = cfg!(debug_assertions)
        && std::env::var("PLATFORM_TEST_PANIC_ROUTE").is_ok_and(|v| v == "true");
    if !on {
        return Router::new();
    }
    Router::new().route("/_test/panic", post(panic_route))
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
