//! The migration ledger in the control plane (`migrations/V3__migration_ledger.sql`): one row per
//! fleet run, one row per run and tenant database (`pending` -> `running` -> `ok` | `failed`, with
//! versions before/after, timings and the error), and the recorded schema version of every tenant
//! database (`tenants.schema_version`, `shared_schema`).
//!
//! A live run holds a session advisory lock on the control plane for its whole life, so any
//! reader can tell a run that is still going from one that was killed: its lock is free.

pub mod entries;
pub mod versions;
pub mod writer;

use serde_json::Value;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::inventory::FleetDb;
use crate::catalog::{Catalog, CatalogError};

pub use entries::run_entries;

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
