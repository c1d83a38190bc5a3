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
    let declared: BTreeSet<(String, String)> =
        declared().into_iter().map(|(m, p, _)| (m, p)).collect();
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

/// One call of the matrix: a valid request, and the status it gets when the role may make it.
struct Call {
    route: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    ok: u16,
}

fn call(route: &'static str, args: &[&str], body: Option<Value>, ok: u16) -> Call {
    let (method, template) = route.split_once(' ').expect("METHOD /path");
    let mut path = template.to_owned();
    for arg in args {
        let (s, e) = (
            path.find('{').expect("a parameter"),
            path.find('}').expect("its end"),
        );
        path.replace_range(s..=e, arg);
    }
    Call {
        route,
        method: method.parse().expect("method"),
        path,
        body,
        ok,
    }
}

/// The tenant's admin key creates something and returns its id (fresh objects for each caller,
/// so every allowed call is a valid request that succeeds).
async fn made(app: &TestApp, t: &TestTenant, path: &str, body: Value) -> String {
    let r = app.api(t, Method::POST, path, Some(body)).await;
    r.assert_status(201);
    r.str("id")
}

/// The session id (`sid`) inside an access token.
fn sid(access: &str) -> String {
    use base64::Engine as _;
    let payload = access.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("claims");
    claims["sid"].as_str().expect("sid").to_owned()
}

