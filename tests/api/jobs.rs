//! Background jobs (issue 16): transactional enqueue, execution under the tenant's context,
//! fenced leases, retries and dead letters, unique and scheduled jobs, platform schedules,
//! fairness across tenants, the operators' API, and jobs across a promotion.

mod admin;
mod crash;
mod depth;
mod fairness;
mod fence;
mod moves;
mod plans;
mod semantics;
mod throughput;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobs::{JobContext, JobFailure, JobKind, KindSpec, NewJob, Registry, Worker, WorkerConfig};
use platform_tests::{TestApp, TestTenant, eventually};
use tenancy::catalog::Tenant;
use tenancy::dataplane::TenantTx;
use tenancy::ids::TenantId;
use time::OffsetDateTime;

/// One run of a test job, as its handler saw it.
#[derive(Clone, Debug)]
pub struct Run {
    pub tenant: TenantId,
    pub job: jobs::JobId,
    pub attempt: i32,
    /// `app.tenant_id` inside the handler's transaction.
    pub setting: String,
    /// The payload secret, opened with the tenant's key.
    pub secret: Option<String>,
    /// The database's clock when the handler ran.
    pub at: OffsetDateTime,
    pub kind: String,
}

/// What the test kinds record.
#[derive(Clone, Debug, Default)]
pub struct Runs(Arc<Mutex<Vec<Run>>>);

impl Runs {
    pub fn all(&self) -> Vec<Run> {
        self.0.lock().expect("runs").clone()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.all().iter().filter(|r| r.kind == kind).count()
    }

    async fn record(&self, ctx: &mut JobContext) -> Result<(), JobFailure> {
        let row = ctx
            .tx
            .query_opt("SELECT current_setting('app.tenant_id'), now()", &[])
            .await?
            .expect("one row");
        let secret = ctx.secret().await?.map(|s| s.expose().to_owned());
        self.0.lock().expect("runs").push(Run {
            tenant: ctx.tenant,
            job: ctx.id,
            attempt: ctx.attempt,
            setting: row.get(0),
            secret,
            at: row.get(1),
            kind: ctx.kind.to_string(),
        });
        Ok(())
    }
}

/// Test kinds: `test.record` records and succeeds, `test.fail` records and fails,
/// `test.noop` records only (the fairness load).
pub fn registry(runs: &Runs) -> Registry {
    let fast = KindSpec {
        max_attempts: 3,
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
    };
    let (r1, r2, r3) = (runs.clone(), runs.clone(), runs.clone());
    Registry::default()
        .with("test.record", fast, move |mut ctx: JobContext| {
            let runs = r1.clone();
            async move {
                let out = runs.record(&mut ctx).await;
                (ctx, out)
            }
        })
        .with("test.fail", fast, move |mut ctx: JobContext| {
            let runs = r2.clone();
            async move {
                let out = runs.record(&mut ctx).await;
                (
                    ctx,
                    out.and(Err(JobFailure(format!("boom {}", "on purpose")))),
                )
            }
        })
        .with("test.noop", fast, move |mut ctx: JobContext| {
            let runs = r3.clone();
            async move {
                let out = runs.record(&mut ctx).await;
                (ctx, out)
            }
        })
}

/// A worker with the test kinds, stopped on drop.
pub struct TestWorker(tokio::task::JoinHandle<()>);

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn start_worker(app: &TestApp, runs: &Runs, config: WorkerConfig) -> TestWorker {
    TestWorker(tokio::spawn(
        Worker::new(app.app.tenancy.clone(), registry(runs), config).run(),
    ))
}

pub fn kind(k: &str) -> JobKind {
    JobKind::parse(k).expect("kind")
}

pub async fn tenant_of(app: &TestApp, t: &TestTenant) -> Tenant {
    app.app
        .tenancy
        .catalog
        .tenant_by_slug(&t.slug)
        .await
        .expect("catalog")
        .expect("tenant")
}

/// A transaction of the tenant's, on the data plane (as a request handler gets it).
pub async fn tx_of(app: &TestApp, t: &TestTenant) -> TenantTx {
    app.app
        .tenancy
        .dataplane
        .connect(&tenant_of(app, t).await)
        .await
        .expect("connect")
        .begin()
}

/// Enqueues `job` for `t` and commits; returns its id.
pub async fn enqueue(app: &TestApp, t: &TestTenant, job: NewJob) -> Option<jobs::JobId> {
    let mut tx = tx_of(app, t).await;
    let id = jobs::enqueue(&mut tx, job).await.expect("enqueue");
    tx.commit().await.expect("commit");
    id
}

/// The state of a job (owner's view of the shared database).
pub async fn state_of(app: &TestApp, id: jobs::JobId) -> Option<String> {
    app.shared_owner()
        .await
        .query_opt("SELECT state FROM jobs WHERE id = $1", &[&id.as_uuid()])
        .await
        .expect("state")
        .map(|r| r.get(0))
}

/// Waits until job `id` is in `state`.
pub async fn wait_state(app: &TestApp, id: jobs::JobId, state: &str) {
    let reached = eventually(Duration::from_secs(30), || async {
        state_of(app, id).await.as_deref() == Some(state)
    })
    .await;
    assert!(
        reached.is_some(),
        "job {id} never reached {state}: it is {:?}",
        state_of(app, id).await
    );
}
