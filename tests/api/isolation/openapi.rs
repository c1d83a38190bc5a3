//! The cross-tenant matrix generated from the OpenAPI document: every tenant route, called by
//! another tenant's owner with the victim's ids (shared and dedicated victims), with a valid
//! body for writes (so a refusal cannot come from validation alone). A route with a victim id
//! must answer 404 and leak nothing; a list or a create acts on the caller's own tenant only
//! (its answer is checked for every victim's secrets); afterwards every victim still has all
//! its objects unchanged. A new route with a parameter or a body this table does not know fails
//! the test until it is added here.

use std::collections::BTreeMap;

use axum::http::Method;
use platform_tests::{Req, TestApp, TestTenant, TestUser};
use serde_json::{Value, json};

/// A tenant with one object of every kind a tenant route can name, each carrying its secret.
struct Victim {
    tenant: TestTenant,
    owner: TestUser,
    secret: String,
    /// Path parameter name → this tenant's id for it.
    ids: BTreeMap<&'static str, String>,
}

async fn victim(app: &TestApp, t: TestTenant) -> Victim {
    let secret = format!("secret-of-{}", t.slug);
    let owner = app
        .user(&t, &format!("owner@{}.test", t.slug), "owner")
        .await;
    let member = app
        .user(&t, &format!("{secret}@{}.test", t.slug), "member")
        .await;
    let project = t.api.create_project(&secret).await.str("id");
    let task = app
        .api(
            &t,
            Method::POST,
            &format!("/api/v1/projects/{project}/tasks"),
            Some(json!({"title": secret})),
        )
        .await
        .str("id");
    app.api(
        &t,
        Method::POST,
        &format!("/api/v1/projects/{project}/members"),
        Some(json!({"user_id": member.id, "role": "member"})),
    )
    .await
    .assert_status(201);
    let role = t
        .api
        .create_role(&format!("r-{}", t.slug), &["projects:read"])
        .await
        .str("id");
    let key = t
        .api
        .create_api_key(json!({"name": secret, "role": "viewer"}))
        .await
        .str("id");
    let connection = t
        .api
        .create_sso_connection(
            json!({"kind": "google", "name": secret, "client_id": "g.apps", "client_secret": "x"}),
        )
        .await
        .str("id");
    let domain = format!("{}.example", t.slug);
    app.verified_domain(&t, &domain).await;
    let suppression = t
        .api
        .post(
            "/api/v1/email/suppressions",
            json!({"recipient": format!("{secret}@{}.test", t.slug)}),
        )
        .await
        .str("id");
    // A sending domain named after the secret: another tenant's `GET /api/v1/email/domain`
    // must show only its own.
    t.api
        .put(
            "/api/v1/email/domain",
            json!({"domain": format!("{secret}.example")}),
        )
        .await
        .assert_status(200);
    let sessions = owner.api.get("/api/v1/me/sessions").await;
    let session = sessions.body["items"][0]["id"]
        .as_str()
        .expect("a session")
        .to_owned();
    let ids = BTreeMap::from([
        ("project_id", project),
        ("task_id", task),
        ("user_id", member.id.clone()),
        ("role_id", role),
        ("key_id", key),
        ("connection_id", connection),
        ("session_id", session),
        ("domain", domain),
        ("suppression_id", suppression),
    ]);
    Victim {
        tenant: t,
        owner,
        secret,
        ids,
    }
}

