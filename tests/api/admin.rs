//! The operator API: provisioning, listing, patching, deleting tenants; idempotency; domains;
//! API keys; database servers.

use axum::http::Method;
use platform_tests::{Req, TestApp, clusters, connect};
use serde_json::json;

#[tokio::test]
async fn operator_token_is_required() {
    let app = TestApp::spawn().await;
    app.send(Req::new(Method::GET, "/admin/v1/tenants"))
        .await
        .assert_problem(401);
    let r = app
        .send(Req::new(Method::GET, "/admin/v1/tenants").bearer("wrong-token"))
        .await;
    r.assert_problem(401);
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    app.send(Req::new(Method::GET, "/admin/v1/tenants").header("authorization", "Basic abc"))
        .await
        .assert_problem(401);
    app.finish().await;
}

#[tokio::test]
async fn provisions_shared_and_dedicated_tenants() {
    // Provisioning itself: the database is created and migrated, not cloned from the template.
    let app = TestApp::build().real_provisioning().spawn().await;
    let shared = app
        .operator()
        .create_tenant(
            json!({"slug": "acme", "name": "Acme", "plan": "pro", "placement": "shared"}),
        )
        .await;
    shared.assert_status(201);
    assert_eq!(shared.str("status"), "active");
    assert_eq!(shared.str("placement"), "shared");
    assert_eq!(shared.str("plan"), "pro");

    let dedicated = app.operator().create_tenant(json!({"slug": "bigco", "name": "Big Co", "plan": "enterprise", "placement": "dedicated", "db_server": "second"}))
        .await;
    dedicated.assert_status(201);
    assert_eq!(dedicated.str("status"), "active");
    assert_eq!(dedicated.str("placement"), "dedicated");
    // Its database exists on the second server and is migrated before the tenant is returned.
    let id = uuid::Uuid::parse_str(&dedicated.str("id")).expect("uuid");
    let db = format!("tenant_{}", id.simple());
    let second = connect(&clusters().second.url(&db)).await;
    let version: i32 = second
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await
        .expect("migrated")
        .get(0);
    assert_eq!(i64::from(version), tenancy::migrate::tenant_head_version());

    // By id and by slug.
    let by_slug = app.operator().tenant("bigco").await;
    by_slug.assert_status(200);
    assert_eq!(by_slug.str("id"), dedicated.str("id"));
    app.admin(
        Method::GET,
        &format!("/admin/v1/tenants/{}", shared.str("id")),
        None,
    )
    .await
    .assert_status(200);
    app.operator().tenant("nobody").await.assert_problem(404);

    // Unknown server: refused, nothing created.
    let r = app
        .operator()
        .create_tenant(
            json!({"slug": "ghost", "name": "G", "placement": "dedicated", "db_server": "nope"}),
        )
        .await;
    r.assert_problem(422);
    app.operator().tenant("ghost").await.assert_problem(404);
    app.finish().await;
}

#[tokio::test]
async fn slugs_are_validated_and_unique() {
    let app = TestApp::spawn().await;
    let create = |slug: &str| json!({"slug": slug, "name": "X"});
    app.operator()
        .create_tenant(create("acme"))
        .await
        .assert_status(201);
    let dup = app.operator().create_tenant(create("acme")).await;
    dup.assert_problem(409);
    for bad in [
        "ab",
        "Acme",
        "-acme",
        "acme-",
        "ac_me",
        "a.b",
        &"x".repeat(64),
    ] {
        app.operator()
            .create_tenant(create(bad))
            .await
            .assert_problem(422);
    }
    let reserved = app.operator().create_tenant(create("admin")).await;
    reserved.assert_problem(422);
    assert!(
        reserved.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("reserved")),
        "{}",
        reserved.text
    );
    app.finish().await;
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_a_different_body() {
    let app = TestApp::spawn().await;
    let body = json!({"slug": "acme", "name": "Acme"});
    let send = |b: serde_json::Value| {
        Req::new(Method::POST, "/admin/v1/tenants")
            .bearer(platform_tests::ADMIN_TOKEN)
            .header("idempotency-key", "k-1")
            .json(&b)
    };
    let first = app.send(send(body.clone())).await;
    first.assert_status(201);
    let again = app.send(send(body.clone())).await;
    again.assert_status(201);
    assert_eq!(again.body, first.body, "a retry returns the same response");
    app.send(send(json!({"slug": "other", "name": "Other"})))
        .await
        .assert_problem(422);
    // Only one tenant was created.
    let list = app.operator().tenants("").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    app.finish().await;
}

#[tokio::test]
async fn lists_tenants_with_cursor_pagination_and_patches_and_deletes() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.operator()
            .create_tenant(json!({"slug": format!("tenant-{i}"), "name": "T"}))
            .await
            .assert_status(201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/tenants?limit=2&cursor={c}"),
            None => "/admin/v1/tenants?limit=2".into(),
        };
        let page = app.admin(Method::GET, &path, None).await;
        page.assert_status(200);
        let items = page.body["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|t| t["slug"].as_str().unwrap_or_default().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("tenant-{i}")).collect::<Vec<_>>()
    );

    let p = app
        .operator()
        .patch_tenant(
            "tenant-0",
            json!({"name": "Renamed", "plan": "team", "status": "suspended"}),
        )
        .await;
    p.assert_status(200);
    assert_eq!(
        (p.str("name"), p.str("plan"), p.str("status")),
        ("Renamed".into(), "team".into(), "suspended".into())
    );
    app.operator()
        .patch_tenant("tenant-0", json!({"status": "deleted"}))
        .await
        .assert_problem(422);

    app.operator()
        .delete_tenant("tenant-1")
        .await
        .assert_status(204);
    app.operator().tenant("tenant-1").await.assert_problem(404);
    app.operator()
        .delete_tenant("tenant-1")
        .await
        .assert_problem(404);
    let list = app.operator().tenants("limit=100").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(4));
    app.finish().await;
}

