//! Reading the ledger back: the latest row of every database and the rows of one run, each with
//! whether its run is still alive (for `platformctl migrate status` and tests).

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::RUN_ALIVE;
use crate::catalog::{Catalog, CatalogError};
use crate::ids::TenantId;
use crate::migrate::inventory::DbKey;

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
