//! The request's audit context and client address. A route layer (outside authorization) works
//! out the client address once (socket peer, or `X-Forwarded-For` behind a trusted proxy), keeps
//! it in the request for everything downstream (sessions, login throttling, rate limits), and
//! runs the rest of the request inside a [`audit::AuditContext`], which authentication
//! completes with the actor. The database's audit triggers read that context, so every change the
//! request makes is recorded with who, from where and which request, in the same transaction.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use audit::AuditContext;
use audit::events::{Outcome, record};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::USER_AGENT;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;
use tenancy::catalog::Tenant;
use tenancy::dataplane::DataPlane;

use crate::observe::RequestId;
use crate::state::AppState;

/// The client's address as the platform believes it (see [`limits::RateLimits::client_ip`]).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

/// Route layer: client address and audit context for the rest of the request.
pub async fn context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = state.limits.client_ip(peer, &forwarded);
    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or_else(|| req.uri().path(), MatchedPath::as_str)
    );
    let ctx = Arc::new(AuditContext::new(
        req.extensions().get::<RequestId>().map(|r| r.0.clone()),
        route,
        ip.map(|i| i.to_string()),
        req.headers()
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    ));
    req.extensions_mut().insert(ClientIp(ip));
    ctx.scope(next.run(req)).await
}

/// Records an attempt that changed nothing (a refusal, a failed login) in the tenant's audit log,
/// in its own transaction. A failure to record is logged, never turned into the response.
pub async fn attempt(
    dp: &DataPlane,
    tenant: &Tenant,
    action: &str,
    outcome: Outcome,
    summary: &Value,
) {
    let result = async {
        let mut tx = dp.connect(tenant).await?.begin();
        record(&mut tx, action, None, outcome, summary).await?;
        tx.commit().await?;
        Ok::<_, audit::AuditError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(tenant.id = %tenant.id, action, error = %e, "could not record an audit event");
    }
}
