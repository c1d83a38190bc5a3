//! The workers of a run: one task per planned database, each taking its server's permit and
//! then a global one, migrating the database under its advisory lock, and queueing its result for
//! the ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use refinery::Migration;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::{DbKey, DbResult, Events, FleetDb, FleetError, FleetEvent, FleetOptions, Migrator};
use crate::ids::DbServerId;
use crate::migrate::database::{self, DbFailure};
use crate::migrate::ledger::{self, Phase};
use crate::migrate::{MigrateError, error_chain};
use crate::pg;

/// Per-server concurrency and its high-water mark.
struct Server {
    label: String,
    permits: Arc<Semaphore>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// What every database task of a run shares.
pub(super) struct Context {
    migrations: Vec<Migration>,
    target: i64,
    lock_timeout: Option<std::time::Duration>,
    shared_admin_url: String,
    urls: HashMap<DbServerId, String>,
    global: Arc<Semaphore>,
    servers: HashMap<String, Server>,
    done: ledger::writer::DoneWriter,
}

impl Context {
    pub(super) async fn build(
        migrator: &Migrator,
        run: Uuid,
        migrations: Vec<Migration>,
        target: i64,
        opts: &FleetOptions,
        planned: &[(Arc<FleetDb>, Phase)],
    ) -> Result<Self, FleetError> {
        let mut urls = HashMap::new();
        let mut servers = HashMap::new();
        for (db, _) in planned {
            if let Some(id) = db.server_id
                && !urls.contains_key(&id)
                && let Some(url) = migrator.server_admin_url(id).await?
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
        Ok(Self {
            migrations,
            target,
            lock_timeout: opts.lock_timeout,
            shared_admin_url: migrator.shared_admin_url().to_owned(),
            urls,
            global: Arc::new(Semaphore::new(opts.concurrency)),
            servers,
            done: ledger::writer::DoneWriter::start(migrator.catalog().clone(), run),
        })
    }

    /// Writes the results still queued for the ledger.
    pub(super) async fn finish(self) {
        self.done.finish().await;
    }

    pub(super) fn peaks(&self) -> BTreeMap<String, usize> {
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
        self.done.running(db.key);
        let outcome = match self.config(&db) {
            Ok(config) => {
                database::migrate(&config, &self.migrations, self.target, self.lock_timeout).await
            }
            Err(e) => Err(DbFailure::from(e)),
        };
        server.in_flight.fetch_sub(1, Ordering::SeqCst);
        let (before, after, error) = match outcome {
            Ok(o) => (Some(o.before), Some(o.after), None),
            Err(f) => (f.before, f.after, Some(error_chain(&f.error))),
        };
        let elapsed = started.elapsed();
        self.done.send(ledger::writer::Done {
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

pub(super) async fn execute(
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
