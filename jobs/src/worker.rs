//! The worker: finds tenants with work, picks them fairly, claims their jobs under a lease and
//! runs each under its tenant's context.
//!
//! Finding work without polling every database ([`hints`], [`sweep`]):
//! - **in-process hint**: a transaction that enqueued publishes its tenant after it commits
//!   ([`DataPlane::commit_hints`](tenancy::dataplane::DataPlane::commit_hints));
//! - **across instances**: the same hint is sent as `NOTIFY platform_jobs, '<tenant>'` on the
//!   control plane, which every instance listens to;
//! - **timers**: after a claim, the tenant's next due time (a retry, a scheduled job, a lease to
//!   rescue) is remembered;
//! - **sweep**: every `sweep_every`, each database is asked once which tenants have work due
//!   (`platform_jobs_due`), for work whose hint was lost (a crash between commit and hint, a
//!   listener reconnecting) and for timers lost with a crashed instance.
//!
//! Running it ([`batch`]): the main loop below owns the worker's slots and the fair scheduler;
//! a claim takes its slots before it goes, and a tenant with a backlog may have several claims
//! in flight (a shared-database tenant; a dedicated database has one batch at a time, and a
//! server's dedicated databases at most a share of its connection budget).

mod batch;
mod hints;
mod sweep;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tenancy::bootstrap::Tenancy;
use tenancy::catalog::{Placement, Tenant};
use tenancy::ids::{DbServerId, TenantId};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::fair::Fair;
use crate::kind::Registry;
use crate::stats::QueueStats;

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Jobs running at once in this process (worker slots).
    pub concurrency: usize,
    /// Jobs claimed per round trip (at most; a shared-database tenant's claim also at most the
    /// free slots, and it waits until half a batch of slots is free).
    pub batch: usize,
    /// The crash-recovery sweep's period: the worst-case wait of a job whose hint was lost.
    pub sweep_every: Duration,
    /// Send hints to other instances (`NOTIFY` on the control plane).
    pub notify: bool,
    /// The subscriber job runs are traced under: the process's trace subscriber when traces are
    /// on and the process's own subscriber is one without a trace layer (the platform's); `None`
    /// runs them under the current subscriber.
    pub traces: Option<tracing::Dispatch>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            batch: 8,
            sweep_every: Duration::from_secs(30),
            notify: true,
            traces: None,
        }
    }
}

/// The worker works on at most this fraction (1/n) of a server's connection budget of dedicated
/// databases at once (one connection each); the rest is the requests'.
const DEDICATED_BUDGET_SHARE: usize = 4;

/// Where a tenant's jobs are, as far as the worker's limits go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Shared,
    Dedicated(DbServerId),
}

