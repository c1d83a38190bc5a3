//! The audit log: every mutating route leaves an event with its request id (the route list comes
//! from the OpenAPI document, so a new route without an event fails here), events are written in
//! the change's transaction (a rollback leaves none), the application role cannot change or
//! remove them, the listing filters and pages, denied attempts are recorded, and an export of
//! 100,000 events streams in bounded chunks.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use http_body_util::BodyExt as _;
use identity::mfa::code_at;
use platform_tests::{ADMIN_TOKEN, Req, TestApp, TestResponse, TestTenant};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::auth::{PASSWORD, as_user, outbox, token_in, user_with_role};

/// Sends requests with a fresh `x-request-id` each and remembers which route it was.
struct Calls {
    sent: Vec<(String, String)>,
}

impl Calls {
    async fn send(&mut self, app: &TestApp, route: &str, req: Req) -> TestResponse {
        let id = format!("audit-{}", self.sent.len());
        let r = app.send(req.header("x-request-id", &id)).await;
        assert!(r.status.is_success(), "{route}: {} {}", r.status, r.text);
        self.sent.push((route.to_owned(), id));
        r
    }

    /// A request expected to be refused (4xx): the refusal itself must leave an event.
    async fn refused(&mut self, app: &TestApp, route: &str, req: Req) -> TestResponse {
        let id = format!("audit-{}", self.sent.len());
        let r = app.send(req.header("x-request-id", &id)).await;
        assert!(
            r.status.is_client_error(),
            "{route}: {} {}",
            r.status,
            r.text
        );
        self.sent.push((route.to_owned(), id));
        r
    }

