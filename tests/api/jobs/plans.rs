//! The claim keeps plans that stay cheap however deep the queue (tenant V21): its statements
//! keep generic plans, made once per connection and reused (the pick in the partial indexes'
//! order, the update by the picked rows' addresses), so a plan made while the table was near
//! empty does not read a whole tenant once it holds 20,000 jobs. The plans are PostgreSQL's own
//! (`auto_explain` of the statements inside the function, sent back as notices).

use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use platform_tests::clusters;
use tokio_postgres::{AsyncMessage, NoTls};

use super::*;

/// A superuser session on the shared database that runs as the data-plane role for `tenant`,
/// with every statement's plan (nested ones too, with row counts and buffers) sent back as a
/// notice; and the notices so far.
async fn explained_session(
    app: &TestApp,
    tenant: TenantId,
) -> (tokio_postgres::Client, Arc<Mutex<Vec<String>>>) {
    let url = clusters().primary.url(&app.shared_db);
    let (client, mut connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&notices);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notice(n) = m {
                seen.lock().expect("notices").push(n.message().to_owned());
            }
        }
    });
    client
        .batch_execute(&format!(
            "LOAD 'auto_explain';
             SET auto_explain.log_min_duration = 0;
             SET auto_explain.log_nested_statements = on;
             SET auto_explain.log_analyze = on;
             SET auto_explain.log_buffers = on;
             SET auto_explain.log_level = notice;
             SET ROLE platform_app;
             SET app.tenant_id = '{tenant}';"
        ))
        .await
        .expect("session");
    (client, notices)
}

/// The plan of the statement (run since `from`) whose text contains `marker`.
fn plan_of(notices: &Mutex<Vec<String>>, from: usize, marker: &str) -> String {
    let all = notices.lock().expect("notices");
    all[from..]
        .iter()
        .find(|n| n.contains(marker))
        .unwrap_or_else(|| panic!("no plan for `{marker}` in {:#?}", &all[from..]))
        .clone()
}

/// Enqueues `n` jobs of `kind` for `t` as the owner, in one statement.
async fn backlog(app: &TestApp, t: &Tenant, kind: &str, n: i32) {
    app.shared_owner()
        .await
        .execute(
            "INSERT INTO jobs (tenant_id, id, kind, payload)
             SELECT $1, gen_random_uuid(), $2, '{}' FROM generate_series(1, $3)",
            &[&t.id.as_uuid(), &kind, &n],
        )
        .await
        .expect("backlog");
}

#[tokio::test]
async fn the_claim_keeps_generic_plans_that_read_only_what_it_claims_under_a_backlog() {
    let app = TestApp::spawn().await;
    app.app.stop_jobs();
    let a = app.tenant("plans", "shared", None).await;
    let t = tenant_of(&app, &a).await;
    let (db, notices) = explained_session(&app, t.id).await;
    let claim = "SELECT * FROM platform_jobs_claim($1, $2, $3)";
    let kinds = vec!["test.record"];
    let leases = vec![30.0_f64];

    // The first claim while the tenant has one job: its plans are made now, at this size.
    backlog(&app, &t, "test.record", 1).await;
    let first = db
        .query(claim, &[&kinds, &leases, &8])
        .await
        .expect("claim");
    assert_eq!(
        first
            .iter()
            .filter(|r| r.get::<_, Option<uuid::Uuid>>(0).is_some())
            .count(),
        1
    );

    // Then a 20,000-job backlog, and the same session claims again with the same plans.
    backlog(&app, &t, "test.record", 20_000).await;
    let from = notices.lock().expect("notices").len();
    let second = db
        .query(claim, &[&kinds, &leases, &8])
        .await
        .expect("claim");
    assert_eq!(second.len(), 8, "a full claim, no summary row");

    // The pick: the generic plan (parameters, not this call's values), each side in its own
    // index's order, stopping after the jobs it takes: nothing read and thrown away.
    let pick = plan_of(&notices, from, "FOR UPDATE SKIP LOCKED");
    assert!(pick.contains("ANY ($"), "not the generic plan:\n{pick}");
    assert!(pick.contains("Index Scan using jobs_due"), "{pick}");
    assert!(pick.contains("Index Scan using jobs_leased"), "{pick}");
    for bad in ["Seq Scan", "Bitmap", "Rows Removed by Filter"] {
        assert!(!pick.contains(bad), "`{bad}` in the pick:\n{pick}");
    }
    let due_scan = pick
        .lines()
        .find(|l| l.contains("Index Scan using jobs_due"))
        .expect("due scan");
    assert!(due_scan.contains("rows=8 loops=1)"), "{due_scan}");
    // The claim's update: by the picked rows' addresses (a TID scan), its generic plan too.
    let update = plan_of(&notices, from, "SET state = 'running'");
    assert!(update.contains("Tid Scan on jobs"), "{update}");
    assert!(update.contains("ANY ($"), "not the generic plan:\n{update}");
    for bad in ["Seq Scan", "Rows Removed by Filter"] {
        assert!(!update.contains(bad), "`{bad}` in:\n{update}");
    }
    drop(db);
    app.finish().await;
}
