//! The data plane's connection pools: deadpool-postgres connections wrapped with two pieces of
//! state that must live exactly as long as the connection itself.
//!
//! - `session_tenant`: the tenant whose id is known to be committed as the session value of
//!   `app.tenant_id` on this connection (`None` when unknown). [`super::TenantTx`] uses it to send
//!   a one-statement request alone, without `BEGIN; SET LOCAL ...; COMMIT` around it, when the
//!   connection is already set for the request's tenant.
//! - a permit of the database server's connection budget, for dedicated databases: held while
//!   the connection is open (idle in a pool or checked out), released when it closes, so the
//!   number of open connections to a server never exceeds its budget. When the budget is used up
//!   by idle connections of other tenants' pools, creating a connection closes the idle one that
//!   was used least recently.
//!
//! Checkout (`recycle`) is the one place that decides whether an idle connection may serve the
//! next request: open, with nothing of an earlier request still to write or to read (drained
//! for a bounded time, else discarded and replaced).

use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::wire::{self, Wire, WireError};
use crate::ids::TenantId;

/// How long a checkout waits for an idle connection's answers still in flight before it discards
/// the connection (see [`TenantManager::recycle`]).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pool of the data plane.
pub(crate) type PgPool = managed::Pool<TenantManager>;
/// A connection checked out of a [`PgPool`].
pub(crate) type PgObject = managed::Object<TenantManager>;

/// One open connection and what is known about its session.
pub struct PgConn {
    pub(crate) client: ClientWrapper,
    pub(crate) session_tenant: Option<TenantId>,
    /// The connection's one-exchange path (see [`super::wire`]).
    pub(crate) wire: Arc<Wire>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Something that can close an idle connection to free a budget permit.
pub(crate) trait Shed: Send + Sync {
    /// Closes the least recently used idle connection of any pool on the server; `false` if
    /// there is none.
    fn shed_one(&self) -> bool;
}

/// The connection budget of one database server.
pub(crate) struct Budget {
    permits: Arc<Semaphore>,
    size: usize,
    shed: Weak<dyn Shed>,
}

impl Budget {
    pub(crate) fn new(size: usize, shed: Weak<dyn Shed>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            shed,
        }
    }

    /// (permits held, budget), for metrics.
    pub(crate) fn usage(&self) -> (usize, usize) {
        (
            self.size.saturating_sub(self.permits.available_permits()),
            self.size,
        )
    }

    /// A permit for one more open connection; frees one held by an idle connection elsewhere on
    /// the server if there is none. Bounded by the pool's create timeout.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(p) = Arc::clone(&self.permits).try_acquire_owned() {
                return p;
            }
            let shed = self.shed.upgrade().is_some_and(|s| s.shed_one());
            // A closed connection frees its permit when its task drops it; wait a moment for that,
            // or for a checked-out connection of an evicted pool to be dropped.
            let wait = if shed { 1 } else { 10 };
            if let Ok(Ok(p)) = tokio::time::timeout(
                Duration::from_millis(wait),
                Arc::clone(&self.permits).acquire_owned(),
            )
            .await
            {
                return p;
            }
        }
    }
}

/// The pool's manager: tokio-postgres connections over [`wire::Splice`] sockets (deadpool's
/// client wrapper keeps each one's statement cache), plus the session state and the budget.
pub(crate) struct TenantManager {
    config: tokio_postgres::Config,
    budget: Option<Arc<Budget>>,
}

impl managed::Manager for TenantManager {
    type Type = PgConn;
    type Error = WireError;

    async fn create(&self) -> Result<PgConn, WireError> {
        let permit = match &self.budget {
            Some(b) => Some(b.acquire().await),
            None => None,
        };
        let (client, task, wire) = wire::connect(&self.config).await?;
        Ok(PgConn {
            client: ClientWrapper::new(client, task),
            session_tenant: None,
            wire,
            _permit: permit,
        })
    }

    /// The one place that decides whether an idle connection may serve the next request: it
    /// must be open and settled (see [`Wire::is_settled`]). A request that was abandoned, or
    /// returned on its error before its `ReadyForQuery` arrived, leaves answers in flight; they
    /// are drained (read up to their `ReadyForQuery`) for at most [`SETTLE_TIMEOUT`], else the
    /// connection is discarded.
    /// deadpool then tries the next idle connection or opens a new one, so a checkout never
    /// fails because an earlier request was abandoned. (A transaction left open is rolled back,
    /// or its connection discarded, before it comes back: see `conn.rs`.)
    async fn recycle(&self, conn: &mut PgConn, _: &Metrics) -> RecycleResult<WireError> {
        if !conn.wire.is_settled() {
            // Bounded; a connection still unsettled afterwards is discarded. Its queued requests
            // are still written (a setting still armed is written with its statement) and
            // answered before it closes.
            let _ = tokio::time::timeout(SETTLE_TIMEOUT, conn.wire.settle()).await;
            if !conn.wire.is_settled() && !conn.wire.is_broken() {
                return Err(RecycleError::message(
                    "connection still answering an abandoned request",
                ));
            }
        }
        if conn.client.is_closed() || conn.wire.is_broken() {
            return Err(RecycleError::message("connection closed"));
        }
        Ok(())
    }
}

/// A pool of at most `size` connections, each holding a permit of `budget` if given.
pub(crate) fn build(
    config: tokio_postgres::Config,
    size: usize,
    budget: Option<Arc<Budget>>,
    timeout: Duration,
) -> PgPool {
    managed::Pool::builder(TenantManager { config, budget })
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .build()
        .expect("a runtime is configured, so building a pool cannot fail")
}

/// Closes the least recently used idle connection among `pools`; `false` if none is idle.
pub(crate) fn shed_oldest_idle<'a>(pools: impl Iterator<Item = &'a PgPool>) -> bool {
    let pools: Vec<&PgPool> = pools.collect();
    let mut oldest: Option<(usize, std::time::Instant)> = None;
    for (i, pool) in pools.iter().enumerate() {
        pool.retain(|_, m| {
            let used = m.recycled.unwrap_or(m.created);
            if oldest.is_none_or(|(_, t)| used < t) {
                oldest = Some((i, used));
            }
            true
        });
    }
    let Some((i, at)) = oldest else { return false };
    let mut closed = false;
    pools[i].retain(|_, m| {
        if !closed && m.recycled.unwrap_or(m.created) == at {
            closed = true;
            return false;
        }
        true
    });
    closed
}
