//! Plans: each tenant's default request rate and audit retention. A change is published to every
//! instance (a statement trigger notifies `*`), so it applies within about a second.

use serde::Serialize;
use sqlx::FromRow;

use super::{Catalog, CatalogError};

/// A plan.
#[derive(Clone, Debug, FromRow, Serialize)]
pub struct Plan {
    pub name: String,
    pub requests_per_second: i32,
    pub burst: i32,
    pub audit_retention_days: i32,
}

impl Catalog {
    /// Every plan, by name.
    pub async fn plans(&self) -> Result<Vec<Plan>, CatalogError> {
        Ok(sqlx::query_as(
            "SELECT name, requests_per_second, burst, audit_retention_days FROM plans ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Creates or replaces a plan.
    pub async fn put_plan(&self, p: &Plan) -> Result<Plan, CatalogError> {
        Ok(sqlx::query_as(
            "INSERT INTO plans (name, requests_per_second, burst, audit_retention_days)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET requests_per_second = EXCLUDED.requests_per_second,
                 burst = EXCLUDED.burst, audit_retention_days = EXCLUDED.audit_retention_days,
                 updated_at = now()
             RETURNING name, requests_per_second, burst, audit_retention_days",
        )
        .bind(&p.name)
        .bind(p.requests_per_second)
        .bind(p.burst)
        .bind(p.audit_retention_days)
        .fetch_one(&self.pool)
        .await?)
    }
}
