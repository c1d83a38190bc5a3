//! Isolation: the cross-tenant suite over every tenant route, and proofs in the database itself
//! that row-level security scopes queries and refuses cross-tenant writes.

mod openapi;

use axum::http::Method;
use platform_tests::{Req, TestApp, TestTenant};
use serde_json::{Value, json};

struct Seeded {
    tenant: TestTenant,
    project: String,
    task: String,
    secret: String,
}

async fn seed(app: &TestApp, t: TestTenant) -> Seeded {
    let secret = format!("secret-of-{}", t.slug);
    let p = app
        .api(
            &t,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": secret, "description": secret})),
        )
        .await;
    p.assert_status(201);
    let project = p.str("id");
    let task = app
        .api(
            &t,
            Method::POST,
            &format!("/api/v1/projects/{project}/tasks"),
            Some(json!({"title": secret})),
        )
        .await;
    task.assert_status(201);
    Seeded {
        task: task.str("id"),
        project,
        secret,
        tenant: t,
    }
}

/// Every tenant route, instantiated against `victim`'s ids, with a harmless body for writes.
fn routes(victim: &Seeded) -> Vec<(Method, String, Option<Value>)> {
    let (p, t) = (&victim.project, &victim.task);
    vec![
        (Method::GET, "/api/v1/projects".into(), None),
        (
            Method::POST,
            "/api/v1/projects".into(),
            Some(json!({"name": "intruder"})),
        ),
        (Method::GET, format!("/api/v1/projects/{p}"), None),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/api/v1/projects/{p}"), None),
        (Method::GET, format!("/api/v1/projects/{p}/tasks"), None),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/tasks"),
            Some(json!({"title": "pwned"})),
        ),
        (Method::GET, format!("/api/v1/projects/{p}/tasks/{t}"), None),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}/tasks/{t}"),
            Some(json!({"title": "pwned"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/projects/{p}/tasks/{t}"),
            None,
        ),
    ]
}

fn request(m: &Method, path: &str, body: Option<&Value>) -> Req {
    let r = Req::new(m.clone(), path);
    match body {
        Some(b) => r.json(b),
        None => r,
    }
}

/// Every tenant still reads its own data unchanged, and none of the others'.
async fn nothing_of_any_victim_changed(all: &[&Seeded]) {
    for t in all {
        let api = &t.tenant.api;
        let p = api.project(&t.project).await;
        p.assert_status(200);
        assert_eq!(p.str("name"), t.secret);
        let task = api.task(&t.project, &t.task).await;
        task.assert_status(200);
        assert_eq!(task.str("title"), t.secret);
        let list = api.get("/api/v1/projects?limit=100").await;
        for other in all.iter().filter(|o| o.tenant.id != t.tenant.id) {
            assert!(
                !list.text.contains(&other.secret),
                "{} sees {}",
                t.tenant.slug,
                other.tenant.slug
            );
        }
    }
}

#[tokio::test]
async fn no_tenant_reaches_another_tenants_data_on_any_route() {
    let app = TestApp::spawn().await;
    let a = seed(&app, app.tenant("alpha", "shared", None).await).await;
    let b = seed(&app, app.tenant("bravo", "dedicated", Some("second")).await).await;
    let c = seed(&app, app.tenant("charlie", "shared", None).await).await;
    let all = [&a, &b, &c];

    for attacker in all {
        for victim in all {
            if attacker.tenant.id == victim.tenant.id {
                continue;
            }
            for (m, path, body) in routes(victim) {
                let ctx = format!(
                    "{} -> {} {m} {path}",
                    attacker.tenant.slug, victim.tenant.slug
                );
                // Attacker's credential on the victim's host: refused outright.
                let r = app
                    .send(
                        request(&m, &path, body.as_ref())
                            .host(victim.tenant.host())
                            .bearer(&attacker.tenant.key),
                    )
                    .await;
                assert_eq!(r.status.as_u16(), 403, "{ctx} (victim host): {}", r.text);
                assert!(!r.text.contains(&victim.secret), "{ctx}: leaked {}", r.text);
                // Attacker's credential on its own host, and with no tenant host, against the
                // victim's ids: not found (lists and creates act on the attacker's own data).
                for host in [Some(attacker.tenant.host()), None] {
                    let mut req = request(&m, &path, body.as_ref()).bearer(&attacker.tenant.key);
                    if let Some(h) = &host {
                        req = req.host(h.clone());
                    }
                    let r = app.send(req).await;
                    let collection = path == "/api/v1/projects";
                    if collection {
                        assert!(r.status.is_success(), "{ctx}: {}", r.text);
                    } else {
                        assert_eq!(r.status.as_u16(), 404, "{ctx} (host {host:?}): {}", r.text);
                    }
                    assert!(!r.text.contains(&victim.secret), "{ctx}: leaked {}", r.text);
                }
                // The victim's host with no credential: unauthenticated.
                let r = app
                    .send(request(&m, &path, body.as_ref()).host(victim.tenant.host()))
                    .await;
                assert_eq!(r.status.as_u16(), 401, "{ctx} (no credential): {}", r.text);
            }
        }
    }

    nothing_of_any_victim_changed(&all).await;
    app.finish().await;
}

