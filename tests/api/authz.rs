//! Authorization: every tenant route declares a permission (checked against the OpenAPI
//! document), the allow/deny matrix of the built-in roles over every tenant route, API key roles,
//! custom roles, and the object-level rule of project membership.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::Method;
use platform::authz::{Access, TABLE};
use platform_tests::{Req, TestApp, TestTenant};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::{as_user, user_with_role};

#[tokio::test]
async fn every_tenant_route_declares_a_permission_and_nothing_else_is_declared() {
    let app = TestApp::spawn().await;
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await;
    let mut served = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/") {
            continue;
        }
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                served.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let declared: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let undeclared: Vec<_> = served.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "tenant routes without a declared permission: {undeclared:?}"
    );
    let stale: Vec<_> = declared.difference(&served).collect();
    assert!(
        stale.is_empty(),
        "declared routes that are not served: {stale:?}"
    );
    app.finish().await;
}

static N: AtomicU32 = AtomicU32::new(0);
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", N.fetch_add(1, Ordering::SeqCst))
}

struct World {
    project: String,
    task: String,
    viewer: String,
}

/// Every tenant route that needs a credential, with a body and ids that make an allowed call
/// succeed or fail with something other than 403 (absent ids answer 404).
fn calls(w: &World) -> Vec<(Method, String, Option<Value>, &'static str)> {
    let (p, t, v) = (&w.project, &w.task, &w.viewer);
    let nobody = Uuid::now_v7();
    vec![
        (Method::GET, "/api/v1/me".into(), None, "GET /api/v1/me"),
        (
            Method::GET,
            "/api/v1/me/sessions".into(),
            None,
            "GET /api/v1/me/sessions",
        ),
        (
            Method::DELETE,
            format!("/api/v1/me/sessions/{nobody}"),
            None,
            "DELETE /api/v1/me/sessions/{session_id}",
        ),
        (
            Method::POST,
            "/api/v1/me/sessions/revoke-others".into(),
            None,
            "POST /api/v1/me/sessions/revoke-others",
        ),
        (
            Method::POST,
            "/api/v1/me/email/verification".into(),
            None,
            "POST /api/v1/me/email/verification",
        ),
        (
            Method::POST,
            "/api/v1/me/mfa/totp".into(),
            None,
            "POST /api/v1/me/mfa/totp",
        ),
        (
            Method::POST,
            "/api/v1/me/mfa/totp/confirm".into(),
            Some(json!({"code": "000000"})),
            "POST /api/v1/me/mfa/totp/confirm",
        ),
        (
            Method::DELETE,
            "/api/v1/me/mfa/totp".into(),
            Some(json!({"code": "000000"})),
            "DELETE /api/v1/me/mfa/totp",
        ),
        (
            Method::GET,
            "/api/v1/users".into(),
            None,
            "GET /api/v1/users",
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{v}"),
            Some(json!({"role": "viewer"})),
            "PATCH /api/v1/users/{user_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{nobody}/sessions"),
            None,
            "DELETE /api/v1/users/{user_id}/sessions",
        ),
        (
            Method::POST,
            "/api/v1/invitations".into(),
            Some(json!({"email": format!("{}@x.test", unique("inv")), "role": "viewer"})),
            "POST /api/v1/invitations",
        ),
        (
            Method::GET,
            "/api/v1/roles".into(),
            None,
            "GET /api/v1/roles",
        ),
        (
            Method::POST,
            "/api/v1/roles".into(),
            Some(json!({"name": unique("role"), "permissions": ["projects:read"]})),
            "POST /api/v1/roles",
        ),
        (
            Method::PATCH,
            format!("/api/v1/roles/{nobody}"),
            Some(json!({"permissions": ["projects:read"]})),
            "PATCH /api/v1/roles/{role_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/roles/{nobody}"),
            None,
            "DELETE /api/v1/roles/{role_id}",
        ),
        (
            Method::GET,
            "/api/v1/api-keys".into(),
            None,
            "GET /api/v1/api-keys",
        ),
        (
            Method::POST,
            "/api/v1/api-keys".into(),
            Some(json!({"name": "k", "role": "viewer"})),
            "POST /api/v1/api-keys",
        ),
        (
            Method::DELETE,
            format!("/api/v1/api-keys/{nobody}"),
            None,
            "DELETE /api/v1/api-keys/{key_id}",
        ),
        (
            Method::GET,
            "/api/v1/audit-events".into(),
            None,
            "GET /api/v1/audit-events",
        ),
        (
            Method::GET,
            "/api/v1/audit-events/export".into(),
            None,
            "GET /api/v1/audit-events/export",
        ),
        (
            Method::GET,
            "/api/v1/projects".into(),
            None,
            "GET /api/v1/projects",
        ),
        (
            Method::POST,
            "/api/v1/projects".into(),
            Some(json!({"name": "x"})),
            "POST /api/v1/projects",
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{p}"),
            None,
            "GET /api/v1/projects/{project_id}",
        ),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}"),
            Some(json!({"name": "p"})),
            "PATCH /api/v1/projects/{project_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/projects/{nobody}"),
            None,
            "DELETE /api/v1/projects/{project_id}",
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{p}/members"),
            None,
            "GET /api/v1/projects/{project_id}/members",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/members"),
            Some(json!({"user_id": v, "role": "member"})),
            "POST /api/v1/projects/{project_id}/members",
        ),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}/members/{v}"),
            Some(json!({"role": "member"})),
            "PATCH /api/v1/projects/{project_id}/members/{user_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/projects/{p}/members/{nobody}"),
            None,
            "DELETE /api/v1/projects/{project_id}/members/{user_id}",
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{p}/tasks"),
            None,
            "GET /api/v1/projects/{project_id}/tasks",
        ),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            Some(json!({"title": "x"})),
            "POST /api/v1/projects/{project_id}/tasks",
        ),
        (
            Method::GET,
            format!("/api/v1/projects/{p}/tasks/{t}"),
            None,
            "GET /api/v1/projects/{project_id}/tasks/{task_id}",
        ),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}/tasks/{t}"),
            Some(json!({"title": "t"})),
            "PATCH /api/v1/projects/{project_id}/tasks/{task_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/projects/{p}/tasks/{nobody}"),
            None,
            "DELETE /api/v1/projects/{project_id}/tasks/{task_id}",
        ),
        (
            Method::GET,
            "/api/v1/sso/connections".into(),
            None,
            "GET /api/v1/sso/connections",
        ),
        (
            Method::POST,
            "/api/v1/sso/connections".into(),
            Some(json!({"kind": "saml", "name": "x"})),
            "POST /api/v1/sso/connections",
        ),
        (
            Method::GET,
            format!("/api/v1/sso/connections/{nobody}"),
            None,
            "GET /api/v1/sso/connections/{connection_id}",
        ),
        (
            Method::PATCH,
            format!("/api/v1/sso/connections/{nobody}"),
            Some(json!({"name": "y"})),
            "PATCH /api/v1/sso/connections/{connection_id}",
        ),
        (
            Method::DELETE,
            format!("/api/v1/sso/connections/{nobody}"),
            None,
            "DELETE /api/v1/sso/connections/{connection_id}",
        ),
        (
            Method::GET,
            "/api/v1/sso/settings".into(),
            None,
            "GET /api/v1/sso/settings",
        ),
        (
            Method::PUT,
            "/api/v1/sso/settings".into(),
            Some(json!({"enforce_sso": false})),
            "PUT /api/v1/sso/settings",
        ),
    ]
}

