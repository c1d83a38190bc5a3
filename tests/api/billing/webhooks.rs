//! `POST /webhooks/stripe`: signature checks, once-only application, convergence whatever the
//! arrival order, unknown types acknowledged, reconciliation from `GET /v1/events`.

use std::time::Duration;

use axum::http::Method;
use platform_tests::eventually;
use platform_tests::stripe::{self, now, sign};
use serde_json::json;

use super::{Billed, OLD_SECRET, SECRET};

#[tokio::test]
async fn bad_signatures_are_refused_with_no_effect_and_both_secrets_work_during_a_roll() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    let before = b.events_recorded().await;
    let failed = stripe::event(
        "evt_fail",
        "invoice.payment_failed",
        now(),
        stripe::invoice("in_1", "cus_1", 4900, super::CONTACT),
    );
    let body = failed.to_string();
    let tampered = body.replace("4900", "1");
    for (why, payload, header) in [
        (
            "wrong secret",
            body.clone(),
            Some(sign(&body, "whsec_wrong", now())),
        ),
        (
            "stale (301 s)",
            body.clone(),
            Some(sign(&body, SECRET, now() - 301)),
        ),
        ("tampered body", tampered, Some(sign(&body, SECRET, now()))),
        ("missing header", body.clone(), None),
        (
            "malformed header",
            body.clone(),
            Some("t=abc,v1=zz".to_owned()),
        ),
    ] {
        let r = b.deliver_raw(&payload, header.as_deref()).await;
        r.assert_problem(400);
        assert_eq!(b.events_recorded().await, before, "{why}: recorded nothing");
        assert_eq!(
            b.account("status").await.as_deref(),
            Some("active"),
            "{why}: no effect"
        );
    }
    // A header with several v1 signatures verifies if any does; the previous secret still works.
    let t = now();
    let good = sign(&body, OLD_SECRET, t);
    let v1 = good.split_once(",v1=").expect("v1").1;
    let both = format!("t={t},v1={},v1={v1}", "0".repeat(64));
    b.deliver_raw(&body, Some(&both)).await.assert_status(200);
    assert_eq!(b.account("status").await.as_deref(), Some("past_due"));
    b.finish().await;
}

#[tokio::test]
async fn an_event_delivered_three_times_has_one_effect_and_unknown_types_are_acknowledged() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    let failed = stripe::event(
        "evt_fail_once",
        "invoice.payment_failed",
        now(),
        stripe::invoice("in_1", "cus_1", 4900, super::CONTACT),
    );
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(b.deliver(&failed).await.str("outcome"));
    }
    assert_eq!(outcomes, ["applied", "duplicate", "duplicate"]);
    let grace = b.account("grace_until").await;
    assert!(grace.is_some());
    let n: i64 =
        b.cp.query_one(
            "SELECT count(*) FROM stripe_events WHERE id = 'evt_fail_once'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    let emails = b.billing_emails().await;
    assert_eq!(
        emails.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["email.billing_payment_failed"],
        "one failure email"
    );
    // Unknown and unhandled types: acknowledged, ignored.
    let unknown = json!({"id": "evt_unknown", "object": "event", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": "some.future_event",
        "data": {"object": {"id": "x", "object": "thing"}}});
    assert_eq!(b.deliver(&unknown).await.str("outcome"), "ignored");
    assert_eq!(b.account("grace_until").await, grace, "nothing moved");
    b.finish().await;
}

