//! Verification before and under the fence: rows changed between the pre-fence comparison and
//! the fence are compared exactly, and a corrupted target row (before or after the pre-fence
//! comparison) is caught and rolls the move back.

use super::*;

/// Steps up to and including `precheck`: prepare, publish, subscribe, copy, precheck.
const THROUGH_PRECHECK: usize = 5;
/// Steps up to and including `copy`.
const THROUGH_COPY: usize = 4;

async fn tenant_row(app: &TestApp, t: &TestTenant) -> tenancy::catalog::Tenant {
    app.app
        .tenancy
        .catalog
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant")
}

pub(super) async fn start_promotion(app: &TestApp, t: &TestTenant) -> tenancy::ids::OperationId {
    app.app
        .tenancy
        .mover
        .start(
            &tenant_row(app, t).await,
            &MoveRequest::Dedicated {
                server: "second".into(),
            },
        )
        .await
        .expect("start")
        .id
}

/// The target database of an operation that has not switched (on the second cluster).
pub(super) async fn target_db(
    end: &tenancy::catalog::operations::OperationRow,
) -> tokio_postgres::Client {
    let db = end.target["database"].as_str().expect("target database");
    connect(&clusters().second.url(db)).await
}

#[tokio::test]
async fn rows_changed_between_the_precheck_and_the_fence_are_verified_exactly() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    let t = app.tenant("delta", "shared", None).await;
    let p = t.api.create_project("kept").await.str("id");
    let doomed = t.api.create_project("doomed").await.str("id");
    for title in ["d1", "d2"] {
        t.api.create_task(&doomed, title).await.assert_status(201);
    }
    let mut updated = Vec::new();
    for k in 0..3 {
        updated.push(t.api.create_task(&p, &format!("u{k}")).await.str("id"));
    }
    seed_tasks(&app, &t, &p, 500).await;

    let op = start_promotion(&app, &t).await;
    let at_fence = mover.run_steps(op, THROUGH_PRECHECK).await.expect("run");
    assert_eq!(at_fence.step.as_str(), "fence");
    assert!(
        at_fence.progress["verified_point"].is_object(),
        "{}",
        at_fence.progress
    );
    // The whole tenant (tasks, projects, its users, roles, audit events ...) was compared.
    let compared = at_fence.progress["precheck_rows"].as_i64().expect("rows");
    assert!(compared >= 500 + 3 + 2 + 2, "{}", at_fence.progress);
    // The copy sampled how far its slot trailed the source (the operation metrics' lag gauge).
    assert!(
        at_fence.progress["replication_lag_bytes"]
            .as_i64()
            .is_some_and(|b| b >= 0),
        "{}",
        at_fence.progress
    );

    // Between the pre-fence comparison and the fence: inserts, updates and deletes.
    for k in 0..3 {
        t.api
            .create_task(&p, &format!("new {k}"))
            .await
            .assert_status(201);
    }
    for id in &updated {
        t.api
            .update_task(&p, id, json!({"title": format!("{id} renamed")}))
            .await
            .assert_status(200);
    }
    t.api.delete_project(&doomed).await.assert_status(204);

    let end = mover.run(op).await.expect("run");
    assert_eq!(end.state.as_str(), "succeeded", "{:?}", end.error);
    // Only what changed after the point was compared under the fence: 3 inserts, 3 updates and
    // a project with its 2 tasks, plus whatever the API appended alongside (audit events).
    let keys = end.progress["verified_keys"]
        .as_u64()
        .expect("verified keys");
    assert!(
        (3 + 3 + 1 + 2..500).contains(&keys),
        "keys compared under the fence: {}",
        end.progress
    );

    // The dedicated copy holds exactly the source's rows at the fence (the source copy stays,
    // fenced, until purged).
    let (_, db) = dedicated_db(&app, &t).await;
    let moved = tasks_in(&db, &t.id).await;
    let source = tasks_in(&app.shared_owner().await, &t.id).await;
    assert_eq!(moved, source);
    assert_eq!(moved.len(), 500 + 3 + 3);
    for id in &updated {
        assert_eq!(moved.get(id), Some(&format!("{id} renamed")));
    }
    t.api.create_task(&p, "after").await.assert_status(201);
    assert_no_leftovers(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn a_corrupted_target_row_is_caught_and_the_move_rolls_back() {
    let app = TestApp::spawn().await;
    app.app.stop_resuming();
    let mover = &app.app.tenancy.mover;
    // Corrupted before the pre-fence comparison (after the copy), and after it (before the
    // fence): a row the source never changes again, so only the comparison can notice.
    for (name, steps) in [("early", THROUGH_COPY), ("late", THROUGH_PRECHECK)] {
        let t = app.tenant(name, "shared", None).await;
        let p = t.api.create_project("p").await.str("id");
        let victim = t.api.create_task(&p, "original").await.str("id");
        seed_tasks(&app, &t, &p, 300).await;
        let op = start_promotion(&app, &t).await;
        let partial = mover.run_steps(op, steps).await.expect("run");
        assert_eq!(partial.state.as_str(), "running", "{name}");

        // Silently, as a faulty apply or disk would: as a replica session, so none of the
        // target's own triggers (audit) record it.
        let target = target_db(&partial).await;
        target
            .batch_execute("SET session_replication_role = replica")
            .await
            .expect("replica");
        let changed = target
            .execute(
                "UPDATE tasks SET title = 'corrupted' WHERE id = $1",
                &[&uuid::Uuid::parse_str(&victim).expect("uuid")],
            )
            .await
            .expect("corrupt");
        assert_eq!(changed, 1);

        let end = mover.run(op).await.expect("run");
        assert_eq!(end.state.as_str(), "failed", "{name}: {:?}", end.progress);
        let error = end.error.clone().unwrap_or_default();
        assert!(
            error.contains("verification failed") && error.contains("tasks"),
            "{name}: {error}"
        );
        // Rolled back: still shared, writable, the row as the source has it, no target left.
        assert_eq!(
            tenant_row(&app, &t).await.placement,
            tenancy::catalog::Placement::Shared
        );
        t.api.create_task(&p, "after").await.assert_status(201);
        let shared = tasks_in(&app.shared_owner().await, &t.id).await;
        assert_eq!(shared.get(&victim).map(String::as_str), Some("original"));
        let second = connect(&clusters().second.url("postgres")).await;
        let db = end.target["database"].as_str().expect("db");
        assert!(
            second
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
                .await
                .expect("q")
                .is_none(),
            "{name}: target database left"
        );
    }
    assert_no_leftovers(&app).await;
    app.finish().await;
}
