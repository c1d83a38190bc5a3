//! The audit log: who did what, when, from where, with proof. Events are written by database
//! triggers in the same transaction as the change they record (tenant V4 for tenant data,
//! control-plane V6 for the catalog), plus explicit events for attempts that change nothing
//! (denied requests, failed logins), each in its own transaction.
//!
//! Who is acting reaches those triggers through `tenancy::context`: a task-local request context that
//! the data plane sends with `SET LOCAL app.audit` next to `app.tenant_id` (no extra round trip),
//! and that the catalog pool sets on the connections it hands out during a request.
//!
//! Events are appended unlinked; [`sealer`] links them into each tenant's hash chain after commit
//! (tenant V8). [`chain`] recomputes the per-tenant hash chain (`platformctl audit verify`) and
//! reports events left unlinked too long; [`events`] reads
//! events for the APIs and appends explicit ones; [`retention`] expires old segments, keeping a
//! checkpoint hash so what remains still verifies.

pub mod chain;
pub mod events;
pub mod retention;
pub mod sealer;

pub use chain::{ChainReport, verify_admin, verify_tenant};
pub use events::{AuditEvent, AuditFilter, Outcome};
pub use tenancy::context::{Actor, AuditContext};

/// An audit operation failed (the database, not the caller).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("tenant database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("catalog error: {0}")]
    Catalog(#[from] sqlx::Error),
    #[error(transparent)]
    Connect(#[from] tenancy::dataplane::ConnectError),
    #[error("listing tenants for the audit sweep: {0}")]
    Sweep(String),
}
