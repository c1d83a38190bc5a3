//! One claim and the run of what it claimed, as one task.
//!
//! - The claim reserves its worker slots before it goes (the main loop takes them), so a claimed
//!   job starts at once: no job waits leased for a slot, and the slots bound the claims.
//! - A shared-database tenant's jobs run side by side, one slot each. A dedicated database's
//!   jobs run one after another on one slot: the worker holds at most one of that database's
//!   connections (the one the claim just used, back idle in its pool), so a busy queue in one
//!   database does not grow its pool and shed another database's connections under the server's
//!   budget.
//! - A job whose handler sent nothing in its transaction has no effect to commit with its
//!   completion: such jobs are completed together, in one statement that still checks each job's
//!   own lease token (`store::complete_batch`). A job whose handler wrote completes in its own
//!   transaction, with the lease-checked `platform_job_complete` sent with its `COMMIT`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tenancy::catalog::Tenant;
use tenancy::context::{Actor, AuditContext};
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;
use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;
use uuid::Uuid;

use super::{Event, Lane, Shared};
use crate::JobId;
use crate::kind::{JobContext, JobKind};
use crate::store::{self, Claimed, FenceError};

/// How long a job that succeeded without effects waits for others of its batch before the
/// batch's completions are sent (its slot is held meanwhile).
const FLUSH_WAIT: Duration = Duration::from_millis(10);

/// Worker slots held by a claim or a job; the main loop is told when they are given back.
pub(super) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    events: mpsc::UnboundedSender<Event>,
}

impl Slot {
    pub(super) fn new(permit: OwnedSemaphorePermit, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            permit: Some(permit),
            events,
        }
    }

    /// Splits off `n` of the slots (none if fewer are held).
    fn split(&mut self, n: usize) -> Option<Self> {
        let permit = self.permit.as_mut()?.split(n)?;
        Some(Self::new(permit, self.events.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.events.send(Event::SlotFree).ok();
        }
    }
}

/// Claims up to `size` of the tenant's jobs and runs them, holding `slot` (one slot per job for
/// a shared tenant, one for the whole batch for a dedicated one). Tells the main loop what the
/// claim found as soon as it returns (`Event::Claimed`), so the next claim can go while these
/// jobs run, and when the batch is over (`Event::BatchDone`).
pub(super) async fn claim_and_run(
    shared: Arc<Shared>,
    tenant: TenantId,
    lane: Lane,
    size: usize,
    mut slot: Slot,
) {
    let mut claim = ClaimGuard {
        events: shared.events.clone(),
        tenant,
        size,
        lane,
        reported: false,
    };
    let claimed_at = Instant::now();
    let Some(t) = super::live_tenant(&shared, tenant).await else {
        claim.report(0, None);
        return;
    };
    let paused = shared.paused();
    let claimed = match shared.tenancy.dataplane.connect(&t).await {
        Ok(conn) => store::claim_with_next_due(conn, &shared.kinds, &paused, size as i64).await,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "no connection to claim jobs");
            claim.report(0, Some(Instant::now() + Duration::from_secs(5)));
            return;
        }
    };
    let store::Claim { jobs, next_due } = match claimed {
        Ok(c) => c,
        Err(e) => {
            // A fenced tenant (being moved) refuses claims here; the catalog will say where it
            // went, and the hint or the sweep finds its jobs there.
            tracing::info!(tenant.id = %tenant, error = %e, "claiming jobs failed");
            shared.tenancy.resolver.invalidate(Some(tenant)).await;
            claim.report(0, Some(Instant::now() + Duration::from_secs(1)));
            return;
        }
    };
    let n = jobs.len();
    if n == size {
        // Probably more: another claim may go at once (after the other tenants' turns).
        claim.report(n, Some(Instant::now()));
    } else {
        // The claim statement said when the rest is due: no second round trip to ask.
        claim.report(n, next_due.map(to_instant));
        if matches!(lane, Lane::Shared) {
            // Give back the slots of jobs that were not there.
            drop(slot.split(size - n));
        }
    }
    let mut batch = Batch {
        shared: &shared,
        tenant: &t,
        done: Vec::new(),
        first_done: None,
    };
    match lane {
        Lane::Shared => {
            let running = batch.start(jobs, slot);
            batch.finish(running).await;
        }
        Lane::Dedicated(_) => {
            // The database's connection is the batch's until it is over.
            batch.one_by_one(jobs, claimed_at).await;
            drop(slot);
        }
    }
}

