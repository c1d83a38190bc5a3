//! Sending for real: a password reset over SMTP (both parts, headers, the link works), the
//! new-device alert, and `.eml` files on the default with no transport.

use std::time::Duration;

use axum::http::Method;
use platform_tests::smtp::SmtpSink;
use platform_tests::{Req, TestApp, eventually};

use super::{FROM, smtp_app};

#[tokio::test]
async fn a_password_reset_arrives_over_smtp_with_both_parts_and_a_working_link() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("mailco", "shared", None).await;
    let user = app.user(&t, "reset@mailco.test", "member").await;

    t.anon.forgot_password(&user.email).await.assert_status(202);
    // The first message to this address was the invitation.
    let m = sink.wait_for(&user.email, 2).await;
    assert_eq!(m.subject(), "Reset your Tenant mailco password");
    assert_eq!(m.to(), vec![user.email.clone()]);
    assert!(
        m.header("From").expect("From").contains(FROM),
        "{:?}",
        m.header("From")
    );
    assert!(m.header("From").expect("From").contains("Tenant mailco"));
    assert!(
        m.header("Message-ID")
            .expect("Message-ID")
            .ends_with("@mail.platform.test>")
    );
    assert!(m.header("DKIM-Signature").is_some());
    assert_eq!(m.parsed["content_type"], "multipart/alternative");
    // Security mail carries no unsubscribe.
    assert!(m.header("List-Unsubscribe").is_none());
    let link = m
        .link("/reset-password?token=")
        .expect("a reset link in the text part");
    assert!(
        link.starts_with("https://mailco.localhost/reset-password?token="),
        "{link}"
    );
    assert!(
        m.html_decoded().contains(&format!("href=\"{link}\"")),
        "{}",
        m.html_decoded()
    );
    assert!(m.html().contains("<html"));
    assert!(!m.text().contains('<'), "{}", m.text());

    // The link's token resets the password.
    let token = link.split("token=").nth(1).expect("token");
    t.anon
        .reset_password(token, "another correct horse battery")
        .await
        .assert_status(204);
    t.anon
        .login(&user.email, "another correct horse battery")
        .await
        .assert_status(200);
    app.finish().await;
}

#[tokio::test]
async fn a_sign_in_from_a_new_device_sends_an_alert_once() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("devices", "shared", None).await;
    let user = app.user(&t, "dev@devices.test", "member").await;
    let login = |ua: &'static str| {
        let (app, host, email) = (&app, t.host(), user.email.clone());
        async move {
            app.send(
                Req::new(Method::POST, "/api/v1/auth/login")
                    .host(host)
                    .header("user-agent", ua)
                    .json(
                        &serde_json::json!({"email": email, "password": platform_tests::PASSWORD}),
                    ),
            )
            .await
            .assert_status(200);
        }
    };
    login("Firefox/140 (Linux)").await;
    let m = sink.wait_for(&user.email, 2).await;
    assert_eq!(m.subject(), "New sign-in to your Tenant devices account");
    assert!(
        m.text().contains("Device: Firefox/140 (Linux)"),
        "{}",
        m.text()
    );
    // The same device again: no second alert (its job would be enqueued in the login's commit).
    login("Firefox/140 (Linux)").await;
    let alerts = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM jobs WHERE kind = 'email.new_device_sign_in'",
            &[],
        )
        .await
        .expect("count")
        .get::<_, i64>(0);
    assert_eq!(alerts, 1);
    app.finish().await;
}

#[tokio::test]
async fn with_no_transport_set_messages_are_written_as_eml_files() {
    let dir = tempfile::tempdir().expect("data dir");
    let data = dir.path().display().to_string();
    let app = TestApp::spawn_with(&[("PLATFORM_DATA_DIR", &data)]).await;
    let t = app.tenant("files", "shared", None).await;
    t.api
        .invite("new@files.test", "member")
        .await
        .assert_status(201);
    let mail = dir.path().join("mail");
    let found = eventually(Duration::from_secs(30), || async {
        std::fs::read_dir(&mail).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
    })
    .await;
    assert!(found.is_some(), "no .eml file in {}", mail.display());
    let eml = std::fs::read_dir(&mail)
        .expect("mail dir")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .expect("an .eml");
    let text = std::fs::read_to_string(eml.path()).expect("read");
    assert!(text.contains("To: new@files.test"), "{text}");
    assert!(
        text.contains("Subject: You are invited to Tenant files"),
        "{text}"
    );
    app.finish().await;
}
