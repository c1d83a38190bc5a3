//! Fairness: one tenant's deep queue does not starve another tenant's single job.

use super::*;

/// Jobs claimed per round trip and run at once by the worker under test.
const BATCH: usize = 4;
const CONCURRENCY: usize = 4;

#[tokio::test]
async fn a_single_job_of_tenant_b_starts_within_a_few_of_tenant_as_20000() {
    let app = TestApp::spawn().await;
    let a = app.tenant("busy", "shared", None).await;
    let b = app.tenant("quiet", "shared", None).await;
    // Tenant A enqueues 20,000 jobs in one transaction (one statement, as a bulk import would).
    let mut tx = tx_of(&app, &a).await;
    tx.execute(
        "INSERT INTO jobs (tenant_id, id, kind, payload)
         SELECT app_tenant_id(), gen_random_uuid(), 'test.noop', jsonb_build_object('n', n)
         FROM generate_series(1, 20000) n",
        &[],
    )
    .await
    .expect("bulk enqueue");
    tx.hint_after_commit();
    tx.commit().await.expect("commit");

    let runs = Runs::default();
    let _w = start_worker(
        &app,
        &runs,
        WorkerConfig {
            concurrency: CONCURRENCY,
            batch: BATCH,
            ..WorkerConfig::default()
        },
    );
    // A's queue is being worked on.
    let busy = eventually(Duration::from_secs(30), || async {
        runs.count("test.noop") >= 50
    })
    .await;
    assert!(busy.is_some(), "tenant A's jobs do not run");

    // Then B enqueues one. A's jobs are counted from the commit that makes B's job visible (and
    // hints the worker), not from before B's transaction: A rightly runs on while B's
    // transaction is still being written, for as long as that takes on a loaded machine.
    let mut tx = tx_of(&app, &b).await;
    let id = jobs::enqueue(
        &mut tx,
        NewJob::new(kind("test.record"), serde_json::json!({})),
    )
    .await
    .expect("enqueue")
    .expect("id");
    let before = runs.count("test.noop");
    let enqueued_at = std::time::Instant::now();
    tx.commit().await.expect("commit");
    let started = eventually(Duration::from_secs(60), || async {
        runs.count("test.record") == 1
    })
    .await;
    let waited = enqueued_at.elapsed();
    assert!(started.is_some(), "tenant B's job never started");
    let all = runs.all();
    let b_at = all.iter().position(|r| r.job == id).expect("B ran");
    let a_between = all[..b_at].iter().filter(|r| r.kind == "test.noop").count() - before;
    eprintln!(
        "fairness: B's job started after {waited:?}, with {a_between} of A's jobs started in \
         between; A had {} left",
        20_000 - all[..b_at].iter().filter(|r| r.kind == "test.noop").count()
    );
    // The bound: A's claim in flight when B's hint arrives (one batch) and the jobs it hands to
    // busy slots, plus at most one more batch of A's claimed before B's turn: never A's queue.
    assert!(
        a_between <= 2 * BATCH + CONCURRENCY,
        "{a_between} of A's jobs started before B's single job"
    );
    app.finish().await;
}
