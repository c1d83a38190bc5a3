//! Startup shared by the server and `platformctl`: find or start the databases, load the master
//! key, run both migration sets, and build the catalog, data plane, resolver and provisioner.
//! Also the catalog-notification listener that keeps every instance's caches fresh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgListener;

use crate::catalog::{CHANNEL, Catalog};
use crate::credentials::ApiKeys;
use crate::crypto::MasterKey;
use crate::dataplane::{DataPlane, PoolSizes};
use crate::embedded::{Cluster, write_private};
use crate::ids::TenantId;
use crate::migrate::fleet::{DbKey, Migrator};
use crate::migrate::ledger;
use crate::provision::{Provisioner, app_role_password};
use crate::resolve::Resolver;
use crate::settings::{DatabaseMode, Settings};
use crate::{migrate, pg};

/// Name of the server the embedded default registers for dedicated databases.
pub const LOCAL_SERVER: &str = "local";
const CONTROL_DB: &str = "platform_control";
const SHARED_DB: &str = "platform_shared";

/// Everything the platform and ops tooling run on.
#[derive(Clone, Debug)]
pub struct Tenancy {
    pub catalog: Catalog,
    pub dataplane: DataPlane,
    pub resolver: Resolver,
    pub provisioner: Provisioner,
    pub api_keys: ApiKeys,
    pub master_key: MasterKey,
    pub migrator: Migrator,
}

/// The started system plus the embedded cluster, if this process started or attached to one.
#[derive(Debug)]
pub struct Started {
    pub tenancy: Tenancy,
    pub cluster: Option<Cluster>,
    pub master_key_file: Option<PathBuf>,
}

/// What start-up does to the shared tenant database's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedSchema {
    /// Apply pending tenant migrations to it and record its version (the server).
    Migrate,
    /// Leave it to `platformctl migrate tenants`, which records the run in the ledger.
    Leave,
}

/// Starts (or attaches to) the databases and builds the tenancy core, migrating the shared
/// database as the server does.
pub async fn start(settings: &Settings) -> anyhow::Result<Started> {
    start_with(settings, SharedSchema::Migrate).await
}

/// [`start`], choosing what happens to the shared database's schema.
pub async fn start_with(settings: &Settings, shared: SharedSchema) -> anyhow::Result<Started> {
    let (control_url, shared_url, cluster, key, key_file) = match &settings.database {
        DatabaseMode::External {
            control_plane_url,
            shared_url,
        } => {
            let key = settings
                .master_key
                .clone()
                .context("PLATFORM_MASTER_KEY is required with external databases")?;
            (
                control_plane_url.expose().to_owned(),
                shared_url.expose().to_owned(),
                None,
                key,
                None,
            )
        }
        DatabaseMode::Embedded => {
            let dir = settings.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || Cluster::ensure_running(&dir))
                .await
                .context("embedded PostgreSQL task")??;
            let (key, key_file) = match &settings.master_key {
                Some(k) => (k.clone(), None),
                None => {
                    let path = settings.data_dir.join("master-key");
                    (load_or_create_key(&path)?, Some(path))
                }
            };
            let admin = pg::connect(&cluster.url("postgres").parse()?)
                .await
                .context("connecting to the embedded PostgreSQL")?;
            for db in [CONTROL_DB, SHARED_DB] {
                let exists = admin
                    .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
                    .await?
                    .is_some();
                if !exists {
                    admin
                        .batch_execute(&format!("CREATE DATABASE {db}"))
                        .await?;
                }
            }
            (
                cluster.url(CONTROL_DB),
                cluster.url(SHARED_DB),
                Some(cluster),
                key,
                key_file,
            )
        }
    };

    migrate::control_plane(&control_url.parse()?)
        .await
        .context("migrating the control plane")?;
    let password = app_role_password(&key);
    ensure_app_role(&shared_url, &password).await?;

    let catalog = Catalog::connect_lazy(&control_url, key.clone())?;
    if shared == SharedSchema::Migrate {
        let version = migrate::tenant_database(&shared_url.parse()?)
            .await
            .context("migrating the shared tenant database")?;
        ledger::record_version(&catalog, &DbKey::Shared, version)
            .await
            .context("recording the shared database's schema version")?;
    }
    let provisioner = Provisioner::new(
        catalog.clone(),
        shared_url.clone(),
        &key,
        settings.default_db_server.clone(),
    );
    if let Some(c) = &cluster {
        let budget = u32::try_from(settings.server_connection_budget).unwrap_or(u32::MAX);
        provisioner
            .register_server(LOCAL_SERVER, &c.url("postgres"), budget, true)
            .await
            .context("registering the embedded server")?;
    }
    let sizes = PoolSizes {
        shared: settings.shared_pool_size,
        dedicated: settings.dedicated_pool_size,
    };
    let dataplane = DataPlane::new(catalog.clone(), &shared_url, password, sizes)?;
    let resolver = Resolver::new(catalog.clone(), settings.base_domain.clone());
    let tenancy = Tenancy {
        catalog: catalog.clone(),
        dataplane,
        resolver,
        provisioner,
        api_keys: ApiKeys::new(),
        master_key: key,
        migrator: Migrator::new(catalog.clone(), shared_url.clone()),
    };
    Ok(Started {
        tenancy,
        cluster,
        master_key_file: key_file,
    })
}

/// Creates the data-plane role unless it can already log in with `password`.
async fn ensure_app_role(owner_url: &str, password: &str) -> anyhow::Result<()> {
    let db = owner_url
        .parse::<tokio_postgres::Config>()?
        .get_dbname()
        .unwrap_or("postgres")
        .to_owned();
    if pg::connect(&pg::app_config(owner_url, &db, password)?)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let admin = pg::connect(&owner_url.parse()?)
        .await
        .context("connecting to the shared database")?;
    pg::ensure_app_role(&admin, password)
        .await
        .context("creating the data-plane role (needs CREATEROLE)")?;
    Ok(())
}

fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<MasterKey> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return MasterKey::from_base64(&text)
            .with_context(|| format!("{} is not a valid master key", path.display()));
    }
    let key = MasterKey::generate();
    write_private(path, &key.to_base64()).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

impl Tenancy {
    /// Applies a catalog change to this instance's caches.
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.resolver.invalidate(tenant).await;
        self.api_keys.invalidate_tenant_or_all(tenant);
        match tenant {
            Some(t) => self.dataplane.forget_tenant(t).await,
            None => self.dataplane.forget_servers(),
        }
    }

    /// Listens for catalog changes until the task is dropped. `ready` fires once listening.
    pub async fn listen_for_changes(self: Arc<Self>, ready: tokio::sync::oneshot::Sender<()>) {
        let mut ready = Some(ready);
        loop {
            let mut listener = match PgListener::connect_with(self.catalog.pool()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "catalog listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "catalog listener cannot LISTEN; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything may have changed while we were not listening.
            self.invalidate(None).await;
            if let Some(r) = ready.take() {
                r.send(()).ok();
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => self.invalidate(TenantId::parse(n.payload())).await,
                    Ok(None) => {
                        tracing::warn!("catalog listener lost its connection; caches dropped");
                        self.invalidate(None).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
