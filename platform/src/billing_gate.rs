//! The billing gate on the request path. A restricted tenant (past due after its grace period)
//! is read-only: its writes answer 402 with a link to pay. A suspended tenant (past due after the
//! restriction period too) gets nothing but what it needs to pay: every request under a
//! permission answers 402 with the link, reads included, except `GET /api/v1/billing`, Checkout
//! and the Billing Portal. Sign-in and the user's own account (public and self-service routes)
//! are not gated: a user must be able to sign in (with a second factor where required) to pay.
//! Called by authorization for every route under a permission; the standing comes from billing's
//! per-tenant cache, so this costs no database round trip. A failure to read the account lets
//! the request through (billing is not an isolation boundary) and is logged.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::Standing;
use billing::gate::Use;
use tenancy::ids::TenantId;

use crate::state::AppState;

/// What `method path` (a route as registered) asks of the tenant.
fn classify(method: &Method, path: &str) -> Use {
    match (method.as_str(), path) {
        ("GET", "/api/v1/billing")
        | ("POST", "/api/v1/billing/checkout" | "/api/v1/billing/portal") => Use::Pay,
        (_, p) if p.starts_with("/api/v1/billing/") => Use::ManageBilling,
        ("GET" | "HEAD" | "OPTIONS", _) => Use::Read,
        _ => Use::Write,
    }
}

/// `Some(402 response)` if the tenant's billing standing refuses this request.
pub async fn refuse(
    state: &AppState,
    tenant: TenantId,
    method: &Method,
    path: &str,
) -> Option<Response> {
    let e = match state.billing.entitlement(tenant).await {
        Ok(e) => e?,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "billing standing unknown; request allowed");
            return None;
        }
    };
    if e.standing.allows(classify(method, path)) {
        return None;
    }
    let detail = match e.standing {
        Standing::Full | Standing::Grace => return None,
        Standing::Restricted => {
            "this tenant's payment is overdue and its grace period has ended: it is read-only until the invoice is paid"
        }
        Standing::Suspended => {
            "this tenant is suspended for non-payment: only its billing can be used until the invoice is paid"
        }
    };
    let body = serde_json::json!({
        "type": "/problems/payment-required",
        "title": "Payment required",
        "status": 402,
        "detail": detail,
        "pay_url": e.pay_url,
        "standing": e.standing,
    });
    let mut resp = (StatusCode::PAYMENT_REQUIRED, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified_for_the_gate() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(classify(&get, "/api/v1/billing"), Use::Pay);
        assert_eq!(classify(&post, "/api/v1/billing/checkout"), Use::Pay);
        assert_eq!(classify(&post, "/api/v1/billing/portal"), Use::Pay);
        assert_eq!(classify(&post, "/api/v1/billing/plan"), Use::ManageBilling);
        assert_eq!(
            classify(&post, "/api/v1/billing/plan/preview"),
            Use::ManageBilling
        );
        assert_eq!(classify(&get, "/api/v1/projects"), Use::Read);
        assert_eq!(
            classify(&Method::DELETE, "/api/v1/projects/{project_id}"),
            Use::Write
        );
    }
}
