//! Fleet migrations when something fails: an unreachable database, a diverged history, a failing canary, a lock held by a long transaction.

use super::*;

#[tokio::test]
async fn one_unreachable_database_fails_alone_and_a_rerun_converges() {
    let app = TestApp::spawn().await;
    let s = app.tenant("shared-one", "shared", None).await;
    let a = app.tenant("alpha", "dedicated", Some("local")).await;
    let b = app.tenant("bravo", "dedicated", Some("local")).await;
    let c = app.tenant("charlie", "dedicated", Some("second")).await;
    // Provisioning recorded the head version before activation.
    assert_eq!(app.recorded_version(&a).await, Some(head()));
    set_allow_connections(&app, &b, false).await;

    let report = run(&app, ahead(), &opts()).await;
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
        assert_eq!(app.schema_version(t).await, ahead(), "{} migrated", t.slug);
        assert_eq!(app.recorded_version(t).await, Some(ahead()));
    }
    assert_eq!(app.recorded_version(&b).await, Some(head()));
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
            .all(|r| r.state == "ok" && r.version_after == Some(ahead()))
    );
    let status = app.migrator().status(ahead()).await.expect("status");
    let sum = Summary::of(&status);
    assert_eq!((sum.ok, sum.failed, sum.pending, sum.running), (3, 1, 0, 0));

    // It comes back; the rerun only looks at what is left.
    set_allow_connections(&app, &b, true).await;
    let again = run(&app, ahead(), &opts()).await;
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
    assert_eq!(app.schema_version(&b).await, ahead());
    for t in [&s, &a, &b, &c] {
        assert_eq!(applications(&app, t, ahead()).await, 1, "{} once", t.slug);
    }
    let status = app.migrator().status(ahead()).await.expect("status");
    assert!(status.iter().all(|r| r.state == DbState::Ok), "{status:?}");
    // A no-op pass touches no database.
    let noop = run(&app, ahead(), &opts()).await;
    assert!(noop.succeeded() && noop.results.is_empty() && noop.skipped == 4);
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
    let report = run(&app, ahead(), &opts()).await;
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
    assert_eq!(app.schema_version(&changed).await, head());
    assert_eq!(app.schema_version(&fine).await, ahead());
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
        failing(),
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
    assert_eq!(app.schema_version(&first).await, ahead());
    assert_eq!(app.recorded_version(&first).await, Some(ahead()));
    for t in rest.iter().chain([&shared]) {
        assert_eq!(app.schema_version(t).await, head(), "{} untouched", t.slug);
    }
    let status = app.migrator().status(failing()).await.expect("status");
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
    let again = run(&app, failing(), &opts()).await;
    assert!(again.succeeded(), "{again:?}");
    for t in rest.iter().chain([&shared, &first]) {
        assert_eq!(app.schema_version(t).await, failing());
    }
    app.finish().await;
}

#[tokio::test]
async fn a_migration_blocked_by_a_long_transaction_gives_up_after_the_lock_timeout() {
    let app = TestApp::spawn().await;
    let busy = app.tenant("busy", "dedicated", Some("local")).await;
    let idle = app.tenant("idle", "dedicated", Some("second")).await;
    // A long transaction holds a lock the ahead() migration's ALTER TABLE needs. Waiting for it would queue every
    // later query on `projects` behind the migration's ACCESS EXCLUSIVE request.
    let blocker = hold_projects_lock(&app, &busy).await;
    // (Bounded here only so that a runner that waits forever fails the test instead of hanging
    // it; the lock timeout under test is 0.3 s.)
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        run(
            &app,
            ahead(),
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
    // Rolled back whole: not even the ahead() migration's first statement (a new table) stayed.
    assert_eq!(app.schema_version(&busy).await, head());
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
    assert_eq!(app.schema_version(&idle).await, ahead());
    // The long transaction ends; the next run converges.
    blocker.batch_execute("ROLLBACK").await.expect("release");
    let again = run(&app, ahead(), &opts()).await;
    assert!(again.succeeded(), "{again:?}");
    assert_eq!(app.schema_version(&busy).await, ahead());
    app.finish().await;
}
