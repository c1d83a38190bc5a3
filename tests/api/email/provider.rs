//! The provider's HTTP API (a stand-in in Postmark's shapes): the production path, idempotent
//! per message, failing over to SMTP on 5xx and on timeouts.

use platform_tests::postmark::{Mode, PostmarkStandIn, TOKEN};
use platform_tests::smtp::SmtpSink;

use super::{announce, message_status, run_again, smtp_app, wait_status};
use crate::jobs::wait_state;

#[tokio::test]
async fn the_api_gets_each_message_once_even_when_its_job_runs_again() {
    let sink = SmtpSink::start().await;
    let pm = PostmarkStandIn::start().await;
    let app = smtp_app(
        &sink,
        &[
            ("PLATFORM_EMAIL_PROVIDER_URL", &pm.url),
            ("PLATFORM_EMAIL_PROVIDER_TOKEN", TOKEN),
        ],
    )
    .await;
    let t = app.tenant("apimail", "shared", None).await;
    let id = announce(&app, &t, "api@apimail.test", "Through the API").await;
    wait_status(&app, id, "sent").await;
    let accepted = pm.accepted();
    assert_eq!(accepted.len(), 1);
    let (pm_id, body) = &accepted[0];
    assert_eq!(body["To"], "api@apimail.test");
    assert_eq!(body["Subject"], "Through the API");
    assert_eq!(body["Metadata"]["tenant"], t.id.as_str());
    assert_eq!(body["Metadata"]["message"], id.to_string());
    assert!(body["HtmlBody"].as_str().expect("html").contains("<html"));
    assert!(
        body["Headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h["Name"] == "List-Unsubscribe-Post"
                && h["Value"] == "List-Unsubscribe=One-Click")
    );
    let recorded: Option<String> = app
        .shared_owner()
        .await
        .query_one(
            "SELECT provider_message_id FROM email_messages WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(recorded.as_deref(), Some(pm_id.as_str()));
    assert!(sink.received().is_empty(), "nothing goes over SMTP");

    // The job runs again (its completion was lost): the message is known as sent.
    wait_state(&app, id, "succeeded").await;
    run_again(&app, &t, id).await;
    wait_state(&app, id, "succeeded").await;
    assert_eq!(pm.calls().len(), 1, "a duplicate run called the provider");

    // A run cut off after the provider accepted (recorded `sending` only): the provider is
    // asked, finds the message by its metadata, and nothing is sent again.
    app.shared_owner()
        .await
        .execute(
            "UPDATE email_messages SET status = 'sending', provider_message_id = NULL WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("cut off");
    run_again(&app, &t, id).await;
    wait_status(&app, id, "sent").await;
    wait_state(&app, id, "succeeded").await;
    assert_eq!(pm.calls().len(), 1, "an interrupted run sent twice");
    app.finish().await;
}

#[tokio::test]
async fn a_failing_or_hanging_provider_fails_over_to_smtp() {
    let sink = SmtpSink::start().await;
    let pm = PostmarkStandIn::start().await;
    let app = smtp_app(
        &sink,
        &[
            ("PLATFORM_EMAIL_PROVIDER_URL", &pm.url),
            ("PLATFORM_EMAIL_PROVIDER_TOKEN", TOKEN),
            ("PLATFORM_EMAIL_PROVIDER_TIMEOUT", "1"),
        ],
    )
    .await;
    let t = app.tenant("failover", "shared", None).await;

    pm.set_mode(Mode::Unavailable);
    let id = announce(&app, &t, "a@failover.test", "During an outage").await;
    let m = sink.wait_for("a@failover.test", 1).await;
    assert_eq!(m.subject(), "During an outage");
    wait_status(&app, id, "sent").await;
    let via: Option<String> = app
        .shared_owner()
        .await
        .query_one(
            "SELECT transport FROM email_messages WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(via.as_deref(), Some("smtp"));
    assert_eq!(
        pm.calls().len(),
        3,
        "retried with backoff before failing over"
    );

    pm.set_mode(Mode::Hang);
    let id = announce(&app, &t, "b@failover.test", "While it hangs").await;
    let m = sink.wait_for("b@failover.test", 1).await;
    assert_eq!(m.subject(), "While it hangs");
    wait_status(&app, id, "sent").await;
    assert!(pm.accepted().is_empty());
    assert_eq!(message_status(&app, id).await.as_deref(), Some("sent"));
    app.finish().await;
}
