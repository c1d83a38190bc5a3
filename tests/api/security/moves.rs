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

/// The tenant as the catalog has it now.
async fn catalog_tenant(app: &TestApp, t: &TestTenant) -> tenancy::catalog::Tenant {
    app.app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant")
}

/// The tenant's tasks in the shared database (the owner's view).
async fn shared_tasks(app: &TestApp, t: &TestTenant) -> i64 {
    app.shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM tasks WHERE tenant_id = $1",
            &[&TenantId::parse(&t.id).expect("id").as_uuid()],
        )
        .await
        .expect("count")
        .get(0)
}

/// A shared tenant with a project of `n` tasks; returns the project id.
async fn with_tasks(t: &TestTenant, n: usize) -> String {
    let p = t.api.create_project("p").await.str("id");
    for i in 0..n {
        t.api
            .create_task(&p, &format!("task {i}"))
            .await
            .assert_status(201);
    }
    p
}

/// Hole 6: promoted to a dedicated database (the shared copy stays, fenced, unpurged), then
/// demoted back; the demotion's runner crashes after copying into the shared database.
/// `purge-source` must refuse (the stale copy's place is the unfinished move's target), and the
/// demotion, resumed, completes with every task.
#[tokio::test]
async fn purge_source_refuses_while_a_move_is_unfinished() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    let t = app.tenant("purge-busy", "shared", None).await;
    let project = with_tasks(&t, 12).await;
    let promote = mover
        .start(
            &catalog_tenant(&app, &t).await,
            &tenancy::placement::MoveRequest::Dedicated {
                server: "second".into(),
            },
        )
        .await
        .expect("start promotion");
    let done = mover.run(promote.id).await.expect("promote");
    assert_eq!(done.state.as_str(), "succeeded", "{:?}", done.error);

    let stale = catalog_tenant(&app, &t).await;
    let demote = mover
        .start(&stale, &tenancy::placement::MoveRequest::Shared)
        .await
        .expect("start demotion");
    // prepare, publish, subscribe, copy, precheck: the shared database now holds the move's new
    // copy.
    let crashed = mover.run_steps(demote.id, 5).await.expect("partial run");
    assert_eq!(crashed.step.as_str(), "fence");

    let purged = mover.purge_source(&stale).await;
    assert!(
        matches!(purged, Err(tenancy::placement::MoveError::Busy(id)) if id == demote.id),
        "purge-source during an unfinished move must refuse, got {purged:?}"
    );
    assert_eq!(
        shared_tasks(&app, &t).await,
        12,
        "the move's copy is intact"
    );

    let finished = mover.another_runner().run(demote.id).await.expect("resume");
    assert_eq!(finished.state.as_str(), "succeeded", "{:?}", finished.error);
    assert_eq!(shared_tasks(&app, &t).await, 12);
    let tasks = t
        .api
        .get(&format!("/api/v1/projects/{project}/tasks?limit=100"))
        .await;
    tasks.assert_status(200);
    assert_eq!(tasks.body["items"].as_array().map(Vec::len), Some(12));

    // Once nothing is in flight, the source left by the demotion (the dedicated database) goes,
    // decided from the catalog: the stale snapshot still says "dedicated".
    let purged = mover.purge_source(&stale).await.expect("purge");
    assert_eq!(purged, Some(demote.id));
    assert_eq!(shared_tasks(&app, &t).await, 12, "the live copy stays");
    t.api
        .get(&format!("/api/v1/projects/{project}/tasks?limit=5"))
        .await
        .assert_status(200);
    app.finish().await;
}

