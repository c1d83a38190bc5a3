//! The one-exchange path: a one-statement request goes to PostgreSQL as
//! `Bind/Execute(set_config(...))` + `Bind/Execute(statement)` + one `Sync`, so the tenant setting
//! and the statement run in one implicit transaction and cost one exchange, on any connection.
//!
//! tokio-postgres ends every request with its own `Sync` and has no public way to send messages
//! without one. Rather than fork it, each data-plane connection runs over a [`Splice`]: the
//! socket, wrapped so that bytes armed by [`Wire::arm`] are written immediately before the next
//! `Bind` tokio-postgres writes (the statement's, in the same write), and their answers
//! (`ParseComplete`, `BindComplete`, `DataRow`, `CommandComplete`) are removed from what
//! tokio-postgres reads. tokio-postgres keeps everything else: authentication, its statement
//! cache, type lookups, `Row` decoding, the answers to the statement itself.
//!
//! The splice finds both places by position in the protocol, never by assuming nothing else is
//! in flight: it walks the frontend messages it writes (counting those that each get exactly one
//! `ReadyForQuery`: `Sync`, `Query`, the startup message) and the backend messages it reads
//! (counting `ReadyForQuery`). The armed answers are the first ones after as many
//! `ReadyForQuery` as requests were written before the armed bytes. A request tokio-postgres
//! considers finished can still be owed its `ReadyForQuery`: a query returns on its
//! `ErrorResponse` (which PostgreSQL flushes at once, before it reaches the `Sync`), a prepare on
//! its `RowDescription`, an abandoned request is answered to nobody. Answers to those may arrive
//! after the next request is written; they are passed on to tokio-postgres, which routes them in
//! order. The counts also tell the pool whether a connection still owes answers
//! ([`Wire::in_flight`], see `pool.rs`).
//!
//! Why this is safe:
//! - The setting is written in front of the first `Bind` written after it was armed, which is
//!   its statement's: a [`super::TenantTx`] arms only after its statement is prepared, with no
//!   other request of its own in flight, and queues the statement in the same poll. Whatever
//!   else may still be queued ahead of it binds nothing (a dropped statement's `Close`), since a
//!   connection is handed out only once everything of the previous holder is written and
//!   answered (see `pool.rs`); so nothing but the statement can run under the setting. If the
//!   statement fails in the client before it is queued (a parameter that does not encode),
//!   nothing was written and the setting is disarmed. A connection is not handed out again while
//!   a setting is armed (its statement queued, not yet written), so a setting can never meet a
//!   later request's `Bind`.
//! - Both run under one `Sync`: if `set_config` fails, PostgreSQL skips the statement and its
//!   error reaches tokio-postgres in place of the statement's answer; if the statement fails, the
//!   implicit transaction rolls back, `set_config(.., true)` with it.
//! - Any answer other than the expected ones (or an error) where the setting's answers belong
//!   breaks the connection (an I/O error): it is closed, never reused.
//!
//! The `set_config` statements are prepared once per connection (named, so each request only
//! binds them); a statement counts as prepared once its `Parse` is written (and no longer if that
//! `Parse` fails).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

mod splice;
#[cfg(test)]
mod tests;

use splice::{Socket, Splice};

/// The setting statements: the tenant alone (reads, or writes outside a request), or the tenant
/// and the audit context (writes). `$2` says whether the tenant setting is transaction-local
/// (`true`), or kept as the session's value after commit (session reuse).
const SETTINGS: [(&str, &str); 2] = [
    (
        "platform_set_tenant",
        "SELECT set_config('app.tenant_id', $1, $2)",
    ),
    (
        "platform_set_tenant_audit",
        "SELECT set_config('app.tenant_id', $1, $2), set_config('app.audit', $3, true)",
    ),
];
const TEXT_OID: u32 = 25;
const BOOL_OID: u32 = 16;
/// Written bytes the splice buffers before it makes tokio-postgres wait for the socket.
const OUT_HIGH_WATER: usize = 64 * 1024;

/// Opening a data-plane connection failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("could not reach the database server")]
    Io(#[from] io::Error),
    #[error("the database server has no host to connect to")]
    NoHost,
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// Bytes to write before the statement's `Bind`, and the answers to remove.
struct Armed {
    bytes: Bytes,
    /// The backend message tags answering `bytes`, in order.
    answers: &'static [u8],
    /// The index in [`SETTINGS`] of the statement parsed by `bytes`, if it parses one.
    parses: Option<usize>,
}

/// The per-connection handle of the one-exchange path (shared with the connection's [`Splice`]).
#[derive(Default)]
pub(crate) struct Wire {
    armed: Mutex<Option<Armed>>,
    prepared: [AtomicBool; 2],
    /// Requests written that each get one `ReadyForQuery` (published by the splice).
    sent: AtomicU64,
    /// `ReadyForQuery` messages read (published by the splice).
    answered: AtomicU64,
    /// The splice failed or the server closed the connection.
    broken: AtomicBool,
    /// Woken when every request written has been answered, or the connection broke.
    settled: Notify,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").finish_non_exhaustive()
    }
}

