//! Placement moves: promotion under write load with no lost write, move and demote, a crash at
//! every step, cancel before cutover, and nothing left behind (slots, publications,
//! subscriptions).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::Method;
use platform_tests::{TestApp, TestTenant, clusters, connect, eventually};
use serde_json::{Value, json};
use tenancy::ids::TenantId;
use tenancy::placement::MoveRequest;
use tokio::sync::Mutex;

/// What a writer saw acknowledged.
#[derive(Default)]
struct Acked {
    created: Vec<String>,
    titles: HashMap<String, String>,
}

/// Writes for `t` until `stop`: creates tasks and renames its own, retrying 503s.
async fn writer(
    app: Arc<TestApp>,
    t: TestTenant,
    project: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    unexpected: Arc<AtomicUsize>,
    w: usize,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let title = format!("w{w}-{n}");
        let r = app
            .api(
                &t,
                Method::POST,
                &format!("/api/v1/projects/{project}/tasks"),
                Some(json!({"title": title})),
            )
            .await;
        match r.status.as_u16() {
            201 => {
                let id = r.str("id");
                let mut a = acked.lock().await;
                a.created.push(id.clone());
                a.titles.insert(id, title);
            }
            503 => continue,
            s => {
                eprintln!("writer {w}: unexpected {s}: {}", r.text);
                unexpected.fetch_add(1, Ordering::SeqCst);
            }
        }
        let own = acked.lock().await.created.get(n % 7).cloned();
        if let Some(id) = own {
            let renamed = format!("w{w}-{n}-renamed");
            let r = app
                .api(
                    &t,
                    Method::PATCH,
                    &format!("/api/v1/projects/{project}/tasks/{id}"),
                    Some(json!({"title": renamed})),
                )
                .await;
            match r.status.as_u16() {
                200 => {
                    acked.lock().await.titles.insert(id, renamed);
                }
                503 => {}
                s => {
                    eprintln!("writer {w}: unexpected {s} on update: {}", r.text);
                    unexpected.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}

async fn seed_tasks(app: &TestApp, t: &TestTenant, project: &str, n: i64) {
    let owner = app.shared_owner().await;
    let tenant = uuid::Uuid::parse_str(&t.id).expect("uuid");
    let project = uuid::Uuid::parse_str(project).expect("uuid");
    owner
        .execute(
            "INSERT INTO tasks (tenant_id, id, project_id, title, status)
             SELECT $1, gen_random_uuid(), $2, 'seed ' || g, 'todo' FROM generate_series(1, $3::bigint) g",
            &[&tenant, &project, &n],
        )
        .await
        .expect("seed");
}

async fn wait_op(app: &TestApp, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let r = app
            .admin(Method::GET, &format!("/admin/v1/operations/{id}"), None)
            .await;
        if matches!(
            r.body["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return r.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "operation did not finish: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rows of the tenant's tasks, by id, in the database it lives in now.
async fn tasks_in(db: &tokio_postgres::Client, tenant: &str) -> HashMap<String, String> {
    let tenant = uuid::Uuid::parse_str(tenant).expect("uuid");
    db.query(
        "SELECT id::text, title FROM tasks WHERE tenant_id = $1",
        &[&tenant],
    )
    .await
    .expect("tasks")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn dedicated_db(app: &TestApp, t: &TestTenant) -> (String, tokio_postgres::Client) {
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant");
    let tenancy::catalog::Placement::Dedicated { server, database } = tenant.placement else {
        panic!("not dedicated")
    };
    let servers = app.app.tenancy.catalog.db_servers().await.expect("servers");
    let name = servers
        .iter()
        .find(|s| s.id == server)
        .map(|s| s.name.clone())
        .expect("server");
    let cluster = if name == "second" {
        &clusters().second
    } else {
        &clusters().primary
    };
    (name, connect(&cluster.url(&database)).await)
}

/// No replication slot, subscription or publication of this test's moves is left on either
/// cluster (other tests run moves on the same clusters at the same time).
async fn assert_no_leftovers(app: &TestApp) {
    let cp = connect(&clusters().primary.url(&app.control_db)).await;
    let names: Vec<String> = cp
        .query(
            "SELECT 'move_' || replace(id::text, '-', '') FROM operations",
            &[],
        )
        .await
        .expect("operations")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!names.is_empty());
    for cluster in [&clusters().primary, &clusters().second] {
        let c = connect(&cluster.url("postgres")).await;
        let slots: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1)",
                &[&names],
            )
            .await
            .expect("slots")
            .get(0);
        let subs: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_subscription WHERE subname = ANY($1)",
                &[&names],
            )
            .await
            .expect("subs")
            .get(0);
        assert_eq!((slots, subs), (0, 0), "leftover slots/subscriptions");
    }
    let shared = app.shared_owner().await;
    let pubs: i64 = shared
        .query_one(
            "SELECT count(*) FROM pg_publication WHERE pubname = ANY($1)",
            &[&names],
        )
        .await
        .expect("pubs")
        .get(0);
    assert_eq!(pubs, 0, "leftover publications in the shared database");
}

/// The tenant's writes are refused in the shared database (its old, fenced copy).
async fn assert_fenced_in_shared(app: &TestApp, t: &TestTenant) {
    let db = app.app_role(&app.shared_db).await;
    db.batch_execute(&format!("BEGIN; SET LOCAL app.tenant_id = '{}'", t.id))
        .await
        .expect("scope");
    let err = db
        .batch_execute("UPDATE tasks SET title = 'stale write'")
        .await
        .expect_err("fenced");
    assert_eq!(
        err.code().map(tokio_postgres::error::SqlState::code),
        Some("TF001"),
        "{err}"
    );
    db.batch_execute("ROLLBACK").await.expect("rollback");
}

#[tokio::test]
async fn promotion_under_write_load_loses_no_write() {
    let app = Arc::new(TestApp::spawn().await);
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "shared", None).await;
    let pa = app
        .api(
            &a,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "big"})),
        )
        .await
        .str("id");
    let pb = app
        .api(
            &b,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "other"})),
        )
        .await
        .str("id");
    seed_tasks(&app, &a, &pa, 100_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let unexpected = Arc::new(AtomicUsize::new(0));
    let acked: Vec<Arc<Mutex<Acked>>> = (0..3)
        .map(|_| Arc::new(Mutex::new(Acked::default())))
        .collect();
    let mut writers = Vec::new();
    for (w, ack) in acked.iter().enumerate() {
        let (t, p) = if w < 2 {
            (a.clone(), pa.clone())
        } else {
            (b.clone(), pb.clone())
        };
        writers.push(tokio::spawn(writer(
            Arc::clone(&app),
            t,
            p,
            Arc::clone(&stop),
            Arc::clone(ack),
            Arc::clone(&unexpected),
            w,
        )));
    }
    // Let the writers get going, then promote.
    assert!(
        eventually(Duration::from_secs(30), || async {
            acked[0].lock().await.created.len() > 20
        })
        .await
        .is_some()
    );
    let op = app
        .admin(
            Method::POST,
            "/admin/v1/tenants/alpha/placement",
            Some(json!({"placement": "dedicated", "db_server": "second"})),
        )
        .await;
    op.assert_status(202);
    assert_eq!(op.str("kind"), "promote");
    let done = wait_op(&app, &op.str("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // Writes continue against the new placement for a moment.
    let after = acked[0].lock().await.created.len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            acked[0].lock().await.created.len() > after + 10
        })
        .await
        .is_some()
    );
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(
        unexpected.load(Ordering::SeqCst),
        0,
        "a writer saw an unexpected status"
    );
    eprintln!("promotion progress: {}", done["progress"]);

    // Every acknowledged write of alpha is in its dedicated database, exactly once (primary key),
    // with the last acknowledged title.
    let (server, db) = dedicated_db(&app, &a).await;
    assert_eq!(server, "second");
    let rows = tasks_in(&db, &a.id).await;
    let mut expected = 100_000usize;
    for ack in &acked[..2] {
        let ack = ack.lock().await;
        expected += ack.created.len();
        for (id, title) in &ack.titles {
            assert_eq!(
                rows.get(id),
                Some(title),
                "acknowledged write of {id} missing or stale"
            );
        }
    }
    assert_eq!(rows.len(), expected);
    // Bravo (shared) saw no error and all its writes are in the shared database.
    let bravo = tasks_in(&app.shared_owner().await, &b.id).await;
    assert_eq!(bravo.len(), acked[2].lock().await.created.len());
    assert_fenced_in_shared(&app, &a).await;
    assert_no_leftovers(&app).await;

    // The source copy is removed on request, and the tenant keeps working.
    let purged = app
        .app
        .tenancy
        .mover
        .purge_source(
            &app.app
                .tenancy
                .catalog
                .tenant(TenantId::parse(&a.id).expect("id"))
                .await
                .expect("c")
                .expect("t"),
        )
        .await
        .expect("purge");
    assert!(purged.is_some());
    assert!(tasks_in(&app.shared_owner().await, &a.id).await.is_empty());
    app.api(
        &a,
        Method::GET,
        &format!("/api/v1/projects/{pa}/tasks?limit=5"),
        None,
    )
    .await
    .assert_status(200);
    match Arc::try_unwrap(app) {
        Ok(app) => app.finish().await,
        Err(_) => panic!("app still shared"),
    }
}

