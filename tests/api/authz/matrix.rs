//! Every tenant route declares its permission, and the built-in roles get exactly the expected matrix on every route.

use super::*;

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
    let (p, t, v) = (w.project.as_str(), w.task.as_str(), w.viewer.as_str());
    let nobody = Uuid::now_v7().to_string();
    let n = nobody.as_str();
    // (route, the values of its path parameters in order, body)
    let rows: Vec<(&'static str, Vec<&str>, Option<Value>)> = vec![
        ("GET /api/v1/me", vec![], None),
        ("GET /api/v1/me/sessions", vec![], None),
        ("DELETE /api/v1/me/sessions/{session_id}", vec![n], None),
        ("POST /api/v1/me/sessions/revoke-others", vec![], None),
        ("POST /api/v1/me/email/verification", vec![], None),
        ("POST /api/v1/me/mfa/totp", vec![], None),
        (
            "POST /api/v1/me/mfa/totp/confirm",
            vec![],
            Some(json!({"code": "000000"})),
        ),
        (
            "DELETE /api/v1/me/mfa/totp",
            vec![],
            Some(json!({"code": "000000"})),
        ),
        ("GET /api/v1/users", vec![], None),
        (
            "PATCH /api/v1/users/{user_id}",
            vec![v],
            Some(json!({"role": "viewer"})),
        ),
        ("DELETE /api/v1/users/{user_id}/sessions", vec![n], None),
        (
            "POST /api/v1/invitations",
            vec![],
            Some(json!({"email": format!("{}@x.test", unique("inv")), "role": "viewer"})),
        ),
        ("GET /api/v1/roles", vec![], None),
        (
            "POST /api/v1/roles",
            vec![],
            Some(json!({"name": unique("role"), "permissions": ["projects:read"]})),
        ),
        (
            "PATCH /api/v1/roles/{role_id}",
            vec![n],
            Some(json!({"permissions": ["projects:read"]})),
        ),
        ("DELETE /api/v1/roles/{role_id}", vec![n], None),
        ("GET /api/v1/api-keys", vec![], None),
        (
            "POST /api/v1/api-keys",
            vec![],
            Some(json!({"name": "k", "role": "viewer"})),
        ),
        ("DELETE /api/v1/api-keys/{key_id}", vec![n], None),
        ("GET /api/v1/audit-events", vec![], None),
        ("GET /api/v1/audit-events/export", vec![], None),
        ("GET /api/v1/projects", vec![], None),
        ("POST /api/v1/projects", vec![], Some(json!({"name": "x"}))),
        ("GET /api/v1/projects/{project_id}", vec![p], None),
        (
            "PATCH /api/v1/projects/{project_id}",
            vec![p],
            Some(json!({"name": "p"})),
        ),
        ("DELETE /api/v1/projects/{project_id}", vec![n], None),
        ("GET /api/v1/projects/{project_id}/members", vec![p], None),
        (
            "POST /api/v1/projects/{project_id}/members",
            vec![p],
            Some(json!({"user_id": v, "role": "member"})),
        ),
        (
            "PATCH /api/v1/projects/{project_id}/members/{user_id}",
            vec![p, v],
            Some(json!({"role": "member"})),
        ),
        (
            "DELETE /api/v1/projects/{project_id}/members/{user_id}",
            vec![p, n],
            None,
        ),
        ("GET /api/v1/projects/{project_id}/tasks", vec![p], None),
        (
            "POST /api/v1/projects/{project_id}/tasks",
            vec![p],
            Some(json!({"title": "x"})),
        ),
        (
            "GET /api/v1/projects/{project_id}/tasks/{task_id}",
            vec![p, t],
            None,
        ),
        (
            "PATCH /api/v1/projects/{project_id}/tasks/{task_id}",
            vec![p, t],
            Some(json!({"title": "t"})),
        ),
        (
            "DELETE /api/v1/projects/{project_id}/tasks/{task_id}",
            vec![p, n],
            None,
        ),
        ("GET /api/v1/sso/connections", vec![], None),
        (
            "POST /api/v1/sso/connections",
            vec![],
            Some(json!({"kind": "saml", "name": "x"})),
        ),
        ("GET /api/v1/sso/connections/{connection_id}", vec![n], None),
        (
            "PATCH /api/v1/sso/connections/{connection_id}",
            vec![n],
            Some(json!({"name": "y"})),
        ),
        (
            "DELETE /api/v1/sso/connections/{connection_id}",
            vec![n],
            None,
        ),
        ("GET /api/v1/sso/settings", vec![], None),
        (
            "PUT /api/v1/sso/settings",
            vec![],
            Some(json!({"enforce_sso": false})),
        ),
    ];
    rows.into_iter()
        .map(|(route, args, body)| {
            let (method, template) = route.split_once(' ').expect("METHOD /path");
            let mut path = template.to_owned();
            for arg in args {
                let (s, e) = (
                    path.find('{').expect("a parameter"),
                    path.find('}').expect("its end"),
                );
                path.replace_range(s..=e, arg);
            }
            (method.parse().expect("method"), path, body, route)
        })
        .collect()
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