#[tokio::test]
async fn an_unknown_host_with_a_valid_key_is_refused_like_a_foreign_one() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let _b = app.tenant("bravo", "shared", None).await;
    let foreign = app
        .send(
            Req::new(Method::GET, "/api/v1/projects")
                .host("bravo.localhost")
                .bearer(&a.key),
        )
        .await;
    let unknown = app
        .send(
            Req::new(Method::GET, "/api/v1/projects")
                .host("nobody-here.localhost")
                .bearer(&a.key),
        )
        .await;
    foreign.assert_problem(403);
    unknown.assert_problem(403);
    assert_eq!(
        foreign.body, unknown.body,
        "the answer must not reveal whether the other tenant exists"
    );
    app.finish().await;
}

#[tokio::test]
async fn row_level_security_scopes_queries_without_a_where_clause() {
    let app = TestApp::spawn().await;
    let a = seed(&app, app.tenant("alpha", "shared", None).await).await;
    let b = seed(&app, app.tenant("bravo", "shared", None).await).await;
    let db = app.app_role(&app.shared_db).await;

    db.batch_execute(&format!(
        "BEGIN; SET LOCAL app.tenant_id = '{}'",
        a.tenant.id
    ))
    .await
    .expect("scope");
    let names: Vec<String> = db
        .query("SELECT name FROM projects", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, vec![a.secret.clone()]);
    let tasks: i64 = db
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(tasks, 1);
    // Writing a row for another tenant is refused by the database.
    let b_id = uuid::Uuid::parse_str(&b.tenant.id).expect("uuid");
    let err = db
        .execute(
            "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'x')",
            &[&b_id, &uuid::Uuid::now_v7()],
        )
        .await
        .expect_err("cross-tenant insert must fail");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    db.batch_execute("ROLLBACK").await.expect("rollback");

    // Moving a row to another tenant is refused too.
    db.batch_execute(&format!(
        "BEGIN; SET LOCAL app.tenant_id = '{}'",
        a.tenant.id
    ))
    .await
    .expect("scope");
    let err = db
        .execute("UPDATE projects SET tenant_id = $1", &[&b_id])
        .await
        .expect_err("re-tenanting must fail");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{err}"
    );
    db.batch_execute("ROLLBACK").await.expect("rollback");

    // With no tenant set, nothing is visible; after a transaction the setting is gone.
    let n: i64 = db
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    app.finish().await;
}

#[tokio::test]
async fn the_data_plane_role_owns_nothing_and_cannot_bypass_rls() {
    let app = TestApp::spawn().await;
    let db = app.app_role(&app.shared_db).await;
    let row = db
        .query_one("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .expect("role");
    for i in 0..4 {
        assert!(
            !row.get::<_, bool>(i),
            "platform_app must have no elevated attribute (column {i})"
        );
    }
    let owned: i64 = db
        .query_one("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = current_user", &[])
        .await
        .expect("owned")
        .get(0);
    assert_eq!(owned, 0);
    let err = db
        .batch_execute("ALTER TABLE projects DISABLE ROW LEVEL SECURITY")
        .await
        .expect_err("not the owner");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    let err = db
        .batch_execute("CREATE TABLE sneaky (id int)")
        .await
        .expect_err("no CREATE on public");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
    );
    app.finish().await;
}

