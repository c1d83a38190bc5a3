//! Custom domains that route to a tenant.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Catalog, CatalogError, publish, violates};
use crate::ids::{DomainName, TenantId};

/// Adding a domain failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("the domain is already registered")]
    Taken,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Catalog {
    /// Registers `domain` for `tenant`.
    pub async fn add_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<OffsetDateTime, DomainError> {
        let mut tx = self.pool.begin().await.map_err(CatalogError)?;
        let created: OffsetDateTime = sqlx::query_scalar(
            "INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2) RETURNING created_at",
        )
        .bind(domain.as_str())
        .bind(tenant.as_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if violates(&e, "tenant_domains_pkey") {
                DomainError::Taken
            } else {
                CatalogError(e).into()
            }
        })?;
        publish(&mut *tx, Some(tenant)).await?;
        tx.commit().await.map_err(CatalogError)?;
        Ok(created)
    }

    /// The tenant's domains with their creation time.
    pub async fn domains(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(DomainName, OffsetDateTime)>, CatalogError> {
        let rows: Vec<(String, OffsetDateTime)> = sqlx::query_as(
            "SELECT domain, created_at FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain",
        )
        .bind(tenant.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(d, at)| DomainName::from_host_header(&d).map(|d| (d, at)))
            .collect())
    }

    /// Removes a domain of the tenant; false if it had no such domain.
    pub async fn remove_domain(
        &self,
        tenant: TenantId,
        domain: &DomainName,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM tenant_domains WHERE tenant_id = $1 AND domain = $2")
            .bind(tenant.as_uuid())
            .bind(domain.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        publish(&mut *tx, Some(tenant)).await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The live tenant a custom domain routes to.
    pub async fn tenant_id_by_domain(
        &self,
        domain: &DomainName,
    ) -> Result<Option<TenantId>, CatalogError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT d.tenant_id FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id
             WHERE d.domain = $1 AND t.status <> 'deleted'",
        )
        .bind(domain.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(TenantId::from_uuid))
    }
}
