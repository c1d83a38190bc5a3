//! The one-exchange path: a one-statement request goes to PostgreSQL as
//! `Bind/Execute(set_config(...))` + `Bind/Execute(statement)` + one `Sync`, so the tenant setting
//! and the statement run in one implicit transaction and cost one exchange, on any connection.
//!
//! tokio-postgres ends every request with its own `Sync` and has no public way to send messages
//! without one. Rather than fork it, each data-plane connection runs over a [`Splice`]: the
//! socket, wrapped so that bytes armed by [`Wire::arm`] are written immediately before (in the
//! same write as) the next request tokio-postgres writes (the statement's `Bind/Execute/Sync`),
//! and their answers
//! (`ParseComplete`, `BindComplete`, `DataRow`, `CommandComplete`) are removed from what
//! tokio-postgres reads. tokio-postgres keeps everything else: authentication, its statement
//! cache, type lookups, `Row` decoding, the answers to the statement itself.
//!
//! Why this is safe:
//! - A pooled connection is used by one [`super::TenantTx`] at a time, which arms the setting
//!   only after its statement is prepared and with no other request in flight, and queues the
//!   statement in the same poll (see `conn.rs`): the armed bytes can only precede that statement.
//!   If the statement fails in the client before it is queued (a parameter that does not encode),
//!   nothing was written and the setting is disarmed.
//! - Both run under one `Sync`: if `set_config` fails, PostgreSQL skips the statement and its
//!   error reaches tokio-postgres in place of the statement's answer; if the statement fails, the
//!   implicit transaction rolls back, `set_config(.., true)` with it.
//! - Any answer other than the expected ones (or an error) while the setting's answers are being
//!   removed breaks the connection (an I/O error): it is closed, never reused.
//!
//! The `set_config` statements are prepared once per connection (named, so each request only
//! binds them); a statement is known to be prepared once its `ParseComplete` has been seen.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

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

/// Bytes to write before the next request, and the answers to remove.
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
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").finish_non_exhaustive()
    }
}

impl Wire {
    /// Arms the setting of `tenant` (kept for the session if `session`) and, for a write, of the
    /// audit context: written in front of the next request on this connection.
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

    /// Disarms a setting no request took (the statement failed before it was queued); true if
    /// it was still armed.
    pub(crate) fn disarm(&self) -> bool {
        self.armed.lock().expect("not poisoned").take().is_some()
    }

    fn take(&self) -> Option<Armed> {
        self.armed.lock().expect("not poisoned").take()
    }
}

/// The socket of a data-plane connection.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket that writes armed bytes in front of the next request and removes their answers.
pub(crate) struct Splice {
    socket: Socket,
    wire: std::sync::Arc<Wire>,
    /// Armed bytes being written (before the request that took them).
    out: Bytes,
    /// Read from the socket, not yet sorted into messages.
    inbox: BytesMut,
    /// What one read from the socket lands in.
    scratch: Vec<u8>,
    /// Whole messages for tokio-postgres.
    pass: BytesMut,
    /// Tags of answers still to remove, in order.
    remove: &'static [u8],
    /// The setting statement whose `ParseComplete` is among `remove`.
    parses: Option<usize>,
}

impl Splice {
    fn socket(&mut self) -> Pin<&mut (dyn AsyncWriteRead + Unpin + '_)> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s),
            Socket::Unix(s) => Pin::new(s),
        }
    }

    /// Sorts whole messages from `inbox` into `pass` (or drops the armed request's answers).
    fn sort(&mut self) -> io::Result<()> {
        loop {
            if self.inbox.len() < 5 {
                return Ok(());
            }
            let len =
                u32::from_be_bytes([self.inbox[1], self.inbox[2], self.inbox[3], self.inbox[4]])
                    as usize;
            if len < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad message length",
                ));
            }
            if self.inbox.len() < len + 1 {
                self.inbox.reserve(len + 1 - self.inbox.len());
                return Ok(());
            }
            let tag = self.inbox[0];
            let message = self.inbox.split_to(len + 1);
            if let Some((&expected, rest)) = self.remove.split_first() {
                match tag {
                    // Notices, notifications and parameter changes may come at any time.
                    b'N' | b'A' | b'S' => {}
                    t if t == expected => {
                        if t == b'1'
                            && let Some(i) = self.parses.take()
                        {
                            self.wire.prepared[i].store(true, Ordering::Release);
                        }
                        self.remove = rest;
                        continue;
                    }
                    // The setting failed: PostgreSQL skips the statement; its error goes to
                    // tokio-postgres as the statement's answer.
                    b'E' => self.remove = &[],
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "unexpected answer to the tenant setting",
                        ));
                    }
                }
            }
            self.pass.extend_from_slice(&message);
        }
    }
}

/// What a socket is.
trait AsyncWriteRead: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncWriteRead for T {}

impl AsyncRead for Splice {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pass.is_empty() {
                let n = this.pass.len().min(buf.remaining());
                buf.put_slice(&this.pass[..n]);
                this.pass.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut scratch = std::mem::take(&mut this.scratch);
            let mut read = ReadBuf::new(&mut scratch);
            let polled = this.socket().poll_read(cx, &mut read);
            let n = read.filled().len();
            this.inbox.extend_from_slice(&scratch[..n]);
            this.scratch = scratch;
            ready!(polled)?;
            if n == 0 {
                // End of stream.
                return Poll::Ready(Ok(()));
            }
            this.sort()?;
        }
    }
}

impl AsyncWrite for Splice {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if !buf.is_empty()
            && let Some(armed) = this.wire.take()
        {
            if !this.remove.is_empty() {
                return Poll::Ready(Err(io::Error::other(
                    "a tenant setting armed while another one is unanswered",
                )));
            }
            // The setting and the request in one write (one packet with TCP_NODELAY), buffered
            // here until written: flushing drains it.
            let mut out = BytesMut::with_capacity(armed.bytes.len() + buf.len());
            out.extend_from_slice(&armed.bytes);
            out.extend_from_slice(buf);
            this.out = out.freeze();
            this.remove = armed.answers;
            this.parses = armed.parses;
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        this.socket().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        this.socket().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        this.socket().poll_shutdown(cx)
    }
}

impl Splice {
    /// Writes what is buffered in `out`.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let out = self.out.clone();
            let n = ready!(self.socket().poll_write(cx, &out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

/// Opens a data-plane connection over a [`Splice`] and drives it on the runtime. Connects to the
/// configured hosts in order (TCP with `TCP_NODELAY`, or a Unix socket directory), within the
/// configured connect timeout.
pub(crate) async fn connect(
    config: &Config,
) -> Result<(Client, tokio::task::JoinHandle<()>, std::sync::Arc<Wire>), WireError> {
    let socket = match config.get_connect_timeout() {
        Some(t) => tokio::time::timeout(*t, open(config))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
        None => open(config).await?,
    };
    let wire = std::sync::Arc::new(Wire::default());
    let splice = Splice {
        socket,
        wire: std::sync::Arc::clone(&wire),
        out: Bytes::new(),
        inbox: BytesMut::with_capacity(8192),
        scratch: vec![0; 8192],
        pass: BytesMut::new(),
        remove: &[],
        parses: None,
    };
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
