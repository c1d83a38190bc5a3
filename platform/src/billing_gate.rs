//! The billing gate on the request path: a restricted or suspended tenant's writes answer 402
//! with a link to pay; reads, the billing routes (to pay and see why) and self-service routes
//! pass. Called by authorization, where writes are recognised (a declared permission, an unsafe
//! method), so reads cost nothing: one control-plane primary-key read per write. A failure to
//! read the account lets the write through (billing is not an isolation boundary) and is logged.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::Standing;
use tenancy::ids::TenantId;

use crate::state::AppState;

/// `Some(402 response)` if the billing standing refuses this write.
pub async fn refuse_write(
    state: &AppState,
    tenant: TenantId,
    method: &Method,
    path: &str,
) -> Option<Response> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || path.starts_with("/api/v1/billing")
    {
        return None;
    }
    let e = match state.billing.entitlement(tenant).await {
        Ok(e) => e?,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "billing standing unknown; write allowed");
            return None;
        }
    };
    let detail = match e.standing {
        Standing::Full | Standing::Grace => return None,
        Standing::Restricted => {
            "this tenant's payment is overdue and its grace period has ended: it is read-only until the invoice is paid"
        }
        Standing::Suspended => {
            "this tenant is suspended for non-payment: it is read-only until the invoice is paid"
        }
    };
    let body = serde_json::json!({
        "type": "/problems/payment-required",
        "title": "Payment required",
        "status": 402,
        "detail": detail,
        "pay_url": e.pay_url,
    });
    let mut resp = (StatusCode::PAYMENT_REQUIRED, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    Some(resp)
}