/// A valid body for every tenant write route (by `METHOD /template`), naming `victim`'s
/// objects where a body names one.
fn body(route: &str, victim: &Victim) -> Option<Value> {
    Some(match route {
        "POST /api/v1/projects" => json!({"name": "intruder"}),
        "PATCH /api/v1/projects/{project_id}" => json!({"name": "pwned"}),
        "POST /api/v1/projects/{project_id}/tasks" => json!({"title": "pwned"}),
        "PATCH /api/v1/projects/{project_id}/tasks/{task_id}" => json!({"title": "pwned"}),
        "POST /api/v1/projects/{project_id}/members" => {
            json!({"user_id": victim.ids["user_id"], "role": "admin"})
        }
        "PATCH /api/v1/projects/{project_id}/members/{user_id}" => json!({"role": "admin"}),
        "PATCH /api/v1/users/{user_id}" => json!({"role": "admin"}),
        "PATCH /api/v1/roles/{role_id}" => json!({"permissions": ["audit:read"]}),
        "PATCH /api/v1/sso/connections/{connection_id}" => json!({"name": "pwned"}),
        "POST /api/v1/roles" => json!({"name": "intruder", "permissions": ["projects:read"]}),
        "POST /api/v1/api-keys" => json!({"name": "intruder", "role": "viewer"}),
        "POST /api/v1/invitations" => json!({"email": "intruder@x.test", "role": "viewer"}),
        "POST /api/v1/sso/connections" => {
            json!({"kind": "google", "name": "intruder", "client_id": "i", "client_secret": "x"})
        }
        "PUT /api/v1/sso/settings" => json!({"enforce_sso": false}),
        // The victim's verified domain: another tenant's claim is refused (409).
        "POST /api/v1/sso/domains" => json!({"domain": victim.ids["domain"]}),
        "POST /api/v1/sso/domains/{domain}/check" => json!({}),
        // Billing acts on the caller's own tenant (no ids): reached, and nothing leaks.
        "POST /api/v1/billing/checkout" => {
            json!({"plan": "pro", "contact_email": "i@x.test", "return_url": "https://x.test"})
        }
        "POST /api/v1/billing/portal" => json!({"return_url": "https://x.test"}),
        "POST /api/v1/billing/plan" | "POST /api/v1/billing/plan/preview" => {
            json!({"plan": "enterprise"})
        }
        "POST /api/v1/sso/connections/{connection_id}/links" => {
            json!({"subject": "intruder", "user_id": victim.ids["user_id"]})
        }
        "POST /api/v1/email/suppressions" => json!({"recipient": "intruder@x.test"}),
        "PUT /api/v1/email/branding" => json!({"primary_color": "#000000"}),
        // The caller's own sending domain and own locale (no ids): reached, and nothing leaks.
        "PUT /api/v1/email/domain" => json!({"domain": "intruder.example"}),
        "PUT /api/v1/email/settings" => json!({"open_tracking": false}),
        "PATCH /api/v1/me" => json!({"locale": "fr"}),
        _ => return None,
    })
}

/// Routes that change the caller's own account or need no credential: not cross-tenant.
fn skipped(route: &str) -> bool {
    route.contains("/api/v1/auth/")
        || route.starts_with("POST /api/v1/me/mfa")
        || route.starts_with("DELETE /api/v1/me/mfa")
        || route == "POST /api/v1/me/sessions/revoke-others"
        || route == "POST /api/v1/me/email/verification"
        // Flag names are the platform's, not a tenant's objects; the choice applies to the
        // caller's own tenant only (`flags::kill_switches_…`: another tenant is unaffected).
        || route == "PUT /api/v1/flags/{name}/choice"
        // Message kinds are the platform's templates, rendered in the caller's own branding.
        || route == "GET /api/v1/email/templates/{kind}/preview"
        // Checks the caller's own sending domain in DNS (names nothing; its answer depends on
        // the caller's records, not on another tenant's).
        || route == "POST /api/v1/email/domain/verify"
}