#[tokio::test]
async fn subscription_state_converges_to_the_newest_whatever_the_arrival_order() {
    let b = Billed::start().await;
    // The customer exists (Checkout), no subscription event yet.
    b.api(
        Method::POST,
        "/api/v1/billing/checkout",
        Some(json!({"plan": "pro", "contact_email": super::CONTACT,
                    "return_url": "https://acme.example/billing"})),
    )
    .await
    .assert_status(200);
    let end = now() + 20 * 86_400;
    let t0 = now() - 1000;
    let created = stripe::subscription("sub_1", "cus_1", "price_pro", "incomplete", end);
    let updated = stripe::subscription("sub_1", "cus_1", "price_pro", "active", end);
    // What Stripe holds now: the newest state.
    b.stripe.put_subscription(updated.clone());
    // `updated` first, then the older `created`: the older one is not applied as is; the
    // subscription is refetched (and is still active).
    b.deliver(&stripe::event(
        "evt_2",
        "customer.subscription.updated",
        t0 + 20,
        updated,
    ))
    .await;
    assert_eq!(b.account("status").await.as_deref(), Some("active"));
    assert!(b.stripe.requests_to("GET", "/v1/subscriptions/").is_empty());
    b.deliver(&stripe::event(
        "evt_1",
        "customer.subscription.created",
        t0 + 10,
        created,
    ))
    .await;
    assert_eq!(b.account("status").await.as_deref(), Some("active"));
    assert_eq!(
        b.stripe.requests_to("GET", "/v1/subscriptions/sub_1").len(),
        1,
        "the older event made a refetch"
    );
    // A newer update (canceled at period end, enterprise), then an old one (pro, not canceling).
    let mut newest = stripe::subscription("sub_1", "cus_1", "price_enterprise", "active", end);
    newest["cancel_at_period_end"] = json!(true);
    b.stripe.put_subscription(newest.clone());
    b.deliver(&stripe::event(
        "evt_4",
        "customer.subscription.updated",
        t0 + 40,
        newest,
    ))
    .await;
    let stale = stripe::subscription("sub_1", "cus_1", "price_pro", "past_due", end);
    b.deliver(&stripe::event(
        "evt_3",
        "customer.subscription.updated",
        t0 + 30,
        stale,
    ))
    .await;
    assert_eq!(b.account("status").await.as_deref(), Some("active"));
    assert_eq!(b.account("plan").await.as_deref(), Some("enterprise"));
    assert_eq!(
        b.account("cancel_at_period_end").await.as_deref(),
        Some("true")
    );
    let view = b.billing().await;
    assert_eq!(view["plan"], "enterprise");
    assert_eq!(view["cancel_at_period_end"], true);
    // The catalog plan (rate limits) follows.
    let plan: String =
        b.cp.query_one(
            "SELECT plan FROM tenants WHERE id = $1::text::uuid",
            &[&b.t.id],
        )
        .await
        .expect("tenant")
        .get(0);
    assert_eq!(plan, "enterprise");
    b.finish().await;
}

#[tokio::test]
async fn reconciliation_applies_missed_events_once() {
    let b = Billed::start().await;
    missed_while_down(&b).await;
    let r = b
        .app
        .admin(
            Method::POST,
            "/admin/v1/billing/reconcile",
            Some(json!({"since": now() - 3600})),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body["listed"], 1);
    assert_eq!(r.body["applied"], 1);
    assert_eq!(b.account("status").await.as_deref(), Some("past_due"));
    // Again: nothing new.
    let again = b
        .app
        .admin(
            Method::POST,
            "/admin/v1/billing/reconcile",
            Some(json!({"since": now() - 3600})),
        )
        .await;
    assert_eq!(again.body["applied"], 0, "{}", again.text);
    assert_eq!(b.billing_emails().await.len(), 1);
    b.finish().await;
}

