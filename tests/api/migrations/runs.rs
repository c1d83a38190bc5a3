//! Fleet runs: concurrent runners, status while running, dry runs, filters and targets.

use super::*;

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
    let (r1, r2) = tokio::join!(run(&app, failing(), &o), run(&app, failing(), &o));
    assert!(r1.succeeded() && r2.succeeded(), "{r1:?} {r2:?}");
    for t in &tenants {
        assert_eq!(app.schema_version(t).await, failing());
        assert_eq!(
            applications(&app, t, ahead()).await,
            1,
            "{}: V2 once",
            t.slug
        );
        assert_eq!(
            applications(&app, t, failing()).await,
            1,
            "{}: V3 once",
            t.slug
        );
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
        let report = refinery::Runner::new(&migrations_up_to(failing()))
            .run_async(&mut db)
            .await
            .expect("refinery accepts the history the runner wrote");
        assert!(report.applied_migrations().is_empty(), "{}", t.slug);
    }
    app.finish().await;
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
            .run(migrations_up_to(ahead()), &o, quiet())
            .await
            .expect("run")
    });
    let seen = eventually(Duration::from_secs(30), || async {
        let s = app.migrator().status(ahead()).await.expect("status");
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
    let during = Summary::of(&app.migrator().status(ahead()).await.expect("status"));
    assert_eq!(during.running, 1);
    assert_eq!(during.failed, 0);

    blocker.batch_execute("ROLLBACK").await.expect("release");
    let report = running.await.expect("join");
    assert!(report.succeeded(), "{report:?}");
    let after = app.migrator().status(ahead()).await.expect("status");
    assert!(
        after.iter().all(|r| r.state == DbState::Ok
            && r.current == Some(ahead())
            && r.last_run_at.is_some()),
        "{after:?}"
    );
    assert_eq!(app.schema_version(&other).await, ahead());
    app.finish().await;
}

#[tokio::test]
async fn dry_run_filters_and_target_do_what_they_say() {
    let app = TestApp::spawn().await;
    let a = app.tenant("filter-a", "dedicated", Some("local")).await;
    let b = app.tenant("filter-b", "dedicated", Some("second")).await;
    let dry = run(
        &app,
        failing(),
        &FleetOptions {
            dry_run: true,
            ..opts()
        },
    )
    .await;
    assert!(dry.run.is_none() && dry.not_started == 3 && dry.results.is_empty());
    assert_eq!(app.schema_version(&a).await, head());
    // Only `filter-a`, only up to 2.
    let one = run(
        &app,
        failing(),
        &FleetOptions {
            tenants: vec!["filter-a".into()],
            target: Some(ahead()),
            ..opts()
        },
    )
    .await;
    assert!(one.succeeded() && one.total == 1);
    assert_eq!(app.schema_version(&a).await, ahead());
    assert_eq!(app.schema_version(&b).await, head());
    // Only the second server.
    let second = run(
        &app,
        failing(),
        &FleetOptions {
            server: Some("second".into()),
            ..opts()
        },
    )
    .await;
    assert!(second.succeeded() && second.total == 1);
    assert_eq!(app.schema_version(&b).await, failing());
    assert_eq!(app.schema_version(&a).await, ahead());
    let unknown = app
        .migrator()
        .run(
            migrations_up_to(failing()),
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
