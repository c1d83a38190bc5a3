//! Tenant transactions end cleanly however they end: committed with the last statement, failed in
//! the server, failed in the client before anything was sent, or abandoned while a statement was
//! in flight. Afterwards no pooled connection is left inside a transaction (so none can carry a
//! tenant's `SET LOCAL` into another request), and only what was committed is in the database.

mod late_ready;

use std::sync::Arc;
use std::time::Duration;

use platform_tests::{TestApp, eventually};
use tenancy::catalog::Tenant;
use tenancy::dataplane::{DataPlane, PoolSizes};
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

/// A data plane with one shared connection, so every request below uses the same session.
fn one_connection(app: &TestApp, session_reuse: bool) -> DataPlane {
    let c = platform_tests::clusters();
    DataPlane::new(
        app.app.tenancy.catalog.clone(),
        app.app.tenancy.keyring.clone(),
        &c.primary.url(&app.shared_db),
        &c.app_password,
        PoolSizes {
            shared: 1,
            dedicated: 1,
        },
    )
    .expect("data plane")
    .with_session_reuse(session_reuse)
}

/// The `app.tenant_id` a one-statement request of `t` runs under.
async fn setting_seen(dp: &DataPlane, t: &Tenant) -> String {
    let rows = dp
        .connect(t)
        .await
        .expect("connect")
        .begin()
        .query_and_commit("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .expect("select");
    rows[0].get(0)
}

#[tokio::test]
async fn a_connection_kept_set_for_one_tenant_never_serves_another_under_it() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "sess-a").await;
    let b = tenant(&app, "sess-b").await;
    let dp = one_connection(&app, true);
    for t in [&a, &a, &b, &b, &a, &b, &a, &a] {
        assert_eq!(setting_seen(&dp, t).await, t.id.to_string());
    }
    // Repeats on a connection already set for the tenant went alone: a a, b b, a a. The others
    // sent the setting (kept for the session) and the statement in one exchange.
    assert_eq!(dp.session_reuses(), 3);
    assert_eq!(dp.single_exchanges(), 5);

    // A transaction of b that fails after setting b is rolled back, which restores a's value on
    // the connection: b's next request must set b again, not trust the rolled-back setting.
    for end_with_commit in [true, false] {
        assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
        let mut tx = dp.connect(&b).await.expect("connect").begin();
        tx.query("SELECT 1 / 0", &[])
            .await
            .expect_err("division by zero");
        if end_with_commit {
            tx.commit()
                .await
                .expect("commit of an aborted transaction rolls back");
        } else {
            drop(tx);
        }
        assert_eq!(setting_seen(&dp, &b).await, b.id.to_string());
        assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
    }
    no_open_transaction(&app).await;

    // Behind a transaction-mode pooler nothing is kept between transactions.
    let pooled = one_connection(&app, false);
    for t in [&a, &a, &b, &b, &a] {
        assert_eq!(setting_seen(&pooled, t).await, t.id.to_string());
    }
    assert_eq!(pooled.session_reuses(), 0);
    assert_eq!(pooled.single_exchanges(), 5);
    app.finish().await;
}

/// A one-statement request of `t` that fails: in the server (division by zero, a duplicate key),
/// in the client before anything is sent (a parameter that does not encode), or abandoned while
/// in flight.
async fn fail_one(dp: &DataPlane, t: &Tenant, how: usize, dup: Uuid) {
    let tx = dp.connect(t).await.expect("connect").begin();
    match how {
        0 => drop(
            tx.query_and_commit("SELECT 1 / 0", &[])
                .await
                .expect_err("division by zero"),
        ),
        1 => drop(
            tx.execute_and_commit(INSERT_PROJECT, &[&t.id.as_uuid(), &dup])
                .await
                .expect_err("duplicate key"),
        ),
        2 => drop(
            tx.query_and_commit("SELECT $1::int", &[&"not an int"])
                .await
                .expect_err("does not encode"),
        ),
        _ => {
            let abandoned = tokio::time::timeout(
                Duration::from_millis(50),
                tx.query_and_commit("SELECT pg_sleep(0.5)", &[]),
            )
            .await;
            assert!(abandoned.is_err(), "the statement should still be running");
        }
    }
}

