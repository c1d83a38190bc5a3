//! Migrating one tenant database. The owner connection takes a session advisory lock in that
//! database first, so two runners (or a runner and provisioning) never migrate it at once; the
//! second waits, then finds it at the target and does nothing. Refinery applies each migration in
//! its own transaction together with its history row, so a runner killed at any point leaves
//! every migration either applied and recorded or not applied at all: nothing runs twice.

use std::time::Duration;

use refinery::{Migration, Runner, Target};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::MigrateError;
use crate::pg;

/// Advisory-lock key pair of "migrating this database" (advisory locks are per database).
const LOCK_CLASS: i32 = 7300;
const LOCK_OBJECT: i32 = 1;
/// How long connecting to a tenant database may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What migrating one database did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbOutcome {
    /// The version found under the lock.
    pub before: i64,
    /// The version left behind.
    pub after: i64,
}

/// Migrating one database failed; what is known of its versions is kept for the ledger (a
/// failure part-way leaves the earlier migrations applied).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct DbFailure {
    pub before: Option<i64>,
    pub after: Option<i64>,
    #[source]
    pub error: MigrateError,
}

impl From<MigrateError> for DbFailure {
    fn from(error: MigrateError) -> Self {
        Self {
            before: None,
            after: None,
            error,
        }
    }
}

/// Brings the database of `config` to `target` (never backwards) with `migrations`.
pub async fn migrate(
    config: &Config,
    migrations: &[Migration],
    target: i64,
) -> Result<DbOutcome, DbFailure> {
    let mut config = config.clone();
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("platform-migrate");
    let mut client = pg::connect(&config).await.map_err(MigrateError::Connect)?;
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_OBJECT],
        )
        .await
        .map_err(MigrateError::Db)?;
    let before = current_version(&client).await.map_err(MigrateError::Db)?;
    if before >= target {
        return Ok(DbOutcome {
            before,
            after: before,
        });
    }
    let result = Runner::new(migrations)
        .set_target(Target::Version(i32::try_from(target).unwrap_or(i32::MAX)))
        .run_async(&mut client)
        .await;
    // The session lock goes with the connection.
    drop(client);
    // Refinery reports what it committed, also when a later migration failed.
    let reached = |report: Option<&refinery::Report>| {
        report
            .and_then(|r| {
                r.applied_migrations()
                    .iter()
                    .map(|m| i64::from(m.version()))
                    .max()
            })
            .map_or(before, |v| v.max(before))
    };
    match result {
        Ok(report) => Ok(DbOutcome {
            before,
            after: reached(Some(&report)),
        }),
        Err(e) => Err(DbFailure {
            before: Some(before),
            after: Some(reached(e.report())),
            error: MigrateError::Migration(e),
        }),
    }
}

/// The version a tenant database has reached: the highest row of refinery's history table, or 0
/// if there is none. One query, no refinery verification: the cheap check.
pub async fn current_version(client: &Client) -> Result<i64, tokio_postgres::Error> {
    match client
        .query_one(
            "SELECT COALESCE(max(version), 0)::bigint FROM refinery_schema_history",
            &[],
        )
        .await
    {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Connects and reads the version, without the lock (for `--verify` and status checks).
pub async fn read_version(config: &Config) -> Result<i64, MigrateError> {
    let mut config = config.clone();
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("platform-migrate");
    let client = pg::connect(&config).await.map_err(MigrateError::Connect)?;
    Ok(current_version(&client).await?)
}
