//! [`TenantConn`] and [`TenantTx`]: the only way to run a query on tenant data. Row-level
//! security scopes every statement to the tenant in `app.tenant_id`, and every statement runs only
//! after that setting is known to hold the request's tenant:
//!
//! - A connection not known to be set for the tenant starts the transaction with
//!   `BEGIN; SET app.tenant_id = ...` sent in the same round trip as the first statement
//!   (pipelined). If anything in the transaction fails, the statements behind it fail too and the
//!   rollback restores the previous value, which is then treated as unknown. After a successful
//!   `COMMIT`, the connection is known to be set for this tenant.
//! - A one-statement request (`*_and_commit` first) on a connection already set for its tenant is
//!   sent alone, as an implicit transaction: one exchange, as it would be without tenancy.
//! - Several statements on a set connection run in `BEGIN; SET LOCAL app.tenant_id = ...`.
//! - Behind a transaction-mode pooler (session reuse off), every transaction is
//!   `BEGIN; SET LOCAL app.tenant_id = ...`, and the setting ends with it.
//!
//! So a connection never serves one tenant's request under another tenant's setting: the value a
//! request relies on was either committed for that same tenant on that same connection, or set in
//! the request's own transaction. The last statement can take `COMMIT` along in its round trip
//! (`*_and_commit`). A transaction dropped before it is committed, even while a statement is in
//! flight, is rolled back before its connection goes back to the pool (or the connection is
//! discarded).

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::join;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};
use tracing::Instrument as _;

use super::pool::PgObject;
use crate::ids::TenantId;

/// Post-commit hints: the tenant of each committed transaction that asked for one (it enqueued
/// a job), for the job workers of this process (see the `jobs` crate).
pub type CommitHints = tokio::sync::broadcast::Sender<TenantId>;

/// A checked-out connection bound to one tenant.
pub struct TenantConn {
    tenant: TenantId,
    client: PgObject,
    hints: CommitHints,
    /// Counts requests sent alone; `None` when session reuse is off.
    reuses: Option<Arc<AtomicU64>>,
    /// Counts one-statement requests sent with their setting in one exchange.
    exchanges: Arc<AtomicU64>,
    /// Told the tenant after a transaction that wrote has committed (the audit sealer's hint).
    commit_hint: Option<CommitHint>,
}

