//! Data-key rotation and the state of sealed values, walking the registry of every sealed
//! column (`crypto::registry`): a new key version becomes current, every value of the scope below
//! it is re-sealed, and only then are versions older than the previous one destroyed. The
//! previous version is kept, so a request that sealed with it while the walk ran (a value the
//! walk had already passed) stays readable; the next rotation re-seals it before destroying it.

use std::collections::BTreeMap;

use super::Provisioner;
use crate::catalog::{CatalogError, Tenant};
use crate::crypto::registry::{self, Database, ScopeOf};
use crate::crypto::reseal::{self, ResealError, Tally};
use crate::crypto::{KeyError, Scope};
use crate::ids::TenantId;
use crate::servers::ServerError;

/// Rotating a data key failed. Nothing was destroyed: rerun it.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("tenant {0} is being moved; rotate its key once the move has finished")]
    MoveInFlight(TenantId),
    #[error("tenant {0} no longer exists")]
    NoTenant(TenantId),
    #[error("reaching the tenant's database failed")]
    Server(#[from] ServerError),
    #[error(transparent)]
    Reseal(#[from] ResealError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// What a rotation did.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The new current version.
    pub version: u32,
    /// Per registered column (`table.column`): what the walk found.
    pub columns: Vec<(String, Tally)>,
}

impl Rotation {
    /// Values that did not open (lost before this rotation, or tampered with).
    #[must_use]
    pub fn unreadable(&self) -> u64 {
        self.columns.iter().map(|(_, t)| t.unreadable).sum()
    }
}

/// The sealed values of one registered column, by key version.
#[derive(Clone, Debug)]
pub struct ColumnStatus {
    /// `table.column`.
    pub column: String,
    pub what: &'static str,
    /// How many values are sealed under each version (`None`: malformed).
    pub versions: BTreeMap<Option<u32>, u64>,
    /// How many of them need a key version that no longer exists.
    pub lost: u64,
}

impl Provisioner {
    /// Gives `tenant` a new data key and re-seals every sealed value of the tenant (the catalog's
    /// and its database's) under it; then destroys the versions older than the previous one.
    /// Refused while the tenant is being moved.
    pub async fn rotate_tenant_key(&self, tenant: &Tenant) -> Result<Rotation, RotateError> {
        let id = tenant.id;
        if self.catalog.move_in_flight(id).await? {
            return Err(RotateError::MoveInFlight(id));
        }
        let tenant = self
            .catalog
            .tenant(id)
            .await?
            .ok_or(RotateError::NoTenant(id))?;
        let scope = Scope::Tenant(id);
        self.keyring.ensure_key(scope).await?;
        let version = self.keyring.new_version(scope).await?;
        let columns = self.reseal_tenant(&tenant, version).await?;
        // A value sealed under an even older version while the walk ran: re-sealed before its
        // key goes (version - 1 itself is kept).
        self.reseal_tenant(&tenant, version - 1).await?;
        self.keyring.destroy(scope, Some(version - 1)).await?;
        tracing::info!(tenant.id = %id, version, "rotated a tenant's data key");
        Ok(Rotation { version, columns })
    }

    /// Gives the platform a new data key and re-seals every platform secret under it (server
    /// URLs, platform secrets, JWT signing keys); then destroys versions older than the previous.
    pub async fn rotate_platform_key(&self) -> Result<Rotation, RotateError> {
        let scope = Scope::Platform;
        self.keyring.ensure_key(scope).await?;
        let version = self.keyring.new_version(scope).await?;
        let columns = self.reseal_platform(version).await?;
        self.reseal_platform(version - 1).await?;
        self.keyring.destroy(scope, Some(version - 1)).await?;
        tracing::info!(version, "rotated the platform's data key");
        Ok(Rotation { version, columns })
    }

    async fn reseal_platform(&self, below: u32) -> Result<Vec<(String, Tally)>, RotateError> {
        let mut out = Vec::new();
        for col in registry::columns(Database::Catalog).filter(|c| c.is_platform()) {
            let t = reseal::catalog_column(&self.keyring, &self.catalog, col, None, below).await?;
            out.push((col.name(), t));
        }
        Ok(out)
    }

    async fn reseal_tenant(
        &self,
        tenant: &Tenant,
        below: u32,
    ) -> Result<Vec<(String, Tally)>, RotateError> {
        let mut out = Vec::new();
        for col in registry::columns(Database::Catalog).filter(|c| !c.is_platform()) {
            let t =
                reseal::catalog_column(&self.keyring, &self.catalog, col, Some(tenant.id), below)
                    .await?;
            out.push((col.name(), t));
        }
        let mut client = self.servers.tenant_owner(tenant).await?;
        for col in registry::columns(Database::Tenant) {
            debug_assert!(matches!(col.scope, ScopeOf::Tenant(_)));
            let t =
                reseal::tenant_column(&self.keyring, &mut client, col, tenant.id, below).await?;
            out.push((col.name(), t));
        }
        Ok(out)
    }

    /// The sealed values of the platform (every platform column of the catalog), or of one
    /// tenant (its rows of the catalog's tenant columns and of its database), by key version.
    pub async fn sealed_status(
        &self,
        tenant: Option<&Tenant>,
    ) -> Result<Vec<ColumnStatus>, RotateError> {
        let scope = tenant.map_or(Scope::Platform, |t| Scope::Tenant(t.id));
        let existing = self.keyring.versions(scope).await?;
        let mut out = Vec::new();
        let status = |col: &registry::SealedColumn, versions: BTreeMap<Option<u32>, u64>| {
            let lost = versions
                .iter()
                .filter(|(v, _)| v.is_none_or(|v| !existing.contains(&v)))
                .map(|(_, n)| n)
                .sum();
            ColumnStatus {
                column: col.name(),
                what: col.what,
                versions,
                lost,
            }
        };
        for col in
            registry::columns(Database::Catalog).filter(|c| c.is_platform() == tenant.is_none())
        {
            let v = reseal::catalog_versions(&self.catalog, col, tenant.map(|t| t.id)).await?;
            out.push(status(col, v));
        }
        if let Some(tenant) = tenant {
            let client = self.servers.tenant_owner(tenant).await?;
            for col in registry::columns(Database::Tenant) {
                let v = reseal::tenant_versions(&client, col, tenant.id)
                    .await
                    .map_err(|source| ResealError::Database {
                        column: col.name(),
                        source,
                    })?;
                out.push(status(col, v));
            }
        }
        Ok(out)
    }
}
