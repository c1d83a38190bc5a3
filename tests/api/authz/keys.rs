//! API keys carry a role; tenant admins manage them.

use super::*;

#[tokio::test]
async fn api_keys_carry_a_role_and_tenant_admins_manage_them() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let operator = app.operator();
    // Keys made without a role act as admin (the harness's key).
    t.api.api_keys().await.assert_status(200);
    let k = operator
        .create_api_key(&t.id, json!({"name": "ro", "role": "viewer"}))
        .await;
    k.assert_status(201);
    assert_eq!(k.str("role"), "viewer");
    let viewer = t.with_key(&k.str("key"));
    viewer.api.projects().await.assert_status(200);
    viewer.api.create_project("x").await.assert_problem(403);
    viewer.api.api_keys().await.assert_problem(403);
    // An unknown role is refused.
    operator
        .create_api_key(&t.id, json!({"name": "x", "role": "nope"}))
        .await
        .assert_problem(422);
    // A tenant admin (user) makes a member key, lists and revokes it.
    let admin = app.user(&t, "admin@acme.test", "admin").await;
    let made = admin
        .api
        .create_api_key(json!({"name": "ci", "role": "member"}))
        .await;
    made.assert_status(201);
    let member_key = t.with_key(&made.str("key"));
    member_key.api.create_project("x").await.assert_status(201);
    admin
        .api
        .create_api_key(json!({"name": "x", "role": "owner"}))
        .await
        .assert_problem(403);
    admin
        .api
        .revoke_api_key(&made.str("id"))
        .await
        .assert_status(204);
    member_key.api.projects().await.assert_problem(401);
    // Self-service routes are for users, not keys.
    t.api.me().await.assert_problem(403);
    app.finish().await;
}
