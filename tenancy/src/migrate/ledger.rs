//! The migration ledger in the control plane (`migrations/V3__migration_ledger.sql`): one row per
//! fleet run, one row per run and tenant database (`pending` -> `running` -> `ok` | `failed`, with
//! versions before/after, timings and the error), and the recorded schema version of every tenant
//! database (`tenants.schema_version`, `shared_schema`).
//!
//! A live run holds a session advisory lock on the control plane for its whole life, so any
//! reader can tell a run that is still going from one that was killed: its lock is free.

use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, FromRow};
use time::OffsetDateTime;
use uuid::Uuid;

use super::inventory::{DbKey, FleetDb};
use crate::catalog::{Catalog, CatalogError, publish};
use crate::ids::TenantId;

/// Advisory-lock class of live runs on the control plane (the object is the run's `lock_key`).
const RUN_LOCK_CLASS: i32 = 7301;

/// SQL: whether run `r` is alive (its session still holds its lock).
pub(crate) const RUN_ALIVE: &str = "EXISTS (SELECT 1 FROM pg_locks pl
      WHERE pl.locktype = 'advisory' AND pl.granted AND pl.objsubid = 2
        AND pl.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND pl.classid = 7301::oid AND pl.objid = r.lock_key::oid)";

/// The error recorded for a database whose runner died while migrating it.
pub const INTERRUPTED: &str =
    "interrupted: the runner stopped while migrating this database (killed?); rerun to converge";

/// A run in progress: its id and the connection that holds its liveness lock.
pub struct Run {
    pub id: Uuid,
    lock: PgConnection,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("id", &self.id).finish()
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Ok,
    Failed,
    /// The canary phase failed; the rest were not touched.
    Stopped,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// Marks runs that are `running` but whose runner is gone as `interrupted`, and the database
/// they were migrating as `failed` with [`INTERRUPTED`]. Returns how many runs were reaped.
pub async fn reap_dead_runs(catalog: &Catalog) -> Result<u64, CatalogError> {
    let sql = format!(
        "WITH dead AS (
             UPDATE migration_runs r SET state = 'interrupted', finished_at = now()
              WHERE r.state = 'running' AND NOT {RUN_ALIVE}
              RETURNING r.id),
         rows AS (
             UPDATE migration_ledger l SET state = 'failed', finished_at = now(), error = $1
               FROM dead WHERE l.run_id = dead.id AND l.state = 'running')
         SELECT count(*) FROM dead"
    );
    let n: i64 = sqlx::query_scalar(&sql)
        .bind(INTERRUPTED)
        .fetch_one(catalog.pool())
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// A database planned in a run, and the phase it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Canary,
    Main,
}

/// Starts a run: inserts it and its planned databases (`pending`) and takes its liveness lock,
/// all before any other runner can see it.
pub async fn start_run(
    catalog: &Catalog,
    target: i64,
    options: &Value,
    planned: &[(&FleetDb, Phase)],
    skipped: usize,
) -> Result<Run, CatalogError> {
    let mut lock = catalog.pool().acquire().await?.detach();
    let id = Uuid::now_v7();
    let runner = format!(
        "{}:{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into()),
        std::process::id()
    );
    let mut tx = lock.begin().await?;
    let key: i32 = sqlx::query_scalar(
        "INSERT INTO migration_runs (id, runner, target_version, options, state, planned, skipped)
         VALUES ($1, $2, $3, $4, 'running', $5, $6) RETURNING lock_key",
    )
    .bind(id)
    .bind(&runner)
    .bind(target)
    .bind(options)
    .bind(i32::try_from(planned.len()).unwrap_or(i32::MAX))
    .bind(i32::try_from(skipped).unwrap_or(i32::MAX))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_advisory_lock($1, $2)")
        .bind(RUN_LOCK_CLASS)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    let keys: Vec<String> = planned.iter().map(|(d, _)| d.key.to_string()).collect();
    let servers: Vec<String> = planned.iter().map(|(d, _)| d.server.clone()).collect();
    let names: Vec<String> = planned.iter().map(|(d, _)| d.db_name.clone()).collect();
    let phases: Vec<&str> = planned
        .iter()
        .map(|(_, p)| match p {
            Phase::Canary => "canary",
            Phase::Main => "main",
        })
        .collect();
    let befores: Vec<Option<i64>> = planned.iter().map(|(d, _)| d.recorded).collect();
    sqlx::query(
        "INSERT INTO migration_ledger (run_id, db_key, server, db_name, phase, state, target_version, version_before)
         SELECT $1, k, s, n, p, 'pending', $2, b
           FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS u(k, s, n, p, b)",
    )
    .bind(id)
    .bind(target)
    .bind(&keys)
    .bind(&servers)
    .bind(&names)
    .bind(&phases)
    .bind(&befores)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Run { id, lock })
}

