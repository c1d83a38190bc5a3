//! Removing a copy of a tenant: undoing a move that has not switched (replication objects, fence
//! and target copy go), and purging the fenced source copy a finished move left behind. Both end
//! by deleting the tenant's rows from the shared database or dropping a dedicated database.

use serde_json::json;

use super::error::MoveError;
use super::location::Location;
use super::replication;
use super::verify;
use super::{Mover, slot_name};
use crate::catalog::Tenant;
use crate::catalog::operations::{OperationRow, OperationState, SourcePurge, Step};
use crate::ids::OperationId;
use crate::pg;

impl Mover {
    /// Undoes a move that has not switched: replication objects, fence and target copy go.
    pub(super) async fn rollback(
        &self,
        op: &OperationRow,
        state: OperationState,
        error: Option<&str>,
    ) -> Result<(), MoveError> {
        let tenant = op.tenant_id;
        let (source, target) = (
            Location::from_json(&op.source),
            Location::from_json(&op.target),
        );
        let current = self.catalog.tenant(tenant).await?.map(|t| t.placement);
        if current.as_ref().is_some_and(|p| target.is(p)) {
            // The flip happened: finish forward instead.
            self.catalog
                .advance_operation(op.id, &self.owner, Step::Cleanup, &json!({}))
                .await?;
            return Ok(());
        }
        let name = slot_name(op.id);
        if let Ok((t, _)) = self.conn(&target, tenant).await {
            replication::unsubscribe(&t, &name).await?;
            if target == Location::Shared {
                verify::drop_log(&t, &name).await?;
                pg::delete_tenant_rows(&t, tenant).await?;
            }
        }
        let (s, _) = self.conn(&source, tenant).await?;
        replication::unpublish(&s, &name).await?;
        verify::drop_log(&s, &name).await?;
        replication::unfence(&s, tenant).await?;
        if let Location::Dedicated {
            server, database, ..
        } = &target
        {
            let url = self.servers.admin_url(&self.server(*server).await?).await?;
            let admin = pg::connect(&url.parse()?).await?;
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    pg::quote_ident(database)
                ))
                .await?;
        }
        self.catalog.finish_operation(op.id, state, error).await?;
        Ok(())
    }

    /// Deletes the fenced source copy a finished move left behind (after the rollback window).
    /// Returns the operation whose source was purged, if any. Refused while any operation of the
    /// tenant is unfinished ([`MoveError::Busy`]); decided from the catalog under the tenant
    /// row's lock, held until the copy is gone (`tenant` names the tenant; its placement is
    /// re-read, never trusted from the caller's snapshot).
    pub async fn purge_source(&self, tenant: &Tenant) -> Result<Option<OperationId>, MoveError> {
        let lock = match self.catalog.lock_source_purge(tenant.id).await? {
            SourcePurge::Busy(op) => return Err(MoveError::Busy(op)),
            SourcePurge::Nothing => return Ok(None),
            SourcePurge::Ready(lock) => lock,
        };
        let source = Location::from_json(&lock.op.source);
        if source.is(&lock.placement) {
            // The tenant lives there again (moved back): nothing stale to delete.
            lock.purged().await?;
            return Ok(None);
        }
        let id = lock.op.id;
        match &source {
            Location::Shared => {
                let (c, _) = self.conn(&source, tenant.id).await?;
                pg::delete_tenant_rows(&c, tenant.id).await?;
            }
            Location::Dedicated {
                server, database, ..
            } => {
                let url = self.servers.admin_url(&self.server(*server).await?).await?;
                let admin = pg::connect(&url.parse()?).await?;
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        pg::quote_ident(database)
                    ))
                    .await?;
            }
        }
        lock.purged().await?;
        Ok(Some(id))
    }
}