#[tokio::test]
async fn move_between_servers_and_demote_keep_every_write() {
    let app = Arc::new(TestApp::spawn().await);
    let t = app.tenant("gamma", "dedicated", Some("local")).await;
    let p = app
        .api(
            &t,
            Method::POST,
            "/api/v1/projects",
            Some(json!({"name": "p"})),
        )
        .await
        .str("id");
    let stop = Arc::new(AtomicBool::new(false));
    let unexpected = Arc::new(AtomicUsize::new(0));
    let ack = Arc::new(Mutex::new(Acked::default()));
    let w = tokio::spawn(writer(
        Arc::clone(&app),
        t.clone(),
        p.clone(),
        Arc::clone(&stop),
        Arc::clone(&ack),
        Arc::clone(&unexpected),
        0,
    ));
    assert!(
        eventually(Duration::from_secs(30), || async {
            ack.lock().await.created.len() > 10
        })
        .await
        .is_some()
    );

    let mv = app
        .admin(
            Method::POST,
            "/admin/v1/tenants/gamma/placement",
            Some(json!({"placement": "dedicated", "db_server": "second"})),
        )
        .await;
    mv.assert_status(202);
    assert_eq!(mv.str("kind"), "move");
    assert_eq!(wait_op(&app, &mv.str("id")).await["state"], "succeeded");
    let n = ack.lock().await.created.len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            ack.lock().await.created.len() > n + 5
        })
        .await
        .is_some()
    );

    let down = app
        .admin(
            Method::POST,
            "/admin/v1/tenants/gamma/placement",
            Some(json!({"placement": "shared"})),
        )
        .await;
    down.assert_status(202);
    assert_eq!(down.str("kind"), "demote");
    assert_eq!(wait_op(&app, &down.str("id")).await["state"], "succeeded");
    let n = ack.lock().await.created.len();
    assert!(
        eventually(Duration::from_secs(30), || async {
            ack.lock().await.created.len() > n + 5
        })
        .await
        .is_some()
    );
    stop.store(true, Ordering::SeqCst);
    w.await.expect("writer");
    assert_eq!(unexpected.load(Ordering::SeqCst), 0);

    let rows = tasks_in(&app.shared_owner().await, &t.id).await;
    let ack = ack.lock().await;
    assert_eq!(rows.len(), ack.created.len());
    for (id, title) in &ack.titles {
        assert_eq!(rows.get(id), Some(title));
    }
    assert_no_leftovers(&app).await;
    drop(ack);
    match Arc::try_unwrap(app) {
        Ok(app) => app.finish().await,
        Err(_) => panic!("app still shared"),
    }
}

