//! Migrating one tenant database. The owner connection takes a session advisory lock in that
//! database first, so two runners (or a runner and provisioning) never migrate it at once; the
//! second waits, then finds it at the target and does nothing. Each migration is applied in its
//! own transaction together with its history row, so a runner killed at any point leaves every
//! migration either applied and recorded or not applied at all: nothing runs twice.
//!
//! The common case (a database that refinery has migrated before, whose history matches this
//! build's migrations) takes the lean path: one round trip for the lock and the history, then one
//! per migration (`BEGIN; <sql>; INSERT <history row>; COMMIT` as one simple query), writing the
//! same history rows as refinery. Everything else (a new database, a history that differs) is
//! handed to refinery, which creates its table and reports divergent or unknown migrations.

use std::time::Duration;

use refinery::{Migration, Runner, Target};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

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

/// Brings the database of `config` to `target` (never backwards) with `migrations`. With a
/// `lock_timeout`, a migration that waits longer than that for a lock fails (rolled back, the
/// database recorded as failed) instead of queueing the tenant's queries behind it.
pub async fn migrate(
    config: &Config,
    migrations: &[Migration],
    target: i64,
    lock_timeout: Option<Duration>,
) -> Result<DbOutcome, DbFailure> {
    let mut config = config.clone();
    config
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("platform-migrate");
    let mut client = pg::connect(&config).await.map_err(MigrateError::Connect)?;
    // The lock, then the history, in one round trip. A session advisory lock survives the error
    // of a missing history table (it ignores transaction rollback).
    let history = match client
        .simple_query(&format!(
            "SELECT pg_advisory_lock({LOCK_CLASS}, {LOCK_OBJECT});
             SELECT version::text, name, checksum FROM refinery_schema_history ORDER BY version"
        ))
        .await
    {
        Ok(messages) => Some(history_rows(&messages)),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(e) => return Err(MigrateError::Db(e).into()),
    };
    let before = history
        .as_ref()
        .and_then(|h| h.iter().map(|r| r.version).max())
        .unwrap_or(0);
    if before >= target {
        return Ok(DbOutcome {
            before,
            after: before,
        });
    }
    if let Some(history) = &history
        && matches_build(history, migrations)
    {
        return apply_lean(&client, migrations, before, target, lock_timeout).await;
    }
    // The advisory lock is held: from here on, lock waits are the migrations'.
    if let Some(t) = lock_timeout {
        client
            .batch_execute(&format!("SET lock_timeout = '{}ms'", t.as_millis()))
            .await
            .map_err(MigrateError::Db)?;
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

/// A row of refinery's history table.
struct HistoryRow {
    version: i64,
    name: String,
    checksum: String,
}

fn history_rows(messages: &[SimpleQueryMessage]) -> Vec<HistoryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) if r.len() == 3 => Some(HistoryRow {
                version: r.get(0)?.parse().ok()?,
                name: r.get(1)?.to_owned(),
                checksum: r.get(2)?.to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// Whether every recorded migration is one of `migrations`, unchanged (what refinery verifies
/// before it applies anything); if not, refinery takes over and reports the difference.
fn matches_build(history: &[HistoryRow], migrations: &[Migration]) -> bool {
    history.iter().all(|row| {
        migrations.iter().any(|m| {
            i64::from(m.version()) == row.version
                && m.name() == row.name
                && m.checksum().to_string() == row.checksum
        })
    })
}

/// Applies the migrations above `before` up to `target`, each with its history row in one
/// transaction sent as one simple query. Stops at the first failure.
async fn apply_lean(
    client: &Client,
    migrations: &[Migration],
    before: i64,
    target: i64,
    lock_timeout: Option<Duration>,
) -> Result<DbOutcome, DbFailure> {
    let limit = lock_timeout.map_or_else(String::new, |t| {
        format!("SET LOCAL lock_timeout = '{}ms';\n", t.as_millis())
    });
    let mut todo: Vec<&Migration> = migrations
        .iter()
        .filter(|m| (before + 1..=target).contains(&i64::from(m.version())))
        .collect();
    todo.sort_by_key(|m| m.version());
    let mut after = before;
    for m in todo {
        let version = i64::from(m.version());
        let applied_on = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        // The SQL may end in a comment or lack its last semicolon: newlines and a lone `;` keep
        // the history row a statement of its own.
        let batch = format!(
            "BEGIN;\n{limit}{sql}\n;\nINSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ({version}, '{name}', '{applied_on}', '{checksum}');\nCOMMIT;",
            sql = m.sql().unwrap_or_default(),
            name = m.name().replace('\'', "''"),
            checksum = m.checksum(),
        );
        if let Err(source) = client.batch_execute(&batch).await {
            return Err(DbFailure {
                before: Some(before),
                after: Some(after),
                error: MigrateError::Apply {
                    version,
                    name: m.name().to_owned(),
                    source,
                },
            });
        }
        after = version;
    }
    Ok(DbOutcome { before, after })
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
