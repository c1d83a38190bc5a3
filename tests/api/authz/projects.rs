//! Project-level roles: only a project's admins remove members or change roles.

use super::*;

#[tokio::test]
async fn only_a_projects_admins_may_remove_members_or_change_roles() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let alice = app.user(&t, "alice@acme.test", "member").await;
    let bob = app.user(&t, "bob@acme.test", "member").await;
    let carol = app.user(&t, "carol@acme.test", "member").await;
    let p = alice.api.create_project("x").await;
    p.assert_status(201);
    let p = p.str("id");
    // The creator is the project's admin.
    let list = bob.api.members(&p).await;
    assert_eq!(list.body["items"][0]["user_id"], json!(alice.id));
    assert_eq!(list.body["items"][0]["role"], "admin");
    for u in [&bob, &carol] {
        alice
            .api
            .add_member(&p, &u.id, "member")
            .await
            .assert_status(201);
    }
    // Bob (a project member) can neither change anyone's role nor remove anyone.
    bob.api
        .set_member_role(&p, &carol.id, "admin")
        .await
        .assert_problem(403);
    bob.api
        .set_member_role(&p, &bob.id, "admin")
        .await
        .assert_problem(403);
    bob.api
        .remove_member(&p, &carol.id)
        .await
        .assert_problem(403);
    // Alice (project admin) can.
    alice
        .api
        .set_member_role(&p, &bob.id, "admin")
        .await
        .assert_status(200);
    bob.api
        .remove_member(&p, &carol.id)
        .await
        .assert_status(204);
    app.finish().await;
}
