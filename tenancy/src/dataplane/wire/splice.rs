//! The [`Splice`]: the socket under a data-plane connection, which writes the armed setting in
//! front of the statement's `Bind` and removes its answers (see the parent module for why this
//! is safe).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::{Armed, OUT_HIGH_WATER, Wire};

/// The socket of a data-plane connection.
pub(super) enum Socket {
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
    pub(super) fn new(socket: Socket, wire: Arc<Wire>) -> Self {
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
