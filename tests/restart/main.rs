//! PostgreSQL restarted while jobs run (issue 16): no job is lost and none completes twice.
//!
//! Its own test binary, so the clusters it restarts are its own (every test binary starts its
//! own throwaway clusters): the `api` tests never see the restart.

use std::time::Duration;

use jobs::{JobContext, JobFailure, KindSpec, NewJob, Registry, Worker, WorkerConfig};
use platform_tests::clusters::clusters;
use platform_tests::{TestApp, TestTenant, eventually};

/// Enqueues `n` effect jobs for `t` in transactions of ten; returns their ids. A transaction that
/// fails (the server is restarting) is retried whole: it committed nothing.
async fn enqueue_batch(app: &TestApp, t: &TestTenant, n: usize) -> Vec<jobs::JobId> {
    let tenant = app
        .app
        .tenancy
        .catalog
        .tenant_by_slug(&t.slug)
        .await
        .expect("catalog")
        .expect("tenant");
    let mut ids = Vec::new();
    while ids.len() < n {
        let attempt = async {
            let mut tx = app
                .app
                .tenancy
                .dataplane
                .connect(&tenant)
                .await
                .ok()?
                .begin();
            let mut batch = Vec::new();
            for _ in 0..10 {
                let job = NewJob::new(
                    jobs::JobKind::parse("test.effect").expect("kind"),
                    serde_json::json!({}),
                );
                batch.push(jobs::enqueue(&mut tx, job).await.ok()??);
            }
            tx.commit().await.ok()?;
            Some(batch)
        };
        match attempt.await {
            Some(batch) => ids.extend(batch),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    ids
}

/// How many jobs of `ids` succeeded, and the effect rows of each (by the job's id).
async fn tally(app: &TestApp, t: &TestTenant, ids: &[jobs::JobId]) -> (usize, Vec<i64>) {
    let Ok(db) = tokio::time::timeout(Duration::from_secs(5), app.tenant_db(t)).await else {
        return (0, Vec::new());
    };
    let uuids: Vec<uuid::Uuid> = ids.iter().map(jobs::JobId::as_uuid).collect();
    let succeeded: i64 = db
        .query_one(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND state = 'succeeded'",
            &[&uuids],
        )
        .await
        .map_or(0, |r| r.get(0));
    let names: Vec<String> = ids.iter().map(|id| format!("effect:{id}")).collect();
    let effects: Vec<i64> = db
        .query(
            "SELECT count(p.name) FROM unnest($1::text[]) AS n(name)
             LEFT JOIN projects p ON p.name = n.name GROUP BY n.name ORDER BY n.name",
            &[&names],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
        .unwrap_or_default();
    (usize::try_from(succeeded).unwrap_or(0), effects)
}

#[tokio::test]
async fn a_postgresql_restart_mid_run_loses_no_job_and_completes_none_twice() {
    let app = TestApp::spawn().await;
    let shared = app.tenant("restartshared", "shared", None).await;
    let dedicated = app.tenant("restartdedicated", "dedicated", None).await;

    // Each job writes its effect in its own transaction, which also completes it.
    let effect = |mut ctx: JobContext| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = ctx
            .tx
            .execute(
                "INSERT INTO projects (tenant_id, id, name) VALUES (app_tenant_id(), $1, $2)",
                &[&uuid::Uuid::now_v7(), &format!("effect:{}", ctx.id)],
            )
            .await;
        (ctx, r.map(|_| ()).map_err(JobFailure::from))
    };
    let spec = KindSpec {
        max_attempts: 50,
        lease: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(500),
    };
    let worker = tokio::spawn(
        Worker::new(
            app.app.tenancy.clone(),
            Registry::default().with("test.effect", spec, effect),
            // Hints sent while the server is down are lost: the sweep finds their jobs.
            WorkerConfig {
                sweep_every: Duration::from_secs(2),
                ..WorkerConfig::default()
            },
        )
        .run(),
    );

    let mut all: Vec<(&TestTenant, Vec<jobs::JobId>)> = Vec::new();
    for t in [&shared, &dedicated] {
        all.push((t, enqueue_batch(&app, t, 200).await));
    }
    // Mid-run: some jobs done, most not.
    let started = eventually(Duration::from_secs(60), || async {
        tally(&app, &shared, &all[0].1).await.0 >= 20
    })
    .await;
    assert!(started.is_some(), "the worker never got going");
    let before: usize = {
        let mut n = 0;
        for (t, ids) in &all {
            n += tally(&app, t, ids).await.0;
        }
        n
    };
    assert!(
        before < 400,
        "every job finished before the restart: nothing was tested"
    );

    // The primary server (control plane, shared database, dedicated databases) restarts: open
    // transactions are rolled back and every connection is cut.
    tokio::task::spawn_blocking(|| clusters().primary.restart(false))
        .await
        .expect("join")
        .expect("pg_ctl restart");

    // Work keeps arriving after the restart.
    for (t, ids) in &mut all {
        ids.extend(enqueue_batch(&app, t, 100).await);
    }

    let done = eventually(Duration::from_secs(120), || async {
        let mut ok = true;
        for (t, ids) in &all {
            ok &= tally(&app, t, ids).await.0 == ids.len();
        }
        ok
    })
    .await;
    for (t, ids) in &all {
        let (succeeded, effects) = tally(&app, t, ids).await;
        assert_eq!(
            succeeded,
            ids.len(),
            "{}: jobs lost or stuck (done={done:?})",
            t.slug
        );
        assert_eq!(effects.len(), ids.len());
        let twice = effects.iter().filter(|&&n| n > 1).count();
        let never = effects.iter().filter(|&&n| n == 0).count();
        assert_eq!(
            twice, 0,
            "{}: {twice} jobs completed their effect twice",
            t.slug
        );
        assert_eq!(
            never, 0,
            "{}: {never} succeeded jobs without their effect",
            t.slug
        );
    }
    worker.abort();
    app.finish().await;
}
