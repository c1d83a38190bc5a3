//! One-time upgrades start-up applies to catalogs written by earlier versions: server URLs sealed
//! directly with the KEK are re-sealed with the platform data key, and dedicated tenants without a
//! sealed database URL get one. Each is a no-op once done, so it runs on every start.

use anyhow::Context as _;

use crate::catalog::{Catalog, DB_URL_PURPOSE, Placement, TenantStatus, server_url_purpose};
use crate::crypto::{Keyring, LocalKeys, Scope};
use crate::servers::Servers;

/// Database server URLs sealed by the first version of the catalog (directly with the KEK,
/// format 1) are re-sealed with the platform's data key (format 2).
pub(super) async fn upgrade_legacy_server_urls(
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
pub(super) async fn seal_legacy_tenant_urls(
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