/// Hole 6: a verify step slower than the lease keeps the lease: a second runner cannot claim the
/// operation meanwhile, and the first runner completes the move once verify can proceed.
#[tokio::test]
async fn a_slow_verify_keeps_the_lease() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = app.app.tenancy.mover.clone().with_lease_seconds(2);
    let t = app.tenant("slow-verify", "shared", None).await;
    with_tasks(&t, 5).await;
    let op = mover
        .start(
            &catalog_tenant(&app, &t).await,
            &tenancy::placement::MoveRequest::Dedicated {
                server: "second".into(),
            },
        )
        .await
        .expect("start");
    // A first runner crashes just before verify.
    let crashed = mover.run_steps(op.id, 7).await.expect("partial run");
    assert_eq!(crashed.step.as_str(), "verify");

    // Verify's read of the move's change log in the source waits behind this lock.
    let log = format!("move_{}.changes", op.id.as_uuid().simple());
    let locker = app.shared_owner().await;
    locker
        .batch_execute(&format!("BEGIN; LOCK TABLE {log} IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    let runner = mover.another_runner().with_lease_seconds(2);
    let id = op.id;
    let running = tokio::spawn(async move { runner.run(id).await });

    let control =
        platform_tests::connect(&platform_tests::clusters().primary.url(&app.control_db)).await;
    let lease_until = || async {
        control
            .query_one(
                "SELECT lease_until > now(), lease_until FROM operations WHERE id = $1",
                &[&id.as_uuid()],
            )
            .await
            .expect("lease")
    };
    // The resumed runner holds the lease and is blocked in verify.
    assert!(
        platform_tests::eventually(std::time::Duration::from_secs(10), || async {
            locker
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::text::regclass",
                    &[&log],
                )
                .await
                .expect("locks")
                .get::<_, i64>(0)
                > 0
        })
        .await
        .is_some(),
        "verify never reached the locked table"
    );
    let first: std::time::SystemTime = lease_until().await.get(1);
    // Wait past the lease it had when verify started...
    assert!(
        platform_tests::eventually(std::time::Duration::from_secs(10), || async {
            control
                .query_one(
                    "SELECT now() > $1::timestamptz + interval '1 second'",
                    &[&first],
                )
                .await
                .expect("now")
                .get::<_, bool>(0)
        })
        .await
        .is_some()
    );
    // ... it is still live, renewed by the runner, so nobody else can claim the operation.
    assert!(
        lease_until().await.get::<_, bool>(0),
        "the lease expired during a slow verify"
    );
    let stolen = app
        .app
        .tenancy
        .catalog
        .claim_operation(id, "intruder", 60)
        .await
        .expect("claim");
    assert!(
        !stolen,
        "a second runner claimed the operation during a slow verify"
    );

    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let finished = running.await.expect("join").expect("run");
    assert_eq!(finished.state.as_str(), "succeeded", "{:?}", finished.error);
    t.api.get("/api/v1/projects").await.assert_status(200);
    app.finish().await;
}

/// Hole 7, existing tenants: migration V6 seeds the built-in roles of every tenant that has rows
/// in a database (a tenant fenced there is left to its live copy), with their permissions.
#[tokio::test]
async fn the_migration_seeds_built_in_roles_of_existing_tenants() {
    let c = platform_tests::clusters();
    let name = format!("seed_{}", uuid::Uuid::now_v7().simple());
    let admin = platform_tests::connect(&c.primary.url("postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create");
    let mut db = platform_tests::connect(&c.primary.url(&name)).await;
    let before: Vec<refinery::Migration> = tenancy::migrate::tenant_migrations()
        .into_iter()
        .filter(|m| m.version() < 6)
        .collect();
    refinery::Runner::new(&before)
        .run_async(&mut db)
        .await
        .expect("migrate to V5");
    let (live, fenced) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for t in [live, fenced] {
        db.execute(
            "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'old')",
            &[&t, &uuid::Uuid::now_v7()],
        )
        .await
        .expect("an existing tenant's row");
    }
    db.execute(
        "INSERT INTO tenant_fences (tenant_id, reason) VALUES ($1, 'moved')",
        &[&fenced],
    )
    .await
    .expect("fence");
    refinery::Runner::new(&tenancy::migrate::tenant_migrations())
        .run_async(&mut db)
        .await
        .expect("migrate to head");
    let roles = |t: uuid::Uuid| {
        let db = &db;
        async move {
            db.query(
                "SELECT r.name, count(p.permission) FROM roles r
                 LEFT JOIN role_permissions p ON p.tenant_id = r.tenant_id AND p.role_id = r.id
                 WHERE r.tenant_id = $1 AND r.builtin GROUP BY r.name ORDER BY r.name",
                &[&t],
            )
            .await
            .expect("roles")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect::<Vec<_>>()
        }
    };
    let all = i64::try_from(identity::Permission::ALL.len()).expect("count");
    assert_eq!(
        roles(live).await,
        [
            ("admin".to_owned(), all),
            ("member".to_owned(), 5),
            ("owner".to_owned(), all),
            ("viewer".to_owned(), 3)
        ],
        "built-in roles of an existing tenant after V6"
    );
    assert!(
        roles(fenced).await.is_empty(),
        "a fenced copy was written to"
    );
    drop(db);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop");
}
