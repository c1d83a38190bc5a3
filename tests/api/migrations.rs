//! Tenant migrations across the fleet: failure isolation and convergence, concurrent runners,
//! canaries, status while a run is going on, the minimum-version gate (503), and the current code
//! on a database one migration ahead. The `platformctl` process itself (exit codes, JSON lines,
//! `kill -9`) is tested in `ops/tests/`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use platform_tests::{
    Req, TestApp, TestTenant, ahead, eventually, failing, head, migrations_up_to,
};
use serde_json::json;
use tenancy::migrate::fleet::{Events, FleetOptions, FleetReport};
use tenancy::migrate::ledger;
use tenancy::migrate::status::{DbState, Summary};

mod compat;
mod failures;
mod runs;

fn quiet() -> Events {
    Arc::new(|_| {})
}

fn opts() -> FleetOptions {
    FleetOptions {
        concurrency: 4,
        per_server: 2,
        ..FleetOptions::default()
    }
}

async fn run(app: &TestApp, head: i64, o: &FleetOptions) -> FleetReport {
    app.migrator()
        .run(migrations_up_to(head), o, quiet())
        .await
        .expect("the run starts")
}

/// How many times test migration `version` ran in a database (it logs itself).
async fn applications(app: &TestApp, t: &TestTenant, version: i64) -> i64 {
    app.tenant_db(t)
        .await
        .query_one(
            "SELECT count(*) FROM test_applications WHERE version::bigint = $1",
            &[&version],
        )
        .await
        .expect("count")
        .get(0)
}

async fn set_allow_connections(app: &TestApp, t: &TestTenant, allow: bool) {
    let url = app.tenant_db_url(t).await;
    let (base, db) = url.rsplit_once('/').expect("url has a database");
    let admin = platform_tests::connect(&format!("{base}/postgres")).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {allow}"
        ))
        .await
        .expect("alter database");
}

/// A session in a transaction that holds a lock the test migration `ahead()`'s `ALTER TABLE projects`
/// needs (`ROLLBACK` on it releases the lock).
async fn hold_projects_lock(app: &TestApp, t: &TestTenant) -> tokio_postgres::Client {
    let blocker = app.tenant_db(t).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE projects IN ACCESS SHARE MODE")
        .await
        .expect("lock");
    blocker
}
