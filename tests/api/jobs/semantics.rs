//! Execution semantics: transactional enqueue, the tenant's context, the fenced lease, retries
//! and dead letters, unique keys, scheduled jobs and platform schedules.

use super::*;
use jobs::store::{self, FenceError};

#[tokio::test]
async fn a_rolled_back_enqueue_never_runs_and_a_committed_one_runs_once_under_its_tenant() {
    let app = TestApp::spawn().await;
    let a = app.tenant("jobsa", "shared", None).await;
    let runs = Runs::default();
    let _w = start_worker(&app, &runs, WorkerConfig::default());

    // Rolled back: the job never existed.
    let mut tx = tx_of(&app, &a).await;
    let job = NewJob::new(kind("test.record"), serde_json::json!({"n": 1}));
    let lost = jobs::enqueue(&mut tx, job)
        .await
        .expect("enqueue")
        .expect("id");
    drop(tx);

    // Committed, with a secret sealed with the tenant's key.
    let mut tx = tx_of(&app, &a).await;
    let job = NewJob::new(kind("test.record"), serde_json::json!({"n": 2}))
        .seal_secret(&app.app.tenancy.keyring, &tx, "s3cret")
        .await
        .expect("seal");
    let kept = jobs::enqueue(&mut tx, job)
        .await
        .expect("enqueue")
        .expect("id");
    tx.commit().await.expect("commit");

    wait_state(&app, kept, "succeeded").await;
    let all = runs.all();
    assert_eq!(all.len(), 1, "{all:?}");
    let run = &all[0];
    assert_eq!(run.job, kept);
    assert_ne!(run.job, lost);
    // Its tenant's RLS setting and its tenant's key.
    assert_eq!(run.setting, a.id);
    assert_eq!(run.tenant.to_string(), a.id);
    assert_eq!(run.secret.as_deref(), Some("s3cret"));
    assert_eq!(state_of(&app, lost).await, None);
    // The tenant's audit log names the job as the actor of what it wrote (its completion is
    // not audited; its creation is, by the request's actor).
    app.finish().await;
}

/// A worker that stalls past its lease (paused, partitioned) finds the job rescued by another
/// worker and can neither complete, retry nor dead-letter it: its effects roll back.
#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_complete_retry_or_dead_letter() {
    let app = TestApp::spawn().await;
    let a = app.tenant("fence", "shared", None).await;
    let id = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.record"), serde_json::json!({})),
    )
    .await
    .expect("id");
    let t = tenant_of(&app, &a).await;
    let dp = &app.app.tenancy.dataplane;
    let kinds = [("test.record".to_owned(), Duration::from_millis(300))];

    // Worker 1 claims, then stalls past its lease.
    let first = store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 10)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    let stale = first[0].lease;
    // While the lease holds, nobody else gets the job.
    let none = store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 10)
        .await
        .expect("claim");
    assert!(none.is_empty());
    let rescued = eventually(Duration::from_secs(10), || async {
        !store::claim(dp.connect(&t).await.expect("conn"), &kinds, &[], 10)
            .await
            .expect("claim")
            .is_empty()
    })
    .await;
    assert!(rescued.is_some(), "the orphan was never rescued");
    let lease = app
        .shared_owner()
        .await
        .query_one(
            "SELECT lease_token, attempts FROM jobs WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("row");
    let (fresh, attempts): (uuid::Uuid, i32) = (lease.get(0), lease.get(1));
    assert_ne!(fresh, stale);
    assert_eq!(attempts, 2);

    // Worker 1 resumes: its completion (with an effect in the same transaction) is refused and
    // the effect rolled back; its retry and dead letter are refused too.
    let mut tx = dp.connect(&t).await.expect("conn").begin();
    tx.execute(
        "INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'stale effect')",
        &[&t.id.as_uuid(), &uuid::Uuid::now_v7()],
    )
    .await
    .expect("effect");
    let refused = store::complete(tx, id, stale).await;
    assert!(matches!(refused, Err(FenceError::LeaseLost)), "{refused:?}");
    let refused = store::fail(
        dp.connect(&t).await.expect("conn"),
        id,
        stale,
        Duration::ZERO,
        "x",
    )
    .await;
    assert!(matches!(refused, Err(FenceError::LeaseLost)), "{refused:?}");
    let effects: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM projects WHERE name = 'stale effect'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(effects, 0, "the stale worker's effect was committed");
    assert_eq!(state_of(&app, id).await.as_deref(), Some("running"));

    // The rescuer completes, once.
    let tx = dp.connect(&t).await.expect("conn").begin();
    store::complete(tx, id, fresh)
        .await
        .expect("the lease holder completes");
    assert_eq!(state_of(&app, id).await.as_deref(), Some("succeeded"));
    let tx = dp.connect(&t).await.expect("conn").begin();
    assert!(matches!(
        store::complete(tx, id, fresh).await,
        Err(FenceError::LeaseLost)
    ));
    app.finish().await;
}

