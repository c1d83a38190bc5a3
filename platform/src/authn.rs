//! The one authentication step of the tenant routers (`/api/v1`, `/sso`): a route layer that
//! builds the request's [`TenantContext`] once ([`TenantContext::authenticate`]) and keeps it in
//! the request, where rate limiting, authorization and the handlers' extractors read it.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::tenant::{AuthFailure, TenantContext};
use crate::state::AppState;

/// Route layer of the tenant routers (`/api/v1`, `/sso`): authenticates once, keeps the
/// [`TenantContext`] in the request for rate limiting, authorization and the handler's
/// extractors, or answers the failure (with the failure budget's `RateLimit-*` headers when
/// that refused it).
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    match TenantContext::authenticate(&parts, &state).await {
        Ok(ctx) => {
            parts.extensions.insert(ctx);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(AuthFailure { error, refused }) => {
            crate::ratelimit::with_headers(error.into_response(), refused)
        }
    }
}
