//! Tenant migrations across the fleet: failure isolation and convergence, concurrent runners,
//! canaries, status while a run is going on, the minimum-version gate (503), and the current code
//! on a database one migration ahead. The `platformctl` process itself (exit codes, JSON lines,
//! `kill -9`) is tested in `ops/tests/`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use platform_tests::{Req, TestApp, TestTenant, eventually, migrations_up_to};
use serde_json::json;
use tenancy::migrate::fleet::{Events, FleetOptions, FleetReport};
use tenancy::migrate::ledger;
use tenancy::migrate::status::{DbState, Summary};

fn quiet() -> Events {
    Arc::new(|_| {})
}

fn opts() -> FleetOptions {
    FleetOptions {
        concurrency: 4,
        per_server: 2,
        ..FleetOptions::default()
    }
}

async fn run(app: &TestApp, head: i64, o: &FleetOptions) -> FleetReport {
    app.migrator()
        .run(migrations_up_to(head), o, quiet())
        .await
        .expect("the run starts")
}

/// How many times test migration `version` ran in a database (it logs itself).
async fn applications(app: &TestApp, t: &TestTenant, version: i32) -> i64 {
    app.tenant_db(t)
        .await
        .query_one(
            "SELECT count(*) FROM test_applications WHERE version = $1",
            &[&version],
        )
        .await
        .expect("count")
        .get(0)
}

async fn set_allow_connections(app: &TestApp, t: &TestTenant, allow: bool) {
    let url = app.tenant_db_url(t).await;
    let (base, db) = url.rsplit_once('/').expect("url has a database");
    let admin = platform_tests::connect(&format!("{base}/postgres")).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {allow}"
        ))
        .await
        .expect("alter database");
}

#[tokio::test]
async fn one_unreachable_database_fails_alone_and_a_rerun_converges() {
    let app = TestApp::spawn().await;
    let s = app.tenant("shared-one", "shared", None).await;
    let a = app.tenant("alpha", "dedicated", Some("local")).await;
    let b = app.tenant("bravo", "dedicated", Some("local")).await;
    let c = app.tenant("charlie", "dedicated", Some("second")).await;
    // Provisioning recorded the head version before activation.
    assert_eq!(app.recorded_version(&a).await, Some(5));
    set_allow_connections(&app, &b, false).await;

    let report = run(&app, 6, &opts()).await;
    assert!(!report.succeeded());
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert_eq!(failed[0].db.slugs[0].as_str(), "bravo");
    assert!(
        failed[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("connect")),
        "{:?}",
        failed[0].error
    );
    for t in [&s, &a, &c] {
        assert_eq!(app.schema_version(t).await, 6, "{} migrated", t.slug);
        assert_eq!(app.recorded_version(t).await, Some(6));
    }
    assert_eq!(app.recorded_version(&b).await, Some(5));
    // The ledger says so.
    let run_id = report.run.expect("a real run");
    let rows = ledger::run_entries(app.migrator().catalog(), run_id)
        .await
        .expect("ledger");
    assert_eq!(rows.len(), 4);
    let b_row = rows.iter().find(|r| r.db_key == b.id).expect("bravo's row");
    assert_eq!(b_row.state, "failed");
    assert!(b_row.error.is_some() && b_row.finished_at.is_some());
    assert!(
        rows.iter()
            .filter(|r| r.db_key != b.id)
            .all(|r| r.state == "ok" && r.version_after == Some(6))
    );
    let status = app.migrator().status(6).await.expect("status");
    let sum = Summary::of(&status);
    assert_eq!((sum.ok, sum.failed, sum.pending, sum.running), (3, 1, 0, 0));

    // It comes back; the rerun only looks at what is left.
    set_allow_connections(&app, &b, true).await;
    let again = run(&app, 6, &opts()).await;
    assert!(again.succeeded(), "{again:?}");
    assert_eq!(again.results.len(), 1);
    assert_eq!(again.skipped, 3);
    // Operators see each tenant's version in the admin API (a shared tenant: the shared database's).
    for t in [&s, &b] {
        let view = app
            .admin(Method::GET, &format!("/admin/v1/tenants/{}", t.id), None)
            .await;
        view.assert_status(200);
        let have = app.schema_version(t).await;
        assert_eq!(view.body["schema_version"], json!(have), "{}", t.slug);
    }
    assert_eq!(app.schema_version(&b).await, 6);
    for t in [&s, &a, &b, &c] {
        assert_eq!(applications(&app, t, 6).await, 1, "{} once", t.slug);
    }
    let status = app.migrator().status(6).await.expect("status");
    assert!(status.iter().all(|r| r.state == DbState::Ok), "{status:?}");
    // A no-op pass touches no database.
    let noop = run(&app, 6, &opts()).await;
    assert!(noop.succeeded() && noop.results.is_empty() && noop.skipped == 4);
    app.finish().await;
}

