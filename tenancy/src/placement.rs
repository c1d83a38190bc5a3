//! Placement moves: promote a tenant from the shared database to a dedicated one, demote it back,
//! or move it between servers, with no lost write and a short write pause.
//!
//! A move is an operation row in the catalog advanced step by step by a runner holding a lease:
//! `prepare` (target database, version check) → `publish` (row-filtered publication and slot on
//! the source) → `subscribe` (subscription on the target) → `copy` (initial copy done) → `fence`
//! (the tenant's writes are refused in the source database itself) → `drain` (the fence row has
//! replicated, so every write committed before it has too) → `verify` (row counts and checksums
//! match) → `switch` (subscription dropped, target unfenced, catalog flipped and every instance
//! notified) → `cleanup` (slot and publication dropped). The source copy stays, fenced, until
//! `purge_source`. Every step is idempotent; a crash at any point resumes where it stopped, and a
//! failure or cancel before `switch` rolls back (source unfenced, replication objects and the
//! target copy removed). At no moment is the tenant writable in two places: the source is fenced
//! before the target is unfenced, and the target is only routed to after the flip.

mod replication;
mod steps;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::{Client, Config};
use uuid::Uuid;

use crate::catalog::operations::{
    CreateOperationError, OperationKind, OperationRow, OperationState, Step,
};
use crate::catalog::{Catalog, CatalogError, DbServer, Placement, Tenant, TenantStatus};
use crate::crypto::{KeyError, Keyring};
use crate::ids::{DbServerId, OperationId, TenantId};
use crate::pg;
use crate::servers::{ServerError, Servers};

pub use crate::pg::{delete_tenant_rows, tenant_tables};

/// Lease length; renewed at every step and while waiting.
const LEASE_SECONDS: i32 = 60;

/// One end of a move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Shared,
    Dedicated {
        server: DbServerId,
        server_name: String,
        database: String,
    },
}

impl Location {
    fn to_json(&self) -> Value {
        match self {
            Self::Shared => json!({"placement": "shared"}),
            Self::Dedicated {
                server,
                server_name,
                database,
            } => {
                json!({"placement": "dedicated", "server_id": server.as_uuid(), "server": server_name, "database": database})
            }
        }
    }

    fn from_json(v: &Value) -> Self {
        match (
            v["server_id"].as_str().and_then(DbServerId::parse),
            v["database"].as_str(),
        ) {
            (Some(server), Some(database)) => Self::Dedicated {
                server,
                server_name: v["server"].as_str().unwrap_or_default().to_owned(),
                database: database.to_owned(),
            },
            _ => Self::Shared,
        }
    }

    fn is(&self, p: &Placement) -> bool {
        match (self, p) {
            (Self::Shared, Placement::Shared) => true,
            (
                Self::Dedicated {
                    server, database, ..
                },
                Placement::Dedicated {
                    server: s,
                    database: d,
                },
            ) => server == s && database == d,
            _ => false,
        }
    }
}

/// Where to move a tenant.
#[derive(Clone, Debug)]
pub enum MoveRequest {
    /// To the shared database.
    Shared,
    /// To a new database on this server.
    Dedicated { server: String },
}

/// Starting a move failed.
#[derive(Debug, thiserror::Error)]
pub enum StartMoveError {
    #[error("the tenant is already there")]
    AlreadyThere,
    #[error("the tenant is not active or suspended")]
    NotMovable,
    #[error("no database server named `{0}` is registered")]
    UnknownServer(String),
    #[error("the tenant already has an operation in progress")]
    Busy,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Running a move failed.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(
        "the source database has wal_level other than logical; logical replication is unavailable"
    )]
    NoLogicalReplication,
    #[error(
        "the source database is at schema version {found}, not {head}: migrate the fleet first"
    )]
    SourceVersion { found: i64, head: i64 },
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("no such operation")]
    NotFound,
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Owner connections kept open per (tenant, location) while a move runs.
type ConnCache = Arc<std::sync::Mutex<std::collections::HashMap<String, (Arc<Client>, Config)>>>;

/// Runs placement moves.
#[derive(Clone, Debug)]
pub struct Mover {
    catalog: Catalog,
    keyring: Keyring,
    servers: Servers,
    owner: String,
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
            conns: Arc::default(),
        }
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
                .claim_operation(id, &self.owner, LEASE_SECONDS)
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

    /// An owner connection to a location's database, scoped to the tenant for RLS.
    /// Connections are kept open across steps, so the cutover steps (fence, drain, verify,
    /// switch) do not pay for connection set-up while the tenant's writes are paused.
    async fn conn(
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
    fn forget_conns(&self, tenant: TenantId) {
        if let Ok(mut m) = self.conns.lock() {
            m.retain(|k, _| !k.starts_with(&tenant.to_string()));
        }
    }

    async fn config(&self, loc: &Location) -> Result<Config, MoveError> {
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

    async fn server(&self, id: DbServerId) -> Result<DbServer, MoveError> {
        Ok(self.servers.by_id(id).await?)
    }

    /// Undoes a move that has not switched: replication objects, fence and target copy go.
    async fn rollback(
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
                pg::delete_tenant_rows(&t, tenant).await?;
            }
        }
        let (s, _) = self.conn(&source, tenant).await?;
        replication::unpublish(&s, &name).await?;
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
    /// Returns the operation whose source was purged, if any.
    pub async fn purge_source(&self, tenant: &Tenant) -> Result<Option<OperationId>, MoveError> {
        let Some(op) = self.catalog.unpurged_source(tenant.id).await? else {
            return Ok(None);
        };
        let source = Location::from_json(&op.source);
        if source.is(&tenant.placement) {
            // The tenant lives there again (moved back): nothing stale to delete.
            self.catalog.mark_source_purged(op.id).await?;
            return Ok(None);
        }
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
        self.catalog.mark_source_purged(op.id).await?;
        Ok(Some(op.id))
    }
}

/// Name of the publication, slot and subscription of an operation.
fn slot_name(id: OperationId) -> String {
    format!("move_{}", id.as_uuid().simple())
}

/// How long to wait for the initial copy and for the drain.
const COPY_DEADLINE: Duration = Duration::from_secs(30 * 60);
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
