//! Accounts: invite-only sign-up until the operator opens it, password reset and email verification by single-use tokens from the outbox.

use super::*;

#[tokio::test]
async fn signup_is_invite_only_until_the_operator_opens_it() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let ann = ("Ann@Example.com", PASSWORD, "Ann");
    t.anon.signup(ann.0, ann.1, ann.2).await.assert_problem(403);
    let p = app
        .operator()
        .patch_tenant(&t.id, json!({"signup": "open"}))
        .await;
    p.assert_status(200);
    assert_eq!(p.str("signup"), "open");
    let s = t.anon.signup(ann.0, ann.1, ann.2).await;
    s.assert_status(201);
    assert_eq!(s.str("token_type"), "Bearer");
    let ann_api = t.as_bearer(&s.str("access_token"));
    let me = ann_api.me().await;
    me.assert_status(200);
    assert_eq!(me.str("role"), "member");
    assert_eq!(me.str("email"), "ann@example.com");
    assert_eq!(me.body["email_verified"], json!(false));
    // The same address again: conflict; a weak password: refused.
    t.anon.signup(ann.0, ann.1, ann.2).await.assert_problem(409);
    t.anon
        .signup("b@example.com", "short", "B")
        .await
        .assert_problem(422);
    // The verification message is in the outbox; its token verifies the address, once.
    let msgs = app.outbox("ann@example.com").await;
    let token = token_in(&msgs[0], "verification token");
    t.anon.verify_email(&token).await.assert_status(204);
    t.anon.verify_email(&token).await.assert_problem(401);
    let me = ann_api.me().await;
    assert_eq!(me.body["email_verified"], json!(true));
    // Passwords are argon2id with at least OWASP's minimum parameters.
    let hash: String = app
        .shared_owner()
        .await
        .query_one(
            "SELECT password_hash FROM users WHERE email = 'ann@example.com'",
            &[],
        )
        .await
        .expect("hash")
        .get(0);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    app.finish().await;
}

#[tokio::test]
async fn password_reset_by_single_use_token_from_the_outbox() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    t.anon
        .forgot_password("nobody@acme.test")
        .await
        .assert_status(202);
    t.anon.forgot_password(&u.email).await.assert_status(202);
    let msgs = app.outbox(&u.email).await;
    let token = token_in(msgs.last().expect("message"), "reset token");
    assert!(app.outbox("nobody@acme.test").await.is_empty());
    let new = "a brand new passphrase";
    t.anon.reset_password(&token, new).await.assert_status(204);
    t.anon.reset_password(&token, new).await.assert_problem(401);
    t.anon.login(&u.email, PASSWORD).await.assert_problem(401);
    t.anon.login(&u.email, new).await.assert_status(200);
    // Existing sessions were signed out.
    t.anon.refresh(&u.refresh).await.assert_problem(401);
    // The token is stored only hashed.
    let n: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM one_time_tokens WHERE token_hash = convert_to($1, 'UTF8')",
            &[&token],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.finish().await;
}

#[tokio::test]
async fn unverified_users_cannot_invite_until_they_verify_their_address() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    app.operator()
        .patch_tenant(&t.id, json!({"signup": "open"}))
        .await
        .assert_status(200);
    let owner = app.user(&t, "owner@example.com", "owner").await;
    // Ann signs up (unverified) and the owner makes her an admin: she holds `members:manage`.
    let s = t.anon.signup("ann@example.com", PASSWORD, "Ann").await;
    s.assert_status(201);
    let ann = t.as_bearer(&s.str("access_token"));
    let me = ann.me().await;
    assert_eq!(me.body["email_verified"], json!(false));
    owner
        .api
        .set_role(&me.str("id"), "admin")
        .await
        .assert_status(200);
    let refused = ann.invite("bob@example.com", "member").await;
    refused.assert_problem(403);
    assert!(
        refused.str("detail").contains("verify"),
        "{:?}",
        refused.body
    );
    assert!(app.outbox("bob@example.com").await.is_empty());
    // The owner (invited, so verified) may invite; so may Ann once her address is verified.
    let token = token_in(
        &app.outbox("ann@example.com").await[0],
        "verification token",
    );
    t.anon.verify_email(&token).await.assert_status(204);
    ann.invite("bob@example.com", "member")
        .await
        .assert_status(201);
    assert_eq!(app.outbox("bob@example.com").await.len(), 1);
    app.finish().await;
}