#[tokio::test]
async fn two_concurrent_runners_never_migrate_one_database_twice() {
    let app = TestApp::spawn().await;
    let mut tenants = Vec::new();
    for (i, server) in ["local", "second", "local", "second"].iter().enumerate() {
        tenants.push(
            app.tenant(&format!("twin-{i}"), "dedicated", Some(server))
                .await,
        );
    }
    // Both runners look at every database (no skipping by recorded version), at once.
    let o = FleetOptions {
        verify: true,
        ..opts()
    };
    let (r1, r2) = tokio::join!(run(&app, 7, &o), run(&app, 7, &o));
    assert!(r1.succeeded() && r2.succeeded(), "{r1:?} {r2:?}");
    for t in &tenants {
        assert_eq!(app.schema_version(t).await, 7);
        assert_eq!(applications(&app, t, 6).await, 1, "{}: V2 once", t.slug);
        assert_eq!(applications(&app, t, 7).await, 1, "{}: V3 once", t.slug);
        // Exactly one of the two runs found it behind; the other found it done, under the lock.
        let movers = [&r1, &r2]
            .iter()
            .flat_map(|r| r.results.iter())
            .filter(|r| {
                r.db.slugs.first().is_some_and(|s| s.as_str() == t.slug) && r.before < r.after
            })
            .count();
        assert_eq!(movers, 1, "{}", t.slug);
        // The runner's own history rows (its lean path) are what refinery itself reads and
        // verifies: refinery finds nothing to do and no divergence.
        let mut db = app.tenant_db(t).await;
        let report = refinery::Runner::new(&migrations_up_to(7))
            .run_async(&mut db)
            .await
            .expect("refinery accepts the history the runner wrote");
        assert!(report.applied_migrations().is_empty(), "{}", t.slug);
    }
    app.finish().await;
}

#[tokio::test]
async fn a_database_whose_history_differs_is_failed_by_refinery_and_the_rest_go_on() {
    let app = TestApp::spawn().await;
    let changed = app.tenant("diverged", "dedicated", Some("local")).await;
    let fine = app.tenant("undiverged", "dedicated", Some("second")).await;
    // Somebody edited an applied migration's history row (or the file behind it changed).
    app.tenant_db(&changed)
        .await
        .batch_execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 2")
        .await
        .expect("tamper");
    let report = run(&app, 6, &opts()).await;
    assert!(!report.succeeded());
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert!(
        failed[0].db.slugs.iter().any(|s| s.as_str() == "diverged"),
        "{failed:?}"
    );
    assert!(
        failed[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("is different than filesystem one")),
        "{failed:?}"
    );
    // Nothing was applied on top of the changed history; the other database moved on.
    assert_eq!(app.schema_version(&changed).await, 5);
    assert_eq!(app.schema_version(&fine).await, 6);
    app.finish().await;
}

#[tokio::test]
async fn a_failing_canary_stops_the_run_before_the_rest() {
    let app = TestApp::spawn().await;
    let shared = app.tenant("canary-shared", "shared", None).await;
    let first = app.tenant("canary-a", "dedicated", Some("local")).await;
    let mut rest = Vec::new();
    for slug in ["canary-b", "canary-c", "canary-d"] {
        rest.push(app.tenant(slug, "dedicated", Some("second")).await);
    }
    app.tenant_db(&first)
        .await
        .batch_execute("CREATE TABLE test_fail_here ()")
        .await
        .expect("mark");

    let report = run(
        &app,
        7,
        &FleetOptions {
            canary: 1,
            ..opts()
        },
    )
    .await;
    assert!(report.stopped_by_canary && !report.succeeded());
    assert_eq!(report.results.len(), 1);
    assert_eq!(report.not_started, 4);
    // V2 went in, V3 failed: the canary is at 2 and recorded so; nothing else was touched.
    assert_eq!(app.schema_version(&first).await, 6);
    assert_eq!(app.recorded_version(&first).await, Some(6));
    for t in rest.iter().chain([&shared]) {
        assert_eq!(app.schema_version(t).await, 5, "{} untouched", t.slug);
    }
    let status = app.migrator().status(7).await.expect("status");
    let sum = Summary::of(&status);
    assert_eq!((sum.failed, sum.pending, sum.ok), (1, 4, 0), "{status:?}");
    let failed = status
        .iter()
        .find(|r| r.state == DbState::Failed)
        .expect("failed row");
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("marked to fail")),
        "{failed:?}"
    );

    // Fixed: the rerun converges (without a canary).
    app.tenant_db(&first)
        .await
        .batch_execute("DROP TABLE test_fail_here")
        .await
        .expect("unmark");
    let again = run(&app, 7, &opts()).await;
    assert!(again.succeeded(), "{again:?}");
    for t in rest.iter().chain([&shared, &first]) {
        assert_eq!(app.schema_version(t).await, 7);
    }
    app.finish().await;
}

