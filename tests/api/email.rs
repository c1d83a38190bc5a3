//! Transactional email (issue 17) against real peers: an aiosmtpd sink receives the mail and
//! Python's email package parses it, dkimpy verifies the signature, a stand-in speaking
//! Postmark's shapes plays the provider; webhooks, one-click unsubscribe and the invitation are
//! driven through the real router.

mod delivery;
mod dkim;
mod domain;
mod flood;
mod invitation;
mod locale;
mod provider;
mod suppression;
mod templates;
mod tracking;

use std::time::Duration;

use axum::http::Method;
use jobs::NewJob;
use platform_tests::smtp::SmtpSink;
use platform_tests::{Req, TestApp, TestTenant, eventually};
use serde_json::json;

use crate::jobs::{enqueue, kind, tx_of};

/// The sender the email tests configure (its domain is the DKIM domain).
pub const FROM: &str = "no-reply@mail.platform.test";
/// The provider's webhook credentials the tests configure.
pub const WEBHOOK_USER: &str = "postmark";
pub const WEBHOOK_PASSWORD: &str = "webhook-password-0123456789";

/// An instance that sends over SMTP to `sink`, with `extra` settings.
pub async fn smtp_app(sink: &SmtpSink, extra: &[(&str, &str)]) -> TestApp {
    let creds = format!("{WEBHOOK_USER}:{WEBHOOK_PASSWORD}");
    let mut env: Vec<(&str, &str)> = vec![
        ("PLATFORM_SMTP_URL", sink.url.as_str()),
        ("PLATFORM_EMAIL_FROM", FROM),
        ("PLATFORM_EMAIL_WEBHOOK_CREDENTIALS", creds.as_str()),
    ];
    env.extend_from_slice(extra);
    TestApp::build().env(&env).spawn().await
}

/// Enqueues a marketing announcement to `to` (as a tenant feature would); returns the job id.
pub async fn announce(app: &TestApp, t: &TestTenant, to: &str, headline: &str) -> jobs::JobId {
    let job = NewJob::new(
        kind("email.announcement"),
        json!({"recipient": to, "vars": {"headline": headline, "body": "Projects can now be archived."}}),
    );
    enqueue(app, t, job).await.expect("a new job")
}

/// The recorded status of message (= job) `id`.
pub async fn message_status(app: &TestApp, id: jobs::JobId) -> Option<String> {
    app.shared_owner()
        .await
        .query_opt(
            "SELECT status FROM email_messages WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("message status")
        .map(|r| r.get(0))
}

/// Waits until message `id` has `status`.
pub async fn wait_status(app: &TestApp, id: jobs::JobId, status: &str) {
    let ok = eventually(Duration::from_secs(30), || async {
        message_status(app, id).await.as_deref() == Some(status)
    })
    .await;
    assert!(
        ok.is_some(),
        "message {id} never became {status}: {:?}",
        message_status(app, id).await
    );
}

/// The newest `email.<kind>` job to `to`.
pub async fn last_job(app: &TestApp, kind: &str, to: &str) -> Option<jobs::JobId> {
    app.shared_owner()
        .await
        .query_opt(
            "SELECT id FROM jobs WHERE kind = $1 AND payload->>'recipient' = $2 ORDER BY id DESC LIMIT 1",
            &[&format!("email.{kind}"), &to],
        )
        .await
        .expect("jobs")
        .map(|r| jobs::JobId::from_uuid(r.get(0)))
}

/// Runs job `id` again, as after a completion that was lost (the job is pending again).
pub async fn run_again(app: &TestApp, t: &TestTenant, id: jobs::JobId) {
    let mut tx = tx_of(app, t).await;
    tx.execute(
        "UPDATE jobs SET state = 'pending', finished_at = NULL, run_at = now() WHERE id = $1",
        &[&id.as_uuid()],
    )
    .await
    .expect("re-pend the job");
    tx.hint_after_commit();
    tx.commit().await.expect("commit");
}

/// A Postmark webhook call with `credentials` (`user:password`, or none).
pub async fn webhook(
    app: &TestApp,
    credentials: Option<&str>,
    event: &serde_json::Value,
) -> platform_tests::TestResponse {
    use base64::Engine as _;
    let mut r = Req::new(Method::POST, "/webhooks/email/postmark").json(event);
    if let Some(c) = credentials {
        let b = base64::engine::general_purpose::STANDARD.encode(c);
        r = r.header("authorization", &format!("Basic {b}"));
    }
    app.send(r).await
}
