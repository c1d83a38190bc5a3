//! Enqueueing: a job row written in the caller's tenant transaction, so it exists only if that
//! transaction commits, and a post-commit hint so a worker starts it without polling.

use std::time::Duration;

use tenancy::crypto::{KeyError, Keyring, Scope};
use tenancy::dataplane::TenantTx;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::kind::JobKind;
use crate::store::JobId;

pub use crate::kind::SEALED_PURPOSE;

/// A job to enqueue.
#[derive(Clone)]
pub struct NewJob {
    kind: JobKind,
    payload: serde_json::Value,
    sealed: Option<Vec<u8>>,
    run_at: Option<OffsetDateTime>,
    priority: i16,
    max_attempts: i32,
    unique: Option<(String, Duration)>,
    expires_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for NewJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewJob")
            .field("kind", &self.kind)
            .field("run_at", &self.run_at)
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl NewJob {
    /// A job of `kind` with a JSON payload (never a secret: see [`Self::seal_secret`]).
    #[must_use]
    pub fn new(kind: JobKind, payload: serde_json::Value) -> Self {
        Self {
            kind,
            payload,
            sealed: None,
            run_at: None,
            priority: 0,
            max_attempts: 5,
            unique: None,
            expires_at: None,
        }
    }

    /// Adds a secret (a single-use token, a message body) sealed with the tenant's data key.
    pub async fn seal_secret(
        mut self,
        keyring: &Keyring,
        tx: &TenantTx,
        secret: &str,
    ) -> Result<Self, KeyError> {
        self.sealed = Some(
            keyring
                .seal(
                    Scope::Tenant(tx.tenant()),
                    SEALED_PURPOSE,
                    secret.as_bytes(),
                )
                .await?,
        );
        Ok(self)
    }

    /// Runs no earlier than `at`.
    #[must_use]
    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Higher runs first among a tenant's due jobs.
    #[must_use]
    pub fn priority(mut self, p: i16) -> Self {
        self.priority = p;
        self
    }

    /// Attempts before the job is dead-lettered.
    #[must_use]
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// At most one job with this key for `window` from the first: a second enqueue in the window
    /// is collapsed into the first (returns `None`). A dead or cancelled job frees its key.
    #[must_use]
    pub fn unique(mut self, key: impl Into<String>, window: Duration) -> Self {
        self.unique = Some((key.into(), window));
        self
    }

    /// After this the job is dropped unrun (it carries a token that expires).
    #[must_use]
    pub fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Enqueueing failed.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("writing the job failed")]
    Db(#[from] tokio_postgres::Error),
}

/// Enqueues `job` in `tx` (the job's tenant is the transaction's). Returns the new job's id, or
/// `None` if a unique job with the same key is live in its window.
pub async fn enqueue(tx: &mut TenantTx, job: NewJob) -> Result<Option<JobId>, EnqueueError> {
    let id = Uuid::now_v7();
    let tenant = tx.tenant().as_uuid();
    let (key, until) = match &job.unique {
        Some((k, w)) => (Some(k.as_str()), Some(OffsetDateTime::now_utc() + *w)),
        None => (None, None),
    };
    if let Some(key) = key {
        // Frees the key of a job whose window is over (or that will never run), so the insert
        // below conflicts only with a live one. The unique index makes a concurrent enqueue of
        // the same key wait for this transaction and then collapse.
        tx.execute(
            "UPDATE jobs SET unique_key = NULL WHERE unique_key = $1
             AND (unique_until <= now() OR state IN ('dead', 'cancelled'))",
            &[&key],
        )
        .await?;
    }
    let traced = crate::trace::attach(&job.payload);
    // Only a keyed job can collide: a keyless one is a plain insert (no speculative insertion
    // and no arbiter index check on every enqueue).
    let sql = if key.is_some() {
        "INSERT INTO jobs (tenant_id, id, kind, payload, payload_sealed, run_at, priority,
                           max_attempts, unique_key, unique_until, expires_at)
         VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()), $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
         RETURNING id"
    } else {
        "INSERT INTO jobs (tenant_id, id, kind, payload, payload_sealed, run_at, priority,
                           max_attempts, unique_key, unique_until, expires_at)
         VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()), $7, $8, $9, $10, $11)
         RETURNING id"
    };
    let row = tx
        .query_opt(
            sql,
            &[
                &tenant,
                &id,
                &job.kind.as_str(),
                traced.as_ref().unwrap_or(&job.payload),
                &job.sealed,
                &job.run_at,
                &job.priority,
                &job.max_attempts,
                &key,
                &until,
                &job.expires_at,
            ],
        )
        .await?;
    if row.is_some() {
        tx.hint_after_commit();
    }
    Ok(row.map(|_| JobId::from_uuid(id)))
}
