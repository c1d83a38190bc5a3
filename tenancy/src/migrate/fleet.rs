//! The fleet runner: brings the shared database and every dedicated database to a target version.
//!
//! - Plan from the catalog: databases whose recorded version is already at the target are skipped
//!   without a connection (recorded versions are lower bounds, so this is safe); `verify` checks
//!   every database's real version instead.
//! - Bounded concurrency, in total and per database server (semaphores; a task takes its server's
//!   permit before a global one, so a busy server never holds global permits idle).
//! - Failure isolation: a database that fails is recorded and the others go on.
//! - Canary: the first N dedicated databases go first; if any fails, the run stops there.
//! - Durable: every database of the plan is in the ledger (`pending`) before work starts, and each
//!   step is recorded, so a rerun (even after `kill -9`) picks up what is left.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use refinery::Migration;
use serde_json::json;
use uuid::Uuid;

use super::head_of;
pub use super::inventory::{DbKey, FleetDb};

mod select;
pub mod status;
mod worker;
use super::ledger::{self, Phase, RunState};
use crate::catalog::{Catalog, CatalogError};
use crate::servers::{ServerError, Servers};
use worker::{Context, execute};

/// How to run.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Databases migrated at once, in total.
    pub concurrency: usize,
    /// Databases migrated at once on one server.
    pub per_server: usize,
    /// Only the databases of these tenants (slugs); empty: all.
    pub tenants: Vec<String>,
    /// Only the databases on this server (by name).
    pub server: Option<String>,
    /// Migrate this many dedicated databases first; stop if any fails.
    pub canary: usize,
    /// Target version (default: the newest migration given).
    pub target: Option<i64>,
    /// Plan and report only.
    pub dry_run: bool,
    /// Connect to every database to check its version, instead of trusting recorded versions.
    pub verify: bool,
    /// How long one migration may wait for a table lock before that database fails (and is
    /// retried by the next run). `None`: wait as long as it takes. A migration waiting for an
    /// `ACCESS EXCLUSIVE` lock queues every later query on that table behind it, so an
    /// unbounded wait behind one long transaction stalls the tenant's traffic.
    pub lock_timeout: Option<std::time::Duration>,
}

/// The default [`FleetOptions::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_server: 8,
            tenants: Vec::new(),
            server: None,
            canary: 0,
            target: None,
            dry_run: false,
            verify: false,
            lock_timeout: Some(DEFAULT_LOCK_TIMEOUT),
        }
    }
}

