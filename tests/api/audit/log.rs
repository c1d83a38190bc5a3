//! Events are part of the change's transaction, denials and failed logins are recorded, the
//! listing filters and pages, and nobody (not even the owner, outside the erase path) can change
//! or remove an event.

use platform_tests::{Client, TestApp, TestTenant};

use super::count;

#[tokio::test]
async fn a_rolled_back_change_leaves_no_event_and_denials_and_failed_logins_are_recorded() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    a_rolled_back_change_leaves_no_event(&app, &t).await;

    // A denied request (a viewer writing) and a failed login are recorded as attempts.
    let viewer = app.user(&t, "v@acme.test", "viewer").await;
    viewer.api.create_project("x").await.assert_problem(403);
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
    t.anon
        .login("v@acme.test", "wrong password")
        .await
        .assert_problem(401);
    assert_eq!(count(&app, &t, "auth.login").await, 1);
    the_listing_filters_and_pages(&app, &t, &viewer.api).await;
    app.finish().await;
}

/// A change that fails after its first write rolls back, event included: the insert succeeds
/// inside the transaction (and its trigger writes the event), then the transaction is dropped.
async fn a_rolled_back_change_leaves_no_event(app: &TestApp, t: &TestTenant) {
    let before = count(app, t, "project.created").await;
    let db = app.app.tenancy.dataplane.clone();
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug(&t.slug)
        .await
        .expect("catalog")
        .expect("tenant");
    let pid: i32 = {
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
        tx.query_opt("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .expect("row")
            .get(0)
        // ... and the transaction is dropped without commit.
    };
    // Only once that backend's transaction has ended (its rollback is asynchronous) does the
    // count below see its outcome: an event that survived would be visible then, not before.
    let owner = app.shared_owner().await;
    let ended = platform_tests::eventually(std::time::Duration::from_secs(10), || async {
        owner
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND xact_start IS NOT NULL",
                &[&pid],
            )
            .await
            .expect("activity")
            .is_none()
    })
    .await;
    assert!(ended.is_some(), "the dropped transaction never ended");
    assert_eq!(
        count(app, t, "project.created").await,
        before,
        "a rolled-back change left an audit event"
    );
    // The same count does see a committed change's event (the check above can fail).
    t.api.create_project("kept").await.assert_status(201);
    assert_eq!(count(app, t, "project.created").await, before + 1);
}

/// The tenant's API lists events, filtered and paged, newest first; others need audit:read;
/// operators read their trail.
async fn the_listing_filters_and_pages(app: &TestApp, t: &TestTenant, viewer: &Client) {
    // The listing shows linked events; wait until the sealer has linked the ones above.
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant(tenancy::ids::TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant");
    crate::audit::sealed(app, &tenant).await;
    let page = t.api.audit_events("action=auth.*&limit=5").await;
    page.assert_status(200);
    assert_eq!(page.body["items"][0]["action"], "auth.login");
    assert_eq!(page.body["items"][0]["outcome"], "failure");
    let all = t.api.audit_events("limit=2").await;
    let next = all.str("next_cursor");
    let older = t.api.audit_events(&format!("limit=2&cursor={next}")).await;
    assert!(older.body["items"][0]["seq"].as_i64() < all.body["items"][1]["seq"].as_i64());
    for bad in ["since=yesterday", "cursor=nope", "limit=0", "bogus=1"] {
        t.api.audit_events(bad).await.assert_problem(400);
    }
    viewer.audit_events("").await.assert_problem(403);
    let trail = app
        .operator()
        .audit_events(&format!("tenant={}&action=tenant.*", t.id))
        .await;
    trail.assert_status(200);
    assert_eq!(trail.body["items"][0]["action"], "tenant.created");
    assert_eq!(trail.body["items"][0]["actor_type"], "operator");
}

#[tokio::test]
async fn the_app_role_cannot_change_or_remove_audit_events_and_the_owner_is_refused_too() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    t.api.create_project("p").await.assert_status(201);
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
