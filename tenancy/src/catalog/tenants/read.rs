//! Reading tenants from the catalog: by id, by slug, one page of live tenants, all tenants in a
//! status.

use uuid::Uuid;

use super::row::{COLUMNS, TenantRow};
use super::{Tenant, TenantStatus};
use crate::catalog::{Catalog, CatalogError};
use crate::ids::TenantId;

impl Catalog {
    /// A tenant by id, in any status.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>, CatalogError> {
        let row: Option<TenantRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    /// A tenant by slug, in any status.
    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>, CatalogError> {
        let row: Option<TenantRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM tenants WHERE slug = $1"))
                .bind(slug)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(Into::into))
    }

    /// Tenants that are not deleted, ordered by id, after `cursor`; one page of `limit`.
    pub async fn list_tenants(
        &self,
        after: Option<TenantId>,
        limit: i64,
    ) -> Result<Vec<Tenant>, CatalogError> {
        let rows: Vec<TenantRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM tenants WHERE status <> 'deleted' AND ($1::uuid IS NULL OR id > $1)
             ORDER BY id LIMIT $2"
        ))
        .bind(after.map(|t| t.as_uuid()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Tenants in the given status (ops: purge, migrations).
    pub async fn tenants_in_status(
        &self,
        status: TenantStatus,
    ) -> Result<Vec<Tenant>, CatalogError> {
        let rows: Vec<TenantRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM tenants WHERE status = $1 ORDER BY id"
        ))
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The id of the live (not deleted) tenant with this slug.
    pub async fn live_tenant_id_by_slug(
        &self,
        slug: &str,
    ) -> Result<Option<TenantId>, CatalogError> {
        let id: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1 AND status <> 'deleted'")
                .bind(slug)
                .fetch_optional(&self.pool)
                .await?;
        Ok(id.map(TenantId::from_uuid))
    }
}