    async fn admin(
        &mut self,
        app: &TestApp,
        m: Method,
        path: &str,
        route: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut r = Req::new(m, path).bearer(ADMIN_TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(app, route, r).await
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call per line in the scenario reads best with every part spelled out"
    )]
    async fn tenant(
        &mut self,
        app: &TestApp,
        t: &TestTenant,
        token: Option<&str>,
        m: Method,
        path: &str,
        route: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut r = Req::new(m, path).host(t.host());
        if let Some(token) = token {
            r = r.bearer(token);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        self.send(app, route, r).await
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every mutating route (POST, PUT, PATCH, DELETE) of the OpenAPI document.
async fn mutating_routes(app: &TestApp) -> BTreeSet<String> {
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await;
    let mut out = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for m in ["post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                out.insert(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_mutating_route_records_an_audit_event_with_its_request() {
    let app = TestApp::spawn().await;
    let mut c = Calls { sent: Vec::new() };
    use Method as M;

    // Operator: a tenant and its settings.
    let t = c
        .admin(
            &app,
            M::POST,
            "/admin/v1/tenants",
            "POST /admin/v1/tenants",
            Some(json!({"slug": "acme", "name": "Acme", "plan": "pro"})),
        )
        .await;
    let tid = t.str("id");
    let key = c
        .admin(
            &app,
            M::POST,
            &format!("/admin/v1/tenants/{tid}/api-keys"),
            "POST /admin/v1/tenants/{tenant}/api-keys",
            Some(json!({"name": "ops"})),
        )
        .await;
    let acme = TestTenant {
        id: tid.clone(),
        slug: "acme".into(),
        key: key.str("key"),
    };
    let spare = app
        .admin(
            M::POST,
            &format!("/admin/v1/tenants/{tid}/api-keys"),
            Some(json!({"name": "spare"})),
        )
        .await;
    c.admin(
        &app,
        M::DELETE,
        &format!("/admin/v1/tenants/{tid}/api-keys/{}", spare.str("id")),
        "DELETE /admin/v1/tenants/{tenant}/api-keys/{key_id}",
        None,
    )
    .await;
    c.admin(
        &app,
        M::PATCH,
        &format!("/admin/v1/tenants/{tid}"),
        "PATCH /admin/v1/tenants/{tenant}",
        Some(json!({"signup": "open"})),
    )
    .await;
    c.admin(
        &app,
        M::POST,
        &format!("/admin/v1/tenants/{tid}/domains"),
        "POST /admin/v1/tenants/{tenant}/domains",
        Some(json!({"domain": "audit.example.com"})),
    )
    .await;
    c.admin(
        &app,
        M::DELETE,
        &format!("/admin/v1/tenants/{tid}/domains/audit.example.com"),
        "DELETE /admin/v1/tenants/{tenant}/domains/{domain}",
        None,
    )
    .await;
    c.admin(
        &app,
        M::POST,
        "/admin/v1/db-servers",
        "POST /admin/v1/db-servers",
        Some(json!({"name": "third", "url": platform_tests::clusters().second.url("postgres")})),
    )
    .await;
    c.admin(
        &app,
        M::POST,
        "/admin/v1/jwt-keys/rotate",
        "POST /admin/v1/jwt-keys/rotate",
        None,
    )
    .await;
    c.admin(
        &app,
        M::PUT,
        "/admin/v1/plans/audited",
        "PUT /admin/v1/plans/{plan}",
        Some(json!({"requests_per_second": 50, "burst": 100, "audit_retention_days": 7})),
    )
    .await;
    let inv = c
        .admin(
            &app,
            M::POST,
            &format!("/admin/v1/tenants/{tid}/invitations"),
            "POST /admin/v1/tenants/{tenant}/invitations",
            Some(json!({"email": "owner@acme.test", "role": "owner"})),
        )
        .await;

    // Sign-up, invitations, login, tokens.
    let owner = c
        .tenant(
            &app,
            &acme,
            None,
            M::POST,
            "/api/v1/auth/invitations/accept",
            "POST /api/v1/auth/invitations/accept",
            Some(json!({"token": inv.str("token"), "password": PASSWORD, "name": "Owner"})),
        )
        .await;
    let owner_token = owner.str("access_token");
    let signed = c
        .tenant(
            &app,
            &acme,
            None,
            M::POST,
            "/api/v1/auth/signup",
            "POST /api/v1/auth/signup",
            Some(json!({"email": "self@acme.test", "password": PASSWORD, "name": "Self"})),
        )
        .await;
    let self_token = signed.str("access_token");
    let me = as_user(&app, &acme, &self_token, M::GET, "/api/v1/me", None).await;
    let self_id = me.str("id");
    c.tenant(
        &app,
        &acme,
        Some(&self_token),
        M::POST,
        "/api/v1/me/email/verification",
        "POST /api/v1/me/email/verification",
        None,
    )
    .await;
    let verify = token_in(
        outbox(&app, "self@acme.test").await.last().expect("mail"),
        "verification token",
    );
    c.tenant(
        &app,
        &acme,
        None,
        M::POST,
        "/api/v1/auth/email/verify",
        "POST /api/v1/auth/email/verify",
        Some(json!({"token": verify})),
    )
    .await;
    let login = c
        .tenant(
            &app,
            &acme,
            None,
            M::POST,
            "/api/v1/auth/login",
            "POST /api/v1/auth/login",
            Some(json!({"email": "self@acme.test", "password": PASSWORD})),
        )
        .await;
    let refreshed = c
        .tenant(
            &app,
            &acme,
            None,
            M::POST,
            "/api/v1/auth/token/refresh",
            "POST /api/v1/auth/token/refresh",
            Some(json!({"refresh_token": login.str("refresh_token")})),
        )
        .await;
    c.tenant(
        &app,
        &acme,
        None,
        M::POST,
        "/api/v1/auth/logout",
        "POST /api/v1/auth/logout",
        Some(json!({"refresh_token": refreshed.str("refresh_token")})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        None,
        M::POST,
        "/api/v1/auth/password/forgot",
        "POST /api/v1/auth/password/forgot",
        Some(json!({"email": "self@acme.test"})),
    )
    .await;
    let reset = token_in(
        outbox(&app, "self@acme.test").await.last().expect("mail"),
        "reset token",
    );
    c.tenant(
        &app,
        &acme,
        None,
        M::POST,
        "/api/v1/auth/password/reset",
        "POST /api/v1/auth/password/reset",
        Some(json!({"token": reset, "password": PASSWORD})),
    )
    .await;

    // MFA: enrol, confirm, log in with a recovery code, disable.
    let fresh = app
        .send(
            Req::new(M::POST, "/api/v1/auth/login")
                .host(acme.host())
                .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
        )
        .await;
    let self_token = fresh.str("access_token");
    let enrol = c
        .tenant(
            &app,
            &acme,
            Some(&self_token),
            M::POST,
            "/api/v1/me/mfa/totp",
            "POST /api/v1/me/mfa/totp",
            None,
        )
        .await;
    let secret = enrol.str("secret");
    let confirmed = c
        .tenant(
            &app,
            &acme,
            Some(&self_token),
            M::POST,
            "/api/v1/me/mfa/totp/confirm",
            "POST /api/v1/me/mfa/totp/confirm",
            Some(json!({"code": code_at(&secret, now()).expect("code")})),
        )
        .await;
    let recovery: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let step1 = app
        .send(
            Req::new(M::POST, "/api/v1/auth/login")
                .host(acme.host())
                .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
        )
        .await;
    let mfa_login = c
        .tenant(
            &app,
            &acme,
            None,
            M::POST,
            "/api/v1/auth/mfa/verify",
            "POST /api/v1/auth/mfa/verify",
            Some(json!({"mfa_token": step1.str("mfa_token"), "code": recovery[0]})),
        )
        .await;
    let self_token = mfa_login.str("access_token");
    c.tenant(
        &app,
        &acme,
        Some(&self_token),
        M::DELETE,
        "/api/v1/me/mfa/totp",
        "DELETE /api/v1/me/mfa/totp",
        Some(json!({"code": recovery[1]})),
    )
    .await;

    // Sessions.
    let other = app
        .send(
            Req::new(M::POST, "/api/v1/auth/login")
                .host(acme.host())
                .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
        )
        .await;
    let sessions = as_user(
        &app,
        &acme,
        &self_token,
        M::GET,
        "/api/v1/me/sessions",
        None,
    )
    .await;
    let mine: Vec<String> = sessions.body["items"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["current"] != json!(true))
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    c.tenant(
        &app,
        &acme,
        Some(&self_token),
        M::DELETE,
        &format!("/api/v1/me/sessions/{}", mine[0]),
        "DELETE /api/v1/me/sessions/{session_id}",
        None,
    )
    .await;
    drop(other);
    app.send(
        Req::new(M::POST, "/api/v1/auth/login")
            .host(acme.host())
            .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&self_token),
        M::POST,
        "/api/v1/me/sessions/revoke-others",
        "POST /api/v1/me/sessions/revoke-others",
        None,
    )
    .await;

    // Members, roles, keys (as the owner).
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/users/{self_id}"),
        "PATCH /api/v1/users/{user_id}",
        Some(json!({"role": "admin"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/users/{self_id}/sessions"),
        "DELETE /api/v1/users/{user_id}/sessions",
        None,
    )
    .await;
    app.send(
        Req::new(M::POST, "/api/v1/auth/login")
            .host(acme.host())
            .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
    )
    .await;
    c.admin(
        &app,
        M::DELETE,
        &format!("/admin/v1/tenants/{tid}/users/{self_id}/sessions"),
        "DELETE /admin/v1/tenants/{tenant}/users/{user_id}/sessions",
        None,
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::POST,
        "/api/v1/invitations",
        "POST /api/v1/invitations",
        Some(json!({"email": "new@acme.test", "role": "member"})),
    )
    .await;
    let role = c
        .tenant(
            &app,
            &acme,
            Some(&owner_token),
            M::POST,
            "/api/v1/roles",
            "POST /api/v1/roles",
            Some(json!({"name": "auditor", "permissions": ["audit:read"]})),
        )
        .await;
    let role_id = role.str("id");
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/roles/{role_id}"),
        "PATCH /api/v1/roles/{role_id}",
        Some(json!({"permissions": ["audit:read", "users:read"]})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/roles/{role_id}"),
        "DELETE /api/v1/roles/{role_id}",
        None,
    )
    .await;
    let k = c
        .tenant(
            &app,
            &acme,
            Some(&owner_token),
            M::POST,
            "/api/v1/api-keys",
            "POST /api/v1/api-keys",
            Some(json!({"name": "ci"})),
        )
        .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/api-keys/{}", k.str("id")),
        "DELETE /api/v1/api-keys/{key_id}",
        None,
    )
    .await;

    // The reference domain.
    let p = c
        .tenant(
            &app,
            &acme,
            Some(&owner_token),
            M::POST,
            "/api/v1/projects",
            "POST /api/v1/projects",
            Some(json!({"name": "Launch"})),
        )
        .await
        .str("id");
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/projects/{p}"),
        "PATCH /api/v1/projects/{project_id}",
        Some(json!({"name": "Launch 2"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::POST,
        &format!("/api/v1/projects/{p}/members"),
        "POST /api/v1/projects/{project_id}/members",
        Some(json!({"user_id": self_id, "role": "member"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/projects/{p}/members/{self_id}"),
        "PATCH /api/v1/projects/{project_id}/members/{user_id}",
        Some(json!({"role": "admin"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/projects/{p}/members/{self_id}"),
        "DELETE /api/v1/projects/{project_id}/members/{user_id}",
        None,
    )
    .await;
    let task = c
        .tenant(
            &app,
            &acme,
            Some(&owner_token),
            M::POST,
            &format!("/api/v1/projects/{p}/tasks"),
            "POST /api/v1/projects/{project_id}/tasks",
            Some(json!({"title": "Ship"})),
        )
        .await
        .str("id");
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/projects/{p}/tasks/{task}"),
        "PATCH /api/v1/projects/{project_id}/tasks/{task_id}",
        Some(json!({"status": "done"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/projects/{p}/tasks/{task}"),
        "DELETE /api/v1/projects/{project_id}/tasks/{task_id}",
        None,
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/projects/{p}"),
        "DELETE /api/v1/projects/{project_id}",
        None,
    )
    .await;

    // SSO: a connection and the tenant's policy (configuration changes are audited), and a
    // refused assertion at the ACS (recorded as a security event, hence an audit event).
    let sso = c
        .tenant(
            &app,
            &acme,
            Some(&owner_token),
            M::POST,
            "/api/v1/sso/connections",
            "POST /api/v1/sso/connections",
            Some(json!({"kind": "google", "name": "Google", "client_id": "g.apps", "client_secret": "s3cret-value"})),
        )
        .await
        .str("id");
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PATCH,
        &format!("/api/v1/sso/connections/{sso}"),
        "PATCH /api/v1/sso/connections/{connection_id}",
        Some(json!({"enabled": true, "default_role": "viewer"})),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::PUT,
        "/api/v1/sso/settings",
        "PUT /api/v1/sso/settings",
        Some(json!({"enforce_sso": false})),
    )
    .await;
    c.refused(
        &app,
        "POST /sso/saml/acs",
        Req::new(M::POST, "/sso/saml/acs").host(acme.host()).raw(
            "SAMLResponse=bm90IHhtbA%3D%3D",
            Some("application/x-www-form-urlencoded"),
        ),
    )
    .await;
    c.tenant(
        &app,
        &acme,
        Some(&owner_token),
        M::DELETE,
        &format!("/api/v1/sso/connections/{sso}"),
        "DELETE /api/v1/sso/connections/{connection_id}",
        None,
    )
    .await;

    // Placement (the operation is left pending: nothing resumes it here) and deletion, last.
    app.app.stop_resuming();
    let other_t = app.tenant("leaving", "shared", None).await;
    let op = c
        .admin(
            &app,
            M::POST,
            &format!("/admin/v1/tenants/{}/placement", other_t.id),
            "POST /admin/v1/tenants/{tenant}/placement",
            Some(json!({"placement": "dedicated", "db_server": "local"})),
        )
        .await;
    c.admin(
        &app,
        M::POST,
        &format!("/admin/v1/operations/{}/cancel", op.str("id")),
        "POST /admin/v1/operations/{operation_id}/cancel",
        None,
    )
    .await;
    c.admin(
        &app,
        M::DELETE,
        &format!("/admin/v1/tenants/{}", other_t.id),
        "DELETE /admin/v1/tenants/{tenant}",
        None,
    )
    .await;

    // Every mutating route was exercised ...
    let exercised: BTreeSet<String> = c.sent.iter().map(|(r, _)| r.clone()).collect();
    let all = mutating_routes(&app).await;
    let missing: Vec<&String> = all.difference(&exercised).collect();
    assert!(
        missing.is_empty(),
        "mutating routes this test does not exercise: {missing:?}"
    );
    // ... and each request left at least one event carrying its request id.
    let tenant_db = app.shared_owner().await;
    let control = platform_tests::connect(&app.platform_env()[0].1).await;
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (route, id) in &c.sent {
        let n: i64 = tenant_db
            .query_one(
                "SELECT count(*) FROM audit_events WHERE request_id = $1",
                &[id],
            )
            .await
            .expect("count")
            .get(0);
        let m: i64 = control
            .query_one(
                "SELECT count(*) FROM admin_audit_events WHERE request_id = $1",
                &[id],
            )
            .await
            .expect("count")
            .get(0);
        counts.insert(route.clone(), n + m);
    }
    let silent: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(r, _)| r)
        .collect();
    assert!(
        silent.is_empty(),
        "routes that changed something without an audit event: {silent:?}"
    );

    // Who and what are right: the project creation is the owner's, via the tenant API.
    let row = tenant_db
        .query_one(
            "SELECT actor_type, actor_id, target_id, route, outcome FROM audit_events
             WHERE action = 'project.created' AND tenant_id = $1::text::uuid",
            &[&tid],
        )
        .await
        .expect("project event");
    let owner_id = as_user(&app, &acme, &owner_token, M::GET, "/api/v1/me", None)
        .await
        .str("id");
    assert_eq!(row.get::<_, String>(0), "user");
    assert_eq!(row.get::<_, Option<String>>(1), Some(owner_id));
    assert_eq!(row.get::<_, Option<String>>(2), Some(p));
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("POST /api/v1/projects")
    );
    assert_eq!(row.get::<_, String>(4), "success");
    // An operator's change to tenant data is the operator's.
    let op_key: String = tenant_db
        .query_one(
            "SELECT actor_type FROM audit_events WHERE request_id = 'audit-1' LIMIT 1",
            &[],
        )
        .await
        .expect("operator key event")
        .get(0);
    assert_eq!(op_key, "operator");
    // No secret reaches a summary: password and key hashes appear by column name at most.
    let leaks: i64 = tenant_db
        .query_one(
            "SELECT count(*) FROM audit_events WHERE summary::text LIKE '%$argon2%' OR summary ? 'key_hash' OR summary ? 'password_hash'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(leaks, 0);
    app.finish().await;
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event_and_denials_and_failed_logins_are_recorded() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let before = count(&app, &t, "project.created").await;
    // A change that fails after its first write rolls back, event included: the task insert
    // succeeds inside the transaction, then its project does not exist.
    let db = app.app.tenancy.dataplane.clone();
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug("acme")
        .await
        .expect("catalog")
        .expect("tenant");
    {
        let mut tx = db.connect(&tenant).await.expect("connect").begin();
        tx.execute(
            "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'doomed')",
            &[&tenant.id.as_uuid(), &uuid::Uuid::now_v7()],
        )
        .await
        .expect("insert");
        // The trigger did write the event inside the transaction ...
        let inside: i64 = tx
            .query_opt(
                "SELECT count(*) FROM audit_events WHERE action = 'project.created'",
                &[],
            )
            .await
            .expect("count")
            .expect("row")
            .get(0);
        assert_eq!(inside, before + 1);
        // ... and the transaction is dropped without commit.
    }
    let after = crate::audit::eventually_count(&app, &t, "project.created", before).await;
    assert_eq!(after, before, "a rolled-back change left an audit event");

    // A denied request (a viewer writing) and a failed login are recorded as attempts.
    let viewer = user_with_role(&app, &t, "v@acme.test", "viewer").await;
    as_user(
        &app,
        &t,
        &viewer.access,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "x"})),
    )
    .await
    .assert_problem(403);
    let denied = app
        .shared_owner()
        .await
        .query_one(
            "SELECT actor_id, outcome, summary->>'needs', route FROM audit_events WHERE action = 'authz.denied'",
            &[],
        )
        .await
        .expect("denied event");
    assert_eq!(denied.get::<_, Option<String>>(0), Some(viewer.id.clone()));
    assert_eq!(denied.get::<_, String>(1), "denied");
    assert_eq!(
        denied.get::<_, Option<String>>(2).as_deref(),
        Some("projects:write")
    );
    assert_eq!(
        denied.get::<_, Option<String>>(3).as_deref(),
        Some("POST /api/v1/projects")
    );
    crate::auth::login(&app, &t, "v@acme.test", "wrong password")
        .await
        .assert_problem(401);
    assert_eq!(count(&app, &t, "auth.login").await, 1);

    // The tenant's API lists them, filtered and paged, newest first; others need audit:read.
    let page = app
        .api(
            &t,
            Method::GET,
            "/api/v1/audit-events?action=auth.*&limit=5",
            None,
        )
        .await;
    page.assert_status(200);
    assert_eq!(page.body["items"][0]["action"], "auth.login");
    assert_eq!(page.body["items"][0]["outcome"], "failure");
    let all = app
        .api(&t, Method::GET, "/api/v1/audit-events?limit=2", None)
        .await;
    let next = all.str("next_cursor");
    let older = app
        .api(
            &t,
            Method::GET,
            &format!("/api/v1/audit-events?limit=2&cursor={next}"),
            None,
        )
        .await;
    assert!(older.body["items"][0]["seq"].as_i64() < all.body["items"][1]["seq"].as_i64());
    for bad in ["since=yesterday", "cursor=nope", "limit=0", "bogus=1"] {
        app.api(
            &t,
            Method::GET,
            &format!("/api/v1/audit-events?{bad}"),
            None,
        )
        .await
        .assert_problem(400);
    }
    as_user(
        &app,
        &t,
        &viewer.access,
        Method::GET,
        "/api/v1/audit-events",
        None,
    )
    .await
    .assert_problem(403);
    // Operators read their trail.
    let trail = app
        .admin(
            Method::GET,
            &format!("/admin/v1/audit-events?tenant={}&action=tenant.*", t.id),
            None,
        )
        .await;
    trail.assert_status(200);
    assert_eq!(trail.body["items"][0]["action"], "tenant.created");
    assert_eq!(trail.body["items"][0]["actor_type"], "operator");
    app.finish().await;
}

pub(crate) async fn count(app: &TestApp, t: &TestTenant, action: &str) -> i64 {
    app.shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM audit_events WHERE action = $1 AND tenant_id = $2::text::uuid",
            &[&action, &t.id],
        )
        .await
        .expect("count")
        .get(0)
}

/// The count once the dropped transaction's rollback has certainly run (it is asynchronous).
pub(crate) async fn eventually_count(
    app: &TestApp,
    t: &TestTenant,
    action: &str,
    expected: i64,
) -> i64 {
    platform_tests::eventually(std::time::Duration::from_secs(5), || async {
        count(app, t, action).await == expected
    })
    .await;
    count(app, t, action).await
}

#[tokio::test]
async fn the_app_role_cannot_change_or_remove_audit_events_and_the_owner_is_refused_too() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "p"})),
    )
    .await
    .assert_status(201);
    let role = app.app_role(&app.shared_db).await;
    for sql in [
        "UPDATE audit_events SET action = 'nothing'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_chain SET hash = 'x'",
        "INSERT INTO audit_events SELECT * FROM audit_events",
    ] {
        let e = role
            .batch_execute(&format!(
                "BEGIN; SET LOCAL app.tenant_id = '{}'; {sql}; COMMIT",
                t.id
            ))
            .await
            .expect_err(sql);
        role.batch_execute("ROLLBACK").await.ok();
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e:?}");
        // Even with the erase setting, which is for the owner only.
    }
    let e = role
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{}'; SET LOCAL platform.audit_erase = 'on'; DELETE FROM audit_events; COMMIT",
            t.id
        ))
        .await
        .expect_err("app role erase");
    role.batch_execute("ROLLBACK").await.ok();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    // The owner (a superuser here) is refused by the trigger unless it takes the erase path.
    let owner = app.shared_owner().await;
    for sql in [
        "UPDATE audit_events SET action = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ] {
        let e = owner.batch_execute(sql).await.expect_err(sql);
        assert!(
            e.to_string().contains("immutable") || format!("{e:?}").contains("immutable"),
            "{e:?}"
        );
    }
    // The app role cannot forge another tenant's event either.
    let other = app.tenant("other", "shared", None).await;
    let e = role
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{}'; SELECT platform_audit_append('{}', 'x', NULL, NULL, 'success', '{{}}'); COMMIT",
            t.id, other.id
        ))
        .await
        .expect_err("forged");
    role.batch_execute("ROLLBACK").await.ok();
    assert_eq!(e.code().map(|c| c.code()), Some("42501"));
    app.finish().await;
}

