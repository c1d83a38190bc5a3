//! Pool routing: a tenant's request gets a connection for the shared database (one pool shared by
//! many tenants) or for its dedicated database (one small pool per tenant database, created on
//! first use, evicted when idle, budgeted per server so a thousand dedicated tenants cannot exhaust
//! a server's `max_connections`: every open connection to a server holds one permit of its
//! budget). Every connection is handed out as a [`TenantConn`], which scopes each request to its
//! tenant through `app.tenant_id` (see [`conn`]).

mod conn;
mod pool;
mod wire;

pub use conn::{CommitHint, CommitHints, TenantConn, TenantTx};
pub use pool::PgConn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use moka::future::Cache;

use self::pool::{Budget, PgPool, Shed};

use crate::catalog::{Catalog, CatalogError, DB_URL_PURPOSE, Placement, Tenant};
use crate::crypto::{KeyError, Keyring, Scope};
use crate::ids::{DbServerId, TenantId};
use crate::pg;

/// The oldest tenant schema this build can serve. Raise it (in the release after the migration
/// that the code starts to rely on has been applied fleet-wide) and never above the head.
pub const MIN_TENANT_SCHEMA: i64 = 5;

/// How long a caller waits for a connection before the request is refused as unavailable.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// A dedicated pool unused this long is dropped, closing its connections.
const IDLE_POOL_TTL: Duration = Duration::from_secs(300);

/// Getting a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The database (or its pool, or a cached lookup behind it) failed; the source says why.
    #[error("the tenant's database is unavailable")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync + 'static>),
    #[error("the tenant's database URL is missing or invalid")]
    BadDatabaseUrl,
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

impl ConnectError {
    /// The database is unavailable because of `cause`.
    pub fn unavailable(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Arc::new(cause))
    }
}

/// Connection counts of one database server's pools (see [`DataPlane::pool_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// `shared`, or the database server's catalog name.
    pub server: String,
    /// Live pools (one per dedicated tenant database on the server; 1 for `shared`).
    pub pools: usize,
    /// The sum of the pools' maximum sizes.
    pub max: usize,
    /// Open connections.
    pub open: usize,
    /// Connections checked out by a request.
    pub in_use: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// The server's connection budget: (permits held, budget); `None` for `shared`.
    pub budget: Option<(usize, usize)>,
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

/// Limits PostgreSQL enforces on every data-plane session, so one slow query or a transaction
/// left open by a bug cannot hold a pooled connection (and its locks) indefinitely. Sent as
/// startup options; behind a transaction-mode pooler (which refuses them) set them on the role
/// instead (`ALTER ROLE platform_app SET statement_timeout = '30s'`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionLimits {
    pub statement_timeout: Option<std::time::Duration>,
    pub idle_in_transaction_timeout: Option<std::time::Duration>,
}

impl SessionLimits {
    /// Adds the limits to a connection's startup options.
    fn apply(self, config: &mut tokio_postgres::Config) {
        let mut options = config.get_options().unwrap_or_default().to_owned();
        for (name, value) in [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
        ] {
            if let Some(v) = value {
                if !options.is_empty() {
                    options.push(' ');
                }
                options.push_str(&format!("-c {name}={}", v.as_millis()));
            }
        }
        if !options.is_empty() {
            config.options(&options);
        }
    }
}

struct Inner {
    shared: PgPool,
    /// The shared pool's configuration (to rebuild it with other session limits).
    shared_config: tokio_postgres::Config,
    limits: SessionLimits,
    servers: Cache<DbServerId, Arc<ServerPools>>,
    catalog: Catalog,
    keyring: Keyring,
    sizes: PoolSizes,
    /// Whether a connection may keep a tenant's id as its session setting between requests (off
    /// behind a transaction-mode pooler such as PgBouncer, where sessions are not ours).
    session_reuse: bool,
    /// One-statement requests sent alone because the connection was already set for the tenant.
    reuses: Arc<AtomicU64>,
    /// One-statement requests sent with their tenant setting in one exchange.
    exchanges: Arc<AtomicU64>,
    /// Told after each committed transaction that wrote (set once, by the audit sealer).
    commit_hint: std::sync::OnceLock<conn::CommitHint>,
    /// Tenants whose committed transactions enqueued jobs (see [`DataPlane::commit_hints`]).
    hints: CommitHints,
    /// Told how long each checkout waited (set once, by the metrics).
    checkout_observer: std::sync::OnceLock<CheckoutObserver>,
}