/// How one database of a run ended, waiting to be written.
#[derive(Clone, Debug)]
pub struct Done {
    pub key: DbKey,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub error: Option<String>,
    pub finished_at: OffsetDateTime,
}

/// What the ledger writer is told: a database started, or ended.
enum Entry {
    Running(DbKey, OffsetDateTime),
    Done(Done),
}

/// How long a started or finished database may wait before the ledger says so: states are written
/// in batches (one transaction for many databases), which keeps the control plane's share of a
/// large run small (a per-database round trip and commit on the control plane costs about as much
/// server CPU as a tenth of the migration itself). A runner killed in between loses at most this
/// much: a finished database still says `running` (reaped as interrupted) or `pending`, and the
/// next run finds it at the target under the lock.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const FLUSH_MAX: usize = 256;

/// Writes the states of a run's databases in batches, in the background.
pub struct DoneWriter {
    tx: tokio::sync::mpsc::UnboundedSender<Entry>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for DoneWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoneWriter").finish_non_exhaustive()
    }
}

impl DoneWriter {
    /// Starts the writer of `run`.
    #[must_use]
    pub fn start(catalog: Catalog, run: Uuid) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Entry>();
        let task = tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut due_at = tokio::time::Instant::now();
            loop {
                let open = tokio::select! {
                    got = rx.recv() => match got {
                        Some(d) => {
                            if batch.is_empty() {
                                due_at = tokio::time::Instant::now() + FLUSH_EVERY;
                            }
                            batch.push(d);
                            true
                        }
                        None => false,
                    },
                    () = tokio::time::sleep_until(due_at), if !batch.is_empty() => true,
                };
                let due =
                    !open || batch.len() >= FLUSH_MAX || tokio::time::Instant::now() >= due_at;
                if due && !batch.is_empty() {
                    if let Err(e) = write_done(&catalog, run, &batch).await {
                        tracing::warn!(error = %e, count = batch.len(), "cannot record migration results in the ledger");
                    }
                    batch.clear();
                }
                if !open {
                    return;
                }
            }
        });
        Self { tx, task }
    }

    /// Queues "this database is being migrated".
    pub fn running(&self, key: DbKey) {
        if self
            .tx
            .send(Entry::Running(key, OffsetDateTime::now_utc()))
            .is_err()
        {
            tracing::warn!("the ledger writer stopped; a start was not recorded");
        }
    }

    /// Queues a result.
    pub fn send(&self, done: Done) {
        if self.tx.send(Entry::Done(done)).is_err() {
            tracing::warn!("the ledger writer stopped; a result was not recorded");
        }
    }

    /// Writes what is queued and stops.
    pub async fn finish(self) {
        drop(self.tx);
        self.task.await.ok();
    }
}

/// Records a batch of starts, results and the versions reached, in one transaction.
async fn write_done(catalog: &Catalog, run: Uuid, entries: &[Entry]) -> Result<(), CatalogError> {
    let mut tx = catalog.pool().begin().await?;
    // Starts first: a database's start is always queued before its end, so within a batch its
    // end must be written last.
    let (started, times): (Vec<String>, Vec<OffsetDateTime>) = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Running(key, at) => Some((key.to_string(), *at)),
            Entry::Done(_) => None,
        })
        .unzip();
    if !started.is_empty() {
        sqlx::query(
            "UPDATE migration_ledger l SET state = 'running', started_at = u.t
               FROM unnest($2::text[], $3::timestamptz[]) AS u(k, t)
              WHERE l.run_id = $1 AND l.db_key = u.k",
        )
        .bind(run)
        .bind(&started)
        .bind(&times)
        .execute(&mut *tx)
        .await?;
    }
    let batch: Vec<&Done> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Done(d) => Some(d),
            Entry::Running(..) => None,
        })
        .collect();
    let keys: Vec<String> = batch.iter().map(|d| d.key.to_string()).collect();
    let befores: Vec<Option<i64>> = batch.iter().map(|d| d.before).collect();
    let afters: Vec<Option<i64>> = batch.iter().map(|d| d.after).collect();
    let errors: Vec<Option<String>> = batch.iter().map(|d| d.error.clone()).collect();
    let times: Vec<OffsetDateTime> = batch.iter().map(|d| d.finished_at).collect();
    sqlx::query(
        "UPDATE migration_ledger l
            SET state = CASE WHEN u.err IS NULL THEN 'ok' ELSE 'failed' END,
                version_before = COALESCE(u.b, l.version_before), version_after = u.a,
                finished_at = u.t, error = u.err
           FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[]) AS u(k, b, a, err, t)
          WHERE l.run_id = $1 AND l.db_key = u.k",
    )
    .bind(run)
    .bind(&keys)
    .bind(&befores)
    .bind(&afters)
    .bind(&errors)
    .bind(&times)
    .execute(&mut *tx)
    .await?;
    let (mut ids, mut versions) = (Vec::new(), Vec::new());
    for d in batch {
        match (d.key, d.after) {
            (DbKey::Tenant(id), Some(v)) => {
                ids.push(id.as_uuid());
                versions.push(v);
            }
            (DbKey::Shared, Some(v)) => record_version_in(&mut tx, &DbKey::Shared, v).await?,
            (_, None) => {}
        }
    }
    if !ids.is_empty() {
        // Tenants whose recorded version rose are published, so every instance refreshes them.
        sqlx::query(
            "WITH changed AS (
                 UPDATE tenants t SET schema_version = u.v, epoch = t.epoch + 1, updated_at = now()
                   FROM unnest($1::uuid[], $2::bigint[]) AS u(id, v)
                  WHERE t.id = u.id AND (t.schema_version IS NULL OR t.schema_version < u.v)
                  RETURNING t.id)
             SELECT pg_notify($3, id::text) FROM changed",
        )
        .bind(&ids)
        .bind(&versions)
        .bind(crate::catalog::CHANNEL)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends a run and releases its liveness lock.
