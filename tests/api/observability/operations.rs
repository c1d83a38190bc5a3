//! Operation metrics through a real Prometheus: a placement move stuck in its step (with its
//! replication lag), the latest
//! fleet migration run with a failed database, and the audit seal lag while the sealer is
//! stopped, each as the on-call engineer's alert rules read them.

use axum::http::Method;
use platform_tests::prometheus::Prometheus;
use platform_tests::{TestApp, clusters, connect};

#[tokio::test]
async fn moves_fleet_migrations_and_seal_lag_reach_prometheus() {
    let app = TestApp::spawn_with(&[("PLATFORM_METRICS_LISTEN", "127.0.0.1:0")]).await;
    // Operations are written below as a crashed runner would leave them: nobody resumes them.
    app.app.stop_resuming();
    app.app.stop_sealing();
    let t = app.tenant("ops-a", "shared", None).await;
    let cp = connect(&clusters().primary.url(&app.control_db)).await;
    let tenant: uuid::Uuid = t.id.parse().expect("tenant id");
    cp.execute(
        "INSERT INTO operations (id, kind, tenant_id, state, step, source, target, started_at,
                                 updated_at, progress)
         VALUES ($1, 'promote', $2, 'running', 'copy', '{}', '{}', now() - interval '3 hours',
                 now() - interval '2 hours', '{\"replication_lag_bytes\": 734003200}')",
        &[&uuid::Uuid::now_v7(), &tenant],
    )
    .await
    .expect("a stuck promotion");
    let run = uuid::Uuid::now_v7();
    cp.execute(
        "INSERT INTO migration_runs (id, runner, target_version, options, state, planned)
         VALUES ($1, 'test', 99, '{}', 'failed', 2)",
        &[&run],
    )
    .await
    .expect("a failed run");
    cp.execute(
        "INSERT INTO migration_ledger (run_id, db_key, server, db_name, phase, state,
                                       target_version)
         VALUES ($1, 'shared', 'primary', 'x', 'canary', 'failed', 99),
                ($1, 'other', 'primary', 'y', 'main', 'pending', 99)",
        &[&run],
    )
    .await
    .expect("its ledger");
    // An audited write with no sealer running: its event stays unsealed.
    app.api(
        &t,
        Method::POST,
        "/api/v1/projects",
        Some(serde_json::json!({"name": "unsealed"})),
    )
    .await
    .assert_status(201);

    let prom = Prometheus::scraping(&app).await;
    prom.wait_for(
        r#"platform_operations{kind="promote",state="running"}"#,
        |v| v == 1.0,
    )
    .await;
    prom.wait_for(
        r#"platform_operation_step_seconds{kind="promote",step="copy"}"#,
        |v| v >= 7000.0,
    )
    .await;
    prom.wait_for(
        r#"platform_operation_replication_lag_bytes{kind="promote"}"#,
        |v| v == 734_003_200.0,
    )
    .await;
    prom.wait_for(r#"platform_operation_age_seconds{kind="promote"}"#, |v| {
        v >= 10_000.0
    })
    .await;
    prom.wait_for(
        r#"platform_fleet_migration_last_run{state="failed"}"#,
        |v| v == 1.0,
    )
    .await;
    prom.wait_for(
        r#"platform_fleet_migration_databases{state="failed"}"#,
        |v| v == 1.0,
    )
    .await;
    prom.wait_for(r#"platform_fleet_migration_planned"#, |v| v == 2.0)
        .await;
    // The lag grows while nothing seals.
    let first = prom
        .wait_for(r#"max(platform_audit_seal_lag_seconds)"#, |v| v > 0.0)
        .await;
    prom.wait_for(r#"max(platform_audit_seal_lag_seconds)"#, |v| {
        v > first + 1.0
    })
    .await;
}
