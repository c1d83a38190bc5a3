//! Holes 6 and 7: a tenant being moved keeps serving reads (no request writes to answer a read:
//! built-in roles are seeded at provisioning and by migration), `purge-source` refuses while an
//! operation of the tenant is unfinished, and slow steps renew the move's lease.

use platform_tests::{Client, TestApp, TestTenant};
use tenancy::ids::TenantId;

/// The built-in role names in a tenant's database, as the owner sees them.
async fn builtin_roles(app: &TestApp, t: &TestTenant) -> Vec<String> {
    let db = app.tenant_db(t).await;
    let id = TenantId::parse(&t.id).expect("id");
    db.query(
        "SELECT name FROM roles WHERE tenant_id = $1 AND builtin ORDER BY name",
        &[&id.as_uuid()],
    )
    .await
    .expect("roles")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Hole 7: a tenant fenced in its database (as during a move) still answers authenticated
/// reads from an instance that has never served it (nothing cached, nothing seeded on the
/// request path): 200, not 503. Shared and dedicated.
#[tokio::test]
async fn a_fenced_tenant_still_serves_authenticated_reads() {
    let app = TestApp::spawn().await;
    for (slug, placement, server) in [
        ("fenced-shared", "shared", None),
        ("fenced-dedicated", "dedicated", Some("second")),
    ] {
        let t = app.tenant(slug, placement, server).await;
        // Seeded by provisioning, before any request of the tenant.
        assert_eq!(
            builtin_roles(&app, &t).await,
            ["admin", "member", "owner", "viewer"],
            "{slug}: built-in roles after provisioning"
        );
        let user = app.user(&t, &format!("reader@{slug}.test"), "member").await;
        t.api.create_project("p").await.assert_status(201);

        app.tenant_db(&t)
            .await
            .execute(
                "INSERT INTO tenant_fences (tenant_id, reason) VALUES ($1, 'test')",
                &[&TenantId::parse(&t.id).expect("id").as_uuid()],
            )
            .await
            .expect("fence");

        // A fresh instance: its per-process caches are empty, as after a restart or a reset.
        let fresh = app.another_instance().await;
        let host = Some(t.host());
        for bearer in [&user.access, &t.key] {
            let api = Client::new(&fresh.router, host.clone(), Some(bearer.clone()));
            let projects = api.get("/api/v1/projects").await;
            assert_eq!(
                projects.status.as_u16(),
                200,
                "{slug}: authenticated read of a fenced tenant: {}",
                projects.text
            );
        }
        let me = Client::new(&fresh.router, host.clone(), Some(user.access.clone()))
            .me()
            .await;
        assert_eq!(
            me.status.as_u16(),
            200,
            "{slug}: GET /me of a fenced tenant: {}",
            me.text
        );
        // Writes stay refused while fenced.
        let w = Client::new(&fresh.router, host, Some(t.key.clone()))
            .create_project("blocked")
            .await;
        assert_eq!(
            w.status.as_u16(),
            503,
            "{slug}: a write to a fenced tenant: {}",
            w.text
        );
    }
    app.finish().await;
}
