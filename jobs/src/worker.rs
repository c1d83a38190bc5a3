//! The worker: finds tenants with work, picks them fairly, claims their jobs under a lease and
//! runs each under its tenant's context.
//!
//! Finding work without polling every database:
//! - **in-process hint**: a transaction that enqueued publishes its tenant after it commits
//!   ([`DataPlane::commit_hints`](tenancy::dataplane::DataPlane::commit_hints));
//! - **across instances**: the same hint is sent as `NOTIFY platform_jobs, '<tenant>'` on the
//!   control plane, which every instance listens to;
//! - **timers**: after a claim, the tenant's next due time (a retry, a scheduled job, a lease to
//!   rescue) is remembered;
//! - **sweep**: every `sweep_every`, each database is asked once which tenants have work due
//!   (`platform_jobs_due`), for work whose hint was lost (a crash between commit and hint, a
//!   listener reconnecting) and for timers lost with a crashed instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

use sqlx::postgres::PgListener;
use tenancy::bootstrap::Tenancy;
use tenancy::catalog::{Placement, Tenant};
use tenancy::context::{Actor, AuditContext};
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::fair::Fair;
use crate::kind::{JobContext, JobKind, Registry};
use crate::stats::{QueueStats, Tally};
use crate::store::{self, Claimed, FenceError};

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs running at once in this process.
    pub concurrency: usize,
    /// Jobs claimed per round trip (at most; fewer when fewer slots are free).
    pub batch: usize,
    /// The crash-recovery sweep's period: the worst-case wait of a job whose hint was lost.
    pub sweep_every: Duration,
    /// Send hints to other instances (`NOTIFY` on the control plane).
    pub notify: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            batch: 8,
            sweep_every: Duration::from_secs(30),
            notify: true,
        }
    }
}

/// Events the worker's loop reacts to.
enum Event {
    /// This tenant may have work now.
    Hint(TenantId),
    /// This tenant has work due at this time (a retry this worker scheduled).
    Due(TenantId, Instant),
    /// Look everywhere (a hint stream lagged or reconnected).
    Sweep,
    /// Paused kinds changed.
    Pauses,
    /// A claim for this tenant finished: `n` jobs claimed, more due at `next`.
    Claimed(TenantId, usize, Option<Instant>),
    /// A job finished: a slot is free.
    SlotFree,
}

/// A job worker over a started tenancy core.
pub struct Worker {
    tenancy: Arc<Tenancy>,
    registry: Registry,
    config: WorkerConfig,
    stats: QueueStats,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// What every claim and run needs, shared by the tasks.
struct Shared {
    tenancy: Arc<Tenancy>,
    registry: Registry,
    kinds: Vec<(String, Duration)>,
    paused: std::sync::RwLock<Vec<String>>,
    weights: std::sync::RwLock<HashMap<String, u32>>,
    slots: Arc<Semaphore>,
    batch: usize,
    events: mpsc::UnboundedSender<Event>,
    stats: QueueStats,
}

impl Worker {
    #[must_use]
    pub fn new(tenancy: Arc<Tenancy>, registry: Registry, config: WorkerConfig) -> Self {
        Self {
            tenancy,
            registry,
            config,
            stats: QueueStats::default(),
        }
    }