pub async fn finish_run(catalog: &Catalog, run: Run, state: RunState) -> Result<(), CatalogError> {
    let Run { id, mut lock } = run;
    sqlx::query("UPDATE migration_runs SET state = $2, finished_at = now() WHERE id = $1")
        .bind(id)
        .bind(state.as_str())
        .execute(catalog.pool())
        .await?;
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut lock)
        .await?;
    lock.close().await?;
    Ok(())
}

/// Records that a database reached `version` (never lowers a recorded version) and, if that
/// changed anything, tells every instance, whose caches then see the new version.
pub async fn record_version(
    catalog: &Catalog,
    key: &DbKey,
    version: i64,
) -> Result<(), CatalogError> {
    let mut tx = catalog.pool().begin().await?;
    record_version_in(&mut tx, key, version).await?;
    tx.commit().await?;
    Ok(())
}

async fn record_version_in(
    tx: &mut sqlx::PgConnection,
    key: &DbKey,
    version: i64,
) -> Result<(), CatalogError> {
    match key {
        DbKey::Tenant(id) => {
            let changed = sqlx::query(
                "UPDATE tenants SET schema_version = $2, epoch = epoch + 1, updated_at = now()
                  WHERE id = $1 AND (schema_version IS NULL OR schema_version < $2)",
            )
            .bind(id.as_uuid())
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                publish(&mut *tx, Some(*id)).await?;
            }
        }
        DbKey::Shared => {
            let changed = sqlx::query(
                "INSERT INTO shared_schema (singleton, schema_version) VALUES (true, $1)
                 ON CONFLICT (singleton) DO UPDATE SET schema_version = EXCLUDED.schema_version, updated_at = now()
                  WHERE shared_schema.schema_version < EXCLUDED.schema_version",
            )
            .bind(version)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed > 0 {
                // Every shared tenant's effective version changed.
                publish(&mut *tx, None).await?;
            }
        }
    }
    Ok(())
}

/// The latest ledger row of one database, with whether its run is still alive.
#[derive(Clone, Debug, FromRow)]
pub struct LatestEntry {
    pub db_key: String,
    pub run_id: Uuid,
    pub state: String,
    pub target_version: i64,
    pub version_before: Option<i64>,
    pub version_after: Option<i64>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    pub run_alive: bool,
}

/// The latest ledger row of every database that has one.
pub async fn latest_entries(catalog: &Catalog) -> Result<Vec<LatestEntry>, CatalogError> {
    let sql = format!(
        "SELECT DISTINCT ON (l.db_key) l.db_key, l.run_id, l.state, l.target_version,
                l.version_before, l.version_after, l.started_at, l.finished_at, l.error,
                (r.state = 'running' AND {RUN_ALIVE}) AS run_alive
           FROM migration_ledger l JOIN migration_runs r ON r.id = l.run_id
          ORDER BY l.db_key, l.run_id DESC"
    );
    Ok(sqlx::query_as(&sql).fetch_all(catalog.pool()).await?)
}

/// The ledger rows of one run (for tests and reports).
pub async fn run_entries(catalog: &Catalog, run: Uuid) -> Result<Vec<LatestEntry>, CatalogError> {
    let sql = format!(
        "SELECT l.db_key, l.run_id, l.state, l.target_version, l.version_before, l.version_after,
                l.started_at, l.finished_at, l.error, (r.state = 'running' AND {RUN_ALIVE}) AS run_alive
           FROM migration_ledger l JOIN migration_runs r ON r.id = l.run_id
          WHERE l.run_id = $1 ORDER BY l.db_key"
    );
    Ok(sqlx::query_as(&sql)
        .bind(run)
        .fetch_all(catalog.pool())
        .await?)
}

/// Parses a ledger key back.
#[must_use]
pub fn parse_key(s: &str) -> Option<DbKey> {
    if s == "shared" {
        Some(DbKey::Shared)
    } else {
        TenantId::parse(s).map(DbKey::Tenant)
    }
}
