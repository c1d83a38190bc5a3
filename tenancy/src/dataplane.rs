//! Pool routing: a tenant's request gets a connection for the shared database (one pool shared by
//! many tenants) or for its dedicated database (one small pool per tenant database, created on
//! first use, evicted when idle, budgeted per server so a thousand dedicated tenants cannot exhaust
//! a server's `max_connections`). Every connection is handed out as a [`TenantConn`], which scopes
//! each transaction to its tenant with `SET LOCAL app.tenant_id`.

mod conn;

pub use conn::{TenantConn, TenantTx};

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use moka::future::Cache;
use tokio::sync::Semaphore;
use tokio_postgres::NoTls;

use crate::catalog::{Catalog, CatalogError, DB_URL_PURPOSE, Placement, Tenant};
use crate::crypto::{KeyError, Keyring, Scope};
use crate::ids::{DbServerId, TenantId};
use crate::pg;

/// How long a caller waits for a connection before the request is refused as unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// A dedicated pool unused this long is dropped, closing its connections.
const IDLE_POOL_TTL: Duration = Duration::from_secs(300);

/// Getting a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the tenant's database is unavailable: {0}")]
    Unavailable(String),
    #[error("the tenant's database server is not registered")]
    UnknownServer,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The tenant's database is older than this code needs (a migration run is due or going on).
    #[error("the tenant's database schema is at version {have:?}; this build needs {need}")]
    SchemaBehind { have: Option<i64>, need: i64 },
}

/// Sizing of the data plane.
#[derive(Clone, Copy, Debug)]
pub struct PoolSizes {
    pub shared: usize,
    pub dedicated: usize,
}

/// The data plane: shared pool plus per-server caches of dedicated pools.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
    /// Tenants whose recorded schema version is below this are refused before any connection.
    min_schema: i64,
}

struct Inner {
    shared: Pool,
    servers: Cache<DbServerId, Arc<ServerPools>>,
    catalog: Catalog,
    keyring: Keyring,
    sizes: PoolSizes,
}

/// The dedicated pools of one database server and its connection budget.
struct ServerPools {
    budget: usize,
    pools: Cache<TenantId, Pool>,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("sizes", &self.inner.sizes)
            .field("min_schema", &self.min_schema)
            .finish_non_exhaustive()
    }
}

fn build_pool(config: tokio_postgres::Config, size: usize) -> Pool {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CHECKOUT_TIMEOUT))
        .create_timeout(Some(CHECKOUT_TIMEOUT))
        .build()
        .expect("a runtime is configured, so building a pool cannot fail")
}

