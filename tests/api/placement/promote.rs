//! Promotion to a dedicated database under write load loses no acknowledged write.

use super::*;

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
