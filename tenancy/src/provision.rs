//! Provisioning: create tenants (a dedicated tenant's database is created, migrated to head and
//! its version recorded before the tenant becomes active), register database servers, and purge deleted tenants
//! (rows in the shared database, or the whole dedicated database).

use crate::catalog::DB_URL_PURPOSE;
use crate::catalog::server_url_purpose;
use crate::catalog::{
    Catalog, CatalogError, DbServer, InsertTenantError, NewTenant, Placement, RegisterServerError,
    Tenant, TenantStatus,
};
use crate::crypto::{KeyError, Keyring, Scope};
use crate::ids::{TenantId, TenantSlug};
use crate::migrate::fleet::DbKey;
use crate::migrate::{self, MigrateError, ledger};
use crate::pg;

use zeroize::Zeroizing;

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
    Key(#[from] KeyError),
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
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Purging a deleted tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("tenant is not deleted")]
    NotDeleted,
    #[error("the database server is unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
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
    shared_admin_url: String,
    app_password: Zeroizing<String>,
    default_server: String,
    /// A migrated database every server holds, cloned for new tenant databases instead of
    /// creating an empty one and migrating it (see [`Self::with_tenant_db_template`]).
    tenant_db_template: Option<String>,
}

impl Provisioner {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        keyring: Keyring,
        shared_admin_url: String,
        app_password: Zeroizing<String>,
        default_server: String,
    ) -> Self {
        Self {
            catalog,
            keyring,
            shared_admin_url,
            app_password,
            default_server,
            tenant_db_template: None,
        }
    }

    /// New tenant databases are cloned (`CREATE DATABASE .. TEMPLATE`) from `template`, which
    /// must exist, migrated, on every server, with no connection open to it. Migrations still run
    /// after the clone (a no-op when the template is at head), so the version recorded is the
    /// database's own. A test-harness speed-up: the product never sets it, because it would make
    /// provisioning depend on a database that only the harness prepares.
    #[must_use]
    pub fn with_tenant_db_template(mut self, template: impl Into<String>) -> Self {
        self.tenant_db_template = Some(template.into());
        self
    }

    /// The shared database's owner URL. A secret.
    #[must_use]
    pub fn shared_admin_url(&self) -> &str {
        &self.shared_admin_url
    }

    /// The data-plane URL of `database` on `server` (a secret: seal it).
    #[must_use]
    pub fn app_url(&self, server: &DbServer, database: &str) -> String {
        app_url(server, database, &self.app_password)
    }

    /// Creates (if missing) and migrates a tenant database on `server`; returns its version.
    pub async fn create_tenant_database(
        &self,
        server: &DbServer,
        database: &str,
    ) -> Result<i64, ProvisionError> {
        self.create_database(server, database).await
    }

    /// The data-plane role's password. A secret: for start-up and test harnesses only.
    #[must_use]
    pub fn app_role_password(&self) -> &str {
        &self.app_password
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
                let url = app_url(&s, &database, &self.app_password);
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
                self.keyring.destroy(scope, None).await.ok();
                Err(e)
            }
        }
    }

    /// A server's admin URL, opened. A secret: never log or return it.
    pub async fn server_admin_url(
        &self,
        server: &DbServer,
    ) -> Result<Zeroizing<String>, ProvisionError> {
        let (_, sealed) = self
            .catalog
            .db_server_sealed(server.id)
            .await?
            .ok_or_else(|| ProvisionError::UnknownServer(server.name.clone()))?;
        Ok(self
            .keyring
            .open_string(Scope::Platform, &server_url_purpose(&server.name), &sealed)
            .await?)
    }

    /// Creates and migrates to head a dedicated database; returns the version reached.
    async fn create_database(
        &self,
        server: &DbServer,
        database: &str,
    ) -> Result<i64, ProvisionError> {
        let unavailable =
            |e: &dyn std::fmt::Display| ProvisionError::ServerUnavailable(e.to_string());
        let admin_url = self.server_admin_url(server).await?;
        let admin_config: tokio_postgres::Config =
            admin_url.parse().map_err(|e| unavailable(&e))?;
        pg::ensure_app_role_on(&admin_config, &self.app_password)
            .await
            .map_err(|e| unavailable(&e))?;
        let admin = pg::connect(&admin_config)
            .await
            .map_err(|e| unavailable(&e))?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .map_err(|e| unavailable(&e))?
            .is_some();
        if !exists {
            match &self.tenant_db_template {
                None => pg::create_database(&admin, database).await,
                Some(template) => clone_database(&admin, database, template).await,
            }
            .map_err(|e| unavailable(&e))?;
        }
        let config = pg::with_database(&admin_url, database).map_err(|e| unavailable(&e))?;
        migrate::tenant_database(&config)
            .await
            .map_err(|e: MigrateError| unavailable(&e))
    }

    async fn drop_database(&self, server: &DbServer, database: &str) -> Result<(), PurgeError> {
        let admin_url = match self.server_admin_url(server).await {
            Ok(u) => u,
            Err(ProvisionError::UnknownServer(_)) => return Ok(()),
            Err(ProvisionError::Key(k)) => return Err(k.into()),
            Err(ProvisionError::Catalog(c)) => return Err(c.into()),
            Err(other) => return Err(PurgeError::Unavailable(other.to_string())),
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
    /// admin URL works and creating the data-plane role on it. The URL is stored sealed.
    pub async fn register_server(
        &self,
        name: &str,
        admin_url: &str,
        budget: u32,
        replace: bool,
    ) -> Result<DbServer, RegisterError> {
        let config: tokio_postgres::Config =
            admin_url.parse().map_err(|_| RegisterError::BadUrl)?;
        pg::connect(&config)
            .await
            .map_err(RegisterError::Unreachable)?;
        pg::ensure_app_role_on(&config, &self.app_password)
            .await
            .map_err(RegisterError::NotPrivileged)?;
        let (host, port) = pg::host_port(&config);
        let sealed = self
            .keyring
            .seal(
                Scope::Platform,
                &server_url_purpose(name),
                admin_url.as_bytes(),
            )
            .await?;
        Ok(self
            .catalog
            .put_db_server(name, &sealed, &host, port, budget, replace)
            .await?)
    }

    /// Removes a deleted tenant's data for good: its rows in the shared database, or its
    /// dedicated database; then its data key (crypto-shredding) and its catalog row.
    pub async fn purge(&self, tenant: &Tenant) -> Result<(), PurgeError> {
        if tenant.status != TenantStatus::Deleted {
            return Err(PurgeError::NotDeleted);
        }
        match &tenant.placement {
            Placement::Shared => {
                let admin = pg::connect(&self.shared_admin_url.parse()?).await?;
                crate::placement::delete_tenant_rows(&admin, tenant.id).await?;
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
        self.keyring.destroy(Scope::Tenant(tenant.id), None).await?;
        self.catalog.remove_tenant(tenant.id).await?;
        Ok(())
    }
}

impl Provisioner {
    /// Gives `tenant` a new data key and re-seals its secrets under it. The previous version is
    /// kept (so a request holding a just-replaced ciphertext still opens it) and older ones are
    /// destroyed. Returns the new version.
    pub async fn rotate_tenant_key(&self, tenant: &Tenant) -> Result<u32, KeyError> {
        let scope = Scope::Tenant(tenant.id);
        self.keyring.ensure_key(scope).await?;
        let version = self.keyring.new_version(scope).await?;
        if let Some(sealed) = &tenant.db_url_sealed {
            let url = self.keyring.open(scope, DB_URL_PURPOSE, sealed).await?;
            let resealed = self.keyring.seal(scope, DB_URL_PURPOSE, &url).await?;
            self.catalog.set_tenant_db_url(tenant.id, &resealed).await?;
        }
        self.keyring.destroy(scope, Some(version - 1)).await?;
        Ok(version)
    }

    /// Gives the platform a new data key and re-seals the server URLs and platform secrets.
    pub async fn rotate_platform_key(&self, secret_names: &[&str]) -> Result<u32, KeyError> {
        let scope = Scope::Platform;
        self.keyring.ensure_key(scope).await?;
        let version = self.keyring.new_version(scope).await?;
        for (server, sealed) in self.catalog.db_servers_sealed(None).await? {
            let purpose = server_url_purpose(&server.name);
            let url = self.keyring.open(scope, &purpose, &sealed).await?;
            self.catalog
                .set_db_server_sealed(server.id, &self.keyring.seal(scope, &purpose, &url).await?)
                .await?;
        }
        for name in secret_names {
            if let Some(sealed) = self.catalog.platform_secret(name).await? {
                let value = self.keyring.open(scope, name, &sealed).await?;
                self.catalog
                    .set_platform_secret(name, &self.keyring.seal(scope, name, &value).await?)
                    .await?;
            }
        }
        self.keyring.destroy(scope, Some(version - 1)).await?;
        Ok(version)
    }
}

/// Creates `name` as a copy of `template`. A concurrent clone of the same template can briefly
/// find it in use (the copy connects to it): retried, as `pg::create_database` retries.
async fn clone_database(
    admin: &tokio_postgres::Client,
    name: &str,
    template: &str,
) -> Result<(), tokio_postgres::Error> {
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        pg::quote_ident(name),
        pg::quote_ident(template)
    );
    let mut attempt = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Err(e)
                if attempt < 20
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// The data-plane URL of a database on `server`. The password is URL-safe base64.
fn app_url(server: &DbServer, database: &str, password: &str) -> String {
    let host = if server.host.contains(':') {
        format!("[{}]", server.host)
    } else {
        server.host.clone()
    };
    format!(
        "postgres://{}:{password}@{host}:{}/{database}",
        pg::APP_ROLE,
        server.port
    )
}
