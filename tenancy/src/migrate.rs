//! The two migration sets, embedded at build time and run by refinery over tokio-postgres:
//! `migrations/` on the control plane, `tenant-migrations/` on the shared database and on every
//! dedicated database (identically).

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
}

/// Applies `migrations/` to the control plane.
pub async fn control_plane(config: &Config) -> Result<(), MigrateError> {
    let mut client = pg::connect(config).await.map_err(MigrateError::Connect)?;
    control_plane::migrations::runner()
        .run_async(&mut client)
        .await?;
    Ok(())
}

/// Applies `tenant-migrations/` to one tenant database (run as the owner; the data-plane role must
/// already exist on the server, since migrations grant to it). Returns the version reached.
pub async fn tenant_database(config: &Config) -> Result<i64, MigrateError> {
    let mut client = pg::connect(config).await.map_err(MigrateError::Connect)?;
    let report = tenant::migrations::runner().run_async(&mut client).await?;
    let runner = tenant::migrations::runner();
    let last = runner.get_last_applied_migration_async(&mut client).await?;
    drop(report);
    Ok(last.map_or(0, |m| i64::from(m.version())))
}

/// The newest tenant migration this build knows.
#[must_use]
pub fn tenant_head_version() -> i64 {
    tenant::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}
