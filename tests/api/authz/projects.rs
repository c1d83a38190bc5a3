//! Project-level roles: only a project's admins remove members or change roles.

use super::*;

#[tokio::test]
async fn only_a_projects_admins_may_remove_members_or_change_roles() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let alice = user_with_role(&app, &t, "alice@acme.test", "member").await;
    let bob = user_with_role(&app, &t, "bob@acme.test", "member").await;
    let carol = user_with_role(&app, &t, "carol@acme.test", "member").await;
    let p = as_user(
        &app,
        &t,
        &alice.access,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "x"})),
    )
    .await;
    p.assert_status(201);
    let base = format!("/api/v1/projects/{}/members", p.str("id"));
    // The creator is the project's admin.
    let list = as_user(&app, &t, &bob.access, Method::GET, &base, None).await;
    assert_eq!(list.body["items"][0]["user_id"], json!(alice.id));
    assert_eq!(list.body["items"][0]["role"], "admin");
    for u in [&bob, &carol] {
        as_user(
            &app,
            &t,
            &alice.access,
            Method::POST,
            &base,
            Some(json!({"user_id": u.id, "role": "member"})),
        )
        .await
        .assert_status(201);
    }
    // Bob (a project member) can neither change anyone's role nor remove anyone.
    as_user(
        &app,
        &t,
        &bob.access,
        Method::PATCH,
        &format!("{base}/{}", carol.id),
        Some(json!({"role": "admin"})),
    )
    .await
    .assert_problem(403);
    as_user(
        &app,
        &t,
        &bob.access,
        Method::PATCH,
        &format!("{base}/{}", bob.id),
        Some(json!({"role": "admin"})),
    )
    .await
    .assert_problem(403);
    as_user(
        &app,
        &t,
        &bob.access,
        Method::DELETE,
        &format!("{base}/{}", carol.id),
        None,
    )
    .await
    .assert_problem(403);
    // Alice (project admin) can.
    as_user(
        &app,
        &t,
        &alice.access,
        Method::PATCH,
        &format!("{base}/{}", bob.id),
        Some(json!({"role": "admin"})),
    )
    .await
    .assert_status(200);
    as_user(
        &app,
        &t,
        &bob.access,
        Method::DELETE,
        &format!("{base}/{}", carol.id),
        None,
    )
    .await
    .assert_status(204);
    app.finish().await;
}
