//! A crash at any step resumes to completion; a cancel before cut-over rolls back cleanly.

use super::*;

#[tokio::test]
async fn a_crash_at_any_step_resumes_to_completion() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    // Every step (ten before `done`), and once more after the last.
    for k in 0..11 {
        let t = app.tenant(&format!("crash-{k}"), "shared", None).await;
        let p = t.api.create_project("p").await.str("id");
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
            k >= 10 || crashed.state.as_str() == "running" || crashed.state.as_str() == "pending",
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
        t.api.create_task(&p, "after").await.assert_status(201);
    }
    assert_no_leftovers(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn cancel_before_cutover_rolls_back_cleanly() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    // Every step before `switch`.
    for k in 0..9 {
        cancel_after_steps(&app, k).await;
    }
    app.operator()
        .cancel_operation(&uuid::Uuid::now_v7().to_string())
        .await
        .assert_problem(404);
    assert_no_leftovers(&app).await;
    app.finish().await;
}

/// Starts a promotion, runs `k` of its steps, cancels it: the tenant is still shared and
/// writable, and nothing of the target is left.
async fn cancel_after_steps(app: &TestApp, k: usize) {
    let mover = &app.app.tenancy.mover;
    let t = app.tenant(&format!("cancel-{k}"), "shared", None).await;
    let p = t.api.create_project("p").await.str("id");
    seed_tasks(app, &t, &p, 50).await;
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
    app.operator()
        .cancel_operation(&op.id.to_string())
        .await
        .assert_status(202);
    let end = mover.run(op.id).await.expect("run");
    assert_eq!(end.state.as_str(), "cancelled", "cancel after {k} steps");
    let now = app
        .app
        .tenancy
        .catalog
        .tenant(tenant.id)
        .await
        .expect("c")
        .expect("t");
    assert_eq!(now.placement, tenancy::catalog::Placement::Shared);
    t.api
        .create_task(&p, "after cancel")
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
