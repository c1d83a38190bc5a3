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
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

#[cfg(test)]
mod tests;

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

/// The socket of a data-plane connection.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket that writes armed bytes in front of the next `Bind` and removes their answers.
pub(crate) struct Splice {
    socket: Socket,
    wire: Arc<Wire>,
    /// Accepted from tokio-postgres, not yet sorted into whole frontend messages.
    stage: BytesMut,
    /// Sorted (armed bytes inserted), to write to the socket.
    out: BytesMut,
    /// Bytes of the frontend message being moved from `stage` to `out` still to move.
    out_left: usize,
    /// The next frontend message is the untagged startup message.
    startup: bool,
    /// Frontend messages written that each get one `ReadyForQuery`.
    sent: u64,
    /// Read from the socket, not yet sorted into messages.
    inbox: BytesMut,
    /// What one read from the socket lands in.
    scratch: Vec<u8>,
    /// Whole messages for tokio-postgres.
    pass: BytesMut,
    /// `ReadyForQuery` messages read.
    answered: u64,
    /// Tags of answers still to remove, in order.
    remove: &'static [u8],
    /// The answers to remove start once this many `ReadyForQuery` have been read.
    remove_after: u64,
    /// The setting statement whose `ParseComplete` is among `remove`.
    parses: Option<usize>,
}

/// The tag and length (counting itself, not the tag) of the message at the start of `b`.
fn header(b: &[u8]) -> io::Result<Option<(u8, usize)>> {
    if b.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
    if len < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad message length",
        ));
    }
    Ok(Some((b[0], len)))
}

impl Splice {
    fn new(socket: Socket, wire: Arc<Wire>) -> Self {
        Self {
            socket,
            wire,
            stage: BytesMut::new(),
            out: BytesMut::with_capacity(8192),
            out_left: 0,
            startup: true,
            // The startup message is answered by one ReadyForQuery too.
            sent: 1,
            inbox: BytesMut::with_capacity(8192),
            scratch: vec![0; 8192],
            pass: BytesMut::new(),
            answered: 0,
            remove: &[],
            remove_after: 0,
            parses: None,
        }
    }

    fn socket(&mut self) -> Pin<&mut (dyn AsyncWriteRead + Unpin + '_)> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s),
            Socket::Unix(s) => Pin::new(s),
        }
    }

    fn broke(&self) {
        self.wire.broken.store(true, Ordering::Release);
        self.wire.settled.notify_waiters();
    }

    /// Moves whole frontend messages from `stage` to `out`, counting the requests that will be
    /// answered by a `ReadyForQuery`, and inserts armed bytes in front of the next `Bind`. A
    /// message whose header is not staged yet waits for the rest.
    fn sort_out(&mut self) -> io::Result<()> {
        loop {
            if self.out_left > 0 {
                let n = self.out_left.min(self.stage.len());
                if n == 0 {
                    return Ok(());
                }
                self.out.extend_from_slice(&self.stage[..n]);
                self.stage.advance(n);
                self.out_left -= n;
                continue;
            }
            if self.startup {
                // Length-prefixed, no tag.
                if self.stage.len() < 4 {
                    return Ok(());
                }
                let len = u32::from_be_bytes([
                    self.stage[0],
                    self.stage[1],
                    self.stage[2],
                    self.stage[3],
                ]) as usize;
                self.startup = false;
                self.out_left = len.max(4);
                continue;
            }
            let Some((tag, len)) = header(&self.stage)? else {
                return Ok(());
            };
            match tag {
                b'B' => {
                    if let Some(armed) = self.wire.take() {
                        self.put_armed(armed)?;
                    }
                }
                b'S' | b'Q' => {
                    self.sent += 1;
                    self.wire.sent.store(self.sent, Ordering::Release);
                }
                _ => {}
            }
            self.out_left = len + 1;
        }
    }

    /// Writes `armed` next, and expects its answers after those of every request written so far.
    fn put_armed(&mut self, armed: Armed) -> io::Result<()> {
        if !self.remove.is_empty() {
            return Err(io::Error::other(
                "a tenant setting armed while another one is unanswered",
            ));
        }
        self.out.extend_from_slice(&armed.bytes);
        self.remove = armed.answers;
        self.remove_after = self.sent;
        self.parses = armed.parses;
        if let Some(i) = armed.parses {
            // Parsed from now on; undone below if its ParseComplete turns out an error.
            self.wire.prepared[i].store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Sorts whole messages from `inbox` into `pass` (or drops the armed request's answers).
    fn sort(&mut self) -> io::Result<()> {
        loop {
            let Some((tag, len)) = header(&self.inbox)? else {
                return Ok(());
            };
            if self.inbox.len() < len + 1 {
                self.inbox.reserve(len + 1 - self.inbox.len());
                return Ok(());
            }
            let message = self.inbox.split_to(len + 1);
            if self.answered == self.remove_after
                && let Some((&expected, rest)) = self.remove.split_first()
            {
                match tag {
                    // Notices, notifications and parameter changes may come at any time.
                    b'N' | b'A' | b'S' => {}
                    t if t == expected => {
                        if t == b'1' {
                            self.parses = None;
                        }
                        self.remove = rest;
                        continue;
                    }
                    // The setting failed: PostgreSQL skips the statement; its error goes to
                    // tokio-postgres as the statement's answer.
                    b'E' => {
                        if expected == b'1'
                            && let Some(i) = self.parses.take()
                        {
                            self.wire.prepared[i].store(false, Ordering::Release);
                        }
                        self.remove = &[];
                    }
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "unexpected answer to the tenant setting",
                        ));
                    }
                }
            }
            // ReadyForQuery answers one request. So does CopyInResponse: copy-in (tokio-postgres
            // sends it through the extended protocol) has two Syncs, and the server ignores the
            // one sent with Bind/Execute, which it reads in copy-in mode.
            if matches!(tag, b'Z' | b'G') {
                self.answered += 1;
                self.wire.answered.store(self.answered, Ordering::Release);
                if self.answered >= self.sent {
                    self.wire.settled.notify_waiters();
                }
            }
            self.pass.extend_from_slice(&message);
        }
    }

    /// Writes what is buffered in `out`.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let polled = self.socket().poll_write(cx, &out);
            self.out = out;
            let n = ready!(polled)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
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
            if let Err(e) = ready!(polled) {
                this.broke();
                return Poll::Ready(Err(e));
            }
            if n == 0 {
                // End of stream.
                this.broke();
                return Poll::Ready(Ok(()));
            }
            if let Err(e) = this.sort() {
                this.broke();
                return Poll::Ready(Err(e));
            }
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
        if this.out.len() >= OUT_HIGH_WATER {
            ready!(this.drain(cx))?;
        }
        // Accepted whole (tokio-postgres hands over whole messages), sorted, then written as far
        // as the socket takes it now; flushing writes the rest.
        this.stage.extend_from_slice(buf);
        if let Err(e) = this.sort_out() {
            this.broke();
            return Poll::Ready(Err(e));
        }
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
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
