//! Invitation end to end: an administrator invites, the message arrives over SMTP, and the link
//! in it accepts the invitation.

use platform_tests::PASSWORD;
use platform_tests::smtp::SmtpSink;

use super::smtp_app;

#[tokio::test]
async fn an_invitation_received_over_smtp_is_accepted_through_its_link() {
    let sink = SmtpSink::start().await;
    let app = smtp_app(&sink, &[]).await;
    let t = app.tenant("invites", "shared", None).await;
    let admin = app.user(&t, "admin@invites.test", "admin").await;

    admin
        .api
        .invite("newcomer@invites.test", "member")
        .await
        .assert_status(201);
    let m = sink.wait_for("newcomer@invites.test", 1).await;
    assert_eq!(m.subject(), "You are invited to Tenant invites");
    let link = m
        .link("/accept-invitation?token=")
        .unwrap_or_else(|| panic!("no invitation link in {}", m.text()));
    assert!(link.starts_with("https://invites.localhost/"), "{link}");
    assert!(m.html_decoded().contains(&format!("href=\"{link}\"")));
    // Invitations may be refused for the future (RFC 8058 header), unlike security mail.
    assert!(m.header("List-Unsubscribe").is_some());

    let token = link.split("token=").nth(1).expect("token");
    let acc = t.anon.accept_invitation(token, PASSWORD, "New Comer").await;
    acc.assert_status(201);
    t.anon
        .login("newcomer@invites.test", PASSWORD)
        .await
        .assert_status(200);
    app.finish().await;
}
