//! Tenant transactions end cleanly however they end: committed with the last statement, failed in
//! the server, failed in the client before anything was sent, or abandoned while a statement was
//! in flight. Afterwards no pooled connection is left inside a transaction (so none can carry a
//! tenant's `SET LOCAL` into another request), and only what was committed is in the database.

use std::sync::Arc;
use std::time::Duration;

use platform_tests::{TestApp, eventually};
use tenancy::catalog::Tenant;
use tenancy::ids::TenantId;
use uuid::Uuid;

async fn tenant(app: &TestApp, slug: &str) -> Arc<Tenant> {
    let t = app.tenant(slug, "shared", None).await;
    app.app
        .tenancy
        .resolver
        .tenant(TenantId::parse(&t.id).expect("id"))
        .await
        .expect("catalog")
        .expect("tenant")
}

/// Waits until no data-plane connection to the shared database is inside a transaction.
async fn no_open_transaction(app: &TestApp) {
    let owner = app.shared_owner().await;
    let db = app.shared_db.clone();
    let closed = eventually(Duration::from_secs(10), || {
        let owner = &owner;
        let db = db.clone();
        async move {
            owner
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE usename = 'platform_app' AND datname = $1 AND xact_start IS NOT NULL",
                    &[&db],
                )
                .await
                .expect("pg_stat_activity")
                .get::<_, i64>(0)
                == 0
        }
    })
    .await;
    assert!(
        closed.is_some(),
        "a pooled connection was left inside a transaction"
    );
}

async fn project_exists(app: &TestApp, id: Uuid) -> bool {
    app.shared_owner()
        .await
        .query_opt("SELECT 1 FROM projects WHERE id = $1", &[&id])
        .await
        .expect("select")
        .is_some()
}

const INSERT_PROJECT: &str = "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'p')";

#[tokio::test]
async fn every_way_a_transaction_ends_leaves_no_connection_inside_one() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "alpha").await;
    let dp = &app.app.tenancy.dataplane;

    // Committed together with the last statement.
    let committed = Uuid::now_v7();
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    tx.query("SELECT 1", &[]).await.expect("first statement");
    let n = tx
        .execute_and_commit(INSERT_PROJECT, &[&a.id.as_uuid(), &committed])
        .await
        .expect("insert and commit");
    assert_eq!(n, 1);
    assert!(project_exists(&app, committed).await);
    no_open_transaction(&app).await;

    // The last statement fails in the server: the COMMIT behind it rolls back the earlier write.
    let rolled_back = Uuid::now_v7();
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    tx.execute(INSERT_PROJECT, &[&a.id.as_uuid(), &rolled_back])
        .await
        .expect("insert");
    tx.execute_and_commit(INSERT_PROJECT, &[&a.id.as_uuid(), &committed])
        .await
        .expect_err("duplicate key");
    assert!(!project_exists(&app, rolled_back).await);
    no_open_transaction(&app).await;

    // The last statement fails in the client (a parameter of the wrong type): nothing is
    // committed, and the transaction is rolled back.
    let never = Uuid::now_v7();
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    tx.execute(INSERT_PROJECT, &[&a.id.as_uuid(), &never])
        .await
        .expect("insert");
    tx.query_and_commit("SELECT $1::int", &[&"not an int"])
        .await
        .expect_err("does not encode");
    no_open_transaction(&app).await;
    assert!(!project_exists(&app, never).await);

    // Abandoned while the first statement is in flight (a client that disconnects).
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(50),
        tx.query("SELECT pg_sleep(0.5)", &[]),
    )
    .await;
    assert!(abandoned.is_err(), "the statement should still be running");
    drop(tx);
    no_open_transaction(&app).await;
    app.finish().await;
}
