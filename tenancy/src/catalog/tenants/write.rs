//! Changing tenants in the catalog: insert, patch, activate, soft-delete, remove, re-seal the
//! data-plane URL. Each change publishes on the catalog channel in its own transaction (and bumps
//! the tenant's epoch where the row stays), so every instance drops its cached copy.

use super::row::{COLUMNS, TenantRow};
use super::{
    InsertTenantError, NewTenant, Placement, SignupPolicy, Tenant, TenantPatch, TenantStatus,
};
use crate::catalog::{Catalog, CatalogError, publish, violates};
use crate::ids::TenantId;

impl Catalog {
    /// Inserts a tenant row.
    pub async fn insert_tenant(&self, t: &NewTenant) -> Result<Tenant, InsertTenantError> {
        let (server, db) = match &t.placement {
            Placement::Shared => (None, None),
            Placement::Dedicated { server, database } => {
                (Some(server.as_uuid()), Some(database.clone()))
            }
        };
        let mut tx = self.pool.begin().await.map_err(CatalogError)?;
        let row: TenantRow = sqlx::query_as(&format!(
            "INSERT INTO tenants (id, slug, name, plan, status, placement, db_server_id, db_name, db_url_sealed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
        ))
        .bind(t.id.as_uuid())
        .bind(t.slug.as_str())
        .bind(&t.name)
        .bind(&t.plan)
        .bind(t.status.as_str())
        .bind(t.placement.kind())
        .bind(server)
        .bind(db)
        .bind(t.db_url_sealed.as_deref())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if violates(&e, "tenants_slug_key") {
                InsertTenantError::SlugTaken
            } else {
                CatalogError(e).into()
            }
        })?;
        publish(&mut *tx, Some(t.id)).await?;
        tx.commit().await.map_err(CatalogError)?;
        Ok(row.into())
    }

    /// Applies a patch to a tenant that is not deleted; `None` if there is no such tenant.
    pub async fn patch_tenant(
        &self,
        id: TenantId,
        p: &TenantPatch,
    ) -> Result<Option<Tenant>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TenantRow> = sqlx::query_as(&format!(
            "UPDATE tenants SET name = COALESCE($2, name), plan = COALESCE($3, plan),
                    status = COALESCE($4, status), signup = COALESCE($5, signup),
                    mfa_required = COALESCE($6, mfa_required),
                    rate_limit_rps = CASE WHEN $7 THEN $8 ELSE rate_limit_rps END,
                    rate_limit_burst = CASE WHEN $7 THEN $9 ELSE rate_limit_burst END,
                    epoch = epoch + 1, updated_at = now()
             WHERE id = $1 AND status IN ('active', 'suspended') RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(p.name.as_deref())
        .bind(p.plan.as_deref())
        .bind(p.status.map(TenantStatus::as_str))
        .bind(p.signup.map(SignupPolicy::as_str))
        .bind(p.mfa_required)
        .bind(p.rate_limit.is_some())
        .bind(
            p.rate_limit
                .flatten()
                .map(|q| i32::try_from(q.per_second).unwrap_or(i32::MAX)),
        )
        .bind(
            p.rate_limit
                .flatten()
                .map(|q| i32::try_from(q.burst).unwrap_or(i32::MAX)),
        )
        .fetch_optional(&mut *tx)
        .await?;
        publish(&mut *tx, Some(id)).await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }

    /// Marks a tenant active once its database is ready.
    pub async fn activate_tenant(&self, id: TenantId) -> Result<Option<Tenant>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TenantRow> = sqlx::query_as(&format!(
            "UPDATE tenants SET status = 'active', epoch = epoch + 1, updated_at = now()
             WHERE id = $1 AND status = 'provisioning' RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        publish(&mut *tx, Some(id)).await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }

    /// Soft-deletes a tenant: it stops resolving at once (every instance is notified in the same
    /// transaction). Returns false if there was no live tenant.
    pub async fn delete_tenant(&self, id: TenantId) -> Result<bool, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE tenants SET status = 'deleted', deleted_at = now(), epoch = epoch + 1, updated_at = now()
             WHERE id = $1 AND status <> 'deleted'",
        )
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        publish(&mut *tx, Some(id)).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Removes a tenant's catalog row for good (after its data is gone).
    pub async fn remove_tenant(&self, id: TenantId) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        publish(&mut *tx, Some(id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a tenant's sealed data-plane URL (re-sealing after a key change).
    pub async fn set_tenant_db_url(&self, id: TenantId, sealed: &[u8]) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE tenants SET db_url_sealed = $2, epoch = epoch + 1 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
        publish(&mut *tx, Some(id)).await?;
        tx.commit().await?;
        Ok(())
    }
}