#[tokio::test]
async fn an_older_event_is_refetched_without_holding_the_accounts_row_lock() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    // What Stripe holds now: the subscription set to cancel at the period end.
    let mut current = stripe::subscription("sub_1", "cus_1", "price_pro", "active", now() + 86_400);
    current["cancel_at_period_end"] = json!(true);
    b.stripe.put_subscription(current);
    // Stripe is slow to answer the refetch that an event older than the state held makes.
    b.stripe
        .stall("/v1/subscriptions/sub_1", 1, Duration::from_secs(5));
    let old = stripe::event(
        "evt_old",
        "customer.subscription.updated",
        now() - 500,
        stripe::subscription("sub_1", "cus_1", "price_pro", "past_due", now() + 86_400),
    );
    let meanwhile = async {
        assert!(
            eventually(Duration::from_secs(10), || async {
                !b.stripe
                    .requests_to("GET", "/v1/subscriptions/sub_1")
                    .is_empty()
            })
            .await
            .is_some(),
            "the webhook asks Stripe"
        );
        // While the webhook waits for Stripe, nothing holds the account's row: another writer
        // (an operator extending a deadline, the checkout) goes through at once.
        b.cp.batch_execute("SET lock_timeout = '1s'")
            .await
            .expect("lock timeout");
        let r =
            b.cp.execute(
                "UPDATE billing_accounts SET contact_email = 'ops@acme.test'
                 WHERE tenant_id = $1::text::uuid",
                &[&b.t.id],
            )
            .await;
        assert!(
            r.is_ok(),
            "the row is not locked during the Stripe call: {r:?}"
        );
        b.cp.batch_execute("SET lock_timeout = 0")
            .await
            .expect("lock timeout");
    };
    let (delivered, ()) = tokio::join!(b.deliver(&old), meanwhile);
    assert_eq!(delivered.body["outcome"], "applied");
    // The account changed while Stripe was asked, so the subscription was fetched again and
    // that is what holds: converged to Stripe's current state, not the old event's.
    assert_eq!(
        b.stripe.requests_to("GET", "/v1/subscriptions/sub_1").len(),
        2
    );
    assert_eq!(b.account("status").await.as_deref(), Some("active"));
    assert_eq!(
        b.account("cancel_at_period_end").await.as_deref(),
        Some("true")
    );
    assert_eq!(
        b.account("contact_email").await.as_deref(),
        Some("ops@acme.test")
    );
    b.finish().await;
}

#[tokio::test]
async fn the_reconciliation_schedule_applies_events_stripe_never_delivered() {
    let b = Billed::start().await;
    missed_while_down(&b).await;
    // The hourly slot comes: the schedule fans out one job per tenant, and one of them
    // reconciles for the platform.
    let interval: i32 =
        b.cp.query_one(
            "SELECT interval_seconds FROM job_schedules WHERE name = 'billing.reconcile'",
            &[],
        )
        .await
        .expect("the schedule")
        .get(0);
    assert_eq!(interval, 3600);
    let fanned = jobs::schedule::run_slot(&b.app.app.tenancy, "billing.reconcile")
        .await
        .expect("the slot");
    assert!(fanned >= 1);
    assert!(
        eventually(Duration::from_secs(60), || async {
            reconciled(&b).await.is_some()
        })
        .await
        .is_some(),
        "the reconciliation job ran"
    );
    assert_eq!(
        reconciled(&b).await,
        Some(1),
        "the missed event was applied"
    );
    assert_eq!(b.account("status").await.as_deref(), Some("past_due"));
    assert!(b.events_recorded().await.contains(&"evt_missed".to_owned()));
    assert_eq!(
        b.stripe.requests_to("GET", "/v1/events").len(),
        1,
        "one listing for the slot, whatever the number of tenants"
    );
    b.finish().await;
}

/// How many events the last scheduled reconciliation applied, once one has run.
async fn reconciled(b: &Billed) -> Option<i32> {
    b.cp.query_opt(
        "SELECT last_applied FROM billing_reconciliation WHERE last_run_at IS NOT NULL",
        &[],
    )
    .await
    .expect("billing_reconciliation")
    .and_then(|r| r.get(0))
}

/// A subscribed tenant whose webhook endpoint was down: Stripe holds a failure event (`evt_missed`)
/// never delivered.
async fn missed_while_down(b: &Billed) {
    b.subscribe("pro").await;
    b.stripe.put_event(stripe::event(
        "evt_missed",
        "invoice.payment_failed",
        now() - 10,
        stripe::invoice("in_9", "cus_1", 4900, super::CONTACT),
    ));
}