/// Told the database server's name (`shared` for the shared pool, as in [`PoolStats`]) and how
/// long a checkout waited for its connection, whether it got one or not.
pub type CheckoutObserver = Arc<dyn Fn(&str, Duration) + Send + Sync>;

/// The dedicated pools of one database server and its connection budget.
struct ServerPools {
    /// The server's catalog name (the metrics label).
    name: String,
    budget: Arc<Budget>,
    size: usize,
    pools: Cache<TenantId, PgPool>,
}

impl Shed for ServerPools {
    fn shed_one(&self) -> bool {
        let pools: Vec<PgPool> = self.pools.iter().map(|(_, p)| p).collect();
        pool::shed_oldest_idle(pools.iter())
    }
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("sizes", &self.inner.sizes)
            .field("min_schema", &self.min_schema)
            .finish_non_exhaustive()
    }
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
        let shared_config = pg::app_config(shared_url, &shared_db, app_password)?;
        let shared = pool::build(shared_config.clone(), sizes.shared, None, CHECKOUT_TIMEOUT);
        // No expiry: a server entry (its pools and budget semaphore) lives until the catalog says
        // the servers changed (`forget_servers`), so pools are not rebuilt behind busy tenants.
        let servers = Cache::builder().max_capacity(10_000).build();
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                shared_config,
                limits: SessionLimits::default(),
                servers,
                catalog,
                keyring,
                sizes,
                session_reuse: true,
                reuses: Arc::new(AtomicU64::new(0)),
                exchanges: Arc::new(AtomicU64::new(0)),
                commit_hint: std::sync::OnceLock::new(),
                checkout_observer: std::sync::OnceLock::new(),
                hints: tokio::sync::broadcast::channel(4096).0,
            }),
            min_schema: MIN_TENANT_SCHEMA,
        })
    }

    /// The same data plane, requiring at least `min` (the build's [`MIN_TENANT_SCHEMA`]
    /// by default; tests use it to stand for a newer build).
    #[must_use]
    pub fn with_min_schema(&self, min: i64) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            min_schema: min,
        }
    }

    /// Disables (or enables) keeping a tenant's id as a connection's session setting between
    /// requests; disable it behind a transaction-mode pooler. Call before the first connection.
    #[must_use]
    pub fn with_session_reuse(mut self, on: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.session_reuse = on;
        }
        self
    }

    /// Applies `limits` to every data-plane session (see [`SessionLimits`]). Call before the first
    /// connection.
    #[must_use]
    pub fn with_session_limits(mut self, limits: SessionLimits) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            let mut config = inner.shared_config.clone();
            limits.apply(&mut config);
            inner.shared = pool::build(config, inner.sizes.shared, None, CHECKOUT_TIMEOUT);
            inner.limits = limits;
        }
        self
    }

    /// How many one-statement requests were sent alone, on a connection already set for their
    /// tenant (for metrics and tests).
    #[must_use]
    pub fn session_reuses(&self) -> u64 {
        self.inner.reuses.load(Ordering::Relaxed)
    }

    /// How many one-statement requests were sent with their tenant setting in one exchange (one
    /// implicit transaction under one `Sync`, see [`wire`]), for metrics and tests.
    #[must_use]
    pub fn single_exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
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
                let started = std::time::Instant::now();
                let got = self.inner.shared.get().await;
                self.observe_checkout("shared", started);
                Ok(self.tenant_conn(tenant.id, got.map_err(ConnectError::unavailable)?))
            }
            Placement::Dedicated { server, .. } => {
                let server = self.server(*server).await?;
                let size = server.size;
                let budget = Arc::clone(&server.budget);
                let keyring = self.inner.keyring.clone();
                let limits = self.inner.limits;
                let sealed = tenant.db_url_sealed.clone();
                let id = tenant.id;
                let pool = server
                    .pools
                    .try_get_with(tenant.id, async move {
                        // The tenant's URL is sealed with its own data key.
                        let sealed = sealed.ok_or(ConnectError::BadDatabaseUrl)?;
                        let url = keyring
                            .open_string(Scope::Tenant(id), DB_URL_PURPOSE, &sealed)
                            .await?;
                        let mut config: tokio_postgres::Config =
                            url.parse().map_err(|_| ConnectError::BadDatabaseUrl)?;
                        limits.apply(&mut config);
                        Ok::<_, ConnectError>(pool::build(
                            config,
                            size,
                            Some(budget),
                            CHECKOUT_TIMEOUT,
                        ))
                    })
                    .await
                    .map_err(ConnectError::unavailable)?;
                let started = std::time::Instant::now();
                let got = pool.get().await;
                self.observe_checkout(&server.name, started);
                Ok(self.tenant_conn(tenant.id, got.map_err(ConnectError::unavailable)?))
            }
        }
    }

    fn tenant_conn(&self, tenant: TenantId, client: pool::PgObject) -> TenantConn {
        TenantConn::new(
            tenant,
            client,
            self.inner
                .session_reuse
                .then(|| Arc::clone(&self.inner.reuses)),
            Arc::clone(&self.inner.exchanges),
            self.inner.commit_hint.get().cloned(),
            self.inner.hints.clone(),
        )
    }

    /// Installs the checkout observer (see [`CheckoutObserver`]); false if one is installed
    /// already.
    pub fn set_checkout_observer(&self, observer: CheckoutObserver) -> bool {
        self.inner.checkout_observer.set(observer).is_ok()
    }

    fn observe_checkout(&self, server: &str, started: std::time::Instant) {
        if let Some(observe) = self.inner.checkout_observer.get() {
            observe(server, started.elapsed());
        }
    }

    /// Installs the post-commit hint (see [`conn::CommitHint`]); false if one is installed
    /// already (one consumer per data plane).
    pub fn set_commit_hint(&self, hint: conn::CommitHint) -> bool {
        self.inner.commit_hint.set(hint).is_ok()
    }

    /// Subscribes to post-commit hints: the tenant of every committed transaction of this
    /// process that asked for one ([`TenantTx::hint_after_commit`]; the job queue does when it
    /// enqueues). A receiver that lags behind gets `Lagged` and should look everywhere.
    #[must_use]
    pub fn commit_hints(&self) -> tokio::sync::broadcast::Receiver<TenantId> {
        self.inner.hints.subscribe()
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
                // Every open connection holds a permit of the budget; idle pools are evicted after
                // a while (closing their connections), and a connection that needs a permit while
                // idle connections hold them all closes the least recently used one.
                let size = dedicated.min(budget);
                Ok(Arc::new_cyclic(|me: &Weak<ServerPools>| {
                    let shed: Weak<dyn Shed> = me.clone();
                    ServerPools {
                        name: server.name.clone(),
                        budget: Arc::new(Budget::new(budget, shed)),
                        size,
                        pools: Cache::builder()
                            .max_capacity(10_000)
                            .time_to_idle(IDLE_POOL_TTL)
                            .support_invalidation_closures()
                            .build(),
                    }
                }))
            })
            .await
            .map_err(|e: Arc<ConnectError>| match &*e {
                ConnectError::UnknownServer => ConnectError::UnknownServer,
                _ => ConnectError::Unavailable(e),
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
            let pools: Vec<PgPool> = server.pools.iter().map(|(_, p)| p).collect();
            out.push((
                *id,
                pools.len(),
                pools.iter().map(|p| p.status().size).sum(),
            ));
        }
        out
    }

    /// Connection counts of the shared pool (server `shared`) and of each database server's
    /// dedicated pools, for metrics: read-only, no connection is made.
    pub async fn pool_stats(&self) -> Vec<PoolStats> {
        let s = self.inner.shared.status();
        let mut out = vec![PoolStats {
            server: "shared".into(),
            pools: 1,
            max: s.max_size,
            open: s.size,
            in_use: s.size.saturating_sub(s.available),
            waiting: s.waiting,
            budget: None,
        }];
        for (_, server) in &self.inner.servers {
            server.pools.run_pending_tasks().await;
            let mut stats = PoolStats {
                server: server.name.clone(),
                budget: Some(server.budget.usage()),
                ..PoolStats::default()
            };
            for (_, p) in &server.pools {
                let st = p.status();
                stats.pools += 1;
                stats.max += st.max_size;
                stats.open += st.size;
                stats.in_use += st.size.saturating_sub(st.available);
                stats.waiting += st.waiting;
            }
            out.push(stats);
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
            .map_err(ConnectError::unavailable)?;
        c.client
            .simple_query("SELECT 1")
            .await
            .map_err(ConnectError::unavailable)?;
        Ok(())
    }
}