#[tokio::test]
async fn failures_retry_with_backoff_then_dead_letter_with_the_last_error() {
    let app = TestApp::spawn().await;
    let a = app.tenant("retry", "shared", None).await;
    let runs = Runs::default();
    let _w = start_worker(&app, &runs, WorkerConfig::default());
    let id = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.fail"), serde_json::json!({})).max_attempts(3),
    )
    .await
    .expect("id");
    wait_state(&app, id, "dead").await;
    let row = app
        .shared_owner()
        .await
        .query_one(
            "SELECT attempts, last_error, finished_at IS NOT NULL FROM jobs WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("boom on purpose")
    );
    assert!(row.get::<_, bool>(2));
    // Three runs, each later than the one before by at least half its backoff (20 ms, 40 ms).
    let tries: Vec<Run> = runs.all().into_iter().filter(|r| r.job == id).collect();
    assert_eq!(
        tries.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    for (w, min_ms) in tries.windows(2).zip([10, 20]) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= time::Duration::milliseconds(min_ms),
            "retry after {gap}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn a_unique_key_collapses_enqueues_in_its_window() {
    let app = TestApp::spawn().await;
    let a = app.tenant("uniq", "shared", None).await;
    let job = || {
        NewJob::new(kind("test.record"), serde_json::json!({}))
            .unique("digest:today", Duration::from_secs(3600))
            .run_at(OffsetDateTime::now_utc() + Duration::from_secs(3600))
    };
    let first = enqueue(&app, &a, job())
        .await
        .expect("the first is enqueued");
    assert_eq!(enqueue(&app, &a, job()).await, None, "the second collapsed");
    // Another tenant's key is its own.
    let b = app.tenant("uniqb", "shared", None).await;
    assert!(enqueue(&app, &b, job()).await.is_some());
    // A short window lets the key go once it is over.
    let short = || {
        NewJob::new(kind("test.record"), serde_json::json!({}))
            // Long enough that the second enqueue lands inside it on a loaded machine.
            .unique("short", Duration::from_secs(3))
            .run_at(OffsetDateTime::now_utc() + Duration::from_secs(3600))
    };
    assert!(enqueue(&app, &a, short()).await.is_some());
    assert_eq!(enqueue(&app, &a, short()).await, None);
    let freed = eventually(Duration::from_secs(20), || async {
        enqueue(&app, &a, short()).await.is_some()
    })
    .await;
    assert!(freed.is_some(), "the key never freed after its window");
    let n: i64 = app
        .shared_owner()
        .await
        .query_one(
            "SELECT count(*) FROM jobs WHERE tenant_id = $1::text::uuid AND unique_key = 'digest:today'",
            &[&a.id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
    let _ = first;
    app.finish().await;
}

#[tokio::test]
async fn a_scheduled_job_runs_at_its_time_not_before() {
    let app = TestApp::spawn().await;
    let a = app.tenant("sched", "shared", None).await;
    let runs = Runs::default();
    let _w = start_worker(&app, &runs, WorkerConfig::default());
    let at = OffsetDateTime::now_utc() + Duration::from_millis(1500);
    let id = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.record"), serde_json::json!({})).run_at(at),
    )
    .await
    .expect("id");
    wait_state(&app, id, "succeeded").await;
    let run = runs.all().into_iter().find(|r| r.job == id).expect("ran");
    // The database's clock is the one the row's run_at is compared with.
    let run_at: OffsetDateTime = app
        .shared_owner()
        .await
        .query_one("SELECT run_at FROM jobs WHERE id = $1", &[&id.as_uuid()])
        .await
        .expect("row")
        .get(0);
    assert!(
        run.at >= run_at,
        "ran at {} before its time {run_at}",
        run.at
    );
    app.finish().await;
}

/// A platform schedule's slot is claimed by one instance only, and fans out as tenant jobs that
/// the platform's own worker runs.
#[tokio::test]
async fn a_platform_schedule_runs_once_per_slot_as_tenant_jobs() {
    let app = TestApp::spawn().await;
    let a = app.tenant("crona", "shared", None).await;
    let b = app.tenant("cronb", "dedicated", Some("local")).await;
    let tenancy = &app.app.tenancy;
    // Nothing is due in a fresh slot... until the schedule's time comes.
    let control =
        platform_tests::connect(&platform_tests::clusters().primary.url(&app.control_db)).await;
    control
        .batch_execute("UPDATE job_schedules SET next_run_at = now() + interval '1 hour'")
        .await
        .expect("reset");
    assert!(
        jobs::schedule::claim_due(tenancy)
            .await
            .expect("claim")
            .is_empty()
    );
    control
        .batch_execute("UPDATE job_schedules SET next_run_at = now() WHERE name = 'tokens.cleanup'")
        .await
        .expect("due");
    // Two instances race for the slot: one gets it.
    let other = app.another_instance().await;
    let (x, y) = tokio::join!(
        jobs::schedule::claim_due(tenancy),
        jobs::schedule::claim_due(&other.tenancy)
    );
    let mut got = x.expect("claim");
    got.extend(y.expect("claim"));
    assert_eq!(got, vec!["tokens.cleanup".to_owned()]);
    let n = jobs::schedule::run_slot(tenancy, "tokens.cleanup")
        .await
        .expect("slot");
    assert_eq!(n, 2);
    // Run again (a retried slot): unique per slot, nothing more.
    assert_eq!(
        jobs::schedule::run_slot(tenancy, "tokens.cleanup")
            .await
            .expect("slot"),
        0
    );
    // The platform's worker runs them under each tenant (the dedicated one in its own database).
    for t in [&a, &b] {
        let tenant = tenant_of(&app, t).await;
        let done = eventually(Duration::from_secs(30), || async {
            let tx = tenancy
                .dataplane
                .connect(&tenant)
                .await
                .expect("conn")
                .begin();
            tx.query_opt_and_commit(
                "SELECT 1 FROM jobs WHERE kind = 'tokens.cleanup' AND state = 'succeeded'",
                &[],
            )
            .await
            .expect("query")
            .is_some()
        })
        .await;
        assert!(done.is_some(), "{}: the cleanup job never ran", t.slug);
    }
    drop(other);
    app.finish().await;
}

/// A job that runs longer than its lease keeps it (the worker renews it while the handler runs):
/// it is not rescued and run a second time by another worker, and it completes once.
#[tokio::test]
async fn a_job_longer_than_its_lease_keeps_it_while_it_runs() {
    let app = TestApp::spawn().await;
    let a = app.tenant("renew", "shared", None).await;
    let runs = Runs::default();
    let spec = KindSpec {
        max_attempts: 5,
        lease: Duration::from_secs(1),
        ..KindSpec::default()
    };
    let slow = {
        let runs = runs.clone();
        move |mut ctx: JobContext| {
            let runs = runs.clone();
            async move {
                let out = runs.record(&mut ctx).await;
                // Three and a half leases.
                tokio::time::sleep(Duration::from_millis(3500)).await;
                (ctx, out)
            }
        }
    };
    // Two workers, so a rescuer is there as soon as the lease would run out.
    let workers: Vec<TestWorker> = (0..2)
        .map(|_| {
            TestWorker(tokio::spawn(
                Worker::new(
                    app.app.tenancy.clone(),
                    Registry::default().with("test.slow", spec, slow.clone()),
                    WorkerConfig::default(),
                )
                .run(),
            ))
        })
        .collect();
    let id = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.slow"), serde_json::json!({})),
    )
    .await
    .expect("id");
    wait_state(&app, id, "succeeded").await;
    let attempts: i32 = app
        .shared_owner()
        .await
        .query_one("SELECT attempts FROM jobs WHERE id = $1", &[&id.as_uuid()])
        .await
        .expect("row")
        .get(0);
    assert_eq!(
        attempts, 1,
        "the job was rescued while its worker still ran it"
    );
    assert_eq!(runs.count("test.slow"), 1, "{:?}", runs.all());
    drop(workers);
    app.finish().await;
}