/// Projects the tenant of `t` sees (row-level security) through one-statement requests.
async fn projects_seen(dp: &DataPlane, t: &Tenant) -> Vec<Uuid> {
    dp.connect(t)
        .await
        .expect("connect")
        .begin()
        .query_and_commit("SELECT id FROM projects ORDER BY id", &[])
        .await
        .expect("select")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_one_exchange_path_never_runs_a_statement_under_another_tenants_setting() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "wire-a").await;
    let b = tenant(&app, "wire-b").await;
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for session_reuse in [true, false] {
        let dp = one_connection(&app, session_reuse);
        // One project each, written in one exchange on the same connection, alternating.
        let (pa, pb) = (Uuid::now_v7(), Uuid::now_v7());
        of_a.push(pa);
        of_b.push(pb);
        for (t, p) in [(&a, pa), (&b, pb)] {
            let n = dp
                .connect(t)
                .await
                .expect("connect")
                .begin()
                .execute_and_commit(INSERT_PROJECT, &[&t.id.as_uuid(), &p])
                .await
                .expect("insert");
            assert_eq!(n, 1);
        }
        // Every way b's one-statement request can fail, each between requests of a (the first
        // of which sets the connection for a, so the next one may go alone) and followed by b
        // and a again: nobody runs under the other's setting, or under a leftover of a failure.
        for how in 0..4 {
            for _ in 0..2 {
                assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
            }
            fail_one(&dp, &b, how, pb).await;
            assert_eq!(
                setting_seen(&dp, &a).await,
                a.id.to_string(),
                "after failure {how}"
            );
            assert_eq!(projects_seen(&dp, &a).await, of_a, "after failure {how}");
            assert_eq!(projects_seen(&dp, &b).await, of_b, "after failure {how}");
            assert_eq!(setting_seen(&dp, &b).await, b.id.to_string());
        }
        assert!(dp.single_exchanges() > 0);
        no_open_transaction(&app).await;
    }
    // Both projects of each tenant are stored under it.
    let owner = app.shared_owner().await;
    for t in [&a, &b] {
        let n: i64 = owner
            .query_one(
                "SELECT count(*) FROM projects WHERE tenant_id = $1",
                &[&t.id.as_uuid()],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 2);
    }
    app.finish().await;
}

#[tokio::test]
async fn one_exchange_writes_carry_the_audit_context_and_reads_never_do() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "wire-audit").await;
    let dp = one_connection(&app, true);
    let ctx = Arc::new(tenancy::context::AuditContext::new(
        Some("req-1".into()),
        "POST /api/v1/projects".into(),
        None,
        None,
    ));
    ctx.set_actor(tenancy::context::Actor::user("u-1"));
    let expected = ctx.encode();
    let (read, written) = Arc::clone(&ctx)
        .scope(async {
            let read: Option<String> = dp
                .connect(&a)
                .await
                .expect("connect")
                .begin()
                .query_and_commit("SELECT current_setting('app.audit', true)", &[])
                .await
                .expect("read")[0]
                .get(0);
            let written: Option<String> = dp
                .connect(&a)
                .await
                .expect("connect")
                .begin()
                .query_and_commit(
                    "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'p')
                     RETURNING current_setting('app.audit', true)",
                    &[&a.id.as_uuid(), &Uuid::now_v7()],
                )
                .await
                .expect("write")[0]
                .get(0);
            (read, written)
        })
        .await;
    assert!(
        read.as_deref().is_none_or(str::is_empty),
        "a read encoded the audit context: {read:?}"
    );
    assert_eq!(written.as_deref(), Some(expected.as_str()));
    assert_eq!(dp.single_exchanges(), 2);
    // The context was transaction-local: the next read on the same connection does not see it.
    let after: Option<String> = dp
        .connect(&a)
        .await
        .expect("connect")
        .begin()
        .query_and_commit("SELECT current_setting('app.audit', true)", &[])
        .await
        .expect("read")[0]
        .get(0);
    assert!(after.as_deref().is_none_or(str::is_empty), "{after:?}");
    app.finish().await;
}

#[tokio::test]
async fn a_slow_statement_or_an_idle_transaction_cannot_hold_a_connection() {
    let app = TestApp::spawn_with(&[
        ("PLATFORM_STATEMENT_TIMEOUT", "1"),
        ("PLATFORM_IDLE_IN_TRANSACTION_TIMEOUT", "1"),
    ])
    .await;
    let a = tenant(&app, "limits").await;
    let dp = &app.app.tenancy.dataplane;

    // Slower than the statement timeout: cancelled by the server, answered as a 503 to retry.
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    let slow = tx
        .query("SELECT pg_sleep(5)", &[])
        .await
        .expect_err("cancelled");
    assert_eq!(
        slow.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{slow:?}"
    );
    let answer = axum::response::IntoResponse::into_response(platform::error::ApiError::from(slow));
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    drop(tx);

    // A transaction left open (a bug awaiting something else) is ended by the server.
    let mut tx = dp.connect(&a).await.expect("connect").begin();
    tx.query("SELECT 1", &[]).await.expect("first statement");
    // Watched from outside (a statement on `tx` would make it busy again): the server ends the
    // idle transaction's session after the timeout.
    let owner = app.shared_owner().await;
    let ended = eventually(Duration::from_secs(30), || async {
        owner
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE usename = 'platform_app' AND state = 'idle in transaction'",
                &[],
            )
            .await
            .is_ok_and(|r| r.get::<_, i64>(0) == 0)
    })
    .await;
    assert!(ended.is_some(), "the idle transaction was never ended");
    assert!(
        tx.query("SELECT 1", &[]).await.is_err(),
        "the session was ended"
    );
    drop(tx);
    no_open_transaction(&app).await;

    // The pool recovers: the next request gets a working connection.
    let ok = eventually(Duration::from_secs(10), || async {
        let mut tx = dp.connect(&a).await.expect("connect").begin();
        tx.query("SELECT 1", &[]).await.is_ok() && tx.commit().await.is_ok()
    })
    .await;
    assert!(ok.is_some());
    app.finish().await;
}
