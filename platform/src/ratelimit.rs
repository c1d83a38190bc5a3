//! Rate-limit middleware (a route layer outside authorization): per client address on the admin
//! API and on the public, sensitive auth endpoints (and on one-click unsubscribe and the email
//! provider's webhook); per tenant (plan or override) and per
//! principal on authenticated tenant routes, authenticated here (the result is kept in the
//! request, so authorization does not repeat it) and limited before the permission check, so a
//! flood of refused requests is limited like any other. Every
//! answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (IETF draft) of
//! the tightest limit that applied; a refusal is a 429 problem with `Retry-After`.
//!
//! Every tenant route (`/api/`, `/sso/`) resolves its tenant context here, once: that is where
//! failed authentication is limited (see [`crate::extract::tenant`]), and a failure is answered
//! here, so nothing downstream repeats the attempt.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limits::{Decision, Scope};

use crate::audit::ClientIp;
use crate::error::ApiError;
use axum::extract::FromRequestParts as _;

use crate::authz::{Access, access};
use crate::extract::tenant::{AuthRefused, Principal, TenantContext};
use crate::state::AppState;

/// Public endpoints limited per client address (guessing passwords, codes and tokens, or
/// creating accounts in bulk). `/sso/saml/acs` is listed for the SSO assertion consumer; every
/// other `/sso/` route is limited the same way.
pub const SENSITIVE: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/signup",
    "/api/v1/auth/mfa/verify",
    "/api/v1/auth/token/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/invitations/accept",
    "/api/v1/auth/email/verify",
    "/api/v1/auth/password/forgot",
    "/api/v1/auth/password/reset",
    "/sso/saml/acs",
];

/// Public routes outside `/api/` limited per client address like [`SENSITIVE`] (each request may
/// write to a tenant's database: a flood must not exhaust it): one-click unsubscribe, the email
/// provider's webhook and the open-tracking image.
pub const PUBLIC_PER_ADDRESS: &[&str] = &["/u/{token}", "/webhooks/email/{provider}", "/o/{token}"];

static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The layer.
pub async fn limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let limits = &state.limits;
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let ip = req.extensions().get::<ClientIp>().and_then(|c| c.0);
    let mut decision: Option<Decision> = None;
    if path.starts_with("/admin/") {
        if let Some(ip) = ip {
            add(&mut decision, limits.check_admin_ip(ip));
        }
    } else if PUBLIC_PER_ADDRESS.contains(&path.as_str()) {
        if let Some(ip) = ip {
            add(&mut decision, limits.check_sensitive_ip(ip));
        }
    } else if path.starts_with("/api/") || path.starts_with("/sso/") {
        if (SENSITIVE.contains(&path.as_str()) || path.starts_with("/sso/"))
            && let Some(ip) = ip
        {
            add(&mut decision, limits.check_sensitive_ip(ip));
        }
        // Refused per address already: no tenant context is worked out.
        if decision.is_none_or(|d| d.allowed) {
            let (mut parts, body) = req.into_parts();
            let ctx = TenantContext::from_request_parts(&mut parts, &state).await;
            req = Request::from_parts(parts, body);
            match ctx {
                Err(e) => match req.extensions().get::<AuthRefused>() {
                    Some(refused) => add(&mut decision, refused.0),
                    None => return with_headers(e.into_response(), decision),
                },
                Ok(TenantContext {
                    tenant,
                    principal: Some((principal, _)),
                }) if access(req.method(), &path).is_some_and(|a| a != Access::Public) => {
                    // The tenant's bucket first: a flood refused there does not also drain the
                    // principal's.
                    let t = limits.check_tenant(&tenant);
                    add(&mut decision, t);
                    if t.allowed {
                        let id = match principal {
                            Principal::User { id, .. } => id.as_uuid(),
                            Principal::ApiKey { id, .. } => id.as_uuid(),
                        };
                        add(&mut decision, limits.check_principal(tenant.id, id));
                    }
                }
                // Public routes, and credential-less requests that authorization refuses.
                Ok(_) => {}
            }
        }
    }
    let Some(d) = decision else {
        return next.run(req).await;
    };
    let resp = if d.allowed {
        next.run(req).await
    } else {
        let detail = match d.scope {
            Scope::Tenant => "this tenant's request rate is over its plan's limit; retry later",
            Scope::Principal => "this credential's request rate is over its limit; retry later",
            Scope::Ip | Scope::Admin => "too many requests from this address; retry later",
            Scope::AuthAddress => {
                "too many failed authentication attempts from this address; retry later"
            }
            Scope::AuthTenant => {
                "too many failed authentication attempts for this tenant; retry later"
            }
        };
        ApiError::too_many_requests(detail, d.reset_secs).into_response()
    };
    with_headers(resp, Some(d))
}

/// Keeps the tighter of the decisions so far and `d`.
fn add(decision: &mut Option<Decision>, d: Decision) {
    *decision = Some(decision.map_or(d, |o| o.tighter(d)));
}

/// Adds the `RateLimit-*` headers of `decision`, if any.
fn with_headers(mut resp: Response, decision: Option<Decision>) -> Response {
    if let Some(d) = decision {
        let h = resp.headers_mut();
        h.insert(LIMIT.clone(), HeaderValue::from(d.limit));
        h.insert(REMAINING.clone(), HeaderValue::from(d.remaining));
        h.insert(RESET.clone(), HeaderValue::from(d.reset_secs));
        // For the rate-limit decision metric (the observe middleware counts it).
        resp.extensions_mut().insert(d);
    }
    resp
}
