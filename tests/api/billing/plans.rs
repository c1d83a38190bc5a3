//! Checkout and the Billing Portal, plan changes (upgrade now with proration, downgrade at the
//! period end, a preview first), an operator's grant without Stripe, and who may do what.

use std::time::Duration;

use axum::http::Method;
use platform_tests::eventually;
use serde_json::json;

use super::{Billed, CONTACT};

#[tokio::test]
async fn checkout_and_portal_sessions_are_created_through_stripe() {
    let b = Billed::start().await;
    let r = b
        .api(
            Method::POST,
            "/api/v1/billing/checkout",
            Some(
                json!({"plan": "pro", "interval": "yearly", "contact_email": CONTACT,
                        "return_url": "https://acme.example/billing"}),
            ),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.str("url"), "https://checkout.stripe.com/c/pay/cs_test_1");
    let customers = b.stripe.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].field("email"), Some(CONTACT));
    assert_eq!(
        customers[0].field("metadata[tenant_id]"),
        Some(b.t.id.as_str())
    );
    assert!(customers[0].idempotency_key.is_some());
    let sessions = b.stripe.requests_to("POST", "/v1/checkout/sessions");
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.field("mode"), Some("subscription"));
    assert_eq!(s.field("customer"), Some("cus_1"));
    assert_eq!(s.field("line_items[0][price]"), Some("price_pro_yearly"));
    assert_eq!(s.field("client_reference_id"), Some(b.t.id.as_str()));
    // Recorded in the operators' audit trail (tenant-scoped), as the portal session is.
    let audited = |action: &'static str| {
        let b = &b;
        async move {
            b.cp.query(
                "SELECT 1 FROM admin_audit_events WHERE tenant_id = $1::text::uuid AND action = $2",
                &[&b.t.id, &action],
            )
            .await
            .expect("audit")
            .len()
        }
    };
    assert_eq!(audited("billing_checkout.started").await, 1);
    let portal = b
        .api(
            Method::POST,
            "/api/v1/billing/portal",
            Some(json!({"return_url": "https://acme.example/billing"})),
        )
        .await;
    portal.assert_status(200);
    assert_eq!(
        portal.str("url"),
        "https://billing.stripe.com/p/session/bps_1"
    );
    assert_eq!(audited("billing_portal.opened").await, 1);
    // Bad input: a 4xx problem, and Stripe is not called.
    let calls = b.stripe.requests().len();
    for body in [
        json!({"plan": "pro", "interval": "weekly", "contact_email": CONTACT, "return_url": "https://a.example"}),
        json!({"plan": "pro", "contact_email": "nope", "return_url": "https://a.example"}),
        json!({"plan": "pro", "contact_email": CONTACT, "return_url": "javascript:alert(1)"}),
        json!({"plan": "gold", "contact_email": CONTACT, "return_url": "https://a.example"}),
    ] {
        b.api(Method::POST, "/api/v1/billing/checkout", Some(body))
            .await
            .assert_problem(422);
    }
    assert_eq!(b.stripe.requests().len(), calls);
    b.finish().await;
}

