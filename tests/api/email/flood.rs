//! Per-address rate limits on the two public email routes: `POST /u/{token}` and
//! `POST /webhooks/email/postmark` (each call may write to a tenant's database, so a flood from
//! one address is refused with 429 problem+json before any of that work), as on the other
//! unauthenticated routes (`PLATFORM_RATE_LIMIT_SENSITIVE_IP`); another address is unaffected.

use axum::http::Method;
use platform_tests::{Req, TestApp, TestResponse};
use serde_json::json;
use tenancy::ids::TenantId;

use super::{WEBHOOK_PASSWORD, WEBHOOK_USER};

#[track_caller]
fn assert_refused(r: &TestResponse) {
    r.assert_problem(429);
    assert!(r.headers.get("retry-after").is_some(), "{:?}", r.headers);
    assert_eq!(
        r.headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
}

#[tokio::test]
async fn floods_of_unsubscribes_and_webhook_calls_are_refused_per_address() {
    let creds = format!("{WEBHOOK_USER}:{WEBHOOK_PASSWORD}");
    let app = TestApp::build()
        .env(&[
            ("PLATFORM_EMAIL_WEBHOOK_CREDENTIALS", creds.as_str()),
            // A burst of 2, refilled at 1/s: the requests below come faster.
            ("PLATFORM_RATE_LIMIT_SENSITIVE_IP", "1/2"),
        ])
        .spawn()
        .await;
    let t = app.tenant("flood", "shared", None).await;
    let token = app
        .app
        .mailer
        .unsubscribe_token(&email::unsubscribe::Unsubscribe {
            tenant: TenantId::parse(&t.id).expect("tenant id"),
            category: email::Category::Marketing,
            recipient: "reader@flood.test".into(),
        })
        .await
        .expect("a token");
    let unsubscribe = |peer: &str| {
        Req::new(Method::POST, format!("/u/{token}"))
            .peer(peer)
            .raw(
                "List-Unsubscribe=One-Click",
                Some("application/x-www-form-urlencoded"),
            )
    };
    app.send(unsubscribe("198.51.100.20:1000"))
        .await
        .assert_status(200);
    app.send(unsubscribe("198.51.100.20:1001"))
        .await
        .assert_status(200);
    assert_refused(&app.send(unsubscribe("198.51.100.20:1002")).await);
    app.send(unsubscribe("198.51.100.21:1000"))
        .await
        .assert_status(200);

    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(&creds);
    let event = json!({
        "RecordType": "Delivery", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "reader@flood.test", "DeliveredAt": "2026-11-28T20:00:00Z",
        "Metadata": {"tenant": t.id},
    });
    let webhook = |peer: &str, auth: &str| {
        Req::new(Method::POST, "/webhooks/email/postmark")
            .peer(peer)
            .header("authorization", auth)
            .json(&event)
    };
    let good = format!("Basic {basic}");
    app.send(webhook("203.0.113.40:1", &good))
        .await
        .assert_status(200);
    // Wrong credentials count too: a flood of guesses is refused like any other.
    app.send(webhook("203.0.113.40:2", "Basic d3Jvbmc6d3Jvbmc="))
        .await
        .assert_problem(401);
    assert_refused(&app.send(webhook("203.0.113.40:3", &good)).await);
    app.send(webhook("203.0.113.41:1", &good))
        .await
        .assert_status(200);
    app.finish().await;
}