/// Called with the tenant after a transaction of it that wrote has committed: a post-commit hint
/// (the audit sealer learns where there are events to seal). Must not block.
pub type CommitHint = Arc<dyn Fn(TenantId) + Send + Sync>;

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
        client: PgObject,
        reuses: Option<Arc<AtomicU64>>,
        exchanges: Arc<AtomicU64>,
        commit_hint: Option<CommitHint>,
        hints: CommitHints,
    ) -> Self {
        Self {
            tenant,
            client,
            hints,
            reuses,
            exchanges,
            commit_hint,
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
        let reuse = self.reuses.is_some();
        let ready = reuse && self.client.session_tenant == Some(self.tenant);
        TenantTx {
            conn: Some(self),
            begun: false,
            ready,
            sets_session: reuse && !ready,
            failed: false,
            hint: false,
            // The request's audit context rides along with the setup (base64: no quoting).
            audit: crate::context::current_encoded(),
            wrote: false,
        }
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A transaction scoped to one tenant by `app.tenant_id`.
pub struct TenantTx {
    conn: Option<TenantConn>,
    /// Whether `BEGIN` may have been sent: from then on, dropping the transaction rolls it back.
    begun: bool,
    /// The connection's session setting is this tenant's already.
    ready: bool,
    /// The transaction sets the session value; a successful commit makes the connection ready.
    sets_session: bool,
    /// A statement failed: the transaction is aborted and its commit is a rollback.
    failed: bool,
    /// `app.audit` for the audit triggers (the request's context), if there is a request.
    audit: Option<String>,
    /// A statement that may write was sent: a commit is hinted (see [`CommitHint`]).
    wrote: bool,
    /// Publish the tenant on the data plane's commit hints once this transaction commits.
    hint: bool,
}

/// Whether `sql` only reads, so it needs no audit context: a `SELECT` calling none of the
/// platform's own functions (`platform_*`, which append to the audit chain).
fn reads_only(sql: &str) -> bool {
    let s = sql.trim_start();
    s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("select")) && !s.contains("platform_")
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

    /// Whether a statement may have been sent: `false` means the transaction holds no effect
    /// (dropping it sends nothing), so the job queue can complete such jobs together.
    #[must_use]
    pub fn is_begun(&self) -> bool {
        self.begun
    }

    /// Asks for a post-commit hint: once this transaction has committed, its tenant is published
    /// to the data plane's [`CommitHints`] (nothing is published on rollback).
    pub fn hint_after_commit(&mut self) {
        self.hint = true;
    }

    fn publish_hint(&self, conn: &TenantConn) {
        if self.hint {
            // No receiver (no worker in this process) is fine: the sweep finds the work.
            let _ = conn.hints.send(conn.tenant);
        }
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

    /// Sends a statement: behind the transaction's setup if it is the first, and with `COMMIT`
    /// behind it if `commit`; all in one round trip. Ordering relies on tokio-postgres queueing a
    /// request's messages when its future is first polled (it pipelines requests in that order),
    /// and on `join` polling its futures in argument order.
    async fn run(&mut self, sql: &str, run: Run<'_>, commit: bool) -> Result<Output, Error> {
        let out = self
            .send(sql, run, commit)
            .instrument(statement_span(sql))
            .await;
        if out.is_err() {
            self.failed = true;
        }
        out
    }

    async fn send(&mut self, sql: &str, run: Run<'_>, commit: bool) -> Result<Output, Error> {
        let first = !self.begun;
        // From here on BEGIN may be on the wire, so a drop must roll back. Set before anything is
        // sent: if this future is dropped while the statement is in flight, the connection must
        // not go back to the pool inside this tenant's transaction.
        self.begun = true;
        self.wrote |= !reads_only(sql);
        let conn = self.conn.as_mut().expect("present until commit or drop");
        let tenant = conn.tenant;
        if first && commit && self.ready && (self.audit.is_none() || reads_only(sql)) {
            // One statement on a connection set for this tenant, which writes nothing the audit
            // triggers would record: an implicit transaction alone.
            let client = &conn.client.client;
            let st = client.prepare_cached(sql).await;
            let out = match st {
                Ok(st) => match run {
                    Run::Query(p) => client.query(&st, p).await.map(Output::Rows),
                    Run::Execute(p) => client.execute(&st, p).await.map(Output::Count),
                },
                Err(e) => Err(e),
            };
            if let Some(c) = self.conn.take() {
                if out.is_ok() {
                    self.publish_hint(&c);
                }
                if let Some(n) = &c.reuses {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                if out.is_ok() && self.wrote {
                    hint(c.commit_hint.as_ref(), tenant);
                }
            }
            return out;
        }
        if first && commit {
            return self.send_one(sql, run).await;
        }
        let audit = self
            .audit
            .as_deref()
            .map_or_else(String::new, |a| format!("; SET LOCAL app.audit = '{a}'"));
        let setup = if !first {
            None
        } else if self.sets_session {
            // The session value is unknown until this transaction commits.
            conn.client.session_tenant = None;
            Some(format!("BEGIN; SET app.tenant_id = '{tenant}'{audit}"))
        } else {
            Some(format!(
                "BEGIN; SET LOCAL app.tenant_id = '{tenant}'{audit}"
            ))
        };
        let client = &conn.client.client;
        let setup = async {
            match &setup {
                Some(sql) => client.batch_execute(sql).await,
                None => Ok(()),
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
        let out = setup.and(out);
        if commit_sent {
            // COMMIT (or, after an error, the rollback it turns into) ended the transaction.
            if let Some(mut c) = self.conn.take()
                && out.is_ok()
                && !self.failed
            {
                if self.sets_session {
                    c.client.session_tenant = Some(tenant);
                }
                if self.wrote {
                    hint(c.commit_hint.as_ref(), tenant);
                }
                self.publish_hint(&c);
            }
        }
        out
    }

    /// A one-statement request in one exchange (see [`super::wire`]): the tenant setting (and,
    /// for a write, the audit context) and the statement, in one implicit transaction under one
    /// `Sync`. The setting is transaction-local, or kept as the session's value after the commit
    /// when the connection should become set for the tenant.
    async fn send_one(&mut self, sql: &str, run: Run<'_>) -> Result<Output, Error> {
        let conn = self.conn.as_mut().expect("present until commit or drop");
        let tenant = conn.tenant;
        let st = match conn.client.client.prepare_cached(sql).await {
            Ok(st) => st,
            Err(e) => {
                // Nothing ran: the connection goes back as it was.
                self.conn.take();
                return Err(e);
            }
        };
        if self.sets_session {
            // Unknown until the exchange commits.
            conn.client.session_tenant = None;
        }
        let audit = if reads_only(sql) {
            None
        } else {
            self.audit.as_deref()
        };
        let out = {
            let client = &conn.client.client;
            let wire = &conn.client.wire;
            let mut exec = pin!(async {
                match run {
                    Run::Query(p) => client.query(&st, p).await.map(Output::Rows),
                    Run::Execute(p) => client.execute(&st, p).await.map(Output::Count),
                }
            });
            // Armed and queued in the same poll, with no other request of this transaction in
            // flight: the setting is written in front of this statement's Bind, the next one on
            // the connection (see `wire.rs`). The first poll queues the statement unless it fails
            // in the client (a parameter that does not encode), in which case nothing was
            // written and the setting is disarmed. If this future is dropped after that poll, the
            // statement is still written, with its setting.
            wire.arm(&tenant.to_string(), self.sets_session, audit);
            match exec.as_mut().now_or_never() {
                Some(out) => {
                    wire.disarm();
                    out
                }
                None => exec.await,
            }
        };
        // The exchange ended with its Sync: committed, or rolled back with its setting.
        let mut c = self.conn.take().expect("present until commit or drop");
        if out.is_ok() {
            c.exchanges.fetch_add(1, Ordering::Relaxed);
            self.publish_hint(&c);
            if self.wrote {
                hint(c.commit_hint.as_ref(), tenant);
            }
            if self.sets_session {
                c.client.session_tenant = Some(tenant);
            }
        }
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
                .client
                .client;
            if let Err(e) = client.batch_execute("COMMIT").await {
                // The connection's state is unknown: never reuse it.
                if let Some(conn) = self.conn.take() {
                    drop(PgObject::take(conn.client));
                }
                return Err(e);
            }
            if !self.failed
                && let Some(c) = self.conn.as_ref()
            {
                self.publish_hint(c);
            }
            // After a failed statement, COMMIT rolled back: the session value is still unknown.
            if !self.failed
                && let Some(c) = self.conn.as_mut()
            {
                if self.sets_session {
                    c.client.session_tenant = Some(c.tenant);
                }
                if self.wrote {
                    hint(c.commit_hint.as_ref(), c.tenant);
                }
            }
        }
        // Back to the pool, idle.
        self.conn.take();
        Ok(())
    }
}

/// A client span around one data-plane statement, for traces (target `db`: the log filters it
/// out, and with traces off its call site is disabled and nothing is built). It carries the
/// statement's template, never its parameters.
fn statement_span(sql: &str) -> tracing::Span {
    tracing::info_span!(
        target: "db",
        "db",
        otel.name = sql.split_whitespace().next().unwrap_or("statement"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = sql.split_whitespace().next().unwrap_or(""),
        db.query.text = sql,
    )
}

fn hint(f: Option<&CommitHint>, tenant: TenantId) {
    if let Some(f) = f {
        f(tenant);
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.begun {
            return;
        }
        // Not committed: roll back before the connection is reused, or discard it.
        let TenantConn { client, .. } = conn;
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if client.client.batch_execute("ROLLBACK").await.is_err() {
                        drop(PgObject::take(client));
                    }
                });
            }
            Err(_) => drop(PgObject::take(client)),
        }
    }
}
