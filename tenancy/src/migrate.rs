//! The two migration sets, embedded at build time and run by refinery over tokio-postgres:
//! `migrations/` on the control plane, `tenant-migrations/` on the shared database and on every
//! dedicated database (identically).
//!
//! - [`database`]: one tenant database, under a per-database advisory lock.
//! - [`ledger`]: the control-plane record of runs, per-database states and recorded versions.
//! - [`fleet`]: the fleet runner (bounded total and per-server concurrency, canary, resume);
//!   `inventory` names the fleet's databases, `fleet::select` lists them from the catalog,
//!   `fleet::worker` migrates one database of a run.
//! - [`status`]: "where do we stand?", per tenant database.
//!
//! Tenant migrations are forward-only and expand/contract (see `docs/migrations.md`): code at
//! version N keeps working on a database at N+1. The running code refuses tenants whose database
//! is below [`crate::dataplane::MIN_TENANT_SCHEMA`].

pub mod database;
pub mod fleet;
pub mod inventory;
pub mod ledger;
pub use fleet::status;

use refinery::Migration;
use tokio_postgres::Config;

use crate::pg;

mod control_plane {
    refinery::embed_migrations!("../migrations");
}
mod tenant {
    refinery::embed_migrations!("../tenant-migrations");
}

/// A migration run failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("migration V{version}__{name} failed: {source}")]
    Apply {
        version: i64,
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("the database server is not registered")]
    UnknownServer,
}

/// Applies `migrations/` to the control plane.
pub async fn control_plane(config: &Config) -> Result<(), MigrateError> {
    let mut client = pg::connect(config).await.map_err(MigrateError::Connect)?;
    control_plane::migrations::runner()
        .run_async(&mut client)
        .await?;
    Ok(())
}

/// The tenant migrations this build embeds (`tenant-migrations/`), ordered by version. Tests and
/// the benchmark append their own to simulate a newer release.
#[must_use]
pub fn tenant_migrations() -> Vec<Migration> {
    let mut m = tenant::migrations::runner().get_migrations().clone();
    m.sort();
    m
}

/// Applies `tenant-migrations/` to one tenant database (run as the owner; the data-plane role
/// must already exist on the server, since migrations grant to it). Takes the per-database
/// advisory lock. Returns the version reached.
pub async fn tenant_database(config: &Config) -> Result<i64, MigrateError> {
    let migrations = tenant_migrations();
    // A database being provisioned has no traffic to protect: no lock timeout.
    database::migrate(config, &migrations, head_of(&migrations), None)
        .await
        .map(|o| o.after)
        .map_err(|f| f.error)
}

/// The newest tenant migration this build knows.
#[must_use]
pub fn tenant_head_version() -> i64 {
    head_of(&tenant_migrations())
}

/// The highest version in a set of migrations (0 for none).
#[must_use]
pub fn head_of(migrations: &[Migration]) -> i64 {
    migrations
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// An error and its sources on one line, for the ledger and operators.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
