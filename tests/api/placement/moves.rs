//! Moves between servers and demotion back to the shared database keep every write.

use super::*;

#[tokio::test]
async fn move_between_servers_and_demote_keep_every_write() {
    let app = TestApp::spawn().await;
    let t = app.tenant("gamma", "dedicated", Some("local")).await;
    let p = t.api.create_project("p").await.str("id");
    let writers = Writers::start(&[(&t, &p)]);
    writers.wait_beyond(0, 10).await;
    let operator = app.operator();

    let mv = operator
        .change_placement(
            "gamma",
            json!({"placement": "dedicated", "db_server": "second"}),
        )
        .await;
    mv.assert_status(202);
    assert_eq!(mv.str("kind"), "move");
    assert_eq!(wait_op(&app, &mv.str("id")).await["state"], "succeeded");
    writers.wait_beyond(0, writers.created(0).await + 5).await;

    let down = operator
        .change_placement("gamma", json!({"placement": "shared"}))
        .await;
    down.assert_status(202);
    assert_eq!(down.str("kind"), "demote");
    assert_eq!(wait_op(&app, &down.str("id")).await["state"], "succeeded");
    writers.wait_beyond(0, writers.created(0).await + 5).await;
    let acked = writers.stop().await;

    let rows = tasks_in(&app.shared_owner().await, &t.id).await;
    assert_eq!(rows.len(), acked[0].created.len());
    for (id, title) in &acked[0].titles {
        assert_eq!(rows.get(id), Some(title));
    }
    assert_no_leftovers(&app).await;
    app.finish().await;
}
