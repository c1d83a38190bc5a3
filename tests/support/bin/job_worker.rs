//! A job worker in its own process, for the `kill -9` test: configured by `PLATFORM_*` like
//! `platformctl`, it runs kind `test.hang`, whose handler writes its effect into the completing
//! transaction, prints `started <job id>` and then hangs (a worker killed or paused mid-job).

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use jobs::{JobContext, JobFailure, KindSpec, Registry, Worker, WorkerConfig};

/// The lease of `test.hang` (the rescuing test worker uses the same).
pub const LEASE: Duration = Duration::from_secs(2);

async fn hang(mut ctx: JobContext) -> (JobContext, Result<(), JobFailure>) {
    let effect = ctx
        .tx
        .execute(
            "INSERT INTO projects (tenant_id, id, name) VALUES (app_tenant_id(), $1, $2)",
            &[&uuid::Uuid::now_v7(), &format!("effect:{}", ctx.id)],
        )
        .await;
    if let Err(e) = effect {
        return (ctx, Err(e.into()));
    }
    println!("started {}", ctx.id);
    std::io::stdout().flush().ok();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    (ctx, Ok(()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = tenancy::settings::Settings::from_env()?;
    let started = tenancy::bootstrap::start(&settings).await?;
    let spec = KindSpec {
        lease: LEASE,
        ..KindSpec::default()
    };
    let registry = Registry::default().with("test.hang", spec, hang);
    Worker::new(
        Arc::new(started.tenancy),
        registry,
        WorkerConfig {
            notify: false,
            sweep_every: Duration::from_millis(500),
            ..WorkerConfig::default()
        },
    )
    .run()
    .await;
    Ok(())
}
