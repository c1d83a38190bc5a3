//! The control-plane catalog (sqlx): tenants, their domains and placement, database servers,
//! idempotency records, wrapped data keys. Every change that affects routing publishes on
//! [`CHANNEL`] in the same transaction, so every instance drops stale cache entries; changes to a
//! tenant row also bump its `epoch` (for operations that must detect a concurrent change).

mod db_servers;
mod domains;
mod idempotency;
pub mod keys;
pub mod operations;
mod plans;
mod signing_keys;
mod tenants;

pub use db_servers::{DbServer, RegisterServerError, server_url_purpose};
pub use domains::DomainError as CatalogDomainError;
pub use idempotency::{IdempotencyOutcome, StoredResponse};
pub use plans::Plan;
pub use signing_keys::SigningKeyRow;
pub use tenants::{
    DB_URL_PURPOSE, InsertTenantError, NewTenant, Placement, RateQuota, SignupPolicy, Tenant,
    TenantPatch, TenantStatus,
};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::ids::TenantId;

/// The LISTEN/NOTIFY channel for catalog changes. The payload is a tenant id, or `*`.
pub const CHANNEL: &str = "platform_catalog";

/// A catalog query failed (the database, not the caller).
#[derive(Debug, thiserror::Error)]
#[error("catalog query failed")]
pub struct CatalogError(#[from] pub sqlx::Error);

/// Handle to the control-plane database.
#[derive(Clone, Debug)]
pub struct Catalog {
    pool: PgPool,
}

impl Catalog {
    /// Connects to the control plane (lazily: the first query opens the first connection).
    pub fn connect_lazy(url: &str) -> Result<Self, CatalogError> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(std::time::Duration::from_secs(5))
            // During a request, a connection carries the request's audit context (who acts, from
            // where) for the control plane's audit triggers; it is cleared when released.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    if let Some(audit) = crate::context::current_encoded() {
                        sqlx::query("SELECT set_config('app.audit', $1, false)")
                            .bind(audit)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    if let Some(audit) = crate::context::current_encoded() {
                        sqlx::query("SELECT set_config('app.audit', $1, false)")
                            .bind(audit)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(true)
                })
            })
            .after_release(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SELECT set_config('app.audit', '', false) WHERE current_setting('app.audit', true) <> ''")
                        .execute(&mut *conn)
                        .await?;
                    Ok(true)
                })
            })
            .connect_lazy(url)?;
        Ok(Self { pool })
    }

    /// The sqlx pool, for the notification listener and health checks.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `SELECT 1`, for readiness.
    pub async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The control plane's own schema version (the newest applied `migrations/` file).
    pub async fn schema_version(&self) -> Result<Option<i32>, CatalogError> {
        Ok(
            sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Publishes a change for `tenant` (or all tenants) to every instance, outside a transaction.
    pub async fn publish(&self, tenant: Option<TenantId>) -> Result<(), CatalogError> {
        publish(&self.pool, tenant).await
    }
}

pub(crate) async fn publish<'e, E: sqlx::PgExecutor<'e>>(
    ex: E,
    tenant: Option<TenantId>,
) -> Result<(), CatalogError> {
    let payload = tenant.map_or_else(|| "*".to_owned(), |t| t.to_string());
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(ex)
        .await?;
    Ok(())
}

/// Whether a database error is the violation of the named constraint.
pub(crate) fn violates(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some(constraint))
}
