//! Sessions: listing and revocation by the user, tenant admins and operators.

use super::*;

#[tokio::test]
async fn sessions_are_listed_and_revoked_and_revocation_stops_access_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let u = app.user(&t, "owner@acme.test", "owner").await;
    let laptop = t
        .anon
        .send(
            t.anon
                .req(Method::POST, "/api/v1/auth/login")
                .header("user-agent", "laptop/1.0")
                .json(&json!({"email": u.email, "password": PASSWORD})),
        )
        .await;
    laptop.assert_status(200);
    let phone = t.anon.login(&u.email, PASSWORD).await;
    let list = u.api.sessions().await;
    list.assert_status(200);
    let items = list.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 3);
    assert!(items.iter().any(|s| s["user_agent"] == "laptop/1.0"));
    assert_eq!(
        items.iter().filter(|s| s["current"] == json!(true)).count(),
        1
    );
    // Sign the laptop out.
    let laptop_api = t.as_bearer(&laptop.str("access_token"));
    let laptop_sid = decode_part(&laptop.str("access_token"), 1)["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    u.api.revoke_session(&laptop_sid).await.assert_status(204);
    let gone = eventually(Duration::from_secs(10), || async {
        laptop_api.me().await.status.as_u16() == 401
    })
    .await;
    assert!(gone.is_some());
    t.anon
        .refresh(&laptop.str("refresh_token"))
        .await
        .assert_problem(401);
    // Sign out everywhere else: the phone goes, this session stays.
    let r = u.api.revoke_other_sessions().await;
    r.assert_status(200);
    assert_eq!(r.body["revoked"], json!(1));
    t.anon
        .refresh(&phone.str("refresh_token"))
        .await
        .assert_problem(401);
    u.api.me().await.assert_status(200);
    // Logout ends this one too.
    t.anon.logout(&u.refresh).await.assert_status(204);
    t.anon.refresh(&u.refresh).await.assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn operators_and_tenant_admins_can_sign_a_user_out() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    let m = user_with_role(&app, &t, "m@acme.test", "member").await;
    let r = as_user(
        &app,
        &t,
        &admin.access,
        Method::DELETE,
        &format!("/api/v1/users/{}/sessions", m.id),
        None,
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.body["revoked"], json!(1));
    refresh(&app, &t, &m.refresh).await.assert_problem(401);
    let m2 = login(&app, &t, &m.email, PASSWORD).await;
    let r = app
        .admin(
            Method::DELETE,
            &format!("/admin/v1/tenants/{}/users/{}/sessions", t.id, m.id),
            None,
        )
        .await;
    r.assert_status(200);
    refresh(&app, &t, &m2.str("refresh_token"))
        .await
        .assert_problem(401);
    // A member cannot sign others out.
    let m3 = login(&app, &t, &m.email, PASSWORD).await;
    as_user(
        &app,
        &t,
        &m3.str("access_token"),
        Method::DELETE,
        &format!("/api/v1/users/{}/sessions", admin.id),
        None,
    )
    .await
    .assert_problem(403);
    let _ = ADMIN_TOKEN;
    app.finish().await;
}