    /// Queue depth and age per kind, as of this worker's last sweep (for metrics).
    #[must_use]
    pub fn stats(&self) -> QueueStats {
        self.stats.clone()
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let (events, mut rx) = mpsc::unbounded_channel();
        let kinds = self
            .registry
            .kinds()
            .map(|(k, s)| (k.as_str().to_owned(), s.lease))
            .collect();
        let shared = Arc::new(Shared {
            tenancy: Arc::clone(&self.tenancy),
            registry: self.registry.clone(),
            kinds,
            paused: std::sync::RwLock::default(),
            weights: std::sync::RwLock::default(),
            slots: Arc::new(Semaphore::new(self.config.concurrency.max(1))),
            batch: self.config.batch.max(1),
            events: events.clone(),
            stats: self.stats.clone(),
        });
        let _local = AbortOnDrop(tokio::spawn(local_hints(
            Arc::clone(&self.tenancy),
            events.clone(),
            self.config.notify,
        )));
        let _remote = AbortOnDrop(tokio::spawn(remote_hints(
            Arc::clone(&self.tenancy),
            events.clone(),
        )));
        // Known before the first claim, so a kind paused before start never runs here.
        shared.load_pauses().await;
        shared.load_weights().await;
        let mut fair = Fair::default();
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + self.config.sweep_every;
                let (shared, events) = (Arc::clone(&shared), events.clone());
                let horizon = self.config.sweep_every;
                tokio::spawn(async move {
                    if let Err(e) = sweep(&shared, &events, horizon).await {
                        tracing::warn!(error = %e, "job sweep failed");
                    }
                });
            }
            // Start claims while slots are free and tenants are due.
            while shared.slots.available_permits() > 0 {
                let Some(tenant) = fair.pick(Instant::now()) else {
                    break;
                };
                let (shared, events) = (Arc::clone(&shared), events.clone());
                tokio::spawn(async move {
                    let (n, next) = claim_and_run(&shared, tenant).await;
                    events.send(Event::Claimed(tenant, n, next)).ok();
                });
            }
            let wake = fair.next_due().map_or(next_sweep, |d| d.min(next_sweep));
            let event = tokio::select! {
                e = rx.recv() => e,
                () = tokio::time::sleep_until(wake) => continue,
            };
            let Some(event) = event else { return };
            match event {
                Event::Hint(t) => {
                    let w = shared.weight(t).await;
                    fair.ready(t, w, Instant::now());
                }
                Event::Due(t, at) => {
                    let w = shared.weight(t).await;
                    fair.ready(t, w, at);
                }
                Event::Sweep => next_sweep = Instant::now(),
                Event::Pauses => shared.load_pauses().await,
                Event::Claimed(t, n, next) => fair.claimed(t, n, next),
                Event::SlotFree => {}
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Shared {
    async fn weight(&self, tenant: TenantId) -> u32 {
        let plan = match self.tenancy.resolver.tenant(tenant).await {
            Ok(Some(t)) => t.plan.clone(),
            _ => return 1,
        };
        let known = self
            .weights
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&plan)
            .copied();
        known.unwrap_or(1)
    }

    async fn load_pauses(&self) {
        match crate::admin::paused_kinds(&self.tenancy.catalog).await {
            Ok(p) => {
                *self
                    .paused
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = p;
            }
            Err(e) => tracing::warn!(error = %e, "loading paused job kinds failed"),
        }
    }

    async fn load_weights(&self) {
        let rows: Result<Vec<(String, i32)>, _> =
            sqlx::query_as("SELECT name, job_weight FROM plans")
                .fetch_all(self.tenancy.catalog.pool())
                .await;
        match rows {
            Ok(rows) => {
                *self
                    .weights
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = rows
                    .into_iter()
                    .map(|(n, w)| (n, u32::try_from(w).unwrap_or(1)))
                    .collect();
            }
            Err(e) => tracing::warn!(error = %e, "loading plan job weights failed"),
        }
    }

    fn paused(&self) -> Vec<String> {
        self.paused
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The tenant as the catalog knows it; `None` (fail closed: nothing runs) if it is not a live
/// tenant.
async fn live_tenant(shared: &Shared, tenant: TenantId) -> Option<Arc<Tenant>> {
    match shared.tenancy.resolver.tenant(tenant).await {
        Ok(Some(t)) if t.status.as_str() != "deleted" => Some(t),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "resolving a job's tenant failed");
            None
        }
    }
}

/// Claims a batch of the tenant's jobs and runs them; returns how many were claimed and when
/// the tenant has more work due.
async fn claim_and_run(shared: &Arc<Shared>, tenant: TenantId) -> (usize, Option<Instant>) {
    let Some(t) = live_tenant(shared, tenant).await else {
        return (0, None);
    };
    // A full batch even when fewer slots are free: the extra jobs wait (leased) for the next free
    // slots, so a busy worker still claims `batch` jobs per round trip instead of one. Another
    // tenant's claim queues behind at most this one batch.
    let free = shared.batch;
    let paused = shared.paused();
    let claimed = match shared.tenancy.dataplane.connect(&t).await {
        Ok(conn) => store::claim(conn, &shared.kinds, &paused, free as i64).await,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "no connection to claim jobs");
            return (0, Some(Instant::now() + Duration::from_secs(5)));
        }
    };
    let jobs = match claimed {
        Ok(jobs) => jobs,
        Err(e) => {
            // A fenced tenant (being moved) refuses claims here; the catalog will say where it
            // went, and the hint or the sweep finds its jobs there.
            tracing::info!(tenant.id = %tenant, error = %e, "claiming jobs failed");
            shared.tenancy.resolver.invalidate(Some(tenant)).await;
            return (0, Some(Instant::now() + Duration::from_secs(1)));
        }
    };
    let n = jobs.len();
    if n == free {
        // Probably more: come back at once (after the other tenants' turns).
        for job in jobs {
            spawn_run(shared, &t, job).await;
        }
        return (n, Some(Instant::now()));
    }
    for job in jobs {
        spawn_run(shared, &t, job).await;
    }
    let next = match shared.tenancy.dataplane.connect(&t).await {
        Ok(conn) => store::next_due(conn, &paused).await.ok().flatten(),
        Err(_) => Some(OffsetDateTime::now_utc() + Duration::from_secs(5)),
    };
    (n, next.map(to_instant))
}

