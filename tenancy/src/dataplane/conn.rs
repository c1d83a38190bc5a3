//! [`TenantConn`] and [`TenantTx`]: the only way to run a query on tenant data. A transaction
//! starts with `BEGIN; SET LOCAL app.tenant_id = ...` sent in the same round trip as the first
//! statement (pipelined), so row-level security scopes every statement to the tenant and the
//! setting ends with the transaction: a pooled connection never carries one tenant's setting into
//! another tenant's request. A transaction dropped before `commit` is rolled back before its
//! connection goes back to the pool (or the connection is discarded).

use deadpool_postgres::Object;
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
        let setup = format!("BEGIN; SET LOCAL app.tenant_id = '{}'", self.tenant);
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
    begun: bool,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("begun", &self.begun)
            .finish_non_exhaustive()
    }
}

impl TenantTx {
    fn client(&self) -> &Object {
        &self
            .conn
            .as_ref()
            .expect("present until commit or drop")
            .client
    }

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
        // From the moment BEGIN may be on the wire, a drop (error, cancelled request) must roll
        // back before the connection is reused.
        let first = !self.begun;
        self.begun = true;
        let client = self.client();
        let statement = async {
            let st = client.prepare_cached(sql).await?;
            client.query(&st, params).await
        };
        if !first {
            return statement.await;
        }
        // First statement: BEGIN + SET LOCAL and the statement go out together.
        let (setup, rows) = join(client.batch_execute(&self.setup), statement).await;
        setup?;
        rows
    }

    /// Runs a statement expected to return at most one row.
    pub async fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs a statement and returns the number of rows it affected.
    pub async fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        // From the moment BEGIN may be on the wire, a drop (error, cancelled request) must roll
        // back before the connection is reused.
        let first = !self.begun;
        self.begun = true;
        let client = self.client();
        let statement = async {
            let st = client.prepare_cached(sql).await?;
            client.execute(&st, params).await
        };
        if !first {
            return statement.await;
        }
        let (setup, n) = join(client.batch_execute(&self.setup), statement).await;
        setup?;
        n
    }

    /// Commits; the connection goes back to its pool.
    pub async fn commit(mut self) -> Result<(), Error> {
        if self.begun {
            // The connection stays in `self` while COMMIT is in flight: if this future is dropped,
            // `Drop` rolls back (a ROLLBACK after a COMMIT is harmless) before reuse.
            if let Err(e) = self.client().batch_execute("COMMIT").await {
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
