//! `kill -9` of a worker process mid-job: the job is rescued after its lease and completes once,
//! and the killed worker's late completion (a paused worker resuming) is refused.

use std::process::Stdio;

use jobs::store::{self, FenceError};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use super::*;

#[tokio::test]
async fn a_worker_killed_mid_job_is_rescued_once_and_its_late_completion_refused() {
    let app = TestApp::spawn().await;
    let a = app.tenant("crash", "shared", None).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_job-worker"))
        .envs(app.platform_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker process");
    let id = enqueue(
        &app,
        &a,
        NewJob::new(kind("test.hang"), serde_json::json!({})),
    )
    .await
    .expect("id");

    // The child claims the job and is mid-job (its effect written, not committed).
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the worker process never started the job")
        .expect("read")
        .expect("a line");
    assert_eq!(line, format!("started {id}"));
    let child_lease: uuid::Uuid = app
        .shared_owner()
        .await
        .query_one(
            "SELECT lease_token FROM jobs WHERE id = $1",
            &[&id.as_uuid()],
        )
        .await
        .expect("row")
        .get(0);
    child.start_kill().expect("kill -9");
    child.wait().await.expect("reaped");

    // Another worker rescues it after the lease and completes it, once.
    let runs = Runs::default();
    let effect = |mut ctx: JobContext| async move {
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
        lease: Duration::from_secs(2),
        ..KindSpec::default()
    };
    let _w = TestWorker(tokio::spawn(
        Worker::new(
            app.app.tenancy.clone(),
            Registry::default().with("test.hang", spec, effect),
            WorkerConfig::default(),
        )
        .run(),
    ));
    let _ = runs;
    wait_state(&app, id, "succeeded").await;
    let effects = || async {
        app.shared_owner()
            .await
            .query_one(
                "SELECT count(*) FROM projects WHERE name = $1",
                &[&format!("effect:{id}")],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    assert_eq!(effects().await, 1);
    let attempts: i32 = app
        .shared_owner()
        .await
        .query_one("SELECT attempts FROM jobs WHERE id = $1", &[&id.as_uuid()])
        .await
        .expect("row")
        .get(0);
    assert_eq!(
        attempts, 2,
        "claimed by the killed worker, then by the rescuer"
    );

    // The killed worker "resumes" with its old lease: its completion, with its effect, is refused.
    let t = tenant_of(&app, &a).await;
    let mut tx = app
        .app
        .tenancy
        .dataplane
        .connect(&t)
        .await
        .expect("conn")
        .begin();
    tx.execute(
        "INSERT INTO projects (tenant_id, id, name) VALUES (app_tenant_id(), $1, $2)",
        &[&uuid::Uuid::now_v7(), &format!("effect:{id}")],
    )
    .await
    .expect("effect");
    let late = store::complete(tx, id, child_lease).await;
    assert!(matches!(late, Err(FenceError::LeaseLost)), "{late:?}");
    assert_eq!(
        effects().await,
        1,
        "the late completion committed its effect"
    );
    app.finish().await;
}
