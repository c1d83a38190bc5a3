//! Rate-limit middleware, one route layer per route class; the class is the router a route is
//! registered in ([`crate::router`]), never its path:
//! - [`admin`]: the operator API, per client address;
//! - [`per_address`]: the public routes that carry their own proof (sign-in and the other
//!   `/api/v1/auth` routes, the browser side of SSO, one-click unsubscribe, the email
//!   provider's webhook, the open-tracking image), per client address and before authentication,
//!   so a flood refused there costs no tenant lookup;
//! - [`tenant`]: the authenticated tenant API, inside the one authentication step and outside
//!   authorization, per tenant (plan or override) and per principal, so a flood of refused
//!   requests is limited like any other.
//!
//! Failed authentication has its own budget, kept by the authentication step
//! ([`crate::extract::tenant`]). Every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` (IETF draft) of the tightest limit that applied, whichever layer decided it;
//! a refusal is a 429 problem with `Retry-After`.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use limits::{Decision, RateLimits, Scope};

use crate::audit::ClientIp;
use crate::error::ApiError;
use crate::extract::tenant::{Principal, TenantContext};

static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn client_ip(req: &Request) -> Option<std::net::IpAddr> {
    req.extensions().get::<ClientIp>().and_then(|c| c.0)
}

/// Route layer of the operator API: per client address.
pub async fn admin(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    let decision = client_ip(&req).map(|ip| limits.check_admin_ip(ip));
    gate(decision, req, next).await
}

/// Route layer of the public routes: per client address (guessing passwords, codes and tokens,
/// creating accounts in bulk, or flooding a tenant's database through a link or a webhook).
pub async fn per_address(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    let decision = client_ip(&req).map(|ip| limits.check_sensitive_ip(ip));
    gate(decision, req, next).await
}

/// Route layer of the authenticated tenant API: the tenant's bucket, then the principal's (a
/// request without a principal is left to authorization, which refuses it).
pub async fn tenant(State(limits): State<RateLimits>, req: Request, next: Next) -> Response {
    let mut decision = None;
    if let Some(TenantContext {
        tenant,
        principal: Some((principal, _)),
    }) = req.extensions().get::<TenantContext>()
    {
        // The tenant's bucket first: a flood refused there does not also drain the principal's.
        let t = limits.check_tenant(tenant);
        add(&mut decision, t);
        if t.allowed {
            let id = match principal {
                Principal::User { id, .. } => id.as_uuid(),
                Principal::ApiKey { id, .. } => id.as_uuid(),
            };
            add(&mut decision, limits.check_principal(tenant.id, id));
        }
    }
    gate(decision, req, next).await
}

/// Answers 429 if `decision` refuses, else runs the request; either way with the headers of the
/// tightest decision (this one, or one an inner layer put on the response).
async fn gate(decision: Option<Decision>, req: Request, next: Next) -> Response {
    let Some(d) = decision else {
        return next.run(req).await;
    };
    if !d.allowed {
        return with_headers(refusal(d).into_response(), Some(d));
    }
    let resp = next.run(req).await;
    let inner = resp.extensions().get::<Decision>().copied();
    let mut tightest = Some(d);
    if let Some(i) = inner {
        add(&mut tightest, i);
    }
    with_headers(resp, tightest)
}

fn refusal(d: Decision) -> ApiError {
    let detail = match d.scope {
        Scope::Tenant => "this tenant's request rate is over its plan's limit; retry later",
        Scope::Principal => "this credential's request rate is over its limit; retry later",
        Scope::Ip | Scope::Admin => "too many requests from this address; retry later",
        Scope::AuthAddress => {
            "too many failed authentication attempts from this address; retry later"
        }
        Scope::AuthTenant => "too many failed authentication attempts for this tenant; retry later",
    };
    ApiError::too_many_requests(detail, d.reset_secs)
}

/// Keeps the tighter of the decisions so far and `d`.
fn add(decision: &mut Option<Decision>, d: Decision) {
    *decision = Some(decision.map_or(d, |o| o.tighter(d)));
}

/// Adds the `RateLimit-*` headers of `decision`, if any.
pub(crate) fn with_headers(mut resp: Response, decision: Option<Decision>) -> Response {
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