#[tokio::test]
async fn a_crash_at_any_step_resumes_to_completion() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    for k in 0..10 {
        let t = app.tenant(&format!("crash-{k}"), "shared", None).await;
        let p = app
            .api(
                &t,
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": "p"})),
            )
            .await
            .str("id");
        seed_tasks(&app, &t, &p, 200).await;
        let tenant = app
            .app
            .tenancy
            .catalog
            .tenant(TenantId::parse(&t.id).expect("id"))
            .await
            .expect("c")
            .expect("t");
        let op = mover
            .start(
                &tenant,
                &MoveRequest::Dedicated {
                    server: "second".into(),
                },
            )
            .await
            .expect("start");
        // The first runner dies after k steps; another one picks the operation up.
        let crashed = mover.run_steps(op.id, k).await.expect("partial run");
        assert!(
            k >= 9 || crashed.state.as_str() == "running" || crashed.state.as_str() == "pending",
            "step {k}: {}",
            crashed.state
        );
        let finished = mover.another_runner().run(op.id).await.expect("resume");
        assert_eq!(
            finished.state.as_str(),
            "succeeded",
            "crash after {k} steps: {:?}",
            finished.error
        );
        let (_, db) = dedicated_db(&app, &t).await;
        assert_eq!(
            tasks_in(&db, &t.id).await.len(),
            200,
            "crash after {k} steps"
        );
        app.api(
            &t,
            Method::POST,
            &format!("/api/v1/projects/{p}/tasks"),
            Some(json!({"title": "after"})),
        )
        .await
        .assert_status(201);
    }
    assert_no_leftovers(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn cancel_before_cutover_rolls_back_cleanly() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    for k in 0..8 {
        let t = app.tenant(&format!("cancel-{k}"), "shared", None).await;
        let p = app
            .api(
                &t,
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": "p"})),
            )
            .await
            .str("id");
        seed_tasks(&app, &t, &p, 50).await;
        let tenant = app
            .app
            .tenancy
            .catalog
            .tenant(TenantId::parse(&t.id).expect("id"))
            .await
            .expect("c")
            .expect("t");
        let op = mover
            .start(
                &tenant,
                &MoveRequest::Dedicated {
                    server: "second".into(),
                },
            )
            .await
            .expect("start");
        mover.run_steps(op.id, k).await.expect("partial run");
        let c = app
            .admin(
                Method::POST,
                &format!("/admin/v1/operations/{}/cancel", op.id),
                None,
            )
            .await;
        c.assert_status(202);
        let end = mover.run(op.id).await.expect("run");
        assert_eq!(end.state.as_str(), "cancelled", "cancel after {k} steps");
        // Still shared, writable, nothing of the target left.
        let now = app
            .app
            .tenancy
            .catalog
            .tenant(tenant.id)
            .await
            .expect("c")
            .expect("t");
        assert_eq!(now.placement, tenancy::catalog::Placement::Shared);
        app.api(
            &t,
            Method::POST,
            &format!("/api/v1/projects/{p}/tasks"),
            Some(json!({"title": "after cancel"})),
        )
        .await
        .assert_status(201);
        let target = end.target["database"]
            .as_str()
            .expect("target db")
            .to_owned();
        let second = connect(&clusters().second.url("postgres")).await;
        assert!(
            second
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
                .await
                .expect("q")
                .is_none(),
            "target database left after cancel at {k}"
        );
    }
    let done = app
        .admin(
            Method::POST,
            &format!("/admin/v1/operations/{}/cancel", uuid::Uuid::now_v7()),
            None,
        )
        .await;
    done.assert_problem(404);
    assert_no_leftovers(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn placement_requests_are_validated() {
    let app = TestApp::spawn().await;
    app.tenant("alpha", "shared", None).await;
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "shared"})),
    )
    .await
    .assert_problem(409);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "dedicated"})),
    )
    .await
    .assert_problem(422);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/alpha/placement",
        Some(json!({"placement": "dedicated", "db_server": "nope"})),
    )
    .await
    .assert_problem(422);
    app.admin(
        Method::POST,
        "/admin/v1/tenants/nobody/placement",
        Some(json!({"placement": "shared"})),
    )
    .await
    .assert_problem(404);
    app.admin(
        Method::GET,
        &format!("/admin/v1/operations/{}", uuid::Uuid::now_v7()),
        None,
    )
    .await
    .assert_problem(404);
    app.finish().await;
}