/// Every tenant route that needs a credential, as a valid request for `user` with what an
/// allowed call answers. The self-service MFA calls are last (they change the account).
async fn calls(app: &TestApp, t: &TestTenant, w: &World, user: &TestUser) -> Vec<Call> {
    let (p, task, target) = (w.project.as_str(), w.task.as_str(), w.target.as_str());
    let other_session = sid(&t
        .anon
        .login(&user.email, PASSWORD)
        .await
        .str("access_token"));
    let role = || json!({"name": unique("role"), "permissions": ["projects:read"]});
    let (role_a, role_b) = (
        made(app, t, "/api/v1/roles", role()).await,
        made(app, t, "/api/v1/roles", role()).await,
    );
    let key = made(
        app,
        t,
        "/api/v1/api-keys",
        json!({"name": "k", "role": "viewer"}),
    )
    .await;
    let suppression = made(
        app,
        t,
        "/api/v1/email/suppressions",
        json!({"recipient": format!("{}@acme.test", unique("s"))}),
    )
    .await;
    // A sending domain whose DKIM record is published (so verifying it succeeds).
    let domain = app
        .api(
            t,
            Method::PUT,
            "/api/v1/email/domain",
            Some(json!({"domain": "mail.acme.example"})),
        )
        .await;
    domain.assert_status(200);
    app.dns
        .publish(&domain.str("txt_name"), &domain.str("txt_value"));
    let doomed = made(app, t, "/api/v1/projects", json!({"name": "doomed"})).await;
    let with_member = made(app, t, "/api/v1/projects", json!({"name": "m"})).await;
    let with_member_too = made(app, t, "/api/v1/projects", json!({"name": "m2"})).await;
    let bare = made(app, t, "/api/v1/projects", json!({"name": "bare"})).await;
    for project in [&with_member, &with_member_too] {
        app.api(
            t,
            Method::POST,
            &format!("/api/v1/projects/{project}/members"),
            Some(json!({"user_id": target, "role": "member"})),
        )
        .await
        .assert_status(201);
    }
    let doomed_task = made(
        app,
        t,
        &format!("/api/v1/projects/{p}/tasks"),
        json!({"title": "doomed"}),
    )
    .await;
    let google =
        json!({"kind": "google", "name": "G", "client_id": "g.apps", "client_secret": "x"});
    let (conn_a, conn_b) = (
        made(app, t, "/api/v1/sso/connections", google.clone()).await,
        made(app, t, "/api/v1/sso/connections", google.clone()).await,
    );
    // A verified domain to check again, a claimed one to remove, a link to remove.
    let (checked, removed) = (
        format!("{}.example", unique("checked")),
        format!("{}.example", unique("removed")),
    );
    app.verified_domain(t, &checked).await;
    app.api(
        t,
        Method::POST,
        "/api/v1/sso/domains",
        Some(json!({"domain": removed})),
    )
    .await
    .assert_status(201);
    app.api(
        t,
        Method::POST,
        &format!("/api/v1/sso/connections/{conn_a}/links"),
        Some(json!({"subject": unique("linked"), "user_id": target})),
    )
    .await
    .assert_status(201);
    let claimed = json!({"domain": format!("{}.example", unique("claimed"))});
    let link = json!({"subject": unique("subject"), "user_id": target});
    vec![
        call("GET /api/v1/me", &[], None, 200),
        call("PATCH /api/v1/me", &[], Some(json!({"locale": "fr"})), 200),
        call("GET /api/v1/me/sessions", &[], None, 200),
        call(
            "DELETE /api/v1/me/sessions/{session_id}",
            &[&other_session],
            None,
            204,
        ),
        call("POST /api/v1/me/sessions/revoke-others", &[], None, 200),
        // Invited users are verified already: the handler's answer to a valid request is 409.
        call("POST /api/v1/me/email/verification", &[], None, 409),
        call("GET /api/v1/users", &[], None, 200),
        call(
            "PATCH /api/v1/users/{user_id}",
            &[target],
            Some(json!({"role": "viewer"})),
            200,
        ),
        call(
            "DELETE /api/v1/users/{user_id}/sessions",
            &[target],
            None,
            200,
        ),
        call(
            "POST /api/v1/invitations",
            &[],
            Some(json!({"email": format!("{}@x.test", unique("inv")), "role": "viewer"})),
            201,
        ),
        call("GET /api/v1/roles", &[], None, 200),
        call("POST /api/v1/roles", &[], Some(role()), 201),
        call(
            "PATCH /api/v1/roles/{role_id}",
            &[&role_a],
            Some(json!({"permissions": ["tasks:read"]})),
            200,
        ),
        call("DELETE /api/v1/roles/{role_id}", &[&role_b], None, 204),
        call("GET /api/v1/api-keys", &[], None, 200),
        call(
            "POST /api/v1/api-keys",
            &[],
            Some(json!({"name": "k", "role": "viewer"})),
            201,
        ),
        call("DELETE /api/v1/api-keys/{key_id}", &[&key], None, 204),
        call("GET /api/v1/audit-events", &[], None, 200),
        call("GET /api/v1/audit-events/export", &[], None, 200),
        call("GET /api/v1/projects", &[], None, 200),
        call(
            "POST /api/v1/projects",
            &[],
            Some(json!({"name": "x"})),
            201,
        ),
        call("GET /api/v1/projects/{project_id}", &[p], None, 200),
        call(
            "PATCH /api/v1/projects/{project_id}",
            &[p],
            Some(json!({"name": "p"})),
            200,
        ),
        call(
            "DELETE /api/v1/projects/{project_id}",
            &[&doomed],
            None,
            204,
        ),
        call("GET /api/v1/projects/{project_id}/members", &[p], None, 200),
        call(
            "POST /api/v1/projects/{project_id}/members",
            &[&bare],
            Some(json!({"user_id": target, "role": "member"})),
            201,
        ),
        call(
            "PATCH /api/v1/projects/{project_id}/members/{user_id}",
            &[&with_member, target],
            Some(json!({"role": "admin"})),
            200,
        ),
        call(
            "DELETE /api/v1/projects/{project_id}/members/{user_id}",
            &[&with_member_too, target],
            None,
            204,
        ),
        call("GET /api/v1/projects/{project_id}/tasks", &[p], None, 200),
        call(
            "POST /api/v1/projects/{project_id}/tasks",
            &[p],
            Some(json!({"title": "x"})),
            201,
        ),
        call(
            "GET /api/v1/projects/{project_id}/tasks/{task_id}",
            &[p, task],
            None,
            200,
        ),
        call(
            "PATCH /api/v1/projects/{project_id}/tasks/{task_id}",
            &[p, task],
            Some(json!({"title": "t"})),
            200,
        ),
        call(
            "DELETE /api/v1/projects/{project_id}/tasks/{task_id}",
            &[p, &doomed_task],
            None,
            204,
        ),
        call("GET /api/v1/sso/connections", &[], None, 200),
        call("POST /api/v1/sso/connections", &[], Some(google), 201),
        call(
            "GET /api/v1/sso/connections/{connection_id}",
            &[&conn_a],
            None,
            200,
        ),
        call(
            "PATCH /api/v1/sso/connections/{connection_id}",
            &[&conn_a],
            Some(json!({"name": "y"})),
            200,
        ),
        call(
            "DELETE /api/v1/sso/connections/{connection_id}",
            &[&conn_b],
            None,
            204,
        ),
        call(
            "GET /api/v1/email/templates/{kind}/preview",
            &["invitation"],
            None,
            200,
        ),
        call(
            "PUT /api/v1/email/branding",
            &[],
            Some(json!({"primary_color": "#123456"})),
            204,
        ),
        call(
            "PUT /api/v1/email/domain",
            &[],
            Some(json!({"domain": "mail.acme.example"})),
            200,
        ),
        call("GET /api/v1/email/domain", &[], None, 200),
        call(
            "PUT /api/v1/email/settings",
            &[],
            Some(json!({"open_tracking": false})),
            200,
        ),
        call("GET /api/v1/email/settings", &[], None, 200),
        call("POST /api/v1/email/domain/verify", &[], None, 200),
        call("GET /api/v1/email/events", &[], None, 200),
        call("GET /api/v1/email/suppressions", &[], None, 200),
        call(
            "POST /api/v1/email/suppressions",
            &[],
            Some(json!({"recipient": format!("{}@acme.test", unique("s"))})),
            201,
        ),
        call(
            "DELETE /api/v1/email/suppressions/{suppression_id}",
            &[&suppression],
            None,
            204,
        ),
        call("GET /api/v1/flags", &[], None, 200),
        call("GET /api/v1/jobs", &[], None, 200),
        call(
            "PUT /api/v1/flags/{name}/choice",
            &["opt-in-beta"],
            Some(json!({"choice": "in"})),
            204,
        ),
        call("GET /api/v1/sso/domains", &[], None, 200),
        call("POST /api/v1/sso/domains", &[], Some(claimed), 201),
        call(
            "POST /api/v1/sso/domains/{domain}/check",
            &[&checked],
            None,
            200,
        ),
        call(
            "DELETE /api/v1/sso/domains/{domain}",
            &[&removed],
            None,
            204,
        ),
        call(
            "POST /api/v1/sso/connections/{connection_id}/links",
            &[&conn_a],
            Some(link),
            201,
        ),
        call(
            "DELETE /api/v1/sso/connections/{connection_id}/links/{user_id}",
            &[&conn_a, target],
            None,
            204,
        ),
        // Billing: reached the handler (this instance has no Stripe prices or key, so the
        // Stripe actions end in their 4xx; authorization is what is tested here).
        call("GET /api/v1/billing", &[], None, 200),
        call(
            "POST /api/v1/billing/checkout",
            &[],
            Some(
                json!({"plan": "pro", "contact_email": "b@acme.test", "return_url": "https://acme.test"}),
            ),
            409,
        ),
        call(
            "POST /api/v1/billing/portal",
            &[],
            Some(json!({"return_url": "https://acme.test"})),
            409,
        ),
        call(
            "POST /api/v1/billing/plan",
            &[],
            Some(json!({"plan": "enterprise"})),
            409,
        ),
        call(
            "POST /api/v1/billing/plan/preview",
            &[],
            Some(json!({"plan": "enterprise"})),
            409,
        ),
        call("GET /api/v1/sso/settings", &[], None, 200),
        call(
            "PUT /api/v1/sso/settings",
            &[],
            Some(json!({"enforce_sso": false})),
            200,
        ),
        // Enrolment, then its confirmation and removal with real codes: see `run`.
        call("POST /api/v1/me/mfa/totp", &[], None, 200),
        call("POST /api/v1/me/mfa/totp/confirm", &[], None, 200),
        call("DELETE /api/v1/me/mfa/totp", &[], None, 204),
    ]
}

