//! Background jobs through a transactional outbox in every tenant database (issue 16).
//!
//! - [`enqueue`]: a job is a row of the tenant table `jobs`, written inside the tenant's own
//!   [`TenantTx`](tenancy::dataplane::TenantTx): visible only if that transaction commits. The
//!   transaction asks the data plane for a post-commit hint, which wakes this process's worker.
//! - [`store`]: the statements on `jobs`: claim under a lease, and the lease-fenced completion,
//!   retry and dead letter (a worker whose lease was taken over changes nothing).
//! - [`worker`]: finds work from hints (in-process, and `NOTIFY` on the control plane from other
//!   instances) plus a slow sweep, picks tenants fairly ([`fair`]), and runs each job under its
//!   tenant's context (RLS setting, data key, audit actor `job`/`<kind>`).
//! - [`schedule`]: platform schedules (cron-like intervals held in the control plane).
//! - [`admin`]: what operators see and do (list, retry, discard, pause and resume a kind).

pub mod admin;
pub mod backoff;
pub mod builtin;
pub mod enqueue;
pub mod fair;
pub mod kind;
pub mod schedule;
pub mod stats;
pub mod store;
pub mod trace;
pub mod worker;

pub use enqueue::{EnqueueError, NewJob, enqueue};
pub use kind::{Handler, JobContext, JobFailure, JobKind, KindSpec, Registry};
pub use store::{JobId, JobState};
pub use worker::{Worker, WorkerConfig};

/// The control-plane `NOTIFY` channel of job hints (payload: a tenant id).
pub const CHANNEL: &str = "platform_jobs";
