//! Custom roles: data, applied within seconds, never beyond the grantor's permissions.

use std::time::Duration;

use platform_tests::{Client, eventually};

use super::*;

/// Whether `caller` can create a project within 10 s (role changes apply within seconds).
async fn may_create_project_soon(caller: &Client) -> bool {
    eventually(Duration::from_secs(10), || async {
        caller.create_project("p").await.status == 201
    })
    .await
    .is_some()
}

#[tokio::test]
async fn custom_roles_are_data_and_role_changes_apply_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    t.api
        .create_role("auditor", &["projects:read", "users:read"])
        .await
        .assert_status(201);
    t.api
        .create_role("bad", &["root:everything"])
        .await
        .assert_problem(422);
    let roles = t.api.roles().await;
    let names: Vec<&str> = roles.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["owner", "admin", "member", "viewer", "auditor"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let u = app.user(&t, "a@acme.test", "auditor").await;
    u.api.projects().await.assert_status(200);
    u.api
        .tasks("00000000-0000-0000-0000-000000000000")
        .await
        .assert_problem(403);
    // Promote to member: the same access token gains the permission within seconds.
    t.api.set_role(&u.id, "member").await.assert_status(200);
    assert!(may_create_project_soon(&u.api).await);
    // Only an owner grants `owner`.
    let admin = app.user(&t, "admin@acme.test", "admin").await;
    admin.api.set_role(&u.id, "owner").await.assert_problem(403);
    app.finish().await;
}

#[tokio::test]
async fn custom_roles_can_be_changed_and_deleted_but_never_beyond_the_grantors_permissions() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let triage = t.api.create_role("triage", &["projects:read"]).await;
    triage.assert_status(201);
    let id = triage.str("id");
    let u = app.user(&t, "triage@acme.test", "triage").await;
    assert_eq!(u.api.create_project("p").await.status, 403);
    // The role gains `projects:write`: the same token may create projects within seconds.
    let changed = t
        .api
        .update_role(&id, &["projects:read", "projects:write", "projects:write"])
        .await;
    changed.assert_status(200);
    assert_eq!(
        changed.body["permissions"],
        json!(["projects:read", "projects:write"])
    );
    assert!(may_create_project_soon(&u.api).await);
    built_in_and_unknown_roles_and_permissions_are_refused(&t, &id).await;
    a_role_manager_grants_only_what_it_holds(&app, &t, &id).await;

    // Held by a user: kept. Once nobody holds it, it can go.
    t.api.delete_role(&id).await.assert_problem(409);
    t.api.set_role(&u.id, "viewer").await.assert_status(200);
    // Still named by an SSO connection's role mapping: kept until the mapping changes.
    let sso = t
        .api
        .create_sso_connection(
            json!({"kind": "oidc", "name": "corp", "issuer": "http://127.0.0.1:9",
                    "client_id": "c", "role_mapping": [{"value": "ops", "role": "triage"}]}),
        )
        .await;
    sso.assert_status(201);
    let refused = t.api.delete_role(&id).await;
    refused.assert_problem(409);
    assert!(refused.text.contains("SSO"), "{}", refused.text);
    t.api
        .delete_sso_connection(&sso.str("id"))
        .await
        .assert_status(204);
    t.api.delete_role(&id).await.assert_status(204);
    let roles = t.api.roles().await;
    assert!(!roles.text.contains("\"triage\""), "{}", roles.text);
    app.finish().await;
}

/// Built-in roles are fixed; unknown roles and permissions are refused.
async fn built_in_and_unknown_roles_and_permissions_are_refused(t: &TestTenant, custom: &str) {
    let roles = t.api.roles().await;
    let member = roles.body["items"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "member"))
        .and_then(|r| r["id"].as_str())
        .expect("member role")
        .to_owned();
    let patch = |role: &str| format!("/api/v1/roles/{role}");
    t.api
        .update_role(&member, &["projects:read"])
        .await
        .assert_problem(409);
    t.api.delete_role(&member).await.assert_problem(409);
    t.api
        .update_role(&Uuid::now_v7().to_string(), &[])
        .await
        .assert_problem(404);
    t.api
        .update_role(custom, &["root:everything"])
        .await
        .assert_problem(422);
    t.api
        .patch(
            &patch(custom),
            json!({"permissions": [], "name": "renamed"}),
        )
        .await
        .assert_problem(422);
}

/// A custom role that manages roles cannot grant what it does not hold itself.
async fn a_role_manager_grants_only_what_it_holds(app: &TestApp, t: &TestTenant, custom: &str) {
    t.api
        .create_role(
            "role-manager",
            &["roles:manage", "users:read", "projects:read"],
        )
        .await
        .assert_status(201);
    let m = app.user(t, "rm@acme.test", "role-manager").await;
    m.api
        .update_role(custom, &["projects:read", "sso:manage"])
        .await
        .assert_problem(403);
    m.api
        .create_role("snoop", &["audit:read"])
        .await
        .assert_problem(403);
    // Narrowing the role takes `projects:write` from its holders: only someone who holds it may.
    m.api
        .update_role(custom, &["projects:read"])
        .await
        .assert_problem(403);
}