fn to_instant(at: OffsetDateTime) -> Instant {
    let wait = (at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
    Instant::now() + Duration::try_from(wait).unwrap_or_default()
}

async fn spawn_run(shared: &Arc<Shared>, tenant: &Arc<Tenant>, job: Claimed) {
    let Ok(permit) = Arc::clone(&shared.slots).acquire_owned().await else {
        return;
    };
    let (shared, tenant) = (Arc::clone(shared), Arc::clone(tenant));
    tokio::spawn(async move {
        let id = job.id;
        if let Err(e) = run_one(&shared, &tenant, job).await {
            tracing::warn!(tenant.id = %tenant.id, job.id = %id, error = %e, "job run not recorded");
        }
        drop(permit);
        shared.events.send(Event::SlotFree).ok();
    });
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
async fn run_one(shared: &Shared, tenant: &Tenant, job: Claimed) -> Result<(), RunError> {
    let dp = &shared.tenancy.dataplane;
    if job
        .expires_at
        .is_some_and(|e| e <= OffsetDateTime::now_utc())
    {
        store::expire(dp.connect(tenant).await?, job.id, job.lease).await?;
        return Ok(());
    }
    let Ok(kind) = JobKind::parse(&job.kind) else {
        return Ok(());
    };
    let Some((spec, handler)) = shared.registry.get(&kind).cloned() else {
        return Ok(());
    };
    let mut payload = job.payload;
    let span = crate::trace::span(
        kind.as_str(),
        job.id,
        tenant.id,
        crate::trace::take(&mut payload),
    );
    let audit = Arc::new(AuditContext::new(None, format!("job {kind}"), None, None));
    audit.set_actor(Actor {
        kind: "job",
        id: Some(kind.to_string()),
    });
    audit
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
            Ok(())
        })
        .instrument(span)
        .await
}

/// Renews the job's lease every third of its length while the handler runs; returns only when
/// the lease is lost (another worker or an operator took the job), never while it holds.
async fn keep_lease(
    shared: &Shared,
    tenant: &Tenant,
    id: crate::JobId,
    lease: uuid::Uuid,
    length: Duration,
) {
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

/// Forwards this process's post-commit hints to the loop, and to other instances by `NOTIFY`:
/// hints that arrive while a `NOTIFY` is in flight go together in the next one (one statement
/// for many commits, each tenant once).
async fn local_hints(tenancy: Arc<Tenancy>, events: mpsc::UnboundedSender<Event>, notify: bool) {
    let mut rx = tenancy.dataplane.commit_hints();
    loop {
        let mut batch: Vec<TenantId> = Vec::new();
        let mut next = rx.recv().await;
        loop {
            match next {
                Ok(t) => {
                    if !batch.contains(&t) {
                        events.send(Event::Hint(t)).ok();
                        batch.push(t);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    events.send(Event::Sweep).ok();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
            if batch.len() >= HINTS_PER_NOTIFY {
                break;
            }
            next = match rx.try_recv() {
                Ok(t) => Ok(t),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n))
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Closed) => {
                    Err(tokio::sync::broadcast::error::RecvError::Closed)
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            };
        }
        if notify && !batch.is_empty() {
            // Other instances may have free slots. Best effort: the sweep covers a lost hint.
            let payload = batch
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let r = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::CHANNEL)
                .bind(payload)
                .execute(tenancy.catalog.pool())
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "job hint NOTIFY failed");
            }
        }
    }
}

/// Tenants named in one hint `NOTIFY` (37 bytes each, under the 8,000-byte payload limit).
const HINTS_PER_NOTIFY: usize = 100;

/// The tenants of a hint `NOTIFY`'s payload; `None` for any other payload (a pause changed).
fn hinted_tenants(payload: &str) -> Option<Vec<TenantId>> {
    payload.split(',').map(TenantId::parse).collect()
}

