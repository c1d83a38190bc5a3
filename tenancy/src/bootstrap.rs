//! Startup shared by the server and `platformctl`: find or start the databases, load the master
//! key, run both migration sets, and build the catalog, data plane, resolver and provisioner.
//! Also the catalog-notification listener that keeps every instance's caches fresh.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgListener;
use zeroize::Zeroizing;

use crate::catalog::{CHANNEL, Catalog};
use crate::catalog::{DB_URL_PURPOSE, Placement, TenantStatus, server_url_purpose};
use crate::crypto::{Keyring, LocalKeys, MasterKey, Scope, random_token};
use crate::dataplane::{DataPlane, PoolSizes};
use crate::embedded::{Cluster, write_private};
use crate::ids::TenantId;
use crate::migrate::fleet::{DbKey, Migrator};
use crate::migrate::ledger;
use crate::placement::Mover;
use crate::provision::Provisioner;
use crate::resolve::Resolver;
use crate::servers::Servers;
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
    pub servers: Servers,
    pub keyring: Keyring,
    pub mover: Mover,
    pub migrator: Migrator,
    /// `Settings::limits`: the rate limits the server enforces (the `ratelimit` crate).
    pub limits: crate::settings::LimitSettings,
    /// `Settings::allow_private_egress`: tenant-configured URLs may reach private networks.
    pub allow_private_egress: bool,
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

/// Name of the platform secret holding the data-plane role's password.
pub const APP_PASSWORD_SECRET: &str = "pg.app_role_password";

/// Starts (or attaches to) the databases and builds the tenancy core, migrating the shared
/// database as the server does.
pub async fn start(settings: &Settings) -> anyhow::Result<Started> {
    start_with(settings, SharedSchema::Migrate).await
}

/// [`start`], choosing what happens to the shared database's schema. If start-up fails after
/// this call started the embedded cluster, the cluster is stopped again.
pub async fn start_with(settings: &Settings, shared: SharedSchema) -> anyhow::Result<Started> {
    let (control_url, shared_url, cluster, keys, key_file) = databases(settings).await?;
    match build(
        settings,
        &control_url,
        &shared_url,
        cluster.as_ref(),
        keys,
        shared,
    )
    .await
    {
        Ok(tenancy) => Ok(Started {
            tenancy,
            cluster,
            master_key_file: key_file,
        }),
        Err(e) => {
            if let Some(c) = cluster.filter(Cluster::started_here) {
                c.stop().ok();
            }
            Err(e)
        }
    }
}

type Databases = (String, String, Option<Cluster>, LocalKeys, Option<PathBuf>);

async fn databases(settings: &Settings) -> anyhow::Result<Databases> {
    let previous = settings.previous_master_keys.clone();
    match &settings.database {
        DatabaseMode::External {
            control_plane_url,
            shared_url,
        } => {
            let key = settings
                .master_key
                .clone()
                .context("PLATFORM_MASTER_KEY is required with external databases")?;
            Ok((
                control_plane_url.expose().to_owned(),
                shared_url.expose().to_owned(),
                None,
                LocalKeys::new(key, previous),
                None,
            ))
        }
        DatabaseMode::Embedded => {
            let dir = settings.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || Cluster::ensure_running(&dir))
                .await
                .context("embedded PostgreSQL task")??;
            let fail = |c: &Cluster| {
                if c.started_here() {
                    c.stop().ok();
                }
            };
            let (key, key_file) = match &settings.master_key {
                Some(k) => (k.clone(), None),
                None => {
                    let path = settings.data_dir.join("master-key");
                    match load_or_create_key(&path) {
                        Ok(k) => (k, Some(path)),
                        Err(e) => {
                            fail(&cluster);
                            return Err(e);
                        }
                    }
                }
            };
            let created = async {
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
                anyhow::Ok(())
            }
            .await;
            if let Err(e) = created {
                fail(&cluster);
                return Err(e);
            }
            let (cp, shared) = (cluster.url(CONTROL_DB), cluster.url(SHARED_DB));
            Ok((
                cp,
                shared,
                Some(cluster),
                LocalKeys::new(key, previous),
                key_file,
            ))
        }
    }
}