/// A session in a transaction that holds a lock the test migration V6's `ALTER TABLE projects`
/// needs (`ROLLBACK` on it releases the lock).
async fn hold_projects_lock(app: &TestApp, t: &TestTenant) -> tokio_postgres::Client {
    let blocker = app.tenant_db(t).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE projects IN ACCESS SHARE MODE")
        .await
        .expect("lock");
    blocker
}

#[tokio::test]
async fn status_tells_where_a_run_stands_while_it_runs_and_after() {
    let app = TestApp::spawn().await;
    let held = app.tenant("held", "dedicated", Some("local")).await;
    let other = app.tenant("free", "dedicated", Some("second")).await;
    // Hold a lock V2's ALTER TABLE needs: the run waits inside that database.
    let blocker = hold_projects_lock(&app, &held).await;

    let migrator = app.migrator().clone();
    let running = tokio::spawn(async move {
        // Waits for the lock as long as it takes (the test releases it).
        let o = FleetOptions {
            lock_timeout: None,
            ..opts()
        };
        migrator
            .run(migrations_up_to(6), &o, quiet())
            .await
            .expect("run")
    });
    let seen = eventually(Duration::from_secs(30), || async {
        let s = app.migrator().status(6).await.expect("status");
        // `held` is running; every other database (`free` and the shared one) is done.
        s.iter().all(|r| {
            let is_held = r.db.slugs.first().is_some_and(|x| x.as_str() == "held");
            r.state
                == if is_held {
                    DbState::Running
                } else {
                    DbState::Ok
                }
        })
    })
    .await;
    assert!(
        seen.is_some(),
        "status never showed `held` running and the rest done"
    );
    let during = Summary::of(&app.migrator().status(6).await.expect("status"));
    assert_eq!(during.running, 1);
    assert_eq!(during.failed, 0);

    blocker.batch_execute("ROLLBACK").await.expect("release");
    let report = running.await.expect("join");
    assert!(report.succeeded(), "{report:?}");
    let after = app.migrator().status(6).await.expect("status");
    assert!(
        after
            .iter()
            .all(|r| r.state == DbState::Ok && r.current == Some(6) && r.last_run_at.is_some()),
        "{after:?}"
    );
    assert_eq!(app.schema_version(&other).await, 6);
    app.finish().await;
}

#[tokio::test]
async fn a_tenant_below_the_minimum_version_gets_503_until_migrated() {
    let app = TestApp::spawn().await;
    let dedicated = app.tenant("behind", "dedicated", Some("second")).await;
    let shared = app.tenant("behind-too", "shared", None).await;
    // A newer build that needs version 6 (head + 1), deployed before the fleet is migrated.
    let newer = app.instance_requiring_schema(6).await;
    for t in [&dedicated, &shared] {
        let r = Req::new(Method::GET, "/api/v1/projects")
            .host(t.host())
            .bearer(&t.key)
            .send(&newer.router)
            .await;
        r.assert_problem(503);
        assert_eq!(r.body["type"], "/problems/tenant-schema-behind");
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    }
    // The current build still serves them.
    app.api(&dedicated, Method::GET, "/api/v1/projects", None)
        .await
        .assert_status(200);

    let report = run(&app, 6, &opts()).await;
    assert!(report.succeeded(), "{report:?}");
    // The catalog notification refreshes the newer instance's cached tenant records.
    for t in [&dedicated, &shared] {
        let served = eventually(Duration::from_secs(5), || async {
            Req::new(Method::GET, "/api/v1/projects")
                .host(t.host())
                .bearer(&t.key)
                .send(&newer.router)
                .await
                .status
                .as_u16()
                == 200
        })
        .await;
        assert!(served.is_some(), "{} still refused after migrating", t.slug);
    }
    drop(newer);
    app.finish().await;
}

