//! The database servers behind the data plane, as the owner sees them: their sealed admin URLs,
//! the data-plane URL of a database on them, creating (and migrating) and dropping tenant
//! databases, and registering a server. Provisioning, placement moves and the fleet migration
//! runner all reach the servers through this one place.

use zeroize::Zeroizing;

use crate::catalog::{
    Catalog, CatalogError, DbServer, Placement, RegisterServerError, Tenant, server_url_purpose,
};
use crate::crypto::{KeyError, Keyring, Scope};
use crate::ids::DbServerId;
use crate::migrate::{self, MigrateError};
use crate::pg;

/// Reaching or changing a database server failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("no database server `{0}` is registered")]
    UnknownServer(String),
    #[error("the database server cannot be reached or refused the statement")]
    Unavailable(#[from] tokio_postgres::Error),
    #[error("migrating the new tenant database failed")]
    Migrate(#[from] MigrateError),
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

/// The registered servers and the shared database, with the secrets to reach them.
#[derive(Clone, Debug)]
pub struct Servers {
    catalog: Catalog,
    keyring: Keyring,
    shared_admin_url: String,
    app_password: Zeroizing<String>,
    /// A migrated database every server holds, cloned for new tenant databases instead of
    /// creating an empty one (see `Provisioner::with_tenant_db_template`).
    tenant_db_template: Option<String>,
}

impl Servers {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        keyring: Keyring,
        shared_admin_url: String,
        app_password: Zeroizing<String>,
    ) -> Self {
        Self {
            catalog,
            keyring,
            shared_admin_url,
            app_password,
            tenant_db_template: None,
        }
    }

    /// The same servers, creating tenant databases as copies of `template`.
    #[must_use]
    pub(crate) fn with_tenant_db_template(mut self, template: impl Into<String>) -> Self {
        self.tenant_db_template = Some(template.into());
        self
    }

    /// The shared database's owner URL. A secret.
    #[must_use]
    pub fn shared_admin_url(&self) -> &str {
        &self.shared_admin_url
    }

    /// The data-plane role's password. A secret: for start-up and test harnesses only.
    #[must_use]
    pub fn app_role_password(&self) -> &str {
        &self.app_password
    }

    /// The data-plane URL of `database` on `server` (a secret: seal it).
    #[must_use]
    pub fn app_url(&self, server: &DbServer, database: &str) -> String {
        let host = if server.host.contains(':') {
            format!("[{}]", server.host)
        } else {
            server.host.clone()
        };
        // The password is URL-safe base64.
        format!(
            "postgres://{}:{}@{host}:{}/{database}",
            pg::APP_ROLE,
            self.app_password.as_str(),
            server.port
        )
    }

    /// The registered server with this id.
    pub async fn by_id(&self, id: DbServerId) -> Result<DbServer, ServerError> {
        self.catalog
            .db_server_sealed(id)
            .await?
            .map(|(s, _)| s)
            .ok_or_else(|| ServerError::UnknownServer(id.to_string()))
    }

    /// A server's admin URL, opened. A secret: never log or return it.
    pub async fn admin_url(&self, server: &DbServer) -> Result<Zeroizing<String>, ServerError> {
        let (_, sealed) = self
            .catalog
            .db_server_sealed(server.id)
            .await?
            .ok_or_else(|| ServerError::UnknownServer(server.name.clone()))?;
        Ok(self
            .keyring
            .open_string(Scope::Platform, &server_url_purpose(&server.name), &sealed)
            .await?)
    }

    /// Creates (if missing) and migrates to head a tenant database on `server`; returns the
    /// version reached.
    pub async fn create_tenant_database(
        &self,
        server: &DbServer,
        database: &str,
    ) -> Result<i64, ServerError> {
        let admin_url = self.admin_url(server).await?;
        let admin_config: tokio_postgres::Config = admin_url.parse()?;
        pg::ensure_app_role_on(&admin_config, &self.app_password).await?;
        let admin = pg::connect(&admin_config).await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?
            .is_some();
        if !exists {
            match &self.tenant_db_template {
                None => pg::create_database(&admin, database).await?,
                Some(template) => clone_database(&admin, database, template).await?,
            }
        }
        let config = pg::with_database(&admin_url, database)?;
        Ok(migrate::tenant_database(&config).await?)
    }

    /// Drops a tenant database (nothing to do if its server is no longer registered).
    pub async fn drop_database(
        &self,
        server: &DbServer,
        database: &str,
    ) -> Result<(), ServerError> {
        let admin_url = match self.admin_url(server).await {
            Ok(u) => u,
            Err(ServerError::UnknownServer(_)) => return Ok(()),
            Err(e) => return Err(e),
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

    /// An owner connection to the shared database.
    pub async fn shared_admin(&self) -> Result<tokio_postgres::Client, ServerError> {
        Ok(pg::connect(&self.shared_admin_url.parse()?).await?)
    }

    /// An owner connection to the database that holds `tenant`'s rows (ops tools: audit
    /// verification and expiry, purges). Bypasses RLS: scope every statement to the tenant.
    pub async fn tenant_owner(
        &self,
        tenant: &Tenant,
    ) -> Result<tokio_postgres::Client, ServerError> {
        let config = match &tenant.placement {
            Placement::Shared => self.shared_admin_url.parse()?,
            Placement::Dedicated { server, database } => {
                let url = self.admin_url(&self.by_id(*server).await?).await?;
                pg::with_database(&url, database)?
            }
        };
        Ok(pg::connect(&config).await?)
    }

    /// Registers (or, with `replace`, re-registers) a database server after checking that its
    /// admin URL works and creating the data-plane role on it. The URL is stored sealed.
    pub async fn register(
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
