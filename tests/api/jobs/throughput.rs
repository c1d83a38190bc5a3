//! The worker's throughput mechanics: effect-free jobs completed together (each still fenced by
//! its own lease), jobs given back unrun, and dedicated databases worked without growing their
//! pools or taking more than a share of their server's connection budget.

use super::*;
use jobs::store;

/// Enqueues `n` jobs of `kind` for `t` in one transaction (as a bulk import would).
async fn bulk(app: &TestApp, t: &TestTenant, kind: &str, n: i32) {
    let mut tx = tx_of(app, t).await;
    tx.execute(
        "INSERT INTO jobs (tenant_id, id, kind, payload)
         SELECT app_tenant_id(), gen_random_uuid(), $1, '{}' FROM generate_series(1, $2) n",
        &[&kind, &n],
    )
    .await
    .expect("bulk enqueue");
    tx.hint_after_commit();
    tx.commit().await.expect("commit");
}

/// A claim of up to 10 jobs of `kinds` for `t`.
async fn claim(app: &TestApp, t: &Tenant, kinds: &[(String, Duration)]) -> Vec<store::Claimed> {
    store::claim(
        app.app.tenancy.dataplane.connect(t).await.expect("conn"),
        kinds,
        &[],
        10,
    )
    .await
    .expect("claim")
}

#[tokio::test]
async fn a_batch_completion_completes_only_the_jobs_whose_lease_still_holds() {
    let app = TestApp::spawn().await;
    let a = app.tenant("batchdone", "shared", None).await;
    bulk(&app, &a, "test.record", 3).await;
    let t = tenant_of(&app, &a).await;
    let dp = &app.app.tenancy.dataplane;
    let kinds = [("test.record".to_owned(), Duration::from_secs(30))];
    let jobs = claim(&app, &t, &kinds).await;
    assert_eq!(jobs.len(), 3);
    // The third job's lease was taken over (an operator discarded it, or it was rescued).
    let owner = app.shared_owner().await;
    owner
        .execute(
            "UPDATE jobs SET lease_token = gen_random_uuid() WHERE id = $1",
            &[&jobs[2].id.as_uuid()],
        )
        .await
        .expect("take over");
    let pairs: Vec<_> = jobs.iter().map(|j| (j.id, j.lease)).collect();
    let done = store::complete_batch(dp.connect(&t).await.expect("conn"), &pairs)
        .await
        .expect("complete");
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(!done.contains(&jobs[2].id));
    for j in &jobs[..2] {
        assert_eq!(state_of(&app, j.id).await.as_deref(), Some("succeeded"));
    }
    assert_eq!(state_of(&app, jobs[2].id).await.as_deref(), Some("running"));
    // A token that belongs to another job of the batch does not complete this one.
    let swapped = [(jobs[2].id, jobs[0].lease)];
    let done = store::complete_batch(dp.connect(&t).await.expect("conn"), &swapped)
        .await
        .expect("complete");
    assert!(done.is_empty());
    assert_eq!(state_of(&app, jobs[2].id).await.as_deref(), Some("running"));
    app.finish().await;
}

#[tokio::test]
async fn jobs_given_back_unrun_are_due_again_with_the_attempt_not_counted() {
    let app = TestApp::spawn().await;
    let a = app.tenant("giveback", "shared", None).await;
    bulk(&app, &a, "test.record", 2).await;
    let t = tenant_of(&app, &a).await;
    let dp = &app.app.tenancy.dataplane;
    let kinds = [("test.record".to_owned(), Duration::from_secs(30))];
    let jobs = claim(&app, &t, &kinds).await;
    assert_eq!(jobs.len(), 2);
    // A stale lease gives nothing back.
    let stale = [(jobs[0].id, uuid::Uuid::now_v7())];
    let n = store::release(dp.connect(&t).await.expect("conn"), &stale)
        .await
        .expect("release");
    assert_eq!(n, 0);
    assert_eq!(state_of(&app, jobs[0].id).await.as_deref(), Some("running"));
    let pairs: Vec<_> = jobs.iter().map(|j| (j.id, j.lease)).collect();
    let n = store::release(dp.connect(&t).await.expect("conn"), &pairs)
        .await
        .expect("release");
    assert_eq!(n, 2);
    let row = app
        .shared_owner()
        .await
        .query_one(
            "SELECT state, attempts, lease_token IS NULL FROM jobs WHERE id = $1",
            &[&jobs[0].id.as_uuid()],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "pending");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert!(row.get::<_, bool>(2));
    // Due again at once: the next claim takes them.
    assert_eq!(claim(&app, &t, &kinds).await.len(), 2);
    app.finish().await;
}