/// Tells the main loop what a claim found (once), and that its batch is over when dropped, even
/// if the task ends early: the tenant's scheduling state and the server's count never leak.
struct ClaimGuard {
    events: mpsc::UnboundedSender<Event>,
    tenant: TenantId,
    size: usize,
    lane: Lane,
    reported: bool,
}

impl ClaimGuard {
    fn report(&mut self, n: usize, next: Option<Instant>) {
        if !self.reported {
            self.reported = true;
            self.events
                .send(Event::Claimed(self.tenant, self.size, n, next))
                .ok();
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        // A claim that never said what it found: try again in a while.
        self.report(0, Some(Instant::now() + Duration::from_secs(1)));
        self.events
            .send(Event::BatchDone(self.tenant, self.lane))
            .ok();
    }
}

fn to_instant(at: OffsetDateTime) -> Instant {
    let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    Instant::now() + Duration::try_from(wait).unwrap_or_default()
}

/// Jobs running side by side, each with its slot.
type Running = FuturesUnordered<tokio::task::JoinHandle<(Ran, Option<Slot>)>>;

/// How a job's run ended.
enum Ran {
    /// Completed, failed, expired, or left to its lease: nothing more to do.
    Settled,
    /// Succeeded without sending anything in its transaction: complete it with the batch.
    NoEffect(JobId, Uuid),
}

/// The jobs of one claim, and the effect-free successes waiting to be completed together.
struct Batch<'a> {
    shared: &'a Arc<Shared>,
    tenant: &'a Arc<Tenant>,
    /// Effect-free successes, with the slots they hold (none in a one-by-one batch).
    done: Vec<(JobId, Uuid, Option<Slot>)>,
    first_done: Option<Instant>,
}

