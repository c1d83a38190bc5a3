//! Provisioning: create tenants (a dedicated tenant's database is created, migrated to head and
//! its version recorded before the tenant becomes active), register database servers, and purge deleted tenants
//! (rows in the shared database, or the whole dedicated database). Data-key rotation is in
//! [`keys`].

pub mod keys;

use crate::catalog::DB_URL_PURPOSE;
use crate::catalog::{
    Catalog, CatalogError, DbServer, InsertTenantError, NewTenant, Placement, Tenant, TenantStatus,
};
use crate::crypto::{KeyError, Keyring, Scope};
use crate::ids::{TenantId, TenantSlug};
use crate::migrate::inventory::DbKey;
use crate::migrate::ledger;
use crate::pg;
use crate::servers::{RegisterError, ServerError, Servers};

/// Where a new tenant should live.
#[derive(Clone, Debug)]
pub enum PlacementRequest {
    Shared,
    /// On the named server, or the default one.
    Dedicated {
        server: Option<String>,
    },
}

/// A tenant to create.
#[derive(Clone, Debug)]
pub struct CreateTenant {
    pub slug: TenantSlug,
    pub name: String,
    pub plan: String,
    pub placement: PlacementRequest,
}

/// Creating a tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("the slug is taken")]
    SlugTaken,
    #[error("no database server named `{0}` is registered")]
    UnknownServer(String),
    #[error("creating the tenant's database failed")]
    Server(#[from] ServerError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Purging a deleted tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("tenant is not deleted")]
    NotDeleted,
    #[error("deleting the tenant's data failed")]
    Server(#[from] ServerError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Provisioning operations over the catalog and the database servers.
#[derive(Clone, Debug)]
pub struct Provisioner {
    catalog: Catalog,
    keyring: Keyring,
    servers: Servers,
    default_server: String,
}

impl Provisioner {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        keyring: Keyring,
        servers: Servers,
        default_server: String,
    ) -> Self {
        Self {
            catalog,
            keyring,
            servers,
            default_server,
        }
    }

    /// New tenant databases are cloned (`CREATE DATABASE .. TEMPLATE`) from `template`, which
    /// must exist, migrated, on every server, with no connection open to it. Migrations still run
    /// after the clone (a no-op when the template is at head), so the version recorded is the
    /// database's own. A test-harness speed-up: the product never sets it, because it would make
    /// provisioning depend on a database that only the harness prepares. Placement moves keep
    /// creating and migrating their targets.
    #[must_use]
    pub fn with_tenant_db_template(mut self, template: impl Into<String>) -> Self {
        self.servers = self.servers.with_tenant_db_template(template);
        self
    }

    /// The database servers this provisioner creates databases on.
    #[must_use]
    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// The data-plane role's password. A secret: for start-up and test harnesses only.
    #[must_use]
    pub fn app_role_password(&self) -> &str {
        self.servers.app_role_password()
    }

    /// Creates a tenant with its own data key. A dedicated tenant is returned only once its
    /// database exists and is migrated to head; if that fails, nothing of it is left behind.
    pub async fn create_tenant(&self, req: CreateTenant) -> Result<Tenant, ProvisionError> {
        let id = TenantId::new();
        let scope = Scope::Tenant(id);
        self.keyring.ensure_key(scope).await?;
        let (placement, server, db_url_sealed) = match &req.placement {
            PlacementRequest::Shared => (Placement::Shared, None, None),
            PlacementRequest::Dedicated { server } => {
                let name = server
                    .clone()
                    .unwrap_or_else(|| self.default_server.clone());
                let s = self
                    .catalog
                    .db_server_by_name(&name)
                    .await?
                    .ok_or(ProvisionError::UnknownServer(name))?;
                let database = format!("tenant_{}", id.as_uuid().simple());
                let url = self.servers.app_url(&s, database.as_str());
                let sealed = self
                    .keyring
                    .seal(scope, DB_URL_PURPOSE, url.as_bytes())
                    .await?;
                (
                    Placement::Dedicated {
                        server: s.id,
                        database,
                    },
                    Some(s),
                    Some(sealed),
                )
            }
        };
        let status = if server.is_some() {
            TenantStatus::Provisioning
        } else {
            TenantStatus::Active
        };
        let new = NewTenant {
            id,
            slug: req.slug,
            name: req.name,
            plan: req.plan,
            status,
            placement: placement.clone(),
            db_url_sealed,
        };
        let tenant = match self.catalog.insert_tenant(&new).await {
            Ok(t) => t,
            Err(e) => {
                self.keyring.destroy(scope, None).await.ok();
                return Err(match e {
                    InsertTenantError::SlugTaken => ProvisionError::SlugTaken,
                    InsertTenantError::Catalog(c) => ProvisionError::Catalog(c),
                });
            }
        };
        let (Some(server), Placement::Dedicated { database, .. }) = (server, &placement) else {
            if let Err(e) = self.seed(&tenant).await {
                tracing::warn!(tenant.id = %id, error = %e, "seeding a shared tenant failed; rolling back");
                self.catalog.remove_tenant(id).await?;
                self.keyring.destroy(scope, None).await.ok();
                return Err(e);
            }
            return Ok(tenant);
        };
        let ready = async {
            let version = self
                .servers
                .create_tenant_database(&server, database)
                .await?;
            // Recorded before activation: the server serves a tenant only from a known version.
            ledger::versions::record_version(&self.catalog, &DbKey::Tenant(id), version).await?;
            self.seed(&tenant).await?;
            Ok::<_, ProvisionError>(())
        };
        match ready.await {
            Ok(()) => Ok(self.catalog.activate_tenant(id).await?.unwrap_or(tenant)),
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "provisioning a dedicated database failed; rolling back");
                self.servers.drop_database(&server, database).await.ok();
                self.catalog.remove_tenant(id).await?;
                self.keyring.destroy(scope, None).await.ok();
                Err(e)
            }
        }
    }

    /// Seeds the tenant's built-in roles in its database, before it is returned (never on the
    /// request path: see `pg::seed_builtin_roles`).
    async fn seed(&self, tenant: &Tenant) -> Result<(), ProvisionError> {
        let owner = self.servers.tenant_owner(tenant).await?;
        pg::seed_builtin_roles(&owner, tenant.id)
            .await
            .map_err(ServerError::from)?;
        Ok(())
    }

    /// Registers (or, with `replace`, re-registers) a database server: see
    /// [`Servers::register`].
    pub async fn register_server(
        &self,
        name: &str,
        admin_url: &str,
        budget: u32,
        replace: bool,
    ) -> Result<DbServer, RegisterError> {
        self.servers
            .register(name, admin_url, budget, replace)
            .await
    }

    /// Removes a deleted tenant's data for good: its rows in the shared database, or its
    /// dedicated database; then its data key (crypto-shredding) and its catalog row.
    pub async fn purge(&self, tenant: &Tenant) -> Result<(), PurgeError> {
        if tenant.status != TenantStatus::Deleted {
            return Err(PurgeError::NotDeleted);
        }
        match &tenant.placement {
            Placement::Shared => {
                let admin = self.servers.shared_admin().await?;
                pg::delete_tenant_rows(&admin, tenant.id)
                    .await
                    .map_err(ServerError::from)?;
            }
            Placement::Dedicated { server, database } => {
                if let Some(s) = self
                    .catalog
                    .db_servers()
                    .await?
                    .into_iter()
                    .find(|s| s.id == *server)
                {
                    self.servers.drop_database(&s, database).await?;
                }
            }
        }
        self.keyring.destroy(Scope::Tenant(tenant.id), None).await?;
        self.catalog.remove_tenant(tenant.id).await?;
        Ok(())
    }
}
