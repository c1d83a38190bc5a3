//! Moves between servers and demotion back to the shared database keep every write.

use super::*;

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
