//! The suppression list: the bounce webhook (credentials, replays, a hard bounce withholds the
//! next send, even security mail), RFC 8058 one-click unsubscribe over real HTTP (withholds
//! marketing, never a password reset), and an administrator's audited removal.

use axum::http::Method;
use platform_tests::smtp::SmtpSink;
use serde_json::json;

use super::{WEBHOOK_PASSWORD, WEBHOOK_USER, announce, last_job, smtp_app, wait_status, webhook};
use crate::jobs::{tenant_of, wait_state};

fn hard_bounce(tenant: &str, message: &str, email: &str) -> serde_json::Value {
    // Postmark's documented bounce webhook body (trimmed of fields we ignore).
    json!({
        "RecordType": "Bounce",
        "ID": 4_323_372_036_854_775_807_i64,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"tenant": tenant, "message": message},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "no-reply@mail.platform.test",
        "BouncedAt": "2026-11-28T20:00:00Z",
        "Inactive": true,
        "CanActivate": true,
        "Subject": "Hello"
    })
}

#[tokio::test]
async fn a_hard_bounce_webhook_suppresses_the_next_send_and_replays_change_nothing() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("bounces", "shared", None).await;
    let user = app.user(&t, "gone@bounces.test", "member").await;
    let invitation = last_job(&app, "invitation", &user.email)
        .await
        .expect("job");
    wait_status(&app, invitation, "sent").await;
    let event = hard_bounce(&t.id, &invitation.to_string(), &user.email);

    // Bad or missing credentials: 401, and nothing recorded.
    webhook(&app, None, &event).await.assert_problem(401);
    webhook(&app, Some("postmark:wrong-password-0123456789"), &event)
        .await
        .assert_problem(401);
    let creds = format!("{WEBHOOK_USER}:{WEBHOOK_PASSWORD}");
    let r = webhook(&app, Some(&creds), &event).await;
    r.assert_status(200);
    assert_eq!(r.str("outcome"), "recorded");
    // The same event again (a retry of the provider, or a replay): accepted, nothing new.
    let r = webhook(&app, Some(&creds), &event).await;
    r.assert_status(200);
    assert_eq!(r.str("outcome"), "replayed");
    let list = t.api.get("/api/v1/email/suppressions").await;
    list.assert_status(200);
    let items = list.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", list.text);
    assert_eq!(items[0]["recipient"], user.email.as_str());
    assert_eq!(items[0]["reason"], "hard_bounce");
    let events = t
        .api
        .get(&format!("/api/v1/email/events?message_id={invitation}"))
        .await;
    events.assert_status(200);
    let kinds: Vec<&str> = events.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds, vec!["sent", "bounced"], "{}", events.text);

    // The next send, even security mail, is withheld: recorded `suppressed`, nothing over SMTP.
    let before = sink.to(&user.email).len();
    t.anon.forgot_password(&user.email).await.assert_status(202);
    let reset = last_job(&app, "password_reset", &user.email)
        .await
        .expect("job");
    wait_state(&app, reset, "succeeded").await;
    wait_status(&app, reset, "suppressed").await;
    assert_eq!(sink.to(&user.email).len(), before);

    // An administrator removes the suppression: audited, and mail flows again.
    let id = items[0]["id"].as_str().expect("id");
    t.api
        .delete(&format!("/api/v1/email/suppressions/{id}"))
        .await
        .assert_status(204);
    crate::audit::sealed(&app, &tenant_of(&app, &t).await).await;
    let audit = t.api.audit_events("action=email_suppression.deleted").await;
    audit.assert_status(200);
    let items = audit.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{}", audit.text);
    assert_eq!(items[0]["actor_type"], "api_key", "{}", audit.text);
    t.anon.forgot_password(&user.email).await.assert_status(202);
    sink.wait_for(&user.email, before + 1).await;
    app.finish().await;
}

#[tokio::test]
async fn one_click_unsubscribe_over_http_stops_marketing_but_not_a_password_reset() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("unsub", "shared", None).await;
    let user = app.user(&t, "reader@unsub.test", "member").await;
    let first = announce(&app, &t, &user.email, "Issue 1").await;
    wait_status(&app, first, "sent").await;
    let m = sink
        .to(&user.email)
        .into_iter()
        .find(|m| m.subject() == "Issue 1")
        .expect("the announcement");
    assert_eq!(
        m.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let header = m.header("List-Unsubscribe").expect("List-Unsubscribe");
    let url = header.trim_start_matches('<').trim_end_matches('>');
    let path = url
        .strip_prefix("https://unsub.localhost")
        .unwrap_or_else(|| panic!("{url}"));
    assert!(path.starts_with("/u/"), "{path}");

    // What a mail client does (RFC 8058 §3.2): a POST with the one-click body, no cookie, no
    // credential, over a real connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.router().clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .ok();
    });
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build().expect("client");
    let r = client
        .post(format!("http://{addr}{path}"))
        .header("host", "unsub.localhost")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // A forged or altered token is refused.
    let bad = client
        .post(format!("http://{addr}{}x", &path[..path.len() - 1]))
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status(), 404);
    server.abort();

    // The next announcement is withheld; a password reset still goes out.
    let before = sink.to(&user.email).len();
    let second = announce(&app, &t, &user.email, "Issue 2").await;
    wait_state(&app, second, "succeeded").await;
    wait_status(&app, second, "suppressed").await;
    t.anon.forgot_password(&user.email).await.assert_status(202);
    let reset = sink.wait_for(&user.email, before + 1).await;
    assert_eq!(reset.subject(), "Reset your Tenant unsub password");
    assert!(
        sink.to(&user.email)
            .iter()
            .all(|m| m.subject() != "Issue 2")
    );
    let list = app
        .api(&t, Method::GET, "/api/v1/email/suppressions", None)
        .await;
    assert_eq!(
        list.body["items"][0]["reason"], "unsubscribe",
        "{}",
        list.text
    );
    assert_eq!(list.body["items"][0]["category"], "marketing");
    app.finish().await;
}