/// Hints from other instances (and operators' pauses), by `LISTEN` on the control plane.
async fn remote_hints(tenancy: Arc<Tenancy>, events: mpsc::UnboundedSender<Event>) {
    loop {
        let mut listener = match PgListener::connect_with(tenancy.catalog.pool()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "job hint listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(crate::CHANNEL).await {
            tracing::warn!(error = %e, "job hint listener cannot LISTEN; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Hints may have been missed while not listening.
        events.send(Event::Pauses).ok();
        events.send(Event::Sweep).ok();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match hinted_tenants(n.payload()) {
                    Some(ts) => {
                        for t in ts {
                            events.send(Event::Hint(t)).ok();
                        }
                    }
                    None => {
                        events.send(Event::Pauses).ok();
                    }
                },
                Ok(None) => {
                    events.send(Event::Sweep).ok();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job hint listener failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Asks every database once which of its tenants have work due within `horizon`.
async fn sweep(
    shared: &Shared,
    events: &mpsc::UnboundedSender<Event>,
    horizon: Duration,
) -> Result<(), tenancy::catalog::CatalogError> {
    shared.load_weights().await;
    shared.load_pauses().await;
    let mut shared_tenants: Vec<Tenant> = Vec::new();
    let mut tally = Tally::default();
    let mut after = None;
    loop {
        let page = shared.tenancy.catalog.list_tenants(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for t in page {
            match t.placement {
                Placement::Shared => shared_tenants.push(t),
                Placement::Dedicated { .. } => {
                    let only = std::collections::HashSet::from([t.id]);
                    due_in(shared, &t, &only, horizon, events).await;
                    depth_in(shared, &t, &only, &mut tally).await;
                }
            }
        }
    }
    // One query for the whole shared database, through any of its tenants' connections.
    if let Some(first) = shared_tenants.first() {
        let ids: std::collections::HashSet<TenantId> =
            shared_tenants.iter().map(|t| t.id).collect();
        due_in(shared, first, &ids, horizon, events).await;
        depth_in(shared, first, &ids, &mut tally).await;
    }
    shared
        .stats
        .replace(tally.finish(OffsetDateTime::now_utc()));
    Ok(())
}

/// Adds the queue depth of `via`'s database (its tenants among `placed_here`) to `tally`.
async fn depth_in(
    shared: &Shared,
    via: &Tenant,
    placed_here: &std::collections::HashSet<TenantId>,
    tally: &mut Tally,
) {
    let rows = match shared.tenancy.dataplane.connect(via).await {
        Ok(conn) => {
            conn.begin()
                .query_and_commit(
                    "SELECT tenant_id, kind, state, jobs, oldest_due FROM platform_jobs_depth()",
                    &[],
                )
                .await
        }
        Err(e) => {
            tracing::warn!(tenant.id = %via.id, error = %e, "job depth cannot connect");
            return;
        }
    };
    let now = OffsetDateTime::now_utc();
    match rows {
        Ok(rows) => {
            for r in rows {
                if placed_here.contains(&TenantId::from_uuid(r.get(0))) {
                    tally.add(r.get(1), r.get(2), r.get(3), r.get(4), now);
                }
            }
        }
        Err(e) => tracing::warn!(tenant.id = %via.id, error = %e, "job depth query failed"),
    }
}

/// Hints the tenants of `via`'s database (among `placed_here`) with work due within `horizon`.
async fn due_in(
    shared: &Shared,
    via: &Tenant,
    placed_here: &std::collections::HashSet<TenantId>,
    horizon: Duration,
    events: &mpsc::UnboundedSender<Event>,
) {
    let rows = match shared.tenancy.dataplane.connect(via).await {
        Ok(conn) => {
            conn.begin()
                .query_and_commit(
                    "SELECT tenant_id, next_at FROM platform_jobs_due(make_interval(secs => $1))",
                    &[&horizon.as_secs_f64()],
                )
                .await
        }
        Err(e) => {
            tracing::warn!(tenant.id = %via.id, error = %e, "job sweep cannot connect");
            return;
        }
    };
    match rows {
        Ok(rows) => {
            for r in rows {
                let tenant = TenantId::from_uuid(r.get(0));
                // Rows of a tenant placed elsewhere (a move's source copy) are not its jobs.
                if placed_here.contains(&tenant) {
                    let at: OffsetDateTime = r.get(1);
                    let _ = at;
                    events.send(Event::Hint(tenant)).ok();
                }
            }
        }
        Err(e) => tracing::warn!(tenant.id = %via.id, error = %e, "job sweep query failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_payload_names_tenants_and_anything_else_is_a_pause_change() {
        let (a, b) = (TenantId::new(), TenantId::new());
        assert_eq!(hinted_tenants(&a.to_string()), Some(vec![a]));
        assert_eq!(hinted_tenants(&format!("{a},{b}")), Some(vec![a, b]));
        assert_eq!(hinted_tenants("pause"), None);
        assert_eq!(hinted_tenants(&format!("{a},pause")), None);
    }
}
