//! The fleet's inventory as the catalog knows it: the shared database and the dedicated database
//! of every live or suspended tenant, with server and recorded version, and the `--tenant` /
//! `--server` selection.

use uuid::Uuid;

use super::{FleetError, FleetOptions, Migrator};
use crate::catalog::CatalogError;
use crate::ids::{DbServerId, TenantId, TenantSlug};
use crate::migrate::inventory::{DbKey, FleetDb};
use crate::pg;

impl Migrator {
    /// Every tenant database: the shared one first, then dedicated ones (live or suspended) by slug.
    pub async fn fleet(&self) -> Result<Vec<FleetDb>, FleetError> {
        let pool = self.catalog().pool();
        let servers = self.catalog().db_servers().await?;
        let shared_config: tokio_postgres::Config = self
            .shared_admin_url()
            .parse()
            .map_err(FleetError::SharedUrl)?;
        let (host, port) = pg::host_port(&shared_config);
        let shared_endpoint = format!("{host}:{port}");
        let shared_server = servers
            .iter()
            .find(|s| format!("{}:{}", s.host, s.port) == shared_endpoint)
            .map_or_else(|| "shared".to_owned(), |s| s.name.clone());
        let shared_slugs: Vec<String> = sqlx::query_scalar(
            "SELECT slug FROM tenants WHERE placement = 'shared' AND status <> 'deleted' ORDER BY slug",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError)?;
        let shared_version: Option<i64> =
            sqlx::query_scalar("SELECT schema_version FROM shared_schema")
                .fetch_optional(pool)
                .await
                .map_err(CatalogError)?;
        let mut out = vec![FleetDb {
            key: DbKey::Shared,
            slugs: shared_slugs
                .into_iter()
                .map(TenantSlug::from_trusted)
                .collect(),
            server: shared_server,
            server_id: None,
            db_name: shared_config.get_dbname().unwrap_or("postgres").to_owned(),
            recorded: shared_version,
            endpoint: shared_endpoint,
        }];
        let rows: Vec<(Uuid, String, Uuid, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, slug, db_server_id, db_name, schema_version FROM tenants
              WHERE placement = 'dedicated' AND status IN ('active', 'suspended') ORDER BY slug",
        )
        .fetch_all(pool)
        .await
        .map_err(CatalogError)?;
        for (id, slug, server_id, db_name, version) in rows {
            let server_id = DbServerId::from_uuid(server_id);
            let server = servers.iter().find(|s| s.id == server_id);
            out.push(FleetDb {
                key: DbKey::Tenant(TenantId::from_uuid(id)),
                slugs: vec![TenantSlug::from_trusted(slug)],
                server: server.map_or_else(|| "(unregistered)".to_owned(), |s| s.name.clone()),
                server_id: Some(server_id),
                db_name,
                recorded: version,
                endpoint: server.map_or_else(String::new, |s| format!("{}:{}", s.host, s.port)),
            });
        }
        Ok(out)
    }

    /// The fleet after `--tenant` and `--server` filters.
    pub(in crate::migrate) async fn selected(
        &self,
        opts: &FleetOptions,
    ) -> Result<Vec<FleetDb>, FleetError> {
        let mut fleet = self.fleet().await?;
        if let Some(name) = &opts.server
            && !fleet.iter().any(|d| &d.server == name)
            && self.catalog().db_server_by_name(name).await?.is_none()
        {
            return Err(FleetError::UnknownServer(name.clone()));
        }
        for slug in &opts.tenants {
            if !fleet
                .iter()
                .any(|d| d.slugs.iter().any(|s| s.as_str() == slug))
            {
                return Err(FleetError::UnknownTenant(slug.clone()));
            }
        }
        fleet.retain(|d| {
            opts.server.as_ref().is_none_or(|s| &d.server == s)
                && (opts.tenants.is_empty()
                    || d.slugs
                        .iter()
                        .any(|s| opts.tenants.iter().any(|t| t == s.as_str())))
        });
        Ok(fleet)
    }
}