#[tokio::test]
async fn an_export_of_100000_events_streams_in_bounded_chunks() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bulk", "shared", None).await;
    let owner = app.shared_owner().await;
    owner
        .batch_execute(&format!(
            "BEGIN; SET LOCAL app.tenant_id = '{id}';
             SELECT platform_audit_append('{id}', 'bulk.event', 'thing', g::text, 'success', '{{\"n\": 1}}')
             FROM generate_series(1, 100000) g;
             COMMIT",
            id = t.id
        ))
        .await
        .expect("bulk events");
    for (format, lines_expected_extra) in [("jsonl", 0usize), ("csv", 1usize)] {
        let req = axum::http::Request::builder()
            .uri(format!(
                "/api/v1/audit-events/export?format={format}&action=bulk.event"
            ))
            .header("host", t.host())
            .header("authorization", format!("Bearer {}", t.key))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = app.router().clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("content-length").is_none(),
            "a streamed body has no length"
        );
        let mut body = resp.into_body();
        let (mut frames, mut lines, mut max_lines) = (0usize, 0usize, 0usize);
        let mut tail = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            let n = data.iter().filter(|b| **b == b'\n').count();
            frames += 1;
            lines += n;
            max_lines = max_lines.max(n);
            tail = data.to_vec();
        }
        assert_eq!(lines, 100_000 + lines_expected_extra, "{format}");
        // Read and sent a chunk at a time: never more than one chunk (plus a CSV header) at once.
        assert!(frames >= 100, "{format}: {frames} frames");
        assert!(max_lines <= 1001, "{format}: a frame of {max_lines} lines");
        let last = String::from_utf8_lossy(&tail);
        assert!(last.contains("bulk.event"), "{last}");
    }
    app.finish().await;
}

