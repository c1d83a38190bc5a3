//! Custom roles: data, applied within seconds, never beyond the grantor's permissions.

use super::*;

/// The status of `POST /api/v1/projects` with a user's access token.
async fn create_project(app: &TestApp, t: &TestTenant, access: &str) -> u16 {
    as_user(
        app,
        t,
        access,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "p"})),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test]
async fn custom_roles_are_data_and_role_changes_apply_within_seconds() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let r = app
        .api(
            &t,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "auditor", "permissions": ["projects:read", "users:read"]})),
        )
        .await;
    r.assert_status(201);
    app.api(
        &t,
        Method::POST,
        "/api/v1/roles",
        Some(json!({"name": "bad", "permissions": ["root:everything"]})),
    )
    .await
    .assert_problem(422);
    let roles = app.api(&t, Method::GET, "/api/v1/roles", None).await;
    let names: Vec<&str> = roles.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["owner", "admin", "member", "viewer", "auditor"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let u = user_with_role(&app, &t, "a@acme.test", "auditor").await;
    as_user(&app, &t, &u.access, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);
    as_user(
        &app,
        &t,
        &u.access,
        Method::GET,
        "/api/v1/projects/00000000-0000-0000-0000-000000000000/tasks",
        None,
    )
    .await
    .assert_problem(403);
    // Promote to member: the same access token gains the permission within seconds.
    app.api(
        &t,
        Method::PATCH,
        &format!("/api/v1/users/{}", u.id),
        Some(json!({"role": "member"})),
    )
    .await
    .assert_status(200);
    let ok = platform_tests::eventually(std::time::Duration::from_secs(10), || async {
        create_project(&app, &t, &u.access).await == 201
    })
    .await;
    assert!(ok.is_some());
    // Only an owner grants `owner`.
    let admin = user_with_role(&app, &t, "admin@acme.test", "admin").await;
    as_user(
        &app,
        &t,
        &admin.access,
        Method::PATCH,
        &format!("/api/v1/users/{}", u.id),
        Some(json!({"role": "owner"})),
    )
    .await
    .assert_problem(403);
    app.finish().await;
}

#[tokio::test]
async fn custom_roles_can_be_changed_and_deleted_but_never_beyond_the_grantors_permissions() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let triage = app
        .api(
            &t,
            Method::POST,
            "/api/v1/roles",
            Some(json!({"name": "triage", "permissions": ["projects:read"]})),
        )
        .await;
    triage.assert_status(201);
    let id = triage.str("id");
    let u = user_with_role(&app, &t, "triage@acme.test", "triage").await;
    assert_eq!(create_project(&app, &t, &u.access).await, 403);
    // The role gains `projects:write`: the same token may create projects within seconds.
    let changed = app
        .api(
            &t,
            Method::PATCH,
            &format!("/api/v1/roles/{id}"),
            Some(json!({"permissions": ["projects:read", "projects:write", "projects:write"]})),
        )
        .await;
    changed.assert_status(200);
    assert_eq!(
        changed.body["permissions"],
        json!(["projects:read", "projects:write"])
    );
    let gained = platform_tests::eventually(std::time::Duration::from_secs(10), || async {
        create_project(&app, &t, &u.access).await == 201
    })
    .await;
    assert!(gained.is_some());

    // Built-in roles are fixed; unknown roles and permissions are refused.
    let roles = app.api(&t, Method::GET, "/api/v1/roles", None).await;
    let member = roles.body["items"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "member"))
        .and_then(|r| r["id"].as_str())
        .expect("member role")
        .to_owned();
    let patch = |role: String, body: serde_json::Value| {
        let (app, t) = (&app, &t);
        async move {
            app.api(
                t,
                Method::PATCH,
                &format!("/api/v1/roles/{role}"),
                Some(body),
            )
            .await
        }
    };
    patch(member.clone(), json!({"permissions": ["projects:read"]}))
        .await
        .assert_problem(409);
    app.api(&t, Method::DELETE, &format!("/api/v1/roles/{member}"), None)
        .await
        .assert_problem(409);
    patch(uuid::Uuid::now_v7().to_string(), json!({"permissions": []}))
        .await
        .assert_problem(404);
    patch(id.clone(), json!({"permissions": ["root:everything"]}))
        .await
        .assert_problem(422);
    patch(id.clone(), json!({"permissions": [], "name": "renamed"}))
        .await
        .assert_problem(422);

    // A custom role that manages roles cannot grant what it does not hold itself.
    app.api(
        &t,
        Method::POST,
        "/api/v1/roles",
        Some(json!({"name": "role-manager", "permissions": ["roles:manage", "users:read", "projects:read"]})),
    )
    .await
    .assert_status(201);
    let m = user_with_role(&app, &t, "rm@acme.test", "role-manager").await;
    let as_manager = |method: Method, path: String, body: serde_json::Value| {
        let (app, t, tok) = (&app, &t, m.access.clone());
        async move { as_user(app, t, &tok, method, &path, Some(body)).await }
    };
    as_manager(
        Method::PATCH,
        format!("/api/v1/roles/{id}"),
        json!({"permissions": ["projects:read", "sso:manage"]}),
    )
    .await
    .assert_problem(403);
    as_manager(
        Method::POST,
        "/api/v1/roles".into(),
        json!({"name": "snoop", "permissions": ["audit:read"]}),
    )
    .await
    .assert_problem(403);
    as_manager(
        Method::PATCH,
        format!("/api/v1/roles/{id}"),
        json!({"permissions": ["projects:read"]}),
    )
    .await
    .assert_status(200);

    // Held by a user: kept. Once nobody holds it, it can go.
    app.api(&t, Method::DELETE, &format!("/api/v1/roles/{id}"), None)
        .await
        .assert_problem(409);
    app.api(
        &t,
        Method::PATCH,
        &format!("/api/v1/users/{}", u.id),
        Some(json!({"role": "viewer"})),
    )
    .await
    .assert_status(200);
    // Still named by an SSO connection's role mapping: kept until the mapping changes.
    let sso = app
        .api(
            &t,
            Method::POST,
            "/api/v1/sso/connections",
            Some(
                json!({"kind": "oidc", "name": "corp", "issuer": "http://127.0.0.1:9",
                        "client_id": "c", "role_mapping": [{"value": "ops", "role": "triage"}]}),
            ),
        )
        .await;
    sso.assert_status(201);
    let refused = app
        .api(&t, Method::DELETE, &format!("/api/v1/roles/{id}"), None)
        .await;
    refused.assert_problem(409);
    assert!(refused.text.contains("SSO"), "{}", refused.text);
    app.api(
        &t,
        Method::DELETE,
        &format!("/api/v1/sso/connections/{}", sso.str("id")),
        None,
    )
    .await
    .assert_status(204);
    app.api(&t, Method::DELETE, &format!("/api/v1/roles/{id}"), None)
        .await
        .assert_status(204);
    let roles = app.api(&t, Method::GET, "/api/v1/roles", None).await;
    assert!(!roles.text.contains("\"triage\""), "{}", roles.text);
    app.finish().await;
}
