//! Promotion to a dedicated database under write load loses no acknowledged write.

use super::*;

/// Rows in the tenant's shared data when the promotion starts. The size is the point: copying
/// them takes long enough that the writers' changes land during the copy and must be carried
/// over by replication, which a handful of rows (copied in an instant) would not exercise.
const SEEDED: usize = 100_000;

#[tokio::test]
async fn promotion_under_write_load_loses_no_write() {
    let app = TestApp::spawn().await;
    let a = app.tenant("alpha", "shared", None).await;
    let b = app.tenant("bravo", "shared", None).await;
    let pa = a.api.create_project("big").await.str("id");
    let pb = b.api.create_project("other").await.str("id");
    seed_tasks(&app, &a, &pa, i64::try_from(SEEDED).expect("count")).await;

    // Two writers on alpha, one on bravo; let them get going, then promote alpha.
    let writers = Writers::start(&[(&a, &pa), (&a, &pa), (&b, &pb)]);
    writers.wait_beyond(0, 20).await;
    let op = app
        .operator()
        .change_placement(
            "alpha",
            json!({"placement": "dedicated", "db_server": "second"}),
        )
        .await;
    op.assert_status(202);
    assert_eq!(op.str("kind"), "promote");
    let done = wait_op(&app, &op.str("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // Writes continue against the new placement for a moment.
    writers.wait_beyond(0, writers.created(0).await + 10).await;
    let acked = writers.stop().await;
    eprintln!("promotion progress: {}", done["progress"]);

    // Every acknowledged write of alpha is in its dedicated database, exactly once (primary key),
    // with the last acknowledged title.
    let (server, db) = dedicated_db(&app, &a).await;
    assert_eq!(server, "second");
    let rows = tasks_in(&db, &a.id).await;
    let mut expected = SEEDED;
    for ack in &acked[..2] {
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
    // Bravo (shared, not moving) saw no error, not even a 503, and all its writes are in the
    // shared database.
    assert_eq!(
        acked[2].unavailable, 0,
        "the tenant that did not move saw 503s"
    );
    let bravo = tasks_in(&app.shared_owner().await, &b.id).await;
    assert_eq!(bravo.len(), acked[2].created.len());
    // Alpha's writers were paused only around the switch: the move recorded its write pause,
    // and no writer went longer than a generous bound without an acknowledged write (a fence
    // left in place, or a switch that never came, would stop them for good).
    assert!(
        done["progress"]["write_pause_ms"].as_u64().is_some(),
        "{done}"
    );
    for (w, ack) in acked[..2].iter().enumerate() {
        assert!(
            ack.longest_gap < Duration::from_secs(20),
            "alpha writer {w} went {:?} without an acknowledged write",
            ack.longest_gap
        );
    }
    assert_fenced_in_shared(&app, &a).await;
    assert_no_leftovers(&app).await;
    the_source_copy_is_removed_on_request(&app, &a, &pa).await;
    app.finish().await;
}

/// The source copy is removed on request, and the tenant keeps working.
async fn the_source_copy_is_removed_on_request(app: &TestApp, a: &TestTenant, project: &str) {
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&a.id).expect("id"))
        .await
        .expect("c")
        .expect("t");
    let purged = app
        .app
        .tenancy
        .mover
        .purge_source(&tenant)
        .await
        .expect("purge");
    assert!(purged.is_some());
    assert!(tasks_in(&app.shared_owner().await, &a.id).await.is_empty());
    a.api
        .get(&format!("/api/v1/projects/{project}/tasks?limit=5"))
        .await
        .assert_status(200);
}