/// The run could not start (per-database failures are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("no live tenant has the slug `{0}`")]
    UnknownTenant(String),
    #[error("no database server is named `{0}`")]
    UnknownServer(String),
    #[error("target version {target} is not known (the newest migration is {head})")]
    UnknownTarget { target: i64, head: i64 },
    #[error("{0} must be at least 1")]
    Invalid(&'static str),
    #[error("the shared database URL is not valid")]
    SharedUrl(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("a server URL cannot be opened: {0}")]
    ServerUrl(#[from] ServerError),
}

/// How one database ended in a run.
#[derive(Clone, Debug)]
pub struct DbResult {
    pub db: Arc<FleetDb>,
    pub phase: Phase,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub error: Option<String>,
    pub elapsed: Duration,
}

impl DbResult {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Progress, as it happens.
#[derive(Debug)]
pub enum FleetEvent<'a> {
    /// The plan is made (and, unless a dry run, recorded).
    Planned {
        run: Option<Uuid>,
        target: i64,
        total: usize,
        to_check: usize,
        skipped: usize,
    },
    /// Dry run: this database would be migrated.
    WouldMigrate {
        db: &'a FleetDb,
    },
    Started {
        db: &'a FleetDb,
        phase: Phase,
    },
    Finished {
        result: &'a DbResult,
    },
    /// A canary failed: the rest is left pending.
    CanaryFailed {
        failed: usize,
    },
}

/// Where events go (a progress bar, JSON lines, a test).
pub type Events = Arc<dyn Fn(&FleetEvent<'_>) + Send + Sync>;

/// What a run did.
#[derive(Clone, Debug)]
pub struct FleetReport {
    pub run: Option<Uuid>,
    pub target: i64,
    /// Databases selected (after filters).
    pub total: usize,
    /// Skipped by their recorded version, without a connection.
    pub skipped: usize,
    /// Databases looked at (migrated, found at the target, or failed).
    pub results: Vec<DbResult>,
    /// Planned but never started (a canary failed).
    pub not_started: usize,
    pub stopped_by_canary: bool,
    pub concurrency: usize,
    pub per_server: usize,
    /// The most databases migrated at once, per server.
    pub peak_per_server: BTreeMap<String, usize>,
    pub elapsed: Duration,
}

impl FleetReport {
    /// The databases that failed.
    pub fn failed(&self) -> impl Iterator<Item = &DbResult> {
        self.results.iter().filter(|r| !r.ok())
    }

    /// True when nothing failed and nothing was left behind.
    #[must_use]
    pub fn succeeded(&self) -> bool {
        self.failed().next().is_none() && !self.stopped_by_canary
    }
}

/// Runs tenant migrations over the fleet, recording everything in the ledger.
#[derive(Clone)]
pub struct Migrator {
    catalog: Catalog,
    servers: Servers,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator").finish_non_exhaustive()
    }
}

impl Migrator {
    /// `servers` opens the sealed server URLs and knows the shared database's owner URL.
    #[must_use]
    pub fn new(catalog: Catalog, servers: Servers) -> Self {
        Self { catalog, servers }
    }

    /// The shared database's owner URL (a secret: never logged).
    pub(super) fn shared_admin_url(&self) -> &str {
        self.servers.shared_admin_url()
    }

    /// Opens a server's sealed admin URL.
    pub(super) async fn server_admin_url(
        &self,
        id: crate::ids::DbServerId,
    ) -> Result<Option<String>, FleetError> {
        let Some((server, _)) = self.catalog.db_server_sealed(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.servers.admin_url(&server).await?.to_string()))
    }

    /// The catalog this migrator records in.
    #[must_use]
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Runs `migrations` over the fleet. Per-database failures are in the report, not errors.
    pub async fn run(
        &self,
        migrations: Vec<Migration>,
        opts: &FleetOptions,
        events: Events,
    ) -> Result<FleetReport, FleetError> {
        let started = Instant::now();
        if opts.concurrency == 0 {
            return Err(FleetError::Invalid("concurrency"));
        }
        if opts.per_server == 0 {
            return Err(FleetError::Invalid("per-server concurrency"));
        }
        let head = head_of(&migrations);
        let target = opts.target.unwrap_or(head);
        if target > head || target < 1 {
            return Err(FleetError::UnknownTarget { target, head });
        }
        let fleet = self.selected(opts).await?;
        let total = fleet.len();
        let (todo, skipped): (Vec<FleetDb>, Vec<FleetDb>) = fleet
            .into_iter()
            .partition(|d| opts.verify || d.recorded.is_none_or(|v| v < target));
        // Canary: the first N dedicated databases; then the rest, the shared database first.
        let mut planned: Vec<(Arc<FleetDb>, Phase)> = Vec::with_capacity(todo.len());
        let mut canaries = 0;
        for db in &todo {
            let phase = if canaries < opts.canary && db.key != DbKey::Shared {
                canaries += 1;
                Phase::Canary
            } else {
                Phase::Main
            };
            planned.push((Arc::new(db.clone()), phase));
        }
        planned.sort_by_key(|(_, p)| *p != Phase::Canary);

        let mut report = FleetReport {
            run: None,
            target,
            total,
            skipped: skipped.len(),
            results: Vec::new(),
            not_started: 0,
            stopped_by_canary: false,
            concurrency: opts.concurrency,
            per_server: opts.per_server,
            peak_per_server: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        if opts.dry_run {
            events(&FleetEvent::Planned {
                run: None,
                target,
                total,
                to_check: planned.len(),
                skipped: skipped.len(),
            });
            for (db, _) in &planned {
                events(&FleetEvent::WouldMigrate { db });
            }
            report.not_started = planned.len();
            report.elapsed = started.elapsed();
            return Ok(report);
        }

        ledger::reap_dead_runs(&self.catalog).await?;
        let options = json!({
            "concurrency": opts.concurrency, "per_server": opts.per_server,
            "tenants": opts.tenants, "server": opts.server, "canary": opts.canary,
            "target": opts.target, "verify": opts.verify,
            "migrations": migrations.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        let refs: Vec<(&FleetDb, Phase)> = planned.iter().map(|(d, p)| (&**d, *p)).collect();
        let run = ledger::start_run(&self.catalog, target, &options, &refs, skipped.len()).await?;
        report.run = Some(run.id);
        events(&FleetEvent::Planned {
            run: Some(run.id),
            target,
            total,
            to_check: planned.len(),
            skipped: skipped.len(),
        });
        tracing::info!(run.id = %run.id, target, total, to_check = planned.len(), skipped = skipped.len(), "tenant migration run started");

        let ctx = Arc::new(Context::build(self, run.id, migrations, target, opts, &planned).await?);
        let (canary, main): (Vec<_>, Vec<_>) =
            planned.into_iter().partition(|(_, p)| *p == Phase::Canary);
        let mut state = RunState::Ok;
        if !canary.is_empty() {
            let results = execute(&ctx, canary, &events).await;
            let failed = results.iter().filter(|r| !r.ok()).count();
            report.results.extend(results);
            if failed > 0 {
                events(&FleetEvent::CanaryFailed { failed });
                report.stopped_by_canary = true;
                report.not_started = main.len();
                state = RunState::Stopped;
            }
        }
        if !report.stopped_by_canary {
            report.results.extend(execute(&ctx, main, &events).await);
            if report.failed().next().is_some() {
                state = RunState::Failed;
            }
        }
        report.peak_per_server = ctx.peaks();
        // Every task has finished: the context is ours alone again; write what is queued.
        if let Ok(ctx) = Arc::try_unwrap(ctx) {
            ctx.finish().await;
        }
        ledger::finish_run(&self.catalog, run, state).await?;
        report.elapsed = started.elapsed();
        tracing::info!(
            target,
            failed = report.failed().count(),
            elapsed_ms = u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
            "tenant migration run finished"
        );
        Ok(report)
    }
}
