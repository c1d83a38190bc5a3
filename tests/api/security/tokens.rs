//! Hole 10: single-use tokens (password reset, invitation, email verification) are never at rest
//! in plain text in the `email.*` jobs that send them, and a new password reset revokes the
//! earlier ones.

use platform_tests::{PASSWORD, TestApp, TestTenant, token_in};
use serde_json::json;

/// Every email job row of the tenant, every column, as text (the owner's view of the database).
async fn raw_outbox(app: &TestApp, t: &TestTenant) -> Vec<String> {
    app.shared_owner()
        .await
        .query(
            "SELECT row_to_json(j)::text FROM jobs j
             WHERE tenant_id = $1::text::uuid AND kind LIKE 'email.%'",
            &[&t.id],
        )
        .await
        .expect("email jobs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_not_at_rest(rows: &[String], token: &str, what: &str) {
    assert!(!rows.is_empty(), "{what}: no message in the outbox");
    for row in rows {
        assert!(
            !row.contains(token),
            "{what}: the raw token is at rest in an outbox row: {row}"
        );
    }
}

#[tokio::test]
async fn no_raw_token_is_stored_in_the_outbox() {
    let app = TestApp::spawn().await;
    let t = app.tenant("tokens", "shared", None).await;
    app.operator()
        .patch_tenant(&t.id, json!({"signup": "open"}))
        .await
        .assert_status(200);

    // An invitation (its token is handed to the operator once, in the response).
    let inv = app
        .operator()
        .invite(&t.id, "invitee@tokens.test", "member")
        .await;
    inv.assert_status(201);
    assert_not_at_rest(&raw_outbox(&app, &t).await, &inv.str("token"), "invitation");

    // A verification message.
    t.anon
        .signup("new@tokens.test", PASSWORD, "New")
        .await
        .assert_status(201);
    let mail = app.outbox("new@tokens.test").await;
    let token = token_in(mail.last().expect("message"), "verification token");
    assert_not_at_rest(&raw_outbox(&app, &t).await, &token, "verification");
    t.anon.verify_email(&token).await.assert_status(204);

    // A password reset.
    let u = app.user(&t, "reset@tokens.test", "member").await;
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let mail = app.outbox(&u.email).await;
    let token = token_in(mail.last().expect("message"), "reset token");
    assert_not_at_rest(&raw_outbox(&app, &t).await, &token, "password reset");
    t.anon
        .reset_password(&token, "a brand new passphrase")
        .await
        .assert_status(204);
    app.finish().await;
}

#[tokio::test]
async fn a_new_reset_revokes_the_earlier_reset_tokens() {
    let app = TestApp::spawn().await;
    let t = app.tenant("resets", "shared", None).await;
    let u = app.user(&t, "twice@resets.test", "member").await;
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let first = token_in(
        app.outbox(&u.email).await.last().expect("first message"),
        "reset token",
    );
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let mail = app.outbox(&u.email).await;
    let second = token_in(mail.last().expect("second message"), "reset token");
    assert_ne!(first, second);
    let first_again = t.anon.reset_password(&first, "an earlier passphrase").await;
    assert_eq!(
        first_again.status.as_u16(),
        401,
        "an earlier reset token still worked after a new reset: {}",
        first_again.text
    );
    t.anon.login(&u.email, PASSWORD).await.assert_status(200);
    t.anon
        .reset_password(&second, "the newest passphrase")
        .await
        .assert_status(204);
    t.anon
        .login(&u.email, "the newest passphrase")
        .await
        .assert_status(200);
    app.finish().await;
}
