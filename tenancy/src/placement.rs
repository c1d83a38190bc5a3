//! Placement moves: promote a tenant from the shared database to a dedicated one, demote it back,
//! or move it between servers, with no lost write and a short write pause.
//!
//! A move is an operation row in the catalog advanced step by step by a runner holding a lease:
//! `prepare` (target database, version check) → `publish` (row-filtered publication and slot on
//! the source) → `subscribe` (subscription on the target; a fresh target's secondary indexes wait
//! for the end of the copy) → `copy` (initial copy done, indexes built) → `precheck` (the whole
//! tenant compared at a consistent point of the replication stream, the tenant still writable; see
//! `verify`) → `fence` (the tenant's writes are refused in the source database itself) → `drain`
//! (the fence row has replicated, so every write committed before it has too) → `verify` (the rows
//! written since the precheck's point match) → `switch` (subscription dropped, target unfenced, catalog flipped and every instance
//! notified) → `cleanup` (slot and publication dropped). The source copy stays, fenced, until
//! `purge_source`. Every step is idempotent; a crash at any point resumes where it stopped, and a
//! failure or cancel before `switch` rolls back (source unfenced, replication objects and the
//! target copy removed). At no moment is the tenant writable in two places: the source is fenced
//! before the target is unfenced, and the target is only routed to after the flip.

mod conns;
mod error;
mod location;
mod replication;
mod steps;
mod teardown;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::catalog::operations::{
    CreateOperationError, OperationKind, OperationRow, OperationState, Step,
};
use crate::catalog::{Catalog, CatalogError, Placement, Tenant, TenantStatus};
use crate::crypto::Keyring;
use crate::ids::OperationId;
use crate::servers::Servers;
use conns::ConnCache;
use location::Location;

pub use crate::pg::{delete_tenant_rows, tenant_tables};
pub use error::{MoveError, StartMoveError};
pub use location::MoveRequest;

/// Lease length; renewed at every step, while waiting, and every third of it during the long
/// steps (`verify`, `switch`), so a slow step never lets a second runner claim the operation.
const LEASE_SECONDS: i32 = 60;

/// Runs placement moves.
#[derive(Clone, Debug)]
pub struct Mover {
    catalog: Catalog,
    keyring: Keyring,
    servers: Servers,
    owner: String,
    lease_seconds: i32,
    conns: ConnCache,
}

impl Mover {
    #[must_use]
    pub fn new(catalog: Catalog, keyring: Keyring, servers: Servers) -> Self {
        Self {
            catalog,
            keyring,
            servers,
            owner: format!("runner-{}", Uuid::now_v7()),
            lease_seconds: LEASE_SECONDS,
            conns: Arc::default(),
        }
    }

    /// The same runner with another lease length (at least one second): tests shorten it to
    /// watch a lease outlive it.
    #[must_use]
    pub fn with_lease_seconds(mut self, seconds: i32) -> Self {
        self.lease_seconds = seconds.max(1);
        self
    }

    /// A runner with its own identity (as another process would be).
    #[must_use]
    pub fn another_runner(&self) -> Self {
        Self {
            owner: format!("runner-{}", Uuid::now_v7()),
            conns: Arc::default(),
            ..self.clone()
        }
    }