#[tokio::test]
async fn api_keys_are_shown_once_stored_hashed_and_revoked_at_once() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    t.api.projects().await.assert_status(200);
    let list = app
        .admin(Method::GET, "/admin/v1/tenants/acme/api-keys", None)
        .await;
    list.assert_status(200);
    assert!(!list.text.contains(&t.key), "the secret is never listed");
    let key_id = list.body["items"][0]["id"].as_str().expect("id").to_owned();
    // Stored only as a hash.
    let owner = app.shared_owner().await;
    let stored: Vec<u8> = owner
        .query_one("SELECT key_hash FROM api_keys", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(stored, tenancy::crypto::hash_token(&t.key));
    let dump: String = owner
        .query_one("SELECT string_agg(t::text, ',') FROM api_keys t", &[])
        .await
        .expect("row")
        .get(0);
    assert!(!dump.contains(t.key.split('_').next_back().unwrap_or_default()));

    app.operator()
        .revoke_api_key("acme", &key_id)
        .await
        .assert_status(204);
    t.api.projects().await.assert_problem(401);
    app.operator()
        .revoke_api_key("acme", &key_id)
        .await
        .assert_problem(404);
    app.finish().await;
}

#[tokio::test]
async fn db_servers_register_without_exposing_credentials() {
    let app = TestApp::spawn().await;
    let c = clusters();
    let url = c.second.url("postgres");
    let password = url
        .split(':')
        .nth(2)
        .and_then(|s| s.split('@').next())
        .expect("password in url")
        .to_owned();
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/db-servers",
            Some(json!({"name": "third", "url": url, "connection_budget": 10})),
        )
        .await;
    r.assert_status(201);
    assert!(!r.text.contains(&password));
    let list = app.admin(Method::GET, "/admin/v1/db-servers", None).await;
    list.assert_status(200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(3));
    assert!(!list.text.contains(&password), "credentials never listed");
    // The catalog holds the URL sealed, never in clear.
    let cp = connect(&c.primary.url(&app.control_db)).await;
    let sealed: Vec<u8> = cp
        .query_one(
            "SELECT admin_url_sealed FROM db_servers WHERE name = 'third'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(!String::from_utf8_lossy(&sealed).contains(&password));

    app.admin(
        Method::POST,
        "/admin/v1/db-servers",
        Some(json!({"name": "third", "url": url})),
    )
    .await
    .assert_problem(409);
    app.admin(
        Method::POST,
        "/admin/v1/db-servers",
        Some(json!({"name": "bad", "url": "mysql://x"})),
    )
    .await
    .assert_problem(422);
    let port = tenancy::embedded::free_port().expect("port");
    let unreachable = format!("postgres://postgres:secret-pw@127.0.0.1:{port}/postgres");
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/db-servers",
            Some(json!({"name": "down", "url": unreachable})),
        )
        .await;
    r.assert_problem(422);
    assert!(!r.text.contains("secret-pw"));
    // A tenant on the newly registered server works end to end.
    let t = app.tenant("thirdco", "dedicated", Some("third")).await;
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(json!({"name": "P"})),
    )
    .await
    .assert_status(201);
    app.finish().await;
}

#[tokio::test]
async fn custom_domains_route_to_their_tenant() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let other = app.tenant("other", "shared", None).await;
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/tenants/acme/domains",
            Some(json!({"domain": "App.Acme.Example."})),
        )
        .await;
    r.assert_status(201);
    assert_eq!(r.str("domain"), "app.acme.example");
    app.admin(
        Method::POST,
        "/admin/v1/tenants/other/domains",
        Some(json!({"domain": "app.acme.example"})),
    )
    .await
    .assert_problem(409);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/acme/domains",
        Some(json!({"domain": "x.localhost"})),
    )
    .await
    .assert_problem(422);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/acme/domains",
        Some(json!({"domain": "not a domain"})),
    )
    .await
    .assert_problem(422);
    let list = app
        .admin(Method::GET, "/admin/v1/tenants/acme/domains", None)
        .await;
    assert_eq!(
        list.body["items"][0]["domain"].as_str(),
        Some("app.acme.example")
    );

    // The custom domain (any case, with a port) routes to acme; other's key is refused there.
    let created = app
        .send(
            Req::new(Method::POST, "/api/v1/projects")
                .host("APP.acme.example:8443")
                .bearer(&t.key)
                .json(&json!({"name": "via domain"})),
        )
        .await;
    created.assert_status(201);
    app.send(
        Req::new(Method::GET, "/api/v1/projects")
            .host("app.acme.example")
            .bearer(&other.key),
    )
    .await
    .assert_problem(403);

    app.admin(
        Method::DELETE,
        "/admin/v1/tenants/acme/domains/app.acme.example",
        None,
    )
    .await
    .assert_status(204);
    app.send(Req::new(Method::GET, "/api/v1/projects").host("app.acme.example"))
        .await
        .assert_problem(404);
    app.admin(
        Method::DELETE,
        "/admin/v1/tenants/acme/domains/app.acme.example",
        None,
    )
    .await
    .assert_problem(404);
    app.finish().await;
}
