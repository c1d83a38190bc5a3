//! Startup shared by the server and `platformctl`: find or start the databases, load the master
//! key, run both migration sets, and build the catalog, data plane, resolver and provisioner.
//! Also the catalog-notification listener that keeps every instance's caches fresh.

mod caches;
mod databases;
mod legacy;
mod listener;

pub use caches::CatalogCaches;
pub use listener::Change;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use zeroize::Zeroizing;

use crate::catalog::Catalog;
use crate::crypto::{Keyring, LocalKeys, Scope, random_token};
use crate::dataplane::{DataPlane, PoolSizes};
use crate::embedded::Cluster;
use crate::migrate::fleet::{DbKey, Migrator};
use crate::migrate::ledger;
use crate::placement::Mover;
use crate::provision::Provisioner;
use crate::resolve::Resolver;
use crate::servers::Servers;
use crate::settings::Settings;
use crate::{migrate, pg};
use databases::databases;
use legacy::{seal_legacy_tenant_urls, upgrade_legacy_server_urls};

/// Name of the server the embedded default registers for dedicated databases.
pub const LOCAL_SERVER: &str = "local";

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
    /// `Settings::environment`: the feature-flag environment this instance evaluates in.
    pub environment: String,
    /// `Settings::metrics`: the metrics listener and the per-tenant series bound.
    pub metrics: crate::settings::MetricsSettings,
    /// `Settings::email`: the mail transports, sender and DKIM selector.
    pub email: crate::settings::EmailSettings,
    /// `Settings::stripe`: the Stripe API key, base URL and webhook secrets (the `billing` crate).
    pub stripe: crate::settings::StripeSettings,
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
        ledger::versions::record_version(&catalog, &DbKey::Shared, version)
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
        environment: settings.environment.clone(),
        metrics: settings.metrics,
        email: settings.email.clone(),
        stripe: settings.stripe.clone(),
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
