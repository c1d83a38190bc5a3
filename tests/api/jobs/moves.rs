//! A promotion with pending jobs and workers running: every job's effect is committed exactly
//! once, and the jobs end in the tenant's new database.

use serde_json::json;

use super::*;

const JOBS: i64 = 5_000;

#[tokio::test]
async fn a_promotion_with_5000_pending_jobs_runs_each_exactly_once_on_the_right_side() {
    let app = TestApp::spawn().await;
    let a = app.tenant("mover", "shared", None).await;
    let mut tx = tx_of(&app, &a).await;
    tx.execute(
        "INSERT INTO jobs (tenant_id, id, kind, payload)
         SELECT app_tenant_id(), gen_random_uuid(), 'test.effect', '{}'
         FROM generate_series(1, $1::bigint)",
        &[&JOBS],
    )
    .await
    .expect("bulk enqueue");
    tx.hint_after_commit();
    tx.commit().await.expect("commit");

    // Two workers (as two instances would run), each job's effect written in its completing
    // transaction: a project named after the job.
    let effect = |mut ctx: JobContext| async move {
        let r = ctx
            .tx
            .execute(
                "INSERT INTO projects (tenant_id, id, name) VALUES (app_tenant_id(), $1, $2)",
                &[&uuid::Uuid::now_v7(), &ctx.id.to_string()],
            )
            .await;
        (ctx, r.map(|_| ()).map_err(JobFailure::from))
    };
    let spec = KindSpec {
        lease: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(500),
        max_attempts: 50,
    };
    let workers: Vec<TestWorker> = (0..2)
        .map(|_| {
            TestWorker(tokio::spawn(
                Worker::new(
                    app.app.tenancy.clone(),
                    Registry::default().with("test.effect", spec, effect),
                    WorkerConfig {
                        concurrency: 4,
                        sweep_every: Duration::from_secs(2),
                        ..WorkerConfig::default()
                    },
                )
                .run(),
            ))
        })
        .collect();
    let shared = app.shared_owner().await;
    let started = eventually(Duration::from_secs(30), || async {
        let n: i64 = shared
            .query_one("SELECT count(*) FROM projects", &[])
            .await
            .expect("count")
            .get(0);
        n >= 200
    })
    .await;
    assert!(started.is_some(), "the workers did not start");

    let op = app
        .operator()
        .change_placement(
            "mover",
            json!({"placement": "dedicated", "db_server": "second"}),
        )
        .await;
    op.assert_status(202);
    let done = crate::placement::wait_op(&app, &op.str("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    // Every job ends succeeded in the dedicated database, and each effect is there once.
    let (_, db) = crate::placement::dedicated_db(&app, &a).await;
    let finished = eventually(Duration::from_secs(240), || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM jobs WHERE state = 'succeeded'", &[])
            .await
            .expect("count")
            .get(0);
        n == JOBS
    })
    .await;
    let states = db
        .query("SELECT state, count(*) FROM jobs GROUP BY state", &[])
        .await
        .expect("states")
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect::<Vec<_>>();
    assert!(finished.is_some(), "not every job finished: {states:?}");
    drop(workers);
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT name) FROM projects p
             WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.id::text = p.name)",
            &[],
        )
        .await
        .expect("effects");
    let (effects, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(distinct, JOBS, "a job's effect is missing");
    assert_eq!(effects, JOBS, "a job's effect was committed twice");
    app.finish().await;
}
