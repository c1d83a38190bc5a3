//! Queue depth and age per kind, gathered by the worker's sweep and exported by `/metrics`.

use super::*;

#[tokio::test]
async fn the_sweep_counts_waiting_jobs_per_kind_and_the_metrics_export_them() {
    let app = TestApp::spawn_with(&[("PLATFORM_METRICS_LISTEN", "127.0.0.1:0")]).await;
    app.app.stop_jobs();
    let a = app.tenant("deptha", "shared", None).await;
    let b = app.tenant("depthb", "dedicated", None).await;
    // No worker runs `test.unclaimed`: its jobs wait. Two are due, one is scheduled later.
    for t in [&a, &b] {
        enqueue(
            &app,
            t,
            NewJob::new(kind("test.unclaimed"), serde_json::json!({})),
        )
        .await;
    }
    let later = OffsetDateTime::now_utc() + time::Duration::hours(1);
    enqueue(
        &app,
        &a,
        NewJob::new(kind("test.unclaimed"), serde_json::json!({})).run_at(later),
    )
    .await;

    let runs = Runs::default();
    let worker = Worker::new(
        app.app.tenancy.clone(),
        registry(&runs),
        WorkerConfig {
            sweep_every: Duration::from_millis(500),
            ..WorkerConfig::default()
        },
    );
    let stats = worker.stats();
    app.app.metrics.watch_jobs(worker.stats());
    let _w = TestWorker(tokio::spawn(worker.run()));

    let key = ("test.unclaimed".to_owned(), "pending".to_owned());
    let seen = eventually(Duration::from_secs(30), || async {
        stats
            .snapshot()
            .depths
            .get(&key)
            .is_some_and(|d| d.jobs == 3 && d.oldest_due_seconds.is_some_and(|s| s > 0.0))
    })
    .await;
    assert!(
        seen.is_some(),
        "both databases' jobs counted: {:?}",
        stats.snapshot()
    );
    let text = app.app.metrics.render().await.expect("metrics on");
    assert!(
        text.lines().any(|l| l
            == "platform_jobs_queue_depth{job_kind=\"test.unclaimed\",job_state=\"pending\"} 3"),
        "{text}"
    );
    assert!(text.contains(
        "platform_jobs_oldest_due_age_seconds{job_kind=\"test.unclaimed\",job_state=\"pending\"}"
    ));
    assert!(text.contains("platform_jobs_depth_age_seconds"));
    app.finish().await;
}