#[tokio::test]
async fn upgrade_now_with_proration_downgrade_at_period_end_and_a_preview_first() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    // Preview of an upgrade: Stripe's invoice preview with the new price, prorated.
    let p = b
        .api(
            Method::POST,
            "/api/v1/billing/plan/preview",
            Some(json!({"plan": "enterprise"})),
        )
        .await;
    p.assert_status(200);
    assert_eq!(p.body["amount_due"], 1234);
    assert_eq!(p.body["proration_behavior"], "always_invoice");
    let previews = b.stripe.requests_to("POST", "/v1/invoices/create_preview");
    assert_eq!(previews.len(), 1);
    let pr = &previews[0];
    assert_eq!(pr.field("customer"), Some("cus_1"));
    assert_eq!(pr.field("subscription"), Some("sub_1"));
    assert_eq!(
        pr.field("subscription_details[items][0][price]"),
        Some("price_enterprise")
    );
    assert_eq!(
        pr.field("subscription_details[proration_behavior]"),
        Some("always_invoice")
    );
    assert!(
        b.stripe
            .requests_to("POST", "/v1/subscriptions/")
            .is_empty(),
        "a preview changes nothing"
    );
    // Upgrade: at once, prorated and invoiced now.
    let up = b
        .api(
            Method::POST,
            "/api/v1/billing/plan",
            Some(json!({"plan": "enterprise"})),
        )
        .await;
    up.assert_status(200);
    assert!(up.body["effective_at"].is_null());
    let updates = b.stripe.requests_to("POST", "/v1/subscriptions/sub_1");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].field("items[0][id]"), Some("si_sub_1"));
    assert_eq!(
        updates[0].field("items[0][price]"),
        Some("price_enterprise")
    );
    assert_eq!(
        updates[0].field("proration_behavior"),
        Some("always_invoice")
    );
    assert_eq!(b.billing().await["plan"], "enterprise");
    // Downgrade: no proration; the current plan stays until the period ends.
    let down = b
        .api(
            Method::POST,
            "/api/v1/billing/plan",
            Some(json!({"plan": "pro"})),
        )
        .await;
    down.assert_status(200);
    assert!(down.body["effective_at"].is_string(), "{}", down.text);
    let updates = b.stripe.requests_to("POST", "/v1/subscriptions/sub_1");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].field("proration_behavior"), Some("none"));
    let view = b.billing().await;
    assert_eq!(view["plan"], "enterprise");
    assert_eq!(view["scheduled_plan"], "pro");
    // A job waits for the period end (20 days away), so the downgrade applies then even if no
    // event arrives.
    let waiting: i64 = b
        .shared
        .query_one(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1::text::uuid
             AND kind = 'billing.period_end' AND run_at > now() + interval '19 days'",
            &[&b.t.id],
        )
        .await
        .expect("jobs")
        .get(0);
    assert_eq!(waiting, 1);
    // The period ends (the stored date and the job's are the clock): pro applies, and the
    // catalog's plan (rate limits, seats) follows without any Stripe event.
    b.cp.execute(
        "UPDATE billing_accounts SET scheduled_at = now() - interval '1 second'
         WHERE tenant_id = $1::text::uuid",
        &[&b.t.id],
    )
    .await
    .expect("advance the clock");
    assert_eq!(b.billing().await["plan"], "pro");
    b.shared
        .execute(
            "UPDATE jobs SET run_at = now() WHERE tenant_id = $1::text::uuid
             AND kind = 'billing.period_end'",
            &[&b.t.id],
        )
        .await
        .expect("the job is due");
    b.cp.execute("SELECT pg_notify($1, $2)", &[&jobs::CHANNEL, &b.t.id])
        .await
        .expect("hint the worker");
    assert!(
        eventually(Duration::from_secs(60), || async {
            catalog_plan(&b).await == "pro"
        })
        .await
        .is_some(),
        "the period-end job applied the downgrade"
    );
    let view = b.billing().await;
    assert_eq!(view["plan"], "pro");
    assert!(view["scheduled_plan"].is_null(), "{view}");
    assert_eq!(b.account("plan").await.as_deref(), Some("pro"));
    b.finish().await;
}

/// The tenant's plan in the catalog (what rate limits and seat limits follow).
async fn catalog_plan(b: &Billed) -> String {
    b.cp.query_one(
        "SELECT plan FROM tenants WHERE id = $1::text::uuid",
        &[&b.t.id],
    )
    .await
    .expect("tenant")
    .get(0)
}

#[tokio::test]
async fn an_operator_grants_a_plan_without_stripe_and_members_cannot_see_billing() {
    let b = Billed::start().await;
    let r = b
        .app
        .admin(
            Method::PUT,
            &format!("/admin/v1/tenants/{}/billing/grant", b.t.id),
            Some(json!({"plan": "enterprise", "until": "2099-01-01T00:00:00Z"})),
        )
        .await;
    r.assert_status(204);
    let view = b.billing().await;
    assert_eq!(view["plan"], "enterprise");
    assert_eq!(view["status"], "granted");
    assert_eq!(view["entitlements"]["requests_per_second"], 2000);
    assert!(b.stripe.requests().is_empty(), "no Stripe call");
    b.app
        .admin(
            Method::PUT,
            &format!("/admin/v1/tenants/{}/billing/grant", b.t.id),
            Some(json!({"plan": "no-such-plan"})),
        )
        .await
        .assert_problem(422);
    // billing:read is the owner's and the admin's, not a member's.
    let member = b.app.user(&b.t, "m@acme.test", "member").await;
    member.api.get("/api/v1/billing").await.assert_problem(403);
    b.finish().await;
}
