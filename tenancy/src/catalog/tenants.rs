//! Tenants in the catalog: create, read, list (cursor), patch, soft-delete, purge.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Catalog, CatalogError, publish, violates};
use crate::ids::{DbServerId, TenantId, TenantSlug};

/// Lifecycle of a tenant. `deleted` tenants do not resolve; `platformctl tenants purge` removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStatus {
    Provisioning,
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            _ => Self::Deleted,
        }
    }
}

/// Where a tenant's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Rows in the shared database, isolated by row-level security.
    Shared,
    /// Its own database on a registered server.
    Dedicated {
        server: DbServerId,
        database: String,
    },
}

impl Placement {
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Dedicated { .. } => "dedicated",
        }
    }
}

/// A tenant as the catalog knows it.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    pub placement: Placement,
    pub epoch: i64,
    /// A dedicated tenant's data-plane URL, sealed with its DEK (purpose [`DB_URL_PURPOSE`]).
    pub db_url_sealed: Option<Vec<u8>>,
    /// Who may create an account: only invitees (default) or anyone.
    pub signup: SignupPolicy,
    /// Every user of the tenant must use a second factor.
    pub mfa_required: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The recorded schema version of the tenant's database (the shared one's for shared
    /// tenants): a lower bound, `None` if never recorded. The server compares it with the minimum
    /// its code needs.
    pub schema_version: Option<i64>,
    /// The effective request rate: the tenant's override, else its plan's (`None`: the plan is
    /// not in `plans`, the server's default applies).
    pub rate_limit: Option<RateQuota>,
    /// The tenant's own override, if any.
    pub rate_limit_override: Option<RateQuota>,
    /// How long its audit events are kept (its plan's; `None`: kept).
    pub audit_retention_days: Option<i32>,
}

/// A tenant's sign-up policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupPolicy {
    InviteOnly,
    Open,
}

impl SignupPolicy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InviteOnly => "invite_only",
            Self::Open => "open",
        }
    }
}

/// Sealing purpose of a dedicated tenant's data-plane URL.
pub const DB_URL_PURPOSE: &str = "tenant.db_url";

#[derive(FromRow)]
struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    plan: String,
    status: String,
    placement: String,
    db_server_id: Option<Uuid>,
    db_name: Option<String>,
    epoch: i64,
    db_url_sealed: Option<Vec<u8>>,
    signup: String,
    mfa_required: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    schema_version: Option<i64>,
    rate_limit_rps: Option<i32>,
    rate_limit_burst: Option<i32>,
    plan_rps: Option<i32>,
    plan_burst: Option<i32>,
    audit_retention_days: Option<i32>,
}

fn positive(v: Option<i32>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        let placement = match (r.placement.as_str(), r.db_server_id, r.db_name) {
            ("dedicated", Some(server), Some(database)) => Placement::Dedicated {
                server: DbServerId::from_uuid(server),
                database,
            },
            _ => Placement::Shared,
        };
        Self {
            id: TenantId::from_uuid(r.id),
            slug: TenantSlug::from_trusted(r.slug),
            name: r.name,
            plan: r.plan,
            status: TenantStatus::parse(&r.status),
            placement,
            epoch: r.epoch,
            db_url_sealed: r.db_url_sealed,
            signup: if r.signup == "open" {
                SignupPolicy::Open
            } else {
                SignupPolicy::InviteOnly
            },
            mfa_required: r.mfa_required,
            created_at: r.created_at,
            updated_at: r.updated_at,
            schema_version: r.schema_version,
            rate_limit: match (
                positive(r.rate_limit_rps.or(r.plan_rps)),
                positive(r.rate_limit_burst.or(r.plan_burst)),
            ) {
                (Some(per_second), Some(burst)) => Some(RateQuota { per_second, burst }),
                _ => None,
            },
            rate_limit_override: match (positive(r.rate_limit_rps), positive(r.rate_limit_burst)) {
                (Some(per_second), Some(burst)) => Some(RateQuota { per_second, burst }),
                _ => None,
            },
            audit_retention_days: r.audit_retention_days,
        }
    }
}

/// A shared tenant's schema version is the shared database's (one row of `shared_schema`).
const COLUMNS: &str = "id, slug, name, plan, status, placement, db_server_id, db_name, epoch, db_url_sealed, signup, mfa_required, created_at, updated_at,
     CASE WHEN placement = 'shared' THEN (SELECT ss.schema_version FROM shared_schema ss)
          ELSE schema_version END AS schema_version,
     rate_limit_rps, rate_limit_burst,
     (SELECT p.requests_per_second FROM plans p WHERE p.name = plan) AS plan_rps,
     (SELECT p.burst FROM plans p WHERE p.name = plan) AS plan_burst,
     (SELECT p.audit_retention_days FROM plans p WHERE p.name = plan) AS audit_retention_days";

/// A tenant to insert.
#[derive(Clone, Debug)]
pub struct NewTenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    pub placement: Placement,
    pub db_url_sealed: Option<Vec<u8>>,
}

/// Fields an operator may change.
#[derive(Clone, Debug, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub plan: Option<String>,
    pub status: Option<TenantStatus>,
    pub signup: Option<SignupPolicy>,
    pub mfa_required: Option<bool>,
    /// `Some(None)` removes the tenant's rate-limit override (back to its plan's).
    pub rate_limit: Option<Option<RateQuota>>,
}

/// A request rate: sustained requests per second and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateQuota {
    pub per_second: u32,
    pub burst: u32,
}

/// Inserting a tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertTenantError {
    #[error("the slug is taken")]
    SlugTaken,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

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