/// Effect-free jobs (the handler sends nothing in its transaction) complete, with the batch.
#[tokio::test]
async fn effect_free_jobs_complete_together() {
    let app = TestApp::spawn().await;
    let a = app.tenant("noeffect", "shared", None).await;
    let ran = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    let registry =
        Registry::default().with("test.pure", KindSpec::default(), move |ctx: JobContext| {
            let r = Arc::clone(&r);
            async move {
                r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (ctx, Ok(()))
            }
        });
    let _w = TestWorker(tokio::spawn(
        Worker::new(app.app.tenancy.clone(), registry, WorkerConfig::default()).run(),
    ));
    bulk(&app, &a, "test.pure", 50).await;
    let owner = app.shared_owner().await;
    let all_done = eventually(Duration::from_secs(30), || async {
        let n: i64 = owner
            .query_one(
                "SELECT count(*) FROM jobs WHERE kind = 'test.pure' AND state = 'succeeded'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        n == 50
    })
    .await;
    assert!(all_done.is_some(), "effect-free jobs were not completed");
    assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 50);
    // Completed together: several jobs share a completion time (one statement's `now()`).
    let batches: i64 = owner
        .query_one(
            "SELECT count(DISTINCT finished_at) FROM jobs WHERE kind = 'test.pure'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(
        batches < 50,
        "each job was completed on its own ({batches} completions)"
    );
    app.finish().await;
}

/// Records, per tenant, when each run of `test.hold` started and ended.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<(TenantId, std::time::Instant, std::time::Instant)>>>);

impl Spans {
    /// The most tenants with a run going on at the same time.
    fn most_tenants_at_once(&self) -> usize {
        let spans = self.0.lock().expect("spans").clone();
        spans
            .iter()
            .map(|(_, start, _)| {
                let mut at: Vec<TenantId> = spans
                    .iter()
                    .filter(|(_, s, e)| s <= start && start < e)
                    .map(|(t, _, _)| *t)
                    .collect();
                at.sort_by_key(|t| t.as_uuid());
                at.dedup();
                at.len()
            })
            .max()
            .unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.0.lock().expect("spans").len()
    }
}

/// `test.hold`: writes in its transaction and holds it (its connection) for 50 ms.
fn holding(spans: &Spans) -> Registry {
    let spans = spans.clone();
    Registry::default().with(
        "test.hold",
        KindSpec::default(),
        move |mut ctx: JobContext| {
            let spans = spans.clone();
            async move {
                let start = std::time::Instant::now();
                let out = ctx
                    .tx
                    .execute("SELECT pg_sleep(0.05)", &[])
                    .await
                    .map(|_| ())
                    .map_err(JobFailure::from);
                spans
                    .0
                    .lock()
                    .expect("spans")
                    .push((ctx.tenant, start, std::time::Instant::now()));
                (ctx, out)
            }
        },
    )
}

/// A dedicated database's jobs run one after another on one of its connections: a busy queue
/// does not grow its pool (which would shed other databases' connections under the server's
/// budget).
#[tokio::test]
async fn a_dedicated_databases_jobs_do_not_grow_its_pool() {
    let app = TestApp::spawn_with(&[("PLATFORM_DEDICATED_POOL_SIZE", "8")]).await;
    // Only the worker under test (the platform's own would claim there too).
    app.app.stop_jobs();
    let d = app.tenant("onepool", "dedicated", Some("local")).await;
    bulk(&app, &d, "test.hold", 24).await;
    let spans = Spans::default();
    let _w = TestWorker(tokio::spawn(
        Worker::new(
            app.app.tenancy.clone(),
            holding(&spans),
            WorkerConfig {
                concurrency: 16,
                batch: 8,
                ..WorkerConfig::default()
            },
        )
        .run(),
    ));
    let ran = eventually(Duration::from_secs(60), || async { spans.len() >= 24 }).await;
    assert!(ran.is_some(), "the dedicated tenant's jobs did not all run");
    let open: usize = app
        .app
        .tenancy
        .dataplane
        .dedicated_connections()
        .await
        .iter()
        .map(|(_, _, conns)| conns)
        .sum();
    // One for the jobs (the one the enqueue left idle), and at most two more for the worker's
    // sweeps, which visit each database on their own schedule (one when the worker starts, one
    // when its listener is up). Side by side, the batch alone would take 8.
    assert!(open <= 3, "the tenant's pool grew to {open} connections");
    app.finish().await;
}

/// The worker works on at most a quarter of a server's connection budget of dedicated databases
/// at once.
#[tokio::test]
async fn the_worker_takes_a_share_of_a_servers_budget_for_dedicated_databases() {
    let app = TestApp::spawn().await;
    app.app.stop_jobs();
    // Budget 8: the worker may work on 2 of the server's databases at once.
    app.app
        .tenancy
        .provisioner
        .register_server(
            "local",
            &platform_tests::clusters().primary.url("postgres"),
            8,
            true,
        )
        .await
        .expect("budget");
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(
            app.tenant(&format!("share{i}"), "dedicated", Some("local"))
                .await,
        );
    }
    for t in &tenants {
        bulk(&app, t, "test.hold", 4).await;
    }
    let spans = Spans::default();
    let _w = TestWorker(tokio::spawn(
        Worker::new(
            app.app.tenancy.clone(),
            holding(&spans),
            WorkerConfig::default(),
        )
        .run(),
    ));
    let ran = eventually(Duration::from_secs(60), || async { spans.len() >= 16 }).await;
    assert!(ran.is_some(), "the dedicated tenants' jobs did not all run");
    let most = spans.most_tenants_at_once();
    assert!(
        most <= 2,
        "{most} of the server's databases were worked on at once"
    );
    app.finish().await;
}