#[tokio::test]
async fn every_tenant_table_is_keyed_by_tenant_and_forced_under_rls() {
    let app = TestApp::spawn().await;
    let owner = app.shared_owner().await;
    let tables = owner
        .query(
            "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                    (SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                      WHERE i.indrelid = c.oid AND i.indisprimary),
                    (SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'),
                    (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'refinery_schema_history'",
            &[],
        )
        .await
        .expect("catalog");
    assert!(tables.len() >= 3, "tenant tables found: {}", tables.len());
    for t in &tables {
        let name: String = t.get(0);
        assert!(t.get::<_, bool>(1), "{name}: RLS not enabled");
        assert!(t.get::<_, bool>(2), "{name}: RLS not forced");
        assert_eq!(
            t.get::<_, Option<String>>(3).as_deref(),
            Some("tenant_id"),
            "{name}: primary key must start with tenant_id"
        );
        assert_eq!(
            t.get::<_, Option<bool>>(4),
            Some(true),
            "{name}: tenant_id must be NOT NULL"
        );
        assert!(t.get::<_, i64>(5) >= 1, "{name}: no policy");
    }
    app.finish().await;
}

/// The auth routes with `victim`'s ids (users, sessions, keys, project members).
fn auth_routes(
    victim: &Seeded,
    user: &str,
    session: &str,
    key: &str,
) -> Vec<(Method, String, Option<Value>)> {
    let p = &victim.project;
    vec![
        (Method::GET, format!("/api/v1/projects/{p}/members"), None),
        (
            Method::POST,
            format!("/api/v1/projects/{p}/members"),
            Some(json!({"user_id": user, "role": "member"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/projects/{p}/members/{user}"),
            Some(json!({"role": "member"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/projects/{p}/members/{user}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{user}"),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{user}/sessions"),
            None,
        ),
        (Method::DELETE, format!("/api/v1/api-keys/{key}"), None),
        (
            Method::DELETE,
            format!("/api/v1/me/sessions/{session}"),
            None,
        ),
    ]
}

#[tokio::test]
async fn no_users_token_reaches_another_tenants_data_on_any_route() {
    use crate::auth::{as_user, user_with_role};
    let app = TestApp::spawn().await;
    let mut all = Vec::new();
    for (slug, placement, server) in [
        ("alpha", "shared", None),
        ("bravo", "dedicated", Some("second")),
    ] {
        let s = seed(&app, app.tenant(slug, placement, server).await).await;
        let u = user_with_role(&app, &s.tenant, &format!("owner@{slug}.test"), "owner").await;
        let claims = u.access.split('.').nth(1).map(|c| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .unwrap_or_default()
        });
        let claims: Value = serde_json::from_slice(&claims.unwrap_or_default()).unwrap_or_default();
        let keys = app
            .api(&s.tenant, Method::GET, "/api/v1/api-keys", None)
            .await;
        let key = keys.body["items"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let session = claims["sid"].as_str().unwrap_or_default().to_owned();
        all.push((s, u, session, key));
    }
    for (attacker, au, _, _) in &all {
        for (victim, vu, vsession, vkey) in &all {
            if attacker.tenant.id == victim.tenant.id {
                continue;
            }
            let mut routes = routes(victim);
            routes.extend(auth_routes(victim, &vu.id, vsession, vkey));
            for (m, path, body) in routes {
                let ctx = format!(
                    "{} -> {} {m} {path}",
                    attacker.tenant.slug, victim.tenant.slug
                );
                let r = as_user(
                    &app,
                    &victim.tenant,
                    &au.access,
                    m.clone(),
                    &path,
                    body.clone(),
                )
                .await;
                assert_eq!(r.status.as_u16(), 403, "{ctx} (victim host): {}", r.text);
                let r = as_user(
                    &app,
                    &attacker.tenant,
                    &au.access,
                    m.clone(),
                    &path,
                    body.clone(),
                )
                .await;
                if path == "/api/v1/projects" {
                    assert!(r.status.is_success(), "{ctx}: {}", r.text);
                } else {
                    assert_eq!(r.status.as_u16(), 404, "{ctx} (own host): {}", r.text);
                }
                assert!(!r.text.contains(&victim.secret), "{ctx}: leaked {}", r.text);
            }
        }
    }
    // The victims' sessions and keys are untouched.
    for (s, u, _, _) in &all {
        as_user(&app, &s.tenant, &u.access, Method::GET, "/api/v1/me", None)
            .await
            .assert_status(200);
        app.api(&s.tenant, Method::GET, "/api/v1/projects", None)
            .await
            .assert_status(200);
    }
    app.finish().await;
}