impl Batch<'_> {
    /// Starts the jobs side by side, each in its own task with one of the batch's slots.
    fn start(&self, jobs: Vec<Claimed>, mut slot: Slot) -> Running {
        let running = FuturesUnordered::new();
        for job in jobs {
            let job_slot = slot.split(1);
            let (shared, tenant) = (Arc::clone(self.shared), Arc::clone(self.tenant));
            running.push(tokio::spawn(async move {
                (run_logged(&shared, &tenant, job).await, job_slot)
            }));
        }
        running
    }

    /// Waits for the started jobs, completing the effect-free ones together.
    async fn finish(&mut self, mut running: Running) {
        loop {
            let next = match self.first_done {
                None => running.next().await,
                Some(first) => {
                    tokio::select! {
                        r = running.next() => r,
                        () = tokio::time::sleep_until(first + FLUSH_WAIT) => {
                            self.flush().await;
                            continue;
                        }
                    }
                }
            };
            match next {
                None => break,
                Some(Ok((Ran::NoEffect(id, lease), job_slot))) => self.hold(id, lease, job_slot),
                Some(Ok((Ran::Settled, _))) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "a job's task failed"),
            }
        }
        self.flush().await;
    }

    /// Runs the jobs one after another (the batch's one slot, one connection of the database at
    /// a time). A job whose lease would be half over before its turn is given back unrun.
    async fn one_by_one(&mut self, jobs: Vec<Claimed>, claimed_at: Instant) {
        let mut unrun = Vec::new();
        for job in jobs {
            let lease = self.shared.lease_of(&job.kind);
            if claimed_at.elapsed() > lease / 2 {
                unrun.push((job.id, job.lease));
                continue;
            }
            if self.first_done.is_some_and(|f| f.elapsed() >= FLUSH_WAIT) {
                self.flush().await;
            }
            let (shared, tenant) = (Arc::clone(self.shared), Arc::clone(self.tenant));
            let mut run = tokio::spawn(async move { run_logged(&shared, &tenant, job).await });
            let ran = match self.first_done {
                None => (&mut run).await,
                Some(first) => {
                    tokio::select! {
                        r = &mut run => r,
                        // A long job does not hold back the completions before it.
                        () = tokio::time::sleep_until(first + FLUSH_WAIT) => {
                            self.flush().await;
                            run.await
                        }
                    }
                }
            };
            match ran {
                Ok(Ran::NoEffect(id, lease)) => self.hold(id, lease, None),
                Ok(Ran::Settled) => {}
                Err(e) => tracing::warn!(error = %e, "a job's task failed"),
            }
        }
        self.flush().await;
        if !unrun.is_empty() {
            let released = match self.shared.tenancy.dataplane.connect(self.tenant).await {
                Ok(conn) => store::release(conn, &unrun)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = released {
                // Their leases run out and they are rescued.
                tracing::warn!(tenant.id = %self.tenant.id, error = %e, "giving back unrun jobs failed");
            }
            self.shared
                .events
                .send(Event::Due(self.tenant.id, Instant::now()))
                .ok();
        }
    }

    fn hold(&mut self, id: JobId, lease: Uuid, slot: Option<Slot>) {
        self.first_done.get_or_insert_with(Instant::now);
        self.done.push((id, lease, slot));
    }

    /// Completes the held effect-free successes in one statement; their slots go back after it.
    async fn flush(&mut self) {
        self.first_done = None;
        if self.done.is_empty() {
            return;
        }
        let done = std::mem::take(&mut self.done);
        let pairs: Vec<(JobId, Uuid)> = done.iter().map(|(id, lease, _)| (*id, *lease)).collect();
        let completed = match self.shared.tenancy.dataplane.connect(self.tenant).await {
            Ok(conn) => store::complete_batch(conn, &pairs)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match completed {
            Ok(ids) if ids.len() == pairs.len() => {}
            Ok(ids) => {
                for (id, _) in pairs.iter().filter(|(id, _)| !ids.contains(id)) {
                    tracing::warn!(tenant.id = %self.tenant.id, job.id = %id,
                        "job succeeded but its lease was lost; not completed");
                }
            }
            // Their leases run out and they are rescued: at least once.
            Err(e) => tracing::warn!(tenant.id = %self.tenant.id, error = %e,
                jobs = pairs.len(), "completing a batch of jobs failed"),
        }
        drop(done);
    }
}

/// Runs one job, logging a run that could not be recorded.
async fn run_logged(shared: &Shared, tenant: &Tenant, job: Claimed) -> Ran {
    let id = job.id;
    match run_one(shared, tenant, job).await {
        Ok(ran) => ran,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant.id, job.id = %id, error = %e, "job run not recorded");
            Ran::Settled
        }
    }
}