#[tokio::test]
async fn every_tenant_route_from_the_openapi_document_refuses_another_tenants_ids() {
    let app = TestApp::spawn().await;
    let victims = [
        victim(&app, app.tenant("alpha", "shared", None).await).await,
        victim(&app, app.tenant("bravo", "dedicated", Some("second")).await).await,
        victim(&app, app.tenant("charlie", "shared", None).await).await,
    ];
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await.body;
    let mut routes = Vec::new();
    for (template, ops) in doc["paths"].as_object().expect("paths") {
        if !template.starts_with("/api/v1/") {
            continue;
        }
        for m in ops.as_object().expect("ops").keys() {
            let route = format!("{} {template}", m.to_uppercase());
            if !skipped(&route) {
                routes.push((m.to_uppercase(), template.clone(), route));
            }
        }
    }
    assert!(routes.len() >= 35, "only {} tenant routes", routes.len());
    let mut failures = Vec::new();
    for attacker in &victims {
        for victim in victims.iter().filter(|v| v.tenant.id != attacker.tenant.id) {
            for (m, template, route) in &routes {
                let mut path = template.clone();
                let mut named = false;
                while let (Some(s), Some(e)) = (path.find('{'), path.find('}')) {
                    let name = path[s + 1..e].to_owned();
                    let id = victim
                        .ids
                        .get(name.as_str())
                        .unwrap_or_else(|| panic!("{route}: no victim id for `{name}`"));
                    path.replace_range(s..=e, id);
                    named = true;
                }
                let write = m != "GET" && m != "DELETE";
                let body = body(route, victim);
                assert!(
                    !write || body.is_some(),
                    "{route}: no valid body in the table"
                );
                let mut req = Req::new(m.parse::<Method>().expect("method"), &path)
                    .host(attacker.tenant.host())
                    .bearer(&attacker.owner.access);
                if let Some(b) = &body {
                    req = req.json(b);
                }
                let r = app.send(req).await;
                let ctx = format!(
                    "{} -> {}: {route}",
                    attacker.tenant.slug, victim.tenant.slug
                );
                for v in &victims {
                    if v.tenant.id != attacker.tenant.id && r.text.contains(&v.secret) {
                        failures.push(format!(
                            "{ctx}: leaked {}'s data: {}",
                            v.tenant.slug, r.text
                        ));
                    }
                }
                if named && r.status.as_u16() != 404 {
                    failures.push(format!("{ctx}: expected 404, got {} {}", r.status, r.text));
                }
                let own_ok = r.status.is_success() || r.status.as_u16() == 409;
                if !named && !own_ok {
                    failures.push(format!(
                        "{ctx}: own-tenant call failed: {} {}",
                        r.status, r.text
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "cross-tenant failures:\n{}",
        failures.join("\n")
    );
    for v in &victims {
        every_object_is_still_there(v).await;
    }
    app.finish().await;
}

/// Every seeded object of the victim still exists, unchanged, as its own owner sees it.
async fn every_object_is_still_there(v: &Victim) {
    let domains = v.owner.api.sso_domains().await;
    domains.assert_status(200);
    assert_eq!(domains.body["items"][0]["domain"], v.ids["domain"].as_str());
    assert_eq!(
        domains.body["items"][0]["verified"], true,
        "{}",
        domains.text
    );
    let api = &v.owner.api;
    let ctx = &v.tenant.slug;
    let suppressions = api.get("/api/v1/email/suppressions").await;
    assert!(
        suppressions.text.contains(&v.ids["suppression_id"]),
        "{ctx}: suppression: {}",
        suppressions.text
    );
    let p = api.project(&v.ids["project_id"]).await;
    assert_eq!(p.str("name"), v.secret, "{ctx}: project");
    let t = api.task(&v.ids["project_id"], &v.ids["task_id"]).await;
    assert_eq!(t.str("title"), v.secret, "{ctx}: task");
    let members = api
        .get(&format!("/api/v1/projects/{}/members", v.ids["project_id"]))
        .await;
    assert!(
        members.text.contains(&v.ids["user_id"]),
        "{ctx}: member: {}",
        members.text
    );
    assert!(
        members.text.contains("\"member\""),
        "{ctx}: member role: {}",
        members.text
    );
    let users = api.get("/api/v1/users").await;
    let member = find(&users.body, &v.ids["user_id"]);
    assert_eq!(member["role"], "member", "{ctx}: the member's role changed");
    let roles = api.get("/api/v1/roles").await;
    let role = find(&roles.body, &v.ids["role_id"]);
    assert_eq!(
        role["permissions"],
        json!(["projects:read"]),
        "{ctx}: the role changed"
    );
    let keys = api.get("/api/v1/api-keys").await;
    assert!(
        keys.text.contains(&v.secret),
        "{ctx}: api key: {}",
        keys.text
    );
    assert!(
        keys.body["items"][0]["revoked_at"].is_null(),
        "{ctx}: key revoked: {}",
        keys.text
    );
    let conn = api
        .get(&format!(
            "/api/v1/sso/connections/{}",
            v.ids["connection_id"]
        ))
        .await;
    assert_eq!(conn.str("name"), v.secret, "{ctx}: connection");
    let sessions = api.get("/api/v1/me/sessions").await;
    assert!(
        sessions.text.contains(&v.ids["session_id"]),
        "{ctx}: session: {}",
        sessions.text
    );
}

/// The item with this id in a list response.
fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["id"] == id))
        .unwrap_or_else(|| panic!("{id} is gone: {list}"))
}
