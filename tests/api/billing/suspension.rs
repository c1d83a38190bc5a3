//! Suspension: past due after the restriction period too, a tenant gets nothing but what it
//! needs to pay. Reads and writes answer 402 with the pay link; the billing view, Checkout and
//! the Billing Portal still work; `invoice.paid` restores everything on the next request.

use axum::http::Method;
use serde_json::json;

use super::{Billed, CONTACT};

#[tokio::test]
async fn a_suspended_tenant_can_only_pay_and_paying_restores_it_at_once() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    let p = b.write().await;
    p.assert_status(201);
    let project = format!("/api/v1/projects/{}", p.str("id"));
    b.invoice_event(false).await;
    // Grace and restriction are over.
    b.set_account_then(
        "grace_until = now() - interval '2 seconds', suspend_at = now() - interval '1 second'",
        "reads are refused once suspended",
        || async { b.api(Method::GET, &project, None).await.status == 402 },
    )
    .await;
    let refused = b.api(Method::GET, "/api/v1/projects", None).await;
    refused.assert_problem(402);
    assert_eq!(
        refused.body["pay_url"], "https://invoice.stripe.com/i/in_1",
        "{}",
        refused.text
    );
    assert_eq!(refused.body["standing"], "suspended");
    b.write().await.assert_problem(402);
    b.api(Method::GET, "/api/v1/users", None)
        .await
        .assert_problem(402);
    b.api(
        Method::POST,
        "/api/v1/billing/plan/preview",
        Some(json!({"plan": "enterprise"})),
    )
    .await
    .assert_problem(402);
    // What it needs to pay still works.
    assert_eq!(b.billing().await["standing"], "suspended");
    b.api(
        Method::POST,
        "/api/v1/billing/portal",
        Some(json!({"return_url": "https://acme.example/billing"})),
    )
    .await
    .assert_status(200);
    b.api(
        Method::POST,
        "/api/v1/billing/checkout",
        Some(json!({"plan": "pro", "contact_email": CONTACT,
                    "return_url": "https://acme.example/billing"})),
    )
    .await
    .assert_status(200);
    // Paying restores everything on the next request.
    b.invoice_event(true).await;
    b.api(Method::GET, &project, None).await.assert_status(200);
    b.write().await.assert_status(201);
    b.finish().await;
}