impl Wire {
    /// Arms the setting of `tenant` (kept for the session if `session`) and, for a write, of the
    /// audit context: written in front of the next `Bind` written on this connection.
    pub(crate) fn arm(&self, tenant: &str, session: bool, audit: Option<&str>) {
        let which = usize::from(audit.is_some());
        let (name, sql) = SETTINGS[which];
        let parse = !self.prepared[which].load(Ordering::Acquire);
        let mut buf = BytesMut::with_capacity(160);
        if parse {
            let types: &[u32] = if audit.is_some() {
                &[TEXT_OID, BOOL_OID, TEXT_OID]
            } else {
                &[TEXT_OID, BOOL_OID]
            };
            frontend::parse(name, sql, types.iter().copied(), &mut buf)
                .expect("a constant statement encodes");
        }
        let session: &[u8] = if session { b"f" } else { b"t" };
        let values: [&[u8]; 3] = [tenant.as_bytes(), session, audit.unwrap_or("").as_bytes()];
        frontend::bind(
            "",
            name,
            [],
            values.into_iter().take(2 + which),
            |v, buf| {
                buf.put_slice(v);
                Ok(IsNull::No)
            },
            [],
            &mut buf,
        )
        .map_err(|_| ())
        .expect("text values encode");
        frontend::execute("", 0, &mut buf).expect("an unnamed portal encodes");
        let answers: &'static [u8] = if parse { b"12DC" } else { b"2DC" };
        *self.armed.lock().expect("not poisoned") = Some(Armed {
            bytes: buf.freeze(),
            answers,
            parses: parse.then_some(which),
        });
    }

    /// Disarms a setting no request took (the statement failed in the client before it was
    /// queued); true if it was still armed.
    pub(crate) fn disarm(&self) -> bool {
        self.armed.lock().expect("not poisoned").take().is_some()
    }

    fn take(&self) -> Option<Armed> {
        self.armed.lock().expect("not poisoned").take()
    }

    /// Requests written on this connection whose `ReadyForQuery` has not been read yet: answers
    /// still owed to a request that was abandoned, or that returned on its error.
    pub(crate) fn in_flight(&self) -> u64 {
        let answered = self.answered.load(Ordering::Acquire);
        self.sent.load(Ordering::Acquire).saturating_sub(answered)
    }

    /// Whether a setting is armed: its statement is queued but not written yet (a request
    /// abandoned right after it was queued), since a statement that fails before it is queued
    /// disarms its setting.
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.lock().expect("not poisoned").is_some()
    }

    /// Whether the connection owes nothing: no setting waiting for its statement, no answer in
    /// flight.
    pub(crate) fn is_settled(&self) -> bool {
        !self.is_armed() && self.in_flight() == 0
    }

    /// Whether the connection broke (the splice failed, or the server closed it).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Waits until the connection is settled (every request written, every answer read), or
    /// broke.
    pub(crate) async fn settle(&self) {
        loop {
            let notified = self.settled.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.is_settled() || self.is_broken() {
                return;
            }
            notified.await;
        }
    }
}

/// Opens a data-plane connection over a [`Splice`] and drives it on the runtime. Connects to the
/// configured hosts in order (TCP with `TCP_NODELAY`, or a Unix socket directory), within the
/// configured connect timeout.
pub(crate) async fn connect(
    config: &Config,
) -> Result<(Client, tokio::task::JoinHandle<()>, Arc<Wire>), WireError> {
    let socket = match config.get_connect_timeout() {
        Some(t) => tokio::time::timeout(*t, open(config))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
        None => open(config).await?,
    };
    let wire = Arc::new(Wire::default());
    let splice = Splice::new(socket, Arc::clone(&wire));
    let (client, connection) = config.connect_raw(splice, NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "data-plane connection closed with an error");
        }
    });
    Ok((client, task, wire))
}

async fn open(config: &Config) -> Result<Socket, WireError> {
    let ports = config.get_ports();
    let mut last = None;
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let socket = match host {
            Host::Tcp(name) => TcpStream::connect((name.as_str(), port))
                .await
                .and_then(|s| s.set_nodelay(true).map(|()| Socket::Tcp(s))),
            Host::Unix(dir) => UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                .await
                .map(Socket::Unix),
        };
        match socket {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(WireError::NoHost, WireError::Io))
}
