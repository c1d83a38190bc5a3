//! The worker's statements against the move fence and the claim's own look-ahead: while a tenant
//! is fenced in a database (a move), none of its jobs is claimed, completed, given back or purged
//! there (tenant V20 checks the fence once per statement, for every row it changed); a claim that
//! comes back short says in the same statement when the tenant's next job is due.

use super::*;
use jobs::store::{self, FenceError};

/// Inserts a job of `kind` for `t`, due `in_secs` from now, as the tenant; returns its id.
async fn job_due_in(app: &TestApp, t: &TestTenant, kind: &str, in_secs: f64) -> uuid::Uuid {
    let mut tx = tx_of(app, t).await;
    let id: uuid::Uuid = tx
        .query_opt(
            "INSERT INTO jobs (tenant_id, id, kind, run_at)
             VALUES (app_tenant_id(), gen_random_uuid(), $1, now() + make_interval(secs => $2))
             RETURNING id",
            &[&kind, &in_secs],
        )
        .await
        .expect("insert")
        .expect("row")
        .get(0);
    tx.commit().await.expect("commit");
    id
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(tokio_postgres::error::SqlState::code)
}

#[tokio::test]
async fn a_fenced_tenants_jobs_are_neither_claimed_completed_given_back_nor_purged() {
    let app = TestApp::spawn().await;
    app.app.stop_jobs();
    let a = app.tenant("fencedjobs", "shared", None).await;
    let t = tenant_of(&app, &a).await;
    let dp = &app.app.tenancy.dataplane;
    let kinds = [("test.record".to_owned(), Duration::from_secs(30))];
    for _ in 0..3 {
        job_due_in(&app, &a, "test.record", 0.0).await;
    }
    let held = store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 2)
        .await
        .expect("claim");
    assert_eq!(held.len(), 2);
    let owner = app.shared_owner().await;
    owner
        .execute(
            "UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '30 days'
             WHERE tenant_id = $1 AND state = 'pending'",
            &[&t.id.as_uuid()],
        )
        .await
        .expect("an old finished job");
    // Leases that ran out: a claim would rescue these jobs, but not in a fenced tenant.
    owner
        .execute(
            "UPDATE jobs SET lease_until = now() - interval '1 second'
             WHERE tenant_id = $1 AND state = 'running'",
            &[&t.id.as_uuid()],
        )
        .await
        .expect("expire the leases");
    owner
        .execute(
            "INSERT INTO tenant_fences (tenant_id, reason) VALUES ($1, 'test')",
            &[&t.id.as_uuid()],
        )
        .await
        .expect("fence");
    let states = || async {
        app.shared_owner()
            .await
            .query(
                "SELECT state, lease_token FROM jobs WHERE tenant_id = $1 ORDER BY id",
                &[&t.id.as_uuid()],
            )
            .await
            .expect("states")
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<uuid::Uuid>>(1)))
            .collect::<Vec<_>>()
    };
    let before = states().await;
    let claimed = store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 10).await;
    assert_eq!(sqlstate(&claimed.expect_err("claim")), Some("TF001"));
    let pairs: Vec<_> = held.iter().map(|j| (j.id, j.lease)).collect();
    let done = store::complete_batch(dp.connect(&t).await.expect("conn"), &pairs).await;
    assert_eq!(sqlstate(&done.expect_err("batch")), Some("TF001"));
    let tx = dp.connect(&t).await.expect("conn").begin();
    match store::complete(tx, held[0].id, held[0].lease).await {
        Err(FenceError::Db(e)) => assert_eq!(sqlstate(&e), Some("TF001"), "{e}"),
        other => panic!("completion of a fenced tenant's job: {other:?}"),
    }
    let back = store::release(dp.connect(&t).await.expect("conn"), &pairs).await;
    assert_eq!(sqlstate(&back.expect_err("release")), Some("TF001"));
    let mut tx = tx_of(&app, &a).await;
    let purged = tx
        .execute(
            "DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < now() - interval '14 days'",
            &[],
        )
        .await;
    assert_eq!(sqlstate(&purged.expect_err("purge")), Some("TF001"));
    drop(tx);
    let mut tx = tx_of(&app, &a).await;
    match jobs::enqueue(
        &mut tx,
        NewJob::new(kind("test.record"), serde_json::json!({})),
    )
    .await
    {
        Err(jobs::EnqueueError::Db(e)) => assert_eq!(sqlstate(&e), Some("TF001"), "{e}"),
        other => panic!("enqueue for a fenced tenant: {other:?}"),
    }
    drop(tx);
    assert_eq!(states().await, before, "a fenced tenant's jobs changed");

    // Unfenced, the same statements go through.
    owner
        .execute(
            "DELETE FROM tenant_fences WHERE tenant_id = $1",
            &[&t.id.as_uuid()],
        )
        .await
        .expect("unfence");
    let rescued = store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 10)
        .await
        .expect("claim");
    assert_eq!(rescued.len(), 2, "both orphans rescued");
    let pairs: Vec<_> = rescued.iter().map(|j| (j.id, j.lease)).collect();
    let done = store::complete_batch(dp.connect(&t).await.expect("conn"), &pairs)
        .await
        .expect("complete");
    assert_eq!(done.len(), 2);
    app.finish().await;
}

#[tokio::test]
async fn a_short_claim_says_when_the_next_claimable_job_is_due() {
    let app = TestApp::spawn().await;
    app.app.stop_jobs();
    let a = app.tenant("lookahead", "shared", None).await;
    let t = tenant_of(&app, &a).await;
    let dp = &app.app.tenancy.dataplane;
    // A 60 s lease, so the claimed job's own lease end is not the earliest thing due.
    let kinds = [("test.record".to_owned(), Duration::from_secs(60))];
    let now = time::OffsetDateTime::now_utc();
    let due_now = job_due_in(&app, &a, "test.record", 0.0).await;
    job_due_in(&app, &a, "test.record", 20.0).await;
    // Due now, but of a kind this worker does not run, or paused: not the next for it.
    job_due_in(&app, &a, "test.other", 0.0).await;
    job_due_in(&app, &a, "test.noop", 0.0).await;
    let kinds_and_paused = [
        kinds[0].clone(),
        ("test.noop".to_owned(), Duration::from_secs(60)),
    ];
    let claim = store::claim_with_next_due(
        dp.connect(&t).await.expect("conn"),
        &kinds_and_paused,
        &["test.noop".to_owned()],
        8,
    )
    .await
    .expect("claim");
    assert_eq!(claim.jobs.len(), 1);
    assert_eq!(claim.jobs[0].id.as_uuid(), due_now);
    let next = claim.next_due.expect("a short claim says when more is due");
    let ahead = (next - now).as_seconds_f64();
    assert!(
        (15.0..25.0).contains(&ahead),
        "next due {ahead:.1} s from now, not the scheduled job's 20 s"
    );
    // Nothing left due now: a claim of one comes back empty and still says when.
    let empty = store::claim_with_next_due(dp.connect(&t).await.expect("conn"), &kinds, &[], 1)
        .await
        .expect("claim");
    assert!(empty.jobs.is_empty());
    assert!(empty.next_due.is_some());
    // A full claim says nothing (more is likely due now).
    job_due_in(&app, &a, "test.record", 0.0).await;
    let full = store::claim_with_next_due(dp.connect(&t).await.expect("conn"), &kinds, &[], 1)
        .await
        .expect("claim");
    assert_eq!(full.jobs.len(), 1);
    assert!(full.next_due.is_none());
    app.finish().await;
}
