//! Enforcing SSO refuses password login, except for owners.

use super::*;

#[tokio::test]
async fn enforcing_sso_refuses_password_login_except_for_owners() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let owner = app.user(&t, "owner@acme.test", "owner").await;
    let member = app.user(&t, "member@acme.test", "member").await;
    let enforce = json!({"enforce_sso": true});
    // Not without a connection.
    owner
        .api
        .put_sso_settings(enforce.clone())
        .await
        .assert_problem(422);
    let peer = peer_for(&t).await;
    oidc_connection(&app, &t, &owner, &peer).await;
    // Members may not change it.
    member
        .api
        .put_sso_settings(enforce.clone())
        .await
        .assert_problem(403);
    owner.api.put_sso_settings(enforce).await.assert_status(200);
    t.anon
        .login(&member.email, PASSWORD)
        .await
        .assert_problem(403);
    t.anon
        .login(&owner.email, PASSWORD)
        .await
        .assert_status(200);
    // A wrong password gets the same 403 as the right one (nothing learned about the password).
    t.anon
        .login(&member.email, "wrong password")
        .await
        .assert_problem(403);
    app.finish().await;
}
