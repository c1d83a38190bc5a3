//! Provisioning: create tenants (a dedicated tenant's database is created, migrated to head and
//! its version recorded before the tenant becomes active), register database servers, and purge deleted tenants
//! (rows in the shared database, or the whole dedicated database).

use crate::catalog::{
    Catalog, CatalogError, DbServer, InsertTenantError, NewTenant, Placement, RegisterServerError,
    ServerUrlError, Tenant, TenantStatus,
};
use crate::crypto::MasterKey;
use crate::ids::{TenantId, TenantSlug};
use crate::migrate::fleet::DbKey;
use crate::migrate::{self, MigrateError, ledger};
use crate::pg;

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
    #[error("the database server is unavailable: {0}")]
    ServerUnavailable(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    ServerUrl(#[from] ServerUrlError),
}

/// Registering a server failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("not a PostgreSQL URL")]
    BadUrl,
    #[error("the server cannot be reached or refused the credentials")]
    Unreachable(#[source] tokio_postgres::Error),
    #[error("the credentials cannot create the data-plane role (a role with CREATEROLE is needed)")]
    NotPrivileged(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Register(#[from] RegisterServerError),
}

/// Purging a deleted tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("tenant is not deleted")]
    NotDeleted,
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    ServerUrl(#[from] ServerUrlError),
}

/// Provisioning operations over the catalog and the database servers.
#[derive(Clone, Debug)]
pub struct Provisioner {
    catalog: Catalog,
    shared_admin_url: String,
    app_password: String,
    default_server: String,
}

impl Provisioner {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        shared_admin_url: String,
        key: &MasterKey,
        default_server: String,
    ) -> Self {
        Self {
            catalog,
            shared_admin_url,
            app_password: app_role_password(key),
            default_server,
        }
    }

    /// Creates a tenant. A dedicated tenant is returned only once its database exists and is
    /// migrated to head; if that fails, nothing of it is left behind.
    pub async fn create_tenant(&self, req: CreateTenant) -> Result<Tenant, ProvisionError> {
        let id = TenantId::new();
        let (placement, server) = match &req.placement {
            PlacementRequest::Shared => (Placement::Shared, None),
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
                (
                    Placement::Dedicated {
                        server: s.id,
                        database,
                    },
                    Some(s),
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
        };
        let tenant = self
            .catalog
            .insert_tenant(&new)
            .await
            .map_err(|e| match e {
                InsertTenantError::SlugTaken => ProvisionError::SlugTaken,
                InsertTenantError::Catalog(c) => ProvisionError::Catalog(c),
            })?;
        let (Some(server), Placement::Dedicated { database, .. }) = (server, &placement) else {
            return Ok(tenant);
        };
        let ready = async {
            let version = self.create_database(&server, database).await?;
            // Recorded before activation: the server serves a tenant only from a known version.
            ledger::record_version(&self.catalog, &DbKey::Tenant(id), version).await?;
            Ok::<_, ProvisionError>(())
        };
        match ready.await {
            Ok(()) => Ok(self.catalog.activate_tenant(id).await?.unwrap_or(tenant)),
            Err(e) => {
                tracing::warn!(tenant.id = %id, error = %e, "provisioning a dedicated database failed; rolling back");
                self.drop_database(&server, database).await.ok();
                self.catalog.remove_tenant(id).await?;
                Err(e)
            }
        }
    }

    /// Creates and migrates to head a dedicated database; returns the version reached.
    async fn create_database(
        &self,
        server: &DbServer,
        database: &str,
    ) -> Result<i64, ProvisionError> {
        let unavailable =
            |e: &dyn std::fmt::Display| ProvisionError::ServerUnavailable(e.to_string());
        let (_, admin_url) = self
            .catalog
            .db_server_with_url(server.id)
            .await?
            .ok_or_else(|| ProvisionError::UnknownServer(server.name.clone()))?;
        let admin_config: tokio_postgres::Config =
            admin_url.parse().map_err(|e| unavailable(&e))?;
        let admin = pg::connect(&admin_config)
            .await
            .map_err(|e| unavailable(&e))?;
        pg::ensure_app_role(&admin, &self.app_password)
            .await
            .map_err(|e| unavailable(&e))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", pg::quote_ident(database)))
            .await
            .map_err(|e| unavailable(&e))?;
        let config = pg::with_database(&admin_url, database).map_err(|e| unavailable(&e))?;
        migrate::tenant_database(&config)
            .await
            .map_err(|e: MigrateError| unavailable(&e))
    }

    async fn drop_database(&self, server: &DbServer, database: &str) -> Result<(), PurgeError> {
        let Some((_, admin_url)) = self.catalog.db_server_with_url(server.id).await? else {
            return Ok(());
        };
        let admin = pg::connect(&admin_url.parse()?).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                pg::quote_ident(database)
            ))
            .await?;
        Ok(())
    }

    /// Registers (or, with `replace`, re-registers) a database server after checking that its
    /// admin URL works and creating the data-plane role on it.
    pub async fn register_server(
        &self,
        name: &str,
        admin_url: &str,
        budget: u32,
        replace: bool,
    ) -> Result<DbServer, RegisterError> {
        let config: tokio_postgres::Config =
            admin_url.parse().map_err(|_| RegisterError::BadUrl)?;
        let admin = pg::connect(&config)
            .await
            .map_err(RegisterError::Unreachable)?;
        pg::ensure_app_role(&admin, &self.app_password)
            .await
            .map_err(RegisterError::NotPrivileged)?;
        let (host, port) = pg::host_port(&config);
        Ok(self
            .catalog
            .put_db_server(name, admin_url, &host, port, budget, replace)
            .await?)
    }

    /// Removes a deleted tenant's data for good: its rows in the shared database, or its
    /// dedicated database; then its catalog row.
    pub async fn purge(&self, tenant: &Tenant) -> Result<(), PurgeError> {
        if tenant.status != TenantStatus::Deleted {
            return Err(PurgeError::NotDeleted);
        }
        match &tenant.placement {
            Placement::Shared => {
                let admin = pg::connect(&self.shared_admin_url.parse()?).await?;
                let tables: Vec<String> = admin
                    .query(
                        "SELECT c.table_name::text FROM information_schema.columns c
                         JOIN information_schema.tables t USING (table_schema, table_name)
                         WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'",
                        &[],
                    )
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut sql = format!("BEGIN; SET LOCAL app.tenant_id = '{}';", tenant.id);
                for t in tables {
                    // Tenant foreign keys cascade, so the order does not matter.
                    sql.push_str(&format!(
                        " DELETE FROM {} WHERE tenant_id = '{}';",
                        pg::quote_ident(&t),
                        tenant.id
                    ));
                }
                sql.push_str(" COMMIT;");
                admin.batch_execute(&sql).await?;
            }
            Placement::Dedicated { server, database } => {
                if let Some(s) = self
                    .catalog
                    .db_servers()
                    .await?
                    .into_iter()
                    .find(|s| s.id == *server)
                {
                    self.drop_database(&s, database).await?;
                }
            }
        }
        self.catalog.remove_tenant(tenant.id).await?;
        Ok(())
    }
}

/// The data-plane role's password, derived from the master key so it is never stored.
#[must_use]
pub fn app_role_password(key: &MasterKey) -> String {
    key.derive_secret("postgres role platform_app")
}
