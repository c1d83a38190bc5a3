//! Long-running operations (placement moves) as rows: created, claimed under a lease, advanced
//! step by step, finished. Every transition is a conditional update, so two runners never both
//! advance one operation.

use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Catalog, CatalogError, Placement, publish, violates};
use crate::ids::{DbServerId, OperationId, TenantId};

crate::text_enum!(
    /// What an operation does.
    pub enum OperationKind {
        /// Shared database to a dedicated one.
        Promote = "promote",
        /// Dedicated database back to the shared one.
        Demote = "demote",
        /// One dedicated database to another.
        Move = "move",
    }
);

crate::text_enum!(
    /// Where an operation is in its life.
    pub enum OperationState {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl OperationState {
    /// Whether the operation has ended (it will never run again).
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

crate::text_enum!(
    /// The steps of a placement move, in order; each is idempotent, so a resumed operation
    /// repeats at most the step it was in.
    pub enum Step {
        Prepare = "prepare",
        Publish = "publish",
        Subscribe = "subscribe",
        Copy = "copy",
        Precheck = "precheck",
        Fence = "fence",
        Drain = "drain",
        Verify = "verify",
        Switch = "switch",
        Cleanup = "cleanup",
        Done = "done",
    }
);

impl Step {
    /// The step after this one (`Done` stays `Done`).
    #[must_use]
    pub fn next(self) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|x| *x > self)
            .unwrap_or(Self::Done)
    }
}

/// An operation as stored.
#[derive(Clone, Debug)]
pub struct OperationRow {
    pub id: OperationId,
    pub kind: OperationKind,
    pub tenant_id: TenantId,
    pub state: OperationState,
    pub step: Step,
    pub source: Value,
    pub target: Value,
    pub target_url_sealed: Option<Vec<u8>>,
    pub progress: Value,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub source_purged: bool,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

impl<'r> FromRow<'r, PgRow> for OperationRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        fn word<T: std::str::FromStr<Err = crate::text_enum::UnknownWord>>(
            row: &PgRow,
            column: &str,
        ) -> Result<T, sqlx::Error> {
            row.try_get::<&str, _>(column)?
                .parse()
                .map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(e),
                })
        }
        Ok(Self {
            id: OperationId::from_uuid(row.try_get("id")?),
            kind: word(row, "kind")?,
            tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
            state: word(row, "state")?,
            step: word(row, "step")?,
            source: row.try_get("source")?,
            target: row.try_get("target")?,
            target_url_sealed: row.try_get("target_url_sealed")?,
            progress: row.try_get("progress")?,
            error: row.try_get("error")?,
            cancel_requested: row.try_get("cancel_requested")?,
            source_purged: row.try_get("source_purged")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "id, kind, tenant_id, state, step, source, target, target_url_sealed, progress, error, \
                       cancel_requested, source_purged, created_at, started_at, finished_at, updated_at";

/// What [`Catalog::lock_source_purge`] decided.
#[derive(Debug)]
pub enum SourcePurge {
    /// This operation of the tenant has not ended: no copy may be purged until it has (an
    /// unfinished move may be copying into the very place a stale source copy sits).
    Busy(OperationId),
    /// No finished move left a source copy behind.
    Nothing,
    /// The newest source copy left behind, with the lock held.
    Ready(Box<PurgeLock>),
}

/// The tenant row's lock, held while a source copy is deleted (see
/// [`Catalog::lock_source_purge`]); dropping it without [`PurgeLock::purged`] releases the lock
/// and changes nothing.
#[derive(Debug)]
pub struct PurgeLock {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The move whose source copy this is.
    pub op: OperationRow,
    /// Where the tenant lives now (read under the lock).
    pub placement: Placement,
}

impl PurgeLock {
    /// Records the source copy as deleted and releases the lock.
    pub async fn purged(mut self) -> Result<(), CatalogError> {
        sqlx::query("UPDATE operations SET source_purged = true WHERE id = $1")
            .bind(self.op.id.as_uuid())
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

/// Creating an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateOperationError {
    #[error("the tenant already has an operation in progress")]
    Busy,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Catalog {
    /// Inserts a pending operation.
    pub async fn create_operation(
        &self,
        id: OperationId,
        kind: OperationKind,
        tenant: TenantId,
        step: Step,
        source: &Value,
        target: &Value,
    ) -> Result<OperationRow, CreateOperationError> {
        sqlx::query_as(&format!(
            "INSERT INTO operations (id, kind, tenant_id, state, step, source, target)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(id.as_uuid())
        .bind(kind.as_str())
        .bind(tenant.as_uuid())
        .bind(step.as_str())
        .bind(source)
        .bind(target)
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            if violates(&e, "operations_one_active") {
                CreateOperationError::Busy
            } else {
                CatalogError(e).into()
            }
        })
    }

    /// An operation by id.
    pub async fn operation(&self, id: OperationId) -> Result<Option<OperationRow>, CatalogError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM operations WHERE id = $1"))
                .bind(id.as_uuid())
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Unfinished operations nobody holds a live lease on.
    pub async fn claimable_operations(&self) -> Result<Vec<OperationId>, CatalogError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM operations WHERE state IN ('pending', 'running')
               AND (lease_until IS NULL OR lease_until < now()) ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(OperationId::from_uuid).collect())
    }

    /// Takes (or renews) the lease of an unfinished operation for `owner`; false if another
    /// runner holds a live lease or the operation is finished.
    pub async fn claim_operation(
        &self,
        id: OperationId,
        owner: &str,
        seconds: i32,
    ) -> Result<bool, CatalogError> {
        let n = sqlx::query(
            "UPDATE operations SET lease_owner = $2, lease_until = now() + make_interval(secs => $3),
                    state = CASE WHEN state = 'pending' THEN 'running' ELSE state END,
                    started_at = COALESCE(started_at, now()), updated_at = now()
             WHERE id = $1 AND state IN ('pending', 'running')
               AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < now())",
        )
        .bind(id.as_uuid())
        .bind(owner)
        .bind(f64::from(seconds))
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives the lease back (a runner that stops without finishing, e.g. a simulated crash).
    pub async fn release_operation(
        &self,
        id: OperationId,
        owner: &str,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE operations SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
            .bind(id.as_uuid())
            .bind(owner)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records the next step (and progress) of an operation this runner holds.
    pub async fn advance_operation(
        &self,
        id: OperationId,
        owner: &str,
        step: Step,
        progress: &Value,
    ) -> Result<bool, CatalogError> {
        let n = sqlx::query(
            "UPDATE operations SET step = $3, progress = progress || $4, updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id.as_uuid())
        .bind(owner)
        .bind(step.as_str())
        .bind(progress)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Merges an observation (a gauge the metrics read, e.g. replication lag) into the progress
    /// without counting as progress: `updated_at`, the time in step, is left alone.
    pub async fn operation_observe(
        &self,
        id: OperationId,
        observed: &Value,
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE operations SET progress = progress || $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(observed)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Merges progress without changing the step.
    pub async fn operation_progress(
        &self,
        id: OperationId,
        progress: &Value,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE operations SET progress = progress || $2, updated_at = now() WHERE id = $1",
        )
        .bind(id.as_uuid())
        .bind(progress)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stores the sealed data-plane URL of the target.
    pub async fn set_operation_target_url(
        &self,
        id: OperationId,
        sealed: &[u8],
    ) -> Result<(), CatalogError> {
        sqlx::query("UPDATE operations SET target_url_sealed = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(sealed)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends an operation (`succeeded`, `failed` or `cancelled`).
    pub async fn finish_operation(
        &self,
        id: OperationId,
        state: OperationState,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "UPDATE operations SET state = $2, error = $3, finished_at = now(), updated_at = now(),
                    lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND state IN ('pending', 'running')",
        )
        .bind(id.as_uuid())
        .bind(state.as_str())
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records an error on an operation that stays running (to be retried).
    pub async fn operation_error(&self, id: OperationId, error: &str) -> Result<(), CatalogError> {
        sqlx::query("UPDATE operations SET error = $2, updated_at = now() WHERE id = $1")
            .bind(id.as_uuid())
            .bind(error)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Asks a running operation to stop before cutover.
    pub async fn request_cancel(&self, id: OperationId) -> Result<bool, CatalogError> {
        let n = sqlx::query("UPDATE operations SET cancel_requested = true, updated_at = now() WHERE id = $1 AND state IN ('pending', 'running')")
            .bind(id.as_uuid())
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Decides whether a source copy of `tenant` may be purged, from the catalog as it is now
    /// and under the tenant row's lock (`FOR UPDATE`), which the returned [`PurgeLock`] holds
    /// until [`PurgeLock::purged`] or drop: a move cannot flip the tenant's placement meanwhile
    /// (`switch_placement` updates that row), and no new operation can be created (its foreign
    /// key check takes `FOR KEY SHARE` on the same row). So nothing can start using the copy
    /// while it is being deleted.
    pub async fn lock_source_purge(&self, tenant: TenantId) -> Result<SourcePurge, CatalogError> {
        let mut tx = self.pool().begin().await?;
        let Some(row) = sqlx::query(
            "SELECT placement, db_server_id, db_name FROM tenants WHERE id = $1 FOR UPDATE",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(SourcePurge::Nothing);
        };
        let placement = match (
            row.try_get::<&str, _>("placement")?,
            row.try_get::<Option<Uuid>, _>("db_server_id")?,
            row.try_get::<Option<String>, _>("db_name")?,
        ) {
            ("dedicated", Some(server), Some(database)) => Placement::Dedicated {
                server: DbServerId::from_uuid(server),
                database,
            },
            _ => Placement::Shared,
        };
        let unfinished: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM operations WHERE tenant_id = $1 AND state IN ('pending', 'running') LIMIT 1",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = unfinished {
            return Ok(SourcePurge::Busy(OperationId::from_uuid(id)));
        }
        let op: Option<OperationRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM operations WHERE tenant_id = $1 AND state = 'succeeded' AND NOT source_purged
             ORDER BY finished_at DESC LIMIT 1"
        ))
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        Ok(match op {
            None => SourcePurge::Nothing,
            Some(op) => SourcePurge::Ready(Box::new(PurgeLock { tx, op, placement })),
        })
    }

    /// Points a tenant at a new placement if it is still at `expected_epoch`, and notifies every
    /// instance in the same transaction. Returns false if the tenant changed meanwhile.
    pub async fn switch_placement(
        &self,
        tenant: TenantId,
        expected_epoch: i64,
        server: Option<Uuid>,
        database: Option<&str>,
        db_url_sealed: Option<&[u8]>,
        schema_version: Option<i64>,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.pool().begin().await?;
        let placement = if database.is_some() {
            "dedicated"
        } else {
            "shared"
        };
        let n = sqlx::query(
            "UPDATE tenants SET placement = $3, db_server_id = $4, db_name = $5, db_url_sealed = $6,
                    schema_version = COALESCE($7, schema_version), epoch = epoch + 1, updated_at = now()
             WHERE id = $1 AND epoch = $2",
        )
        .bind(tenant.as_uuid())
        .bind(expected_epoch)
        .bind(placement)
        .bind(server)
        .bind(database)
        .bind(db_url_sealed)
        .bind(schema_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        publish(&mut *tx, Some(tenant)).await?;
        tx.commit().await?;
        Ok(n == 1)
    }
}
