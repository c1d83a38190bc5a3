//! Seat limits: the plan in effect bounds the tenant's members (users plus pending invitations).
//! Inviting, signing up and accepting an invitation beyond it answer 409 `seat-limit`; the plan
//! a subscription change entitles the tenant to moves the limit at once.

use platform_tests::PASSWORD;
use platform_tests::stripe::{self, now};
use serde_json::json;

use super::Billed;

/// The tenant's users and pending invitations.
async fn seats_used(b: &Billed) -> i64 {
    b.shared
        .query_one(
            "SELECT (SELECT count(*) FROM users WHERE tenant_id = $1::text::uuid)
                  + (SELECT count(*) FROM invitations WHERE tenant_id = $1::text::uuid
                     AND accepted_at IS NULL AND expires_at > now())",
            &[&b.t.id],
        )
        .await
        .expect("seats used")
        .get(0)
}

async fn set_seats(b: &Billed, plan: &str, seats: i64) {
    let seats = i32::try_from(seats).expect("a small number");
    b.cp.execute(
        "UPDATE plans SET seats = $2 WHERE name = $1",
        &[&plan, &seats],
    )
    .await
    .expect("set the plan's seats");
}

#[tokio::test]
async fn invitations_signups_and_acceptances_stay_within_the_plans_seats() {
    let b = Billed::start().await;
    b.subscribe("pro").await;
    b.app
        .operator()
        .patch_tenant(&b.t.id, json!({"signup": "open"}))
        .await
        .assert_status(200);
    // The operator gives pro one seat more than the tenant uses.
    let used = seats_used(&b).await;
    set_seats(&b, "pro", used + 1).await;
    let first = b.t.api.invite("first@acme.test", "member").await;
    first.assert_status(201);
    // The last seat is reserved by the pending invitation: nobody else gets in.
    let refused = b.t.api.invite("second@acme.test", "member").await;
    refused.assert_problem(409);
    assert_eq!(
        refused.body["type"], "/problems/seat-limit",
        "{}",
        refused.text
    );
    b.t.anon
        .signup("walk-in@acme.test", PASSWORD, "Walk In")
        .await
        .assert_problem(409);
    // The invitation holds its seat: accepting it succeeds.
    b.t.anon
        .accept_invitation(&first.str("token"), PASSWORD, "First")
        .await
        .assert_status(201);
    assert_eq!(seats_used(&b).await, used + 1);
    // Entitlements drive the limit: an upgrade to enterprise (unbounded) lifts it at once.
    let sub = stripe::subscription(
        "sub_1",
        "cus_1",
        "price_enterprise",
        "active",
        now() + 20 * 86_400,
    );
    b.stripe.put_subscription(sub.clone());
    b.deliver(&stripe::event(
        "evt_upgraded",
        "customer.subscription.updated",
        now(),
        sub,
    ))
    .await;
    let second = b.t.api.invite("second@acme.test", "member").await;
    second.assert_status(201);
    // The operator lowers enterprise to the users the tenant has: the pending invitation cannot
    // be accepted (it would be a member beyond the limit).
    set_seats(&b, "enterprise", used + 1).await;
    let late =
        b.t.anon
            .accept_invitation(&second.str("token"), PASSWORD, "Second")
            .await;
    late.assert_problem(409);
    assert_eq!(late.body["type"], "/problems/seat-limit", "{}", late.text);
    b.finish().await;
}