impl Lane {
    fn of(t: &Tenant) -> Self {
        match &t.placement {
            Placement::Shared => Self::Shared,
            Placement::Dedicated { server, .. } => Self::Dedicated(*server),
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
    /// A claim of `size` jobs for this tenant returned `n`; more is due at `next`.
    Claimed(TenantId, usize, usize, Option<Instant>),
    /// A claim's batch is over (its jobs ran).
    BatchDone(TenantId, Lane),
    /// Worker slots were given back.
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
    /// Each database server's connection budget.
    budgets: std::sync::RwLock<HashMap<DbServerId, usize>>,
    events: mpsc::UnboundedSender<Event>,
    stats: QueueStats,
    /// [`WorkerConfig::traces`].
    traces: Option<tracing::Dispatch>,
}

/// The main loop's view of what is running, for the limits of the next claims.
#[derive(Default)]
struct Running {
    /// Tenants (their lanes) the scheduler knows.
    lanes: HashMap<TenantId, Lane>,
    /// Dedicated tenants with a batch running (one at a time each).
    dedicated: HashSet<TenantId>,
    /// Dedicated batches running per server.
    per_server: HashMap<DbServerId, usize>,
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
            budgets: std::sync::RwLock::default(),
            events: events.clone(),
            stats: self.stats.clone(),
            traces: self.config.traces.clone(),
        });
        let concurrency = self.config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let batch = self.config.batch.max(1);
        // A shared tenant's claim waits for half a batch of free slots rather than claiming one
        // job per round trip as slots come free one by one.
        let min_claim = (batch.min(concurrency) / 2).max(1);
        let _local = AbortOnDrop(tokio::spawn(hints::local_hints(
            Arc::clone(&self.tenancy),
            events.clone(),
            self.config.notify,
        )));
        let _remote = AbortOnDrop(tokio::spawn(hints::remote_hints(
            Arc::clone(&self.tenancy),
            events.clone(),
        )));
        // Known before the first claim, so a kind paused before start never runs here.
        shared.load_pauses().await;
        shared.load_weights().await;
        shared.load_budgets().await;
        let mut fair = Fair::default();
        let mut running = Running::default();
        let mut next_sweep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_sweep {
                next_sweep = now + self.config.sweep_every;
                let (shared, events) = (Arc::clone(&shared), events.clone());
                let horizon = self.config.sweep_every;
                tokio::spawn(async move {
                    if let Err(e) = sweep::sweep(&shared, &events, horizon).await {
                        tracing::warn!(error = %e, "job sweep failed");
                    }
                });
            }
            // Start claims while slots are free and tenants are due.
            let budgets = shared.budgets();
            loop {
                let free = slots.available_permits();
                if free == 0 {
                    break;
                }
                let picked = fair.pick(
                    Instant::now(),
                    |t, _| match running.lanes.get(&t) {
                        Some(Lane::Dedicated(server)) => {
                            let cap = budgets
                                .get(server)
                                .map_or(1, |b| (b / DEDICATED_BUDGET_SHARE).max(1));
                            !running.dedicated.contains(&t)
                                && running.per_server.get(server).copied().unwrap_or(0) < cap
                        }
                        _ => free >= min_claim,
                    },
                    |t| match running.lanes.get(&t) {
                        Some(Lane::Dedicated(_)) => batch,
                        _ => batch.min(free),
                    },
                );
                let Some(tenant) = picked else { break };
                let lane = running.lanes.get(&tenant).copied().unwrap_or(Lane::Shared);
                let (held, size) = match lane {
                    Lane::Shared => (batch.min(free), batch.min(free)),
                    Lane::Dedicated(server) => {
                        running.dedicated.insert(tenant);
                        *running.per_server.entry(server).or_default() += 1;
                        (1, batch)
                    }
                };
                let permit = Arc::clone(&slots)
                    .try_acquire_many_owned(held as u32)
                    .expect("only this loop takes slots, and `held` of them are free");
                let slot = batch::Slot::new(permit, events.clone());
                tokio::spawn(batch::claim_and_run(
                    Arc::clone(&shared),
                    tenant,
                    lane,
                    size,
                    slot,
                ));
            }
            // Tenants due already but not picked wait for slots or a claim to come back: those
            // send events. Sleep only until the next future time.
            let wake = fair
                .next_due_after(Instant::now())
                .map_or(next_sweep, |d| d.min(next_sweep));
            let event = tokio::select! {
                e = rx.recv() => e,
                () = tokio::time::sleep_until(wake) => continue,
            };
            let Some(event) = event else { return };
            match event {
                Event::Hint(t) => {
                    let (w, lane) = shared.profile(t).await;
                    running.lanes.insert(t, lane);
                    fair.ready(t, w, Instant::now());
                }
                Event::Due(t, at) => {
                    let (w, lane) = shared.profile(t).await;
                    running.lanes.insert(t, lane);
                    fair.ready(t, w, at);
                }
                Event::Sweep => next_sweep = Instant::now(),
                Event::Pauses => shared.load_pauses().await,
                Event::Claimed(t, size, n, next) => fair.claimed(t, size, n, next),
                Event::BatchDone(t, lane) => {
                    if let Lane::Dedicated(server) = lane {
                        running.dedicated.remove(&t);
                        if let Some(n) = running.per_server.get_mut(&server) {
                            *n = n.saturating_sub(1);
                        }
                    }
                    if !fair.contains(t) && !running.dedicated.contains(&t) {
                        running.lanes.remove(&t);
                    }
                }
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
    /// The tenant's share of the workers (its plan's weight) and where its jobs are.
    async fn profile(&self, tenant: TenantId) -> (u32, Lane) {
        let t = match self.tenancy.resolver.tenant(tenant).await {
            Ok(Some(t)) => t,
            _ => return (1, Lane::Shared),
        };
        let known = self
            .weights
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&t.plan)
            .copied();
        (known.unwrap_or(1), Lane::of(&t))
    }

    /// The lease of a registered kind (the default kind's for an unknown one).
    fn lease_of(&self, kind: &str) -> Duration {
        self.kinds
            .iter()
            .find(|(k, _)| k == kind)
            .map_or_else(|| crate::KindSpec::default().lease, |(_, l)| *l)
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

    async fn load_budgets(&self) {
        match self.tenancy.catalog.db_servers().await {
            Ok(servers) => {
                *self
                    .budgets
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = servers
                    .into_iter()
                    .map(|s| (s.id, s.connection_budget as usize))
                    .collect();
            }
            Err(e) => tracing::warn!(error = %e, "loading database server budgets failed"),
        }
    }

    fn budgets(&self) -> HashMap<DbServerId, usize> {
        self.budgets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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