#[tokio::test]
async fn expiry_removes_old_segments_and_what_remains_still_verifies() {
    let app = TestApp::spawn().await;
    let t = app.tenant("aging", "shared", None).await;
    app.admin(
        Method::PATCH,
        &format!("/admin/v1/tenants/{}", t.id),
        Some(json!({"plan": "pro"})),
    )
    .await
    .assert_status(200);
    for i in 0..3 {
        app.api(
            &t,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": format!("p{i}")})),
        )
        .await
        .assert_status(201);
    }
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug("aging")
        .await
        .expect("catalog")
        .expect("tenant");
    // The pro plan keeps a year; the cut-off is the start of a UTC day.
    assert_eq!(tenant.audit_retention_days, Some(365));
    let now = time::OffsetDateTime::now_utc();
    let cut = audit::retention::cutoff(now, 365);
    assert_eq!((cut.hour(), cut.minute(), cut.second()), (0, 0, 0));
    let before = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
        .await
        .expect("verify");
    assert!(before.ok() && before.events_checked >= 4);
    // Everything so far is "old": expire it (as the owner, on the controlled path).
    let owner = app.shared_owner().await;
    let (removed, checkpoint) =
        audit::retention::expire(&owner, tenant.id, now + time::Duration::seconds(1))
            .await
            .expect("expire");
    assert_eq!(removed, before.events_checked);
    assert_eq!(checkpoint, before.head_seq);
    // The chain goes on from the checkpoint and verifies.
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "new"})),
    )
    .await
    .assert_status(201);
    let after = audit::verify_tenant(&app.app.tenancy.dataplane, &tenant)
        .await
        .expect("verify");
    assert!(after.ok(), "{after:?}");
    assert_eq!(after.checkpoint_seq, checkpoint);
    assert!(after.events_checked >= 1 && after.head_seq > checkpoint);
    app.finish().await;
}