impl DataPlane {
    /// Builds the data plane. `shared_url` is the shared database's owner URL; the data plane
    /// connects to it as the app role with `app_password`.
    pub fn new(
        catalog: Catalog,
        keyring: Keyring,
        shared_url: &str,
        app_password: &str,
        sizes: PoolSizes,
    ) -> Result<Self, tokio_postgres::Error> {
        let shared_db = shared_url
            .parse::<tokio_postgres::Config>()?
            .get_dbname()
            .unwrap_or("postgres")
            .to_owned();
        let shared = build_pool(
            pg::app_config(shared_url, &shared_db, app_password)?,
            sizes.shared,
        );
        // No expiry: a server entry (its pools and budget semaphore) lives until the catalog says
        // the servers changed (`forget_servers`), so pools are not rebuilt behind busy tenants.
        let servers = Cache::builder().max_capacity(10_000).build();
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                servers,
                catalog,
                keyring,
                sizes,
            }),
            min_schema: crate::migrate::MIN_TENANT_SCHEMA,
        })
    }

    /// The same data plane, requiring at least `min` (the build's [`crate::migrate::MIN_TENANT_SCHEMA`]
    /// by default; tests use it to stand for a newer build).
    #[must_use]
    pub fn with_min_schema(&self, min: i64) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            min_schema: min,
        }
    }

    /// The oldest tenant schema this data plane serves.
    #[must_use]
    pub fn min_schema(&self) -> i64 {
        self.min_schema
    }

    /// A connection for `tenant`'s placement. A tenant whose recorded schema version is below
    /// what this build needs is refused here, from the cached record (no query), rather than
    /// failing mid-query.
    pub async fn connect(&self, tenant: &Tenant) -> Result<TenantConn, ConnectError> {
        if tenant.schema_version.is_none_or(|v| v < self.min_schema) {
            return Err(ConnectError::SchemaBehind {
                have: tenant.schema_version,
                need: self.min_schema,
            });
        }
        match &tenant.placement {
            Placement::Shared => {
                let client = self
                    .inner
                    .shared
                    .get()
                    .await
                    .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
                Ok(TenantConn::new(tenant.id, client, None))
            }
            Placement::Dedicated { server, .. } => {
                let server = self.server(*server).await?;
                let permit = tokio::time::timeout(
                    CHECKOUT_TIMEOUT,
                    Arc::clone(&server.in_flight).acquire_owned(),
                )
                .await
                .map_err(|_| {
                    ConnectError::Unavailable("server connection budget exhausted".into())
                })?
                .map_err(|_| ConnectError::Unavailable("server closed".into()))?;
                let size = self.inner.sizes.dedicated.min(server.budget);
                let keyring = self.inner.keyring.clone();
                let sealed = tenant.db_url_sealed.clone();
                let id = tenant.id;
                let pool = server
                    .pools
                    .try_get_with(tenant.id, async move {
                        // The tenant's URL is sealed with its own data key.
                        let sealed = sealed.ok_or_else(|| {
                            ConnectError::Unavailable("the tenant has no database URL".into())
                        })?;
                        let url = keyring
                            .open_string(Scope::Tenant(id), DB_URL_PURPOSE, &sealed)
                            .await?;
                        let config: tokio_postgres::Config = url.parse().map_err(|_| {
                            ConnectError::Unavailable("the tenant's database URL is invalid".into())
                        })?;
                        Ok::<_, ConnectError>(build_pool(config, size))
                    })
                    .await
                    .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
                let client = pool
                    .get()
                    .await
                    .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
                Ok(TenantConn::new(tenant.id, client, Some(permit)))
            }
        }
    }

    async fn server(&self, id: DbServerId) -> Result<Arc<ServerPools>, ConnectError> {
        let catalog = self.inner.catalog.clone();
        let dedicated = self.inner.sizes.dedicated;
        self.inner
            .servers
            .try_get_with(id, async move {
                let (server, _) = catalog
                    .db_server_sealed(id)
                    .await?
                    .ok_or(ConnectError::UnknownServer)?;
                let budget = usize::try_from(server.connection_budget)
                    .unwrap_or(1)
                    .max(1);
                // A pool bigger than the whole budget could never be cached.
                let dedicated = dedicated.min(budget);
                let pools = Cache::builder()
                    // Each pool may hold `dedicated` idle connections; the weights keep the sum of
                    // cached pools within the server's budget.
                    .weigher(move |_k, _v: &Pool| u32::try_from(dedicated).unwrap_or(u32::MAX))
                    .max_capacity(budget as u64)
                    .time_to_idle(IDLE_POOL_TTL)
                    .support_invalidation_closures()
                    .build();
                Ok(Arc::new(ServerPools {
                    budget,
                    pools,
                    in_flight: Arc::new(Semaphore::new(budget)),
                }))
            })
            .await
            .map_err(|e: Arc<ConnectError>| match &*e {
                ConnectError::UnknownServer => ConnectError::UnknownServer,
                other => ConnectError::Unavailable(other.to_string()),
            })
    }

    /// Drops the cached pool of a tenant (its placement changed or it was deleted).
    pub async fn forget_tenant(&self, tenant: TenantId) {
        for (_, server) in &self.inner.servers {
            server.pools.invalidate(&tenant).await;
        }
    }

    /// Drops every cached server entry (a server's URL changed).
    pub fn forget_servers(&self) {
        self.inner.servers.invalidate_all();
    }

    /// Live dedicated pools and their total connections, per server (for metrics and tests).
    pub async fn dedicated_connections(&self) -> Vec<(DbServerId, usize, usize)> {
        let mut out = Vec::new();
        for (id, server) in &self.inner.servers {
            server.pools.run_pending_tasks().await;
            let pools: Vec<Pool> = server.pools.iter().map(|(_, p)| p).collect();
            out.push((
                *id,
                pools.len(),
                pools.iter().map(|p| p.status().size).sum(),
            ));
        }
        out
    }

    /// A shared-pool connection check, for readiness.
    pub async fn ping_shared(&self) -> Result<(), ConnectError> {
        let c = self
            .inner
            .shared
            .get()
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