/// Running one job failed in a way that leaves it to its lease (rescued later).
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Connect(#[from] tenancy::dataplane::ConnectError),
    #[error(transparent)]
    Fence(#[from] FenceError),
}

/// Runs one claimed job under its tenant's context: a transaction scoped to the tenant (RLS),
/// the tenant's data key for its sealed payload, and the audit actor `job` / `<kind>`.
async fn run_one(shared: &Shared, tenant: &Tenant, job: Claimed) -> Result<Ran, RunError> {
    let dp = &shared.tenancy.dataplane;
    if job
        .expires_at
        .is_some_and(|e| e <= OffsetDateTime::now_utc())
    {
        store::expire(dp.connect(tenant).await?, job.id, job.lease).await?;
        return Ok(Ran::Settled);
    }
    let Ok(kind) = JobKind::parse(&job.kind) else {
        return Ok(Ran::Settled);
    };
    let Some((spec, handler)) = shared.registry.get(&kind).cloned() else {
        return Ok(Ran::Settled);
    };
    let mut payload = job.payload;
    let link = crate::trace::take(&mut payload);
    let make_span = || crate::trace::span(kind.as_str(), job.id, tenant.id, link);
    let span = match &shared.traces {
        Some(traced) => tracing::dispatcher::with_default(traced, make_span),
        None => make_span(),
    };
    let audit = Arc::new(AuditContext::new(None, format!("job {kind}"), None, None));
    audit.set_actor(Actor {
        kind: "job",
        id: Some(kind.to_string()),
    });
    let run = audit
        .scope(async {
            let conn = dp.connect(tenant).await?;
            let ctx = JobContext {
                tenant: tenant.id,
                id: job.id,
                kind: kind.clone(),
                attempt: job.attempts,
                payload,
                sealed: job.sealed,
                keyring: shared.tenancy.keyring.clone(),
                tx: conn.begin(),
            };
            let started = std::time::Instant::now();
            let (ctx, outcome) = {
                // The lease is renewed while the handler runs, so a long job is not rescued
                // (and run twice) by another worker: only a worker that stops renewing (dead,
                // paused, partitioned) loses it.
                let run = std::pin::pin!(handler.run(ctx));
                let renew =
                    std::pin::pin!(keep_lease(shared, tenant, job.id, job.lease, spec.lease));
                match futures_util::future::select(run, renew).await {
                    futures_util::future::Either::Left((out, _)) => out,
                    // The lease is lost: the handler may finish, but its completion is refused.
                    futures_util::future::Either::Right(((), run)) => run.await,
                }
            };
            match outcome {
                Ok(()) if !ctx.tx.is_begun() => {
                    // Nothing to commit with the completion: it goes with the batch's.
                    drop(ctx.tx);
                    return Ok(Ran::NoEffect(job.id, job.lease));
                }
                Ok(()) => {
                    store::complete(ctx.tx, job.id, job.lease).await?;
                    tracing::debug!(tenant.id = %tenant.id, job.id = %job.id, job.kind = %kind,
                        duration_ms = started.elapsed().as_millis() as u64, "job succeeded");
                }
                Err(failure) => {
                    drop(ctx.tx);
                    let attempt = u32::try_from(job.attempts).unwrap_or(1);
                    let delay = crate::backoff::delay(spec.backoff_base, spec.backoff_cap, attempt);
                    let state = store::fail(
                        dp.connect(tenant).await?,
                        job.id,
                        job.lease,
                        delay,
                        &failure.0,
                    )
                    .await?;
                    tracing::info!(tenant.id = %tenant.id, job.id = %job.id, job.kind = %kind,
                        job.state = state.as_str(), "job failed");
                    if state == crate::store::JobState::Retrying {
                        let at = Instant::now() + delay;
                        shared.events.send(Event::Due(tenant.id, at)).ok();
                    }
                }
            }
            Ok(Ran::Settled)
        })
        .instrument(span);
    match &shared.traces {
        Some(traced) => run.with_subscriber(traced.clone()).await,
        None => run.await,
    }
}

/// Renews the job's lease every third of its length while the handler runs; returns only when
/// the lease is lost (another worker or an operator took the job), never while it holds.
async fn keep_lease(shared: &Shared, tenant: &Tenant, id: JobId, lease: Uuid, length: Duration) {
    let every = (length / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let renewed = match shared.tenancy.dataplane.connect(tenant).await {
            Ok(conn) => store::renew(conn, id, lease, length).await,
            Err(e) => {
                // Try again at the next tick; the lease may still hold then.
                tracing::warn!(tenant.id = %tenant.id, job.id = %id, error = %e, "lease renewal cannot connect");
                continue;
            }
        };
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(tenant.id = %tenant.id, job.id = %id, "job lease lost while running");
                return;
            }
            Err(e) => {
                tracing::warn!(tenant.id = %tenant.id, job.id = %id, error = %e, "lease renewal failed");
            }
        }
    }
}