/// The expected matrix: which built-in roles may call each route (O=owner A=admin M=member V=viewer).
fn expected(route: &str) -> &'static str {
    match route {
        r if r.starts_with("GET /api/v1/me")
            || r.contains("/api/v1/me/")
            || r == "GET /api/v1/me" =>
        {
            "OAMV"
        }
        "GET /api/v1/users" | "GET /api/v1/roles" => "OAMV",
        "PATCH /api/v1/users/{user_id}"
        | "DELETE /api/v1/users/{user_id}/sessions"
        | "POST /api/v1/invitations" => "OA",
        "POST /api/v1/roles"
        | "PATCH /api/v1/roles/{role_id}"
        | "DELETE /api/v1/roles/{role_id}" => "OA",
        r if r.contains("/api/v1/api-keys") => "OA",
        r if r.contains("/api/v1/audit-events") => "OA",
        r if r.contains("/api/v1/sso/") => "OA",
        // Managing a project's members: project admins or `members:manage` (these users are
        // not admins of the project, so only owner and admin pass).
        r if r.contains("/members") && !r.starts_with("GET") => "OA",
        r if r.starts_with("GET ") => "OAMV",
        _ => "OAM",
    }
}

#[tokio::test]
async fn the_built_in_roles_get_exactly_the_expected_matrix_on_every_route() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let project = app
        .api(
            &t,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "p"})),
        )
        .await;
    project.assert_status(201);
    let task = app
        .api(
            &t,
            Method::POST,
            &format!("/api/v1/projects/{}/tasks", project.str("id")),
            Some(json!({"title": "t"})),
        )
        .await;
    task.assert_status(201);
    let mut users = Vec::new();
    for (letter, role) in [
        ('O', "owner"),
        ('A', "admin"),
        ('M', "member"),
        ('V', "viewer"),
    ] {
        users.push((
            letter,
            role,
            user_with_role(&app, &t, &format!("{role}@acme.test"), role).await,
        ));
    }
    let w = World {
        project: project.str("id"),
        task: task.str("id"),
        viewer: users[3].2.id.clone(),
    };
    // Every declared non-public route is exercised.
    let exercised: BTreeSet<&str> = calls(&w).iter().map(|c| c.3).collect();
    for (m, p, a) in TABLE {
        if *a != Access::Public {
            let key = format!("{m} {p}");
            assert!(exercised.contains(key.as_str()), "the matrix misses {key}");
        }
    }
    let mut failures = Vec::new();
    for (letter, role, user) in &users {
        for (m, path, body, route) in calls(&w) {
            let r = as_user(&app, &t, &user.access, m.clone(), &path, body).await;
            let allowed = expected(route).contains(*letter);
            let got = r.status.as_u16();
            assert!(
                got != 401 || route.contains("/mfa/"),
                "{role} {route}: unauthenticated: {}",
                r.text
            );
            if allowed == (got == 403) {
                failures.push(format!(
                    "{role} {route}: expected {}, got {got} {}",
                    if allowed { "allow" } else { "403" },
                    r.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "matrix mismatches:\n{}",
        failures.join("\n")
    );
    app.finish().await;
}

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
