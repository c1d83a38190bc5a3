//! Entitlements through a failed payment: full access in grace, read-only (402 with a pay link)
//! after it, full access again at once on `invoice.paid`; every transition audited; the dunning
//! emails enqueued once per step. The clock: deadlines are stored, so the test moves them.

use axum::http::Method;
use platform_tests::stripe::{self, now};
use tenancy::ids::TenantId;

use super::{Billed, CONTACT};

#[tokio::test]
async fn grace_then_read_only_then_restored_at_once_with_every_transition_audited() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    assert_eq!(b.billing().await["standing"], "full");
    b.invoice_event(false).await;
    // Past due, in grace: still full access, deadlines visible.
    let view = b.billing().await;
    assert_eq!(view["status"], "past_due");
    assert_eq!(view["standing"], "grace");
    assert!(view["grace_until"].is_string() && view["suspend_at"].is_string());
    b.write().await.assert_status(201);
    // The grace period (7 days for the plan) is over: writes answer 402 with the pay link.
    b.set_account_then(
        "grace_until = now() - interval '1 second'",
        "writes are refused once the grace period is over",
        || async { b.write().await.status == 402 },
    )
    .await;
    let refused = b.write().await;
    refused.assert_problem(402);
    assert_eq!(
        refused.body["pay_url"], "https://invoice.stripe.com/i/in_1",
        "{}",
        refused.text
    );
    b.api(Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);
    assert_eq!(b.billing().await["standing"], "restricted");
    // Paying restores full access on the next request.
    b.invoice_event(true).await;
    b.write().await.assert_status(201);
    let view = b.billing().await;
    assert_eq!(view["standing"], "full");
    assert_eq!(view["status"], "active");
    assert!(view["grace_until"].is_null());
    // Every transition is in the operators' audit trail.
    assert_eq!(
        b.audited_statuses().await,
        ["none", "active", "past_due", "active"],
        "created (none), subscribed, failed, paid"
    );
    // The customer-facing side: the failure and the restoration, with the template's variables.
    let emails = b.billing_emails().await;
    let kinds: Vec<&str> = emails.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["email.billing_payment_failed", "email.billing_restored"]
    );
    let p = &emails[0].1;
    assert_eq!(p["recipient"], CONTACT);
    assert_eq!(p["vars"]["tenant_name"], "Tenant acme");
    assert_eq!(p["vars"]["amount"], "49.00");
    assert_eq!(p["vars"]["currency"], "usd");
    assert_eq!(p["vars"]["pay_url"], "https://invoice.stripe.com/i/in_1");
    assert!(
        p["vars"]["deadline"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    b.finish().await;
}

#[tokio::test]
async fn reminders_and_the_final_notice_are_sent_once_each() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    b.deliver(&stripe::event(
        "evt_fail",
        "invoice.payment_failed",
        now(),
        stripe::invoice("in_1", "cus_1", 4900, CONTACT),
    ))
    .await;
    let billing = billing::Billing::new(b.app.app.tenancy.clone()).expect("billing");
    let tenant = TenantId::parse(&b.t.id).expect("tenant id");
    // Nothing more is due yet.
    assert_eq!(billing.run_dunning(tenant).await.expect("dunning"), 0);
    // Two days before the grace deadline: the reminder; half a day before: the final notice.
    for (left, kind) in [
        ("2 days", "email.billing_reminder"),
        ("12 hours", "email.billing_final_notice"),
    ] {
        b.cp.execute(
            &format!(
                "UPDATE billing_accounts SET grace_until = now() + interval '{left}'
                 WHERE tenant_id = $1::text::uuid"
            ),
            &[&b.t.id],
        )
        .await
        .expect("advance the clock");
        assert_eq!(billing.run_dunning(tenant).await.expect("dunning"), 1);
        assert_eq!(
            billing.run_dunning(tenant).await.expect("dunning"),
            0,
            "once"
        );
        assert_eq!(
            b.billing_emails()
                .await
                .last()
                .map(|(k, _)| k.clone())
                .as_deref(),
            Some(kind)
        );
    }
    assert_eq!(b.billing_emails().await.len(), 3);
    b.finish().await;
}