#[tokio::test]
async fn the_current_code_works_on_a_database_one_migration_ahead() {
    let app = TestApp::spawn().await;
    let dedicated = app.tenant("ahead", "dedicated", Some("local")).await;
    let shared = app.tenant("ahead-shared", "shared", None).await;
    let report = run(&app, 6, &opts()).await;
    assert!(report.succeeded(), "{report:?}");
    for t in [&dedicated, &shared] {
        assert_eq!(app.schema_version(t).await, 6);
        let project = app
            .api(
                t,
                Method::POST,
                "/api/v1/projects",
                Some(json!({"name": "Ahead", "description": "on N+1"})),
            )
            .await;
        project.assert_status(201);
        let pid = project.str("id");
        app.api(
            t,
            Method::PATCH,
            &format!("/api/v1/projects/{pid}"),
            Some(json!({"name": "Renamed"})),
        )
        .await
        .assert_status(200);
        let task = app
            .api(
                t,
                Method::POST,
                &format!("/api/v1/projects/{pid}/tasks"),
                Some(json!({"title": "works"})),
            )
            .await;
        task.assert_status(201);
        let list = app.api(t, Method::GET, "/api/v1/projects", None).await;
        list.assert_status(200);
        assert_eq!(list.body["items"][0]["name"], "Renamed", "{}", list.text);
        app.api(
            t,
            Method::GET,
            &format!("/api/v1/projects/{pid}/tasks"),
            None,
        )
        .await
        .assert_status(200);
        app.api(t, Method::DELETE, &format!("/api/v1/projects/{pid}"), None)
            .await
            .assert_status(204);
    }
    // And a new dedicated tenant still provisions (to this build's head) beside them.
    let fresh = app.tenant("fresh", "dedicated", Some("local")).await;
    assert_eq!(app.recorded_version(&fresh).await, Some(5));
    app.finish().await;
}

#[tokio::test]
async fn dry_run_filters_and_target_do_what_they_say() {
    let app = TestApp::spawn().await;
    let a = app.tenant("filter-a", "dedicated", Some("local")).await;
    let b = app.tenant("filter-b", "dedicated", Some("second")).await;
    let dry = run(
        &app,
        7,
        &FleetOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await;
    assert!(dry.run.is_none() && dry.not_started == 3 && dry.results.is_empty());
    assert_eq!(app.schema_version(&a).await, 5);
    // Only `filter-a`, only up to 2.
    let one = run(
        &app,
        7,
        &FleetOptions {
            tenants: vec!["filter-a".into()],
            target: Some(6),
            ..opts()
        },
    )
    .await;
    assert!(one.succeeded() && one.total == 1);
    assert_eq!(app.schema_version(&a).await, 6);
    assert_eq!(app.schema_version(&b).await, 5);
    // Only the second server.
    let second = run(
        &app,
        7,
        &FleetOptions {
            server: Some("second".into()),
            ..opts()
        },
    )
    .await;
    assert!(second.succeeded() && second.total == 1);
    assert_eq!(app.schema_version(&b).await, 7);
    assert_eq!(app.schema_version(&a).await, 6);
    let unknown = app
        .migrator()
        .run(
            migrations_up_to(7),
            &FleetOptions {
                tenants: vec!["nobody".into()],
                ..opts()
            },
            quiet(),
        )
        .await;
    assert!(unknown.is_err());
    app.finish().await;
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_gives_up_after_the_lock_timeout() {
    let app = TestApp::spawn().await;
    let busy = app.tenant("busy", "dedicated", Some("local")).await;
    let idle = app.tenant("idle", "dedicated", Some("second")).await;
    // A long transaction holds a lock V6's ALTER TABLE needs. Waiting for it would queue every
    // later query on `projects` behind the migration's ACCESS EXCLUSIVE request.
    let blocker = hold_projects_lock(&app, &busy).await;
    // (Bounded here only so that a runner that waits forever fails the test instead of hanging
    // it; the lock timeout under test is 0.3 s.)
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run(
            &app,
            6,
            &FleetOptions {
                lock_timeout: Some(Duration::from_millis(300)),
                ..opts()
            },
        ),
    )
    .await
    .expect("the runner gave up waiting for the lock");
    let failed: Vec<_> = report.failed().collect();
    assert_eq!(failed.len(), 1, "{report:?}");
    assert!(failed[0].db.slugs.iter().any(|s| s.as_str() == "busy"));
    assert!(
        failed[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("lock timeout")),
        "{failed:?}"
    );
    // Rolled back whole: not even V6's first statement (a new table) stayed.
    assert_eq!(app.schema_version(&busy).await, 5);
    let leftover: i64 = app
        .tenant_db(&busy)
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'test_notes'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(leftover, 0);
    assert_eq!(app.schema_version(&idle).await, 6);
    // The long transaction ends; the next run converges.
    blocker.batch_execute("ROLLBACK").await.expect("release");
    let again = run(&app, 6, &opts()).await;
    assert!(again.succeeded(), "{again:?}");
    assert_eq!(app.schema_version(&busy).await, 6);
    app.finish().await;
}