    /// Records a pending move of `tenant`; run it with [`Mover::run`].
    pub async fn start(
        &self,
        tenant: &Tenant,
        to: &MoveRequest,
    ) -> Result<OperationRow, StartMoveError> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(StartMoveError::NotMovable);
        }
        let source = self.location_of(&tenant.placement).await?;
        let target = match to {
            MoveRequest::Shared => Location::Shared,
            MoveRequest::Dedicated { server } => {
                let s = self
                    .catalog
                    .db_server_by_name(server)
                    .await?
                    .ok_or_else(|| StartMoveError::UnknownServer(server.clone()))?;
                if matches!(&source, Location::Dedicated { server, .. } if *server == s.id) {
                    return Err(StartMoveError::AlreadyThere);
                }
                Location::Dedicated {
                    server: s.id,
                    server_name: s.name,
                    database: format!("tenant_{}", Uuid::now_v7().simple()),
                }
            }
        };
        let kind = match (&source, &target) {
            (Location::Shared, Location::Shared) => return Err(StartMoveError::AlreadyThere),
            (Location::Shared, Location::Dedicated { .. }) => OperationKind::Promote,
            (Location::Dedicated { .. }, Location::Shared) => OperationKind::Demote,
            (Location::Dedicated { .. }, Location::Dedicated { .. }) => OperationKind::Move,
        };
        self.catalog
            .create_operation(
                OperationId::new(),
                kind,
                tenant.id,
                Step::Prepare,
                &source.to_json(),
                &target.to_json(),
            )
            .await
            .map_err(|e| match e {
                CreateOperationError::Busy => StartMoveError::Busy,
                CreateOperationError::Catalog(c) => c.into(),
            })
    }

    async fn location_of(&self, p: &Placement) -> Result<Location, CatalogError> {
        Ok(match p {
            Placement::Shared => Location::Shared,
            Placement::Dedicated { server, database } => {
                let name = self
                    .catalog
                    .db_server_sealed(*server)
                    .await?
                    .map(|(s, _)| s.name)
                    .unwrap_or_default();
                Location::Dedicated {
                    server: *server,
                    server_name: name,
                    database: database.clone(),
                }
            }
        })
    }

    /// Runs an operation to its end (or until another runner holds it).
    pub async fn run(&self, id: OperationId) -> Result<OperationRow, MoveError> {
        self.run_steps(id, usize::MAX).await
    }

    /// Runs at most `max_steps` steps, then stops as a crashed runner would (the lease is given
    /// back so another runner can resume at once). For tests and for stepping by hand.
    pub async fn run_steps(
        &self,
        id: OperationId,
        max_steps: usize,
    ) -> Result<OperationRow, MoveError> {
        let mut done = 0;
        loop {
            let op = self
                .catalog
                .operation(id)
                .await?
                .ok_or(MoveError::NotFound)?;
            if op.state.is_terminal() {
                self.forget_conns(op.tenant_id);
                return Ok(op);
            }
            if !self
                .catalog
                .claim_operation(id, &self.owner, self.lease_seconds)
                .await?
            {
                return Ok(op);
            }
            let step = op.step;
            if step == Step::Done {
                self.catalog
                    .finish_operation(id, OperationState::Succeeded, None)
                    .await?;
                continue;
            }
            if op.cancel_requested && step <= Step::Switch {
                self.rollback(&op, OperationState::Cancelled, None).await?;
                continue;
            }
            if done >= max_steps {
                self.catalog.release_operation(id, &self.owner).await?;
                return self.catalog.operation(id).await?.ok_or(MoveError::NotFound);
            }
            let started = std::time::Instant::now();
            match self.execute(&op, step).await {
                Ok(progress) => {
                    let mut p = progress;
                    p[format!("{}_ms", step.as_str())] = json!(started.elapsed().as_millis());
                    self.catalog
                        .advance_operation(id, &self.owner, step.next(), &p)
                        .await?;
                }
                // Another runner owns the operation now: leave it to that runner.
                Err(MoveError::LeaseLost) => return Err(MoveError::LeaseLost),
                Err(e) if step < Step::Switch => {
                    tracing::warn!(operation.id = %id, step = step.as_str(), error = %e, "move failed; rolling back");
                    self.rollback(&op, OperationState::Failed, Some(&e.to_string()))
                        .await?;
                }
                Err(e) => {
                    // Past the flip there is no going back: record, release, retry later.
                    self.catalog.operation_error(id, &e.to_string()).await?;
                    self.catalog.release_operation(id, &self.owner).await?;
                    return Err(e);
                }
            }
            done += 1;
        }
    }

    /// Asks an operation to stop; before the switch it rolls back, after it, it completes.
    pub async fn cancel(&self, id: OperationId) -> Result<bool, CatalogError> {
        self.catalog.request_cancel(id).await
    }

    /// Runs every unfinished operation whose lease has expired (after a crash or restart).
    pub async fn resume_all(&self) -> Result<usize, CatalogError> {
        let ids = self.catalog.claimable_operations().await?;
        for id in &ids {
            if let Err(e) = self.run(*id).await {
                tracing::warn!(operation.id = %id, error = %e, "resumed operation did not finish");
            }
        }
        Ok(ids.len())
    }
}

/// Name of the publication, slot and subscription of an operation.
fn slot_name(id: OperationId) -> String {
    format!("move_{}", id.as_uuid().simple())
}

/// How long to wait for the initial copy and for the drain.
const COPY_DEADLINE: Duration = Duration::from_secs(30 * 60);
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
