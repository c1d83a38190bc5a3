//! The owner connections a move keeps open per (tenant, location), and how a location turns into a
//! connection config. Kept open across steps so the cutover steps (fence, drain, verify, switch) do
//! not pay for connection set-up while the tenant's writes are paused.

use std::sync::Arc;

use tokio_postgres::{Client, Config};

use super::Mover;
use super::error::MoveError;
use super::location::Location;
use crate::catalog::DbServer;
use crate::ids::{DbServerId, TenantId};
use crate::pg;

/// Owner connections kept open per (tenant, location) while a move runs.
pub(super) type ConnCache =
    Arc<std::sync::Mutex<std::collections::HashMap<String, (Arc<Client>, Config)>>>;

impl Mover {
    /// An owner connection to a location's database, scoped to the tenant for RLS.
    /// Connections are kept open across steps, so the cutover steps (fence, drain, verify,
    /// switch) do not pay for connection set-up while the tenant's writes are paused.
    pub(super) async fn conn(
        &self,
        loc: &Location,
        tenant: TenantId,
    ) -> Result<(Arc<Client>, Config), MoveError> {
        let key = format!("{tenant}/{loc:?}");
        if let Some((c, cfg)) = self
            .conns
            .lock()
            .map_err(|_| MoveError::Timeout("a poisoned lock"))?
            .get(&key)
            && !c.is_closed()
        {
            return Ok((Arc::clone(c), cfg.clone()));
        }
        let config = self.config(loc).await?;
        let client = Arc::new(pg::connect(&config).await?);
        client
            .batch_execute(&format!("SET app.tenant_id = '{tenant}'"))
            .await?;
        if let Ok(mut m) = self.conns.lock() {
            m.insert(key, (Arc::clone(&client), config.clone()));
        }
        Ok((client, config))
    }

    /// Closes the connections kept for a tenant's move.
    pub(super) fn forget_conns(&self, tenant: TenantId) {
        if let Ok(mut m) = self.conns.lock() {
            m.retain(|k, _| !k.starts_with(&tenant.to_string()));
        }
    }

    pub(super) async fn config(&self, loc: &Location) -> Result<Config, MoveError> {
        Ok(match loc {
            Location::Shared => self.servers.shared_admin_url().parse()?,
            Location::Dedicated {
                server, database, ..
            } => {
                let url = self.servers.admin_url(&self.server(*server).await?).await?;
                pg::with_database(&url, database)?
            }
        })
    }

    pub(super) async fn server(&self, id: DbServerId) -> Result<DbServer, MoveError> {
        Ok(self.servers.by_id(id).await?)
    }
}
