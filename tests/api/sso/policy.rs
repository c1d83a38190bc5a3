//! Enforcing SSO refuses password login, except for owners.

use super::*;

#[tokio::test]
async fn enforcing_sso_refuses_password_login_except_for_owners() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let owner = user_with_role(&app, &t, "owner@acme.test", "owner").await;
    let member = user_with_role(&app, &t, "member@acme.test", "member").await;
    // Not without a connection.
    as_user(
        &app,
        &t,
        &owner.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_problem(422);
    let peer = peer_for(&t).await;
    oidc_connection(&app, &t, &owner, &peer).await;
    // Members may not change it.
    as_user(
        &app,
        &t,
        &member.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_problem(403);
    as_user(
        &app,
        &t,
        &owner.access,
        Method::PUT,
        "/api/v1/sso/settings",
        Some(json!({"enforce_sso": true})),
    )
    .await
    .assert_status(200);
    login(&app, &t, &member.email, PASSWORD)
        .await
        .assert_problem(403);
    login(&app, &t, &owner.email, PASSWORD)
        .await
        .assert_status(200);
    // A wrong password is still a 401 (nothing learned about the account).
    login(&app, &t, &member.email, "wrong password")
        .await
        .assert_status(401);
    app.finish().await;
}
