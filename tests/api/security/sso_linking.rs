//! Hole 3 (the part without verified domains yet): an SSO identity never takes over an account
//! automatically when the account is an owner's or its email was never verified, even when the
//! identity provider vouches for the address (a connection can be pointed at an IdP the
//! attacker runs; open signup lets an attacker pre-register a victim's address).

use platform_tests::TestApp;

use crate::sso::{assert_refused, events, oidc_connection, oidc_login, peer_for};

#[tokio::test]
async fn an_owner_is_never_linked_automatically() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = crate::auth::user_with_role(&app, &t, "admin@acme.test", "admin").await;
    app.user(&t, "boss@acme.test", "owner").await;
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "boss-verified").await;
    assert_refused(&app, &t, &r, before, "link_refused").await;
    r.assert_problem(403);
    app.finish().await;
}

#[tokio::test]
async fn an_account_with_an_unverified_email_is_never_linked() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = crate::auth::user_with_role(&app, &t, "admin@acme.test", "admin").await;
    // Someone holds the address and never proved it (with open signup, a squatter).
    let squatter = app.user(&t, "erin@acme.test", "member").await;
    app.tenant_db(&t)
        .await
        .execute(
            "UPDATE users SET email_verified_at = NULL WHERE id = $1::text::uuid",
            &[&squatter.id],
        )
        .await
        .expect("unverify");
    let peer = peer_for(&t).await;
    let conn = oidc_connection(&app, &t, &admin, &peer).await;
    let id = conn["id"].as_str().expect("id").to_owned();
    let before = events(&app, &t, "sso.rejected").await.len();
    let (r, _) = oidc_login(&app, &t, &id, "erin-verified").await;
    assert_refused(&app, &t, &r, before, "link_refused").await;
    r.assert_problem(403);
    app.finish().await;
}
