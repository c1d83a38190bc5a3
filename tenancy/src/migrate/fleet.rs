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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use refinery::Migration;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::database::{self, DbFailure};
use super::ledger::{self, Phase, RunState};
use super::{MigrateError, error_chain, head_of};
use crate::catalog::{Catalog, CatalogError, ServerUrlError};
use crate::ids::{DbServerId, TenantId, TenantSlug};
use crate::pg;

/// Which tenant database: the shared one, or a dedicated tenant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbKey {
    Shared,
    Tenant(TenantId),
}

impl fmt::Display for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => f.write_str("shared"),
            Self::Tenant(id) => id.fmt(f),
        }
    }
}

/// One tenant database of the fleet, as the catalog knows it.
#[derive(Clone, Debug)]
pub struct FleetDb {
    pub key: DbKey,
    /// The tenants it holds (one for a dedicated database; every shared tenant for the shared).
    pub slugs: Vec<TenantSlug>,
    /// The registered server's name (`shared` for the shared database if it is on none).
    pub server: String,
    pub server_id: Option<DbServerId>,
    pub db_name: String,
    /// The recorded schema version (a lower bound); `None` if never recorded.
    pub recorded: Option<i64>,
    /// `host:port`: what per-server concurrency is counted against.
    pub endpoint: String,
}

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
}

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
    #[error(transparent)]
    ServerUrl(#[from] ServerUrlError),
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
    shared_admin_url: String,
}

impl fmt::Debug for Migrator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator").finish_non_exhaustive()
    }
}

impl Migrator {
    /// `shared_admin_url` is the shared database's owner URL (a secret: never logged).
    #[must_use]
    pub fn new(catalog: Catalog, shared_admin_url: String) -> Self {
        Self {
            catalog,
            shared_admin_url,
        }
    }

