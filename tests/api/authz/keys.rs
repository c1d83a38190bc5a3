//! API keys carry a role; tenant admins manage them.

use super::*;

#[tokio::test]
async fn api_keys_carry_a_role_and_tenant_admins_manage_them() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    // Keys made without a role act as admin (the harness's key).
    app.api(&t, Method::GET, "/api/v1/api-keys", None)
        .await
        .assert_status(200);
    let k = app
        .admin(
            Method::POST,
            &format!("/admin/v1/tenants/{}/api-keys", t.id),
            Some(json!({"name": "ro", "role": "viewer"})),
        )
        .await;
    k.assert_status(201);
    assert_eq!(k.str("role"), "viewer");
    let viewer = t.with_key(&k.str("key"));
    app.api(&viewer, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);
    app.api(
        &viewer,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_problem(403);
    app.api(&viewer, Method::GET, "/api/v1/api-keys", None)
        .await
        .assert_problem(403);
    // An unknown role is refused.
    app.admin(
        Method::POST,
        &format!("/admin/v1/tenants/{}/api-keys", t.id),
        Some(json!({"name": "x", "role": "nope"})),
    )
    .await
    .assert_problem(422);
    // A tenant admin (user) makes a member key, lists and revokes it.
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let made = as_user(
        &app,
        &t,
        &admin.access,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "ci", "role": "member"})),
    )
    .await;
    made.assert_status(201);
    let member_key = t.with_key(&made.str("key"));
    app.api(
        &member_key,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_status(201);
    as_user(
        &app,
        &t,
        &admin.access,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "x", "role": "owner"})),
    )
    .await
    .assert_problem(403);
    as_user(
        &app,
        &t,
        &admin.access,
        Method::DELETE,
        &format!("/api/v1/api-keys/{}", made.str("id")),
        None,
    )
    .await
    .assert_status(204);
    app.api(&member_key, Method::GET, "/api/v1/projects", None)
        .await
        .assert_problem(401);
    // Self-service routes are for users, not keys.
    app.api(&t, Method::GET, "/api/v1/me", None)
        .await
        .assert_problem(403);
    app.finish().await;
}