struct World {
    project: String,
    task: String,
    /// A user no call acts as: the object of user and membership changes.
    target: String,
}

/// The expected matrix: which built-in roles may call each route (O=owner A=admin M=member V=viewer).
fn expected(route: &str) -> &'static str {
    match route {
        r if r.starts_with("GET /api/v1/me")
            || r.contains("/api/v1/me/")
            || r == "GET /api/v1/me"
            || r == "PATCH /api/v1/me" =>
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
        "PUT /api/v1/flags/{name}/choice" => "OA",
        "GET /api/v1/jobs" => "OA",
        // Email: previews, branding and suppressions are `members:manage`, events `audit:read`.
        r if r.contains("/api/v1/email/") => "OA",
        r if r.contains("/api/v1/billing") => "OA",
        // Managing a project's members: project admins or `members:manage` (these users are
        // not admins of the project, so only owner and admin pass).
        r if r.contains("/members") && !r.starts_with("GET") => "OA",
        r if r.starts_with("GET ") => "OAMV",
        _ => "OAM",
    }
}

/// Runs `user`'s calls; returns the mismatches. An allowed call must get exactly its success
/// status (not merely "not 403"); a refused one exactly 403.
async fn run(
    app: &TestApp,
    t: &TestTenant,
    w: &World,
    letter: char,
    role: &str,
    user: &TestUser,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut secret: Option<String> = None;
    for c in calls(app, t, w, user).await {
        let allowed = expected(c.route).contains(letter);
        let body = match (c.route, &secret) {
            ("POST /api/v1/me/mfa/totp/confirm", Some(s)) => {
                Some(json!({"code": code_at(s, now()).expect("code")}))
            }
            ("DELETE /api/v1/me/mfa/totp", Some(s)) => {
                Some(json!({"code": code_at(s, now() + 30).expect("code")}))
            }
            _ => c.body,
        };
        let r = as_user(app, t, &user.access, c.method, &c.path, body).await;
        if c.route == "POST /api/v1/me/mfa/totp" {
            secret = r.body["secret"].as_str().map(str::to_owned);
        }
        let want = if allowed { c.ok } else { 403 };
        if r.status.as_u16() != want {
            failures.push(format!(
                "{role} {}: expected {want}, got {} {}",
                c.route, r.status, r.text
            ));
        }
    }
    failures
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[tokio::test]
async fn the_built_in_roles_get_exactly_the_expected_matrix_on_every_route() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let project = made(&app, &t, "/api/v1/projects", json!({"name": "p"})).await;
    let task = made(
        &app,
        &t,
        &format!("/api/v1/projects/{project}/tasks"),
        json!({"title": "t"}),
    )
    .await;
    let target = app.user(&t, "target@acme.test", "member").await;
    // A flag tenants may opt into (for `PUT /api/v1/flags/{name}/choice`).
    app.admin(
        Method::POST,
        "/admin/v1/flags",
        Some(json!({"name": "opt-in-beta", "enabled": true, "tenantOptIn": true})),
    )
    .await
    .assert_status(201);
    let w = World {
        project,
        task,
        target: target.id.clone(),
    };
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
            app.user(&t, &format!("{role}@acme.test"), role).await,
        ));
    }
    // Every declared non-public route is exercised.
    let exercised: BTreeSet<&str> = calls(&app, &t, &w, &users[0].2)
        .await
        .iter()
        .map(|c| c.route)
        .collect();
    for (m, p, a) in declared() {
        if a != Access::Public {
            let key = format!("{m} {p}");
            assert!(exercised.contains(key.as_str()), "the matrix misses {key}");
        }
    }
    let mut failures = Vec::new();
    for (letter, role, user) in &users {
        failures.extend(run(&app, &t, &w, *letter, role, user).await);
    }
    assert!(
        failures.is_empty(),
        "matrix mismatches:\n{}",
        failures.join("\n")
    );
    app.finish().await;
}