    /// The catalog this migrator records in.
    #[must_use]
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Every tenant database: the shared one first, then dedicated ones (live or suspended) by slug.
    pub async fn fleet(&self) -> Result<Vec<FleetDb>, FleetError> {
        let pool = self.catalog.pool();
        let servers = self.catalog.db_servers().await?;
        let shared_config: tokio_postgres::Config = self
            .shared_admin_url
            .parse()
            .map_err(FleetError::SharedUrl)?;
        let (host, port) = pg::host_port(&shared_config);
        let shared_endpoint = format!("{host}:{port}");
        let shared_server = servers
            .iter()
            .find(|s| format!("{}:{}", s.host, s.port) == shared_endpoint)
            .map_or_else(|| "shared".to_owned(), |s| s.name.clone());
        let shared_slugs: Vec<String> = sqlx::query_scalar(
            "SELECT slug FROM tenants WHERE placement = 'shared' AND status <> 'deleted' ORDER BY slug",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError)?;
        let shared_version: Option<i64> =
            sqlx::query_scalar("SELECT schema_version FROM shared_schema")
                .fetch_optional(pool)
                .await
                .map_err(CatalogError)?;
        let mut out = vec![FleetDb {
            key: DbKey::Shared,
            slugs: shared_slugs
                .into_iter()
                .map(TenantSlug::from_trusted)
                .collect(),
            server: shared_server,
            server_id: None,
            db_name: shared_config.get_dbname().unwrap_or("postgres").to_owned(),
            recorded: shared_version,
            endpoint: shared_endpoint,
        }];
        let rows: Vec<(Uuid, String, Uuid, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, slug, db_server_id, db_name, schema_version FROM tenants
              WHERE placement = 'dedicated' AND status IN ('active', 'suspended') ORDER BY slug",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError)?;
        for (id, slug, server_id, db_name, version) in rows {
            let server_id = DbServerId::from_uuid(server_id);
            let server = servers.iter().find(|s| s.id == server_id);
            out.push(FleetDb {
                key: DbKey::Tenant(TenantId::from_uuid(id)),
                slugs: vec![TenantSlug::from_trusted(slug)],
                server: server.map_or_else(|| "(unregistered)".to_owned(), |s| s.name.clone()),
                server_id: Some(server_id),
                db_name,
                recorded: version,
                endpoint: server.map_or_else(String::new, |s| format!("{}:{}", s.host, s.port)),
            });
        }
        Ok(out)
    }

    /// The fleet after `--tenant` and `--server` filters.
    async fn selected(&self, opts: &FleetOptions) -> Result<Vec<FleetDb>, FleetError> {
        let mut fleet = self.fleet().await?;
        if let Some(name) = &opts.server
            && !fleet.iter().any(|d| &d.server == name)
            && self.catalog.db_server_by_name(name).await?.is_none()
        {
            return Err(FleetError::UnknownServer(name.clone()));
        }
        for slug in &opts.tenants {
            if !fleet
                .iter()
                .any(|d| d.slugs.iter().any(|s| s.as_str() == slug))
            {
                return Err(FleetError::UnknownTenant(slug.clone()));
            }
        }
        fleet.retain(|d| {
            opts.server.as_ref().is_none_or(|s| &d.server == s)
                && (opts.tenants.is_empty()
                    || d.slugs
                        .iter()
                        .any(|s| opts.tenants.iter().any(|t| t == s.as_str())))
        });
        Ok(fleet)
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

        let ctx = Arc::new(
            self.context(run.id, migrations, target, opts, &planned)
                .await?,
        );
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
            ctx.done.finish().await;
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

    async fn context(
        &self,
        run: Uuid,
        migrations: Vec<Migration>,
        target: i64,
        opts: &FleetOptions,
        planned: &[(Arc<FleetDb>, Phase)],
    ) -> Result<Context, FleetError> {
        let mut urls = HashMap::new();
        let mut servers = HashMap::new();
        for (db, _) in planned {
            if let Some(id) = db.server_id
                && !urls.contains_key(&id)
                && let Some((_, url)) = self.catalog.db_server_with_url(id).await?
            {
                urls.insert(id, url);
            }
            servers
                .entry(db.endpoint.clone())
                .or_insert_with(|| Server {
                    label: db.server.clone(),
                    permits: Arc::new(Semaphore::new(opts.per_server)),
                    in_flight: AtomicUsize::new(0),
                    peak: AtomicUsize::new(0),
                });
        }
        Ok(Context {
            catalog: self.catalog.clone(),
            run,
            migrations,
            target,
            shared_admin_url: self.shared_admin_url.clone(),
            urls,
            global: Arc::new(Semaphore::new(opts.concurrency)),
            servers,
            done: ledger::DoneWriter::start(self.catalog.clone(), run),
        })
    }
}

/// Per-server concurrency and its high-water mark.
struct Server {
    label: String,
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// What every database task of a run shares.
struct Context {
    catalog: Catalog,
    run: Uuid,
    migrations: Vec<Migration>,
    target: i64,
    shared_admin_url: String,
    urls: HashMap<DbServerId, String>,
    global: Arc<Semaphore>,
    servers: HashMap<String, Server>,
    done: ledger::DoneWriter,
}

impl Context {
    fn peaks(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.servers.values() {
            let e = out.entry(s.label.clone()).or_insert(0);
            *e = (*e).max(s.peak.load(Ordering::Relaxed));
        }
        out
    }

    fn config(&self, db: &FleetDb) -> Result<tokio_postgres::Config, MigrateError> {
        match (db.key, db.server_id) {
            (DbKey::Shared, _) => Ok(self.shared_admin_url.parse()?),
            (DbKey::Tenant(_), Some(id)) => match self.urls.get(&id) {
                Some(url) => Ok(pg::with_database(url, &db.db_name)?),
                None => Err(MigrateError::UnknownServer),
            },
            (DbKey::Tenant(_), None) => Err(MigrateError::UnknownServer),
        }
    }

    async fn one(&self, db: Arc<FleetDb>, phase: Phase, events: &Events) -> DbResult {
        let server = self
            .servers
            .get(&db.endpoint)
            .expect("every endpoint has a server entry");
        let _server_permit = server.permits.acquire().await.expect("never closed");
        let _permit = self.global.acquire().await.expect("never closed");
        let now = server.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        server.peak.fetch_max(now, Ordering::SeqCst);
        events(&FleetEvent::Started { db: &db, phase });
        let started = Instant::now();
        if let Err(e) = ledger::mark_running(&self.catalog, self.run, &db.key).await {
            tracing::warn!(error = %e, "cannot record a running migration in the ledger");
        }
        let outcome = match self.config(&db) {
            Ok(config) => database::migrate(&config, &self.migrations, self.target).await,
            Err(e) => Err(DbFailure::from(e)),
        };
        server.in_flight.fetch_sub(1, Ordering::SeqCst);
        let (before, after, error) = match outcome {
            Ok(o) => (Some(o.before), Some(o.after), None),
            Err(f) => (f.before, f.after, Some(error_chain(&f.error))),
        };
        let elapsed = started.elapsed();
        self.done.send(ledger::Done {
            key: db.key,
            before,
            after,
            error: error.clone(),
            finished_at: time::OffsetDateTime::now_utc(),
        });
        match &error {
            None => {
                tracing::info!(db = %db.key, before, after, duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), "migrated tenant database")
            }
            Some(e) => {
                tracing::warn!(db = %db.key, error = %e, "migrating a tenant database failed")
            }
        }
        let result = DbResult {
            db,
            phase,
            before,
            after,
            error,
            elapsed,
        };
        events(&FleetEvent::Finished { result: &result });
        result
    }
}

async fn execute(
    ctx: &Arc<Context>,
    dbs: Vec<(Arc<FleetDb>, Phase)>,
    events: &Events,
) -> Vec<DbResult> {
    let mut set = JoinSet::new();
    for (db, phase) in dbs {
        let ctx = Arc::clone(ctx);
        let events = Arc::clone(events);
        set.spawn(async move { ctx.one(db, phase, &events).await });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(r) => out.push(r),
            Err(e) => tracing::error!(error = %e, "a migration task panicked"),
        }
    }
    out
}
