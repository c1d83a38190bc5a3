//! [`TenantConn`] and [`TenantTx`]: the only way to run a query on tenant data. A transaction
//! starts with `BEGIN; SET LOCAL app.tenant_id = ...` sent in the same round trip as the first
//! statement (pipelined), so row-level security scopes every statement to the tenant and the
//! setting ends with the transaction: a pooled connection never carries one tenant's setting into
//! another tenant's request. The last statement can take `COMMIT` along in its round trip
//! (`*_and_commit`), so a one-statement request costs one round trip, as it would without tenancy.
//! A transaction dropped before it is committed, even while a statement is in flight, is rolled
//! back before its connection goes back to the pool (or the connection is discarded).

use std::pin::pin;

use deadpool_postgres::Object;
use futures_util::FutureExt as _;
use futures_util::future::join;
use tokio::sync::OwnedSemaphorePermit;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

use crate::ids::TenantId;

/// A checked-out connection bound to one tenant.
pub struct TenantConn {
    tenant: TenantId,
    client: Object,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for TenantConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConn")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl TenantConn {
    pub(crate) fn new(
        tenant: TenantId,
        client: Object,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            tenant,
            client,
            _permit: permit,
        }
    }

    /// The tenant this connection serves.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Starts a tenant-scoped transaction (lazily: nothing is sent until the first statement).
    #[must_use]
    pub fn begin(self) -> TenantTx {
        // The request's audit context rides along in the same round trip (base64: no quoting).
        let setup = match crate::audit::context::current_encoded() {
            Some(audit) => format!(
                "BEGIN; SET LOCAL app.tenant_id = '{}'; SET LOCAL app.audit = '{audit}'",
                self.tenant
            ),
            None => format!("BEGIN; SET LOCAL app.tenant_id = '{}'", self.tenant),
        };
        TenantTx {
            conn: Some(self),
            setup,
            begun: false,
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A transaction scoped to one tenant by `app.tenant_id`.
pub struct TenantTx {
    conn: Option<TenantConn>,
    setup: String,
    /// Whether `BEGIN` may have been sent: from then on, dropping the transaction rolls it back.
    begun: bool,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("begun", &self.begun)
            .finish_non_exhaustive()
    }
}

/// What a statement returns: rows, or the number of rows affected.
enum Run<'a> {
    Query(Params<'a>),
    Execute(Params<'a>),
}

enum Output {
    Rows(Vec<Row>),
    Count(u64),
}

impl Output {
    fn rows(self) -> Vec<Row> {
        match self {
            Self::Rows(r) => r,
            Self::Count(_) => Vec::new(),
        }
    }

    fn count(self) -> u64 {
        match self {
            Self::Count(n) => n,
            Self::Rows(r) => r.len() as u64,
        }
    }
}

impl TenantTx {
    /// The tenant of this transaction.
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.conn
            .as_ref()
            .expect("present until commit or drop")
            .tenant
    }

    /// Runs a statement and returns its rows.
    pub async fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        self.run(sql, Run::Query(params), false)
            .await
            .map(Output::rows)
    }

    /// Runs a statement expected to return at most one row.
    pub async fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        self.run(sql, Run::Execute(params), false)
            .await
            .map(Output::count)
    }

    /// Runs the transaction's last statement and commits, in one round trip: `COMMIT` is sent
    /// right behind the statement. If the statement fails in the server, the transaction is
    /// aborted and that `COMMIT` rolls it back; if it fails before it is sent (a parameter that
    /// does not encode), no `COMMIT` is sent and the transaction is rolled back as on drop. Either
    /// way the connection goes back to its pool outside any transaction.
    pub async fn query_and_commit(
        mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, Error> {
        self.run(sql, Run::Query(params), true)
            .await
            .map(Output::rows)
    }

    /// [`Self::query_and_commit`] for a statement expected to return at most one row.
    pub async fn query_opt_and_commit(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        Ok(self.query_and_commit(sql, params).await?.into_iter().next())
    }

    /// [`Self::query_and_commit`] returning the number of rows affected.
    pub async fn execute_and_commit(mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        self.run(sql, Run::Execute(params), true)
            .await
            .map(Output::count)
    }

    /// Sends a statement: behind `BEGIN; SET LOCAL` if it is the first, and with `COMMIT` behind
    /// it if `commit`; all in one round trip. Ordering relies on tokio-postgres queueing a
    /// request's messages when its future is first polled (it pipelines requests in that order),
    /// and on `join` polling its futures in argument order.
    async fn run(&mut self, sql: &str, run: Run<'_>, commit: bool) -> Result<Output, Error> {
        let first = !self.begun;
        // From here on BEGIN may be on the wire, so a drop must roll back. Set before anything is
        // sent: if this future is dropped while the statement is in flight, the connection must
        // not go back to the pool inside this tenant's transaction.
        self.begun = true;
        let conn = self.conn.as_ref().expect("present until commit or drop");
        let client = &conn.client;
        let setup = async {
            if first {
                client.batch_execute(&self.setup).await
            } else {
                Ok(())
            }
        };
        let mut commit_sent = false;
        let commit_sent_ref = &mut commit_sent;
        let statement = async move {
            // A cache hit does not wait, so the statement is queued right behind the setup. A miss
            // prepares first (one more round trip, once per connection and statement).
            let st = client.prepare_cached(sql).await?;
            let mut exec = pin!(async {
                match run {
                    Run::Query(p) => client.query(&st, p).await.map(Output::Rows),
                    Run::Execute(p) => client.execute(&st, p).await.map(Output::Count),
                }
            });
            if !commit {
                return exec.await;
            }
            // The first poll queues the statement. An error already means it failed in the client
            // and nothing was sent (or it failed in the server, if this thread was preempted long
            // enough for the answer to arrive): either way no COMMIT, earlier statements must not
            // be committed; the drop rolls back. A result already (same preemption) is followed
            // by the COMMIT alone.
            match exec.as_mut().now_or_never() {
                Some(Err(e)) => return Err(e),
                Some(Ok(out)) => {
                    *commit_sent_ref = true;
                    client.batch_execute("COMMIT").await?;
                    return Ok(out);
                }
                None => {}
            }
            *commit_sent_ref = true;
            let (out, committed) = join(exec, client.batch_execute("COMMIT")).await;
            let out = out?;
            committed?;
            Ok(out)
        };
        let (setup, out) = join(setup, statement).await;
        if commit_sent {
            // COMMIT (or, after an error, the rollback it turns into) ended the transaction.
            self.conn.take();
        }
        setup?;
        out
    }

    /// Commits; the connection goes back to its pool.
    pub async fn commit(mut self) -> Result<(), Error> {
        if self.begun {
            // The connection stays in `self` while COMMIT is in flight: if this future is dropped,
            // `Drop` rolls back (a ROLLBACK after a COMMIT is harmless) before reuse.
            let client = &self
                .conn
                .as_ref()
                .expect("present until commit or drop")
                .client;
            if let Err(e) = client.batch_execute("COMMIT").await {
                // The connection's state is unknown: never reuse it.
                if let Some(conn) = self.conn.take() {
                    drop(Object::take(conn.client));
                }
                return Err(e);
            }
        }
        // Back to the pool, idle and with no tenant setting.
        self.conn.take();
        Ok(())
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.begun {
            return;
        }
        // Not committed: roll back before the connection is reused, or discard it.
        let TenantConn {
            client, _permit, ..
        } = conn;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(client));
                    }
                    drop(_permit);
                });
            }
            Err(_) => drop(Object::take(client)),
        }
    }
}