async fn build(
    settings: &Settings,
    control_url: &str,
    shared_url: &str,
    cluster: Option<&Cluster>,
    keys: LocalKeys,
    shared: SharedSchema,
) -> anyhow::Result<Tenancy> {
    migrate::control_plane(&control_url.parse()?)
        .await
        .context("migrating the control plane")?;
    let catalog = Catalog::connect_lazy(control_url)?;
    let legacy = keys.clone();
    let keyring = Keyring::new(Arc::new(keys), catalog.clone());
    check_keys(&keyring).await?;
    upgrade_legacy_server_urls(&catalog, &keyring, &legacy).await?;
    let password = app_role_password(&catalog, &keyring).await?;
    pg::ensure_app_role_on(&shared_url.parse()?, &password)
        .await
        .context("creating the data-plane role (needs CREATEROLE)")?;
    if shared == SharedSchema::Migrate {
        let version = migrate::tenant_database(&shared_url.parse()?)
            .await
            .context("migrating the shared tenant database")?;
        ledger::record_version(&catalog, &DbKey::Shared, version)
            .await
            .context("recording the shared database's schema version")?;
    }

    let servers = Servers::new(
        catalog.clone(),
        keyring.clone(),
        shared_url.to_owned(),
        password.clone(),
    );
    let provisioner = Provisioner::new(
        catalog.clone(),
        keyring.clone(),
        servers.clone(),
        settings.default_db_server.clone(),
    );
    if let Some(c) = cluster {
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
    let dataplane = DataPlane::new(
        catalog.clone(),
        keyring.clone(),
        shared_url,
        &password,
        sizes,
    )?
    .with_session_reuse(!settings.transaction_pooler)
    // A transaction-mode pooler refuses startup options: the limits then belong on the role.
    .with_session_limits(if settings.transaction_pooler {
        crate::dataplane::SessionLimits::default()
    } else {
        settings.session_limits
    });
    let resolver = Resolver::new(catalog.clone(), settings.base_domain.clone());
    seal_legacy_tenant_urls(&catalog, &keyring, &servers).await?;
    let mover = Mover::new(catalog.clone(), keyring.clone(), servers.clone());
    let migrator = Migrator::new(catalog.clone(), servers.clone());
    Ok(Tenancy {
        catalog,
        dataplane,
        resolver,
        provisioner,
        servers,
        keyring,
        mover,
        migrator,
        limits: settings.limits.clone(),
        allow_private_egress: settings.allow_private_egress,
    })
}

/// Fails start-up, with the key ids, if the catalog holds data keys wrapped by a KEK this
/// process does not have: serving would only fail later, request by request.
async fn check_keys(keyring: &Keyring) -> anyhow::Result<()> {
    let missing: Vec<String> = keyring
        .status()
        .await?
        .into_iter()
        .filter(|(_, _, known)| !known)
        .map(|(id, n, _)| format!("{id} ({n} keys)"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the catalog has data keys wrapped by master key(s) {} that are not loaded: set PLATFORM_MASTER_KEY \
         (and PLATFORM_MASTER_KEY_PREVIOUS during a rotation) to the right keys, or restore the master-key file",
        missing.join(", ")
    )
}

/// Database server URLs sealed by the first version of the catalog (directly with the KEK,
/// format 1) are re-sealed with the platform's data key (format 2).
async fn upgrade_legacy_server_urls(
    catalog: &Catalog,
    keyring: &Keyring,
    keys: &LocalKeys,
) -> anyhow::Result<()> {
    for (server, sealed) in catalog.db_servers_sealed(None).await? {
        if sealed.first() != Some(&1) {
            continue;
        }
        let url = keys
            .current()
            .open(&format!("db_server.admin_url:{}", server.id), &sealed)
            .context("opening a legacy sealed server URL")?;
        let resealed = keyring
            .seal(Scope::Platform, &server_url_purpose(&server.name), &url)
            .await?;
        catalog.set_db_server_sealed(server.id, &resealed).await?;
        tracing::info!(server = %server.name, "re-sealed a database server URL with the platform data key");
    }
    Ok(())
}

/// Dedicated tenants created before their URL was sealed get it sealed with their data key.
async fn seal_legacy_tenant_urls(
    catalog: &Catalog,
    keyring: &Keyring,
    servers: &Servers,
) -> anyhow::Result<()> {
    let registered = catalog.db_servers().await?;
    for status in [
        TenantStatus::Active,
        TenantStatus::Suspended,
        TenantStatus::Provisioning,
    ] {
        for t in catalog.tenants_in_status(status).await? {
            let (Placement::Dedicated { server, database }, None) =
                (&t.placement, &t.db_url_sealed)
            else {
                continue;
            };
            let Some(s) = registered.iter().find(|s| s.id == *server) else {
                continue;
            };
            let url = servers.app_url(s, database);
            let sealed = keyring
                .seal(Scope::Tenant(t.id), DB_URL_PURPOSE, url.as_bytes())
                .await?;
            catalog.set_tenant_db_url(t.id, &sealed).await?;
            tracing::info!(tenant.id = %t.id, "sealed a legacy dedicated tenant's database URL");
        }
    }
    Ok(())
}

/// The data-plane role's password: random, generated once, kept sealed in the catalog.
async fn app_role_password(
    catalog: &Catalog,
    keyring: &Keyring,
) -> anyhow::Result<Zeroizing<String>> {
    let sealed = match catalog.platform_secret(APP_PASSWORD_SECRET).await? {
        Some(s) => s,
        None => {
            let fresh = keyring
                .seal(
                    Scope::Platform,
                    APP_PASSWORD_SECRET,
                    random_token(32).as_bytes(),
                )
                .await?;
            catalog
                .put_platform_secret_if_absent(APP_PASSWORD_SECRET, &fresh)
                .await?
        }
    };
    Ok(keyring
        .open_string(Scope::Platform, APP_PASSWORD_SECRET, &sealed)
        .await?)
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
    /// Applies a catalog change to this crate's caches (resolution, pools). Caches of the crates
    /// above (identity, limits) are dropped by the `on_change` callback of
    /// [`Tenancy::listen_for_changes`].
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.resolver.invalidate(tenant).await;
        match tenant {
            Some(t) => self.dataplane.forget_tenant(t).await,
            None => self.dataplane.forget_servers(),
        }
    }

    /// Listens for catalog changes until the task is dropped, applying each to this crate's
    /// caches and then handing it to `on_change` (the layers above). `ready` fires once
    /// listening.
    pub async fn listen_for_changes<F>(
        self: Arc<Self>,
        ready: tokio::sync::oneshot::Sender<()>,
        on_change: F,
    ) where
        F: Fn(Option<TenantId>) + Send + Sync,
    {
        let changed = |tenant: Option<TenantId>| {
            let this = Arc::clone(&self);
            let on_change = &on_change;
            async move {
                this.invalidate(tenant).await;
                on_change(tenant);
            }
        };
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
            changed(None).await;
            if let Some(r) = ready.take() {
                r.send(()).ok();
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => changed(TenantId::parse(n.payload())).await,
                    Ok(None) => {
                        tracing::warn!("catalog listener lost its connection; caches dropped");
                        changed(None).await;
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
