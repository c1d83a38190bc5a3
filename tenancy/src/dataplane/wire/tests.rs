//! The splice's state machine against a scripted server on the other end of a socket pair: where
//! the armed setting is written, which answers are removed, and what the pool learns about
//! answers still owed. The orderings here are the ones a real server produces only sometimes
//! (an `ErrorResponse` read before its `ReadyForQuery`, another request queued in the same write).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::FutureExt as _;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use super::{Socket, Splice, Wire};

fn backend(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&u32::try_from(body.len() + 4).expect("small").to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn ready() -> Vec<u8> {
    backend(b'Z', b"I")
}

fn error() -> Vec<u8> {
    backend(b'E', b"SERROR\0C22012\0Mdivision by zero\0\0")
}

/// The answers to an armed setting whose statement is already prepared, then to a one-row
/// statement: `BindComplete`, `DataRow`, `CommandComplete` each.
fn bind_row_complete() -> Vec<u8> {
    [
        backend(b'2', b""),
        backend(b'D', &[0, 1, 0, 0, 0, 1, b'x']),
        backend(b'C', b"SELECT 1\0"),
    ]
    .concat()
}

/// `Bind` (unnamed portal, no parameters) + `Execute` + `Sync`, as tokio-postgres sends a query.
fn request(statement: &str, buf: &mut BytesMut) {
    frontend::bind(
        "",
        statement,
        [],
        std::iter::empty::<&[u8]>(),
        |_, _| Ok(IsNull::No),
        [],
        buf,
    )
    .map_err(|_| ())
    .expect("encodes");
    frontend::execute("", 0, buf).expect("encodes");
    frontend::sync(buf);
}

/// A splice past its startup (one untagged message answered by `ReadyForQuery`), and the server
/// end of its socket.
async fn connected() -> (Splice, UnixStream, Arc<Wire>) {
    let (client, server) = UnixStream::pair().expect("socket pair");
    let wire = Arc::new(Wire::default());
    let mut splice = Splice::new(Socket::Unix(client), Arc::clone(&wire));
    write(&mut splice, &[0, 0, 0, 8, 0, 3, 0, 0]).await;
    let mut startup = [0; 8];
    server_read(&server, &mut startup).await;
    server_send(&server, &ready()).await;
    assert_eq!(
        received(&mut splice, 1).await.expect("startup answer"),
        b"Z"
    );
    assert_eq!(wire.in_flight(), 0);
    (splice, server, wire)
}

async fn write(splice: &mut Splice, bytes: &[u8]) {
    let n = poll_fn(|cx| Pin::new(&mut *splice).poll_write(cx, bytes))
        .await
        .expect("write");
    assert_eq!(n, bytes.len());
    poll_fn(|cx| Pin::new(&mut *splice).poll_flush(cx))
        .await
        .expect("flush");
}

async fn server_read(server: &UnixStream, into: &mut [u8]) {
    let mut at = 0;
    while at < into.len() {
        server.readable().await.expect("readable");
        match server.try_read(&mut into[at..]) {
            Ok(0) => panic!("the splice closed the socket"),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn server_send(server: &UnixStream, bytes: &[u8]) {
    let mut at = 0;
    while at < bytes.len() {
        server.writable().await.expect("writable");
        match server.try_write(&bytes[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// The next `count` frontend messages the server reads: tag, and for a `Bind` its statement.
async fn server_messages(server: &UnixStream, count: usize) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    for _ in 0..count {
        let mut header = [0; 5];
        server_read(server, &mut header).await;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0; len - 4];
        server_read(server, &mut body).await;
        let name = if header[0] == b'B' {
            let names: Vec<&[u8]> = body.split(|&b| b == 0).collect();
            String::from_utf8(names[1].to_vec()).expect("utf-8")
        } else {
            String::new()
        };
        out.push((header[0], name));
    }
    out
}

/// The tags of the next `count` whole messages the splice hands to its reader.
async fn received(splice: &mut Splice, count: usize) -> io::Result<Vec<u8>> {
    let mut got: Vec<u8> = Vec::new();
    let mut tags = Vec::new();
    loop {
        while got.len() >= 5 {
            let len = u32::from_be_bytes([got[1], got[2], got[3], got[4]]) as usize;
            if got.len() < len + 1 {
                break;
            }
            tags.push(got[0]);
            got.drain(..=len);
        }
        if tags.len() >= count {
            assert!(got.is_empty(), "more than {count} messages");
            return Ok(tags);
        }
        let mut buf = [0; 1024];
        let mut read = ReadBuf::new(&mut buf);
        poll_fn(|cx| Pin::new(&mut *splice).poll_read(cx, &mut read)).await?;
        if read.filled().is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(read.filled());
    }
}

#[tokio::test]
async fn answers_still_owed_to_an_earlier_request_pass_before_the_settings_are_removed() {
    let (mut splice, server, wire) = connected().await;
    let tenant = "0190b5a0-0000-7000-8000-000000000001";

    // A request fails: its ErrorResponse is read, its ReadyForQuery not yet (PostgreSQL flushes
    // the error at once and the ReadyForQuery after reaching the Sync).
    let mut buf = BytesMut::new();
    request("s1", &mut buf);
    write(&mut splice, &buf).await;
    server_messages(&server, 3).await;
    server_send(&server, &error()).await;
    assert_eq!(received(&mut splice, 1).await.expect("error"), b"E");
    assert_eq!(wire.in_flight(), 1, "the ReadyForQuery is still owed");
    assert!(wire.settle().now_or_never().is_none());

    // The next request, in one exchange, is written before that ReadyForQuery is read.
    wire.arm(tenant, false, None);
    let mut buf = BytesMut::new();
    request("s2", &mut buf);
    write(&mut splice, &buf).await;
    let written = server_messages(&server, 6).await;
    let tags: Vec<u8> = written.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"PBEBES", "{written:?}");
    assert_eq!(written[1].1, "platform_set_tenant");
    assert_eq!(written[3].1, "s2");
    assert_eq!(wire.in_flight(), 2);

    // The late ReadyForQuery, then the setting's answers, then the statement's.
    let answers = [
        ready(),
        backend(b'1', b""),
        bind_row_complete(),
        bind_row_complete(),
        ready(),
    ]
    .concat();
    server_send(&server, &answers).await;
    assert_eq!(
        received(&mut splice, 5)
            .await
            .expect("no answer is mistaken for the setting's"),
        b"Z2DCZ"
    );
    assert_eq!(wire.in_flight(), 0);
    assert!(wire.settle().now_or_never().is_some());
    assert!(!wire.is_broken());
}

#[tokio::test]
async fn the_setting_goes_in_front_of_the_statements_bind_not_of_what_is_queued_ahead() {
    let (mut splice, server, wire) = connected().await;
    wire.arm("0190b5a0-0000-7000-8000-000000000002", true, None);

    // Queued in the same write ahead of the statement: a statement's Close (sent when a
    // tokio-postgres Statement is dropped, answered to nobody).
    let mut buf = BytesMut::new();
    frontend::close(b'S', "s9", &mut buf).expect("encodes");
    frontend::sync(&mut buf);
    request("s2", &mut buf);
    write(&mut splice, &buf).await;
    let written = server_messages(&server, 8).await;
    let tags: Vec<u8> = written.iter().map(|(t, _)| *t).collect();
    assert_eq!(tags, b"CSPBEBES", "{written:?}");
    assert_eq!(written[3].1, "platform_set_tenant");
    assert_eq!(written[5].1, "s2");
    assert_eq!(wire.in_flight(), 2);

    let answers = [
        backend(b'3', b""),
        ready(),
        backend(b'1', b""),
        bind_row_complete(),
        bind_row_complete(),
        ready(),
    ]
    .concat();
    server_send(&server, &answers).await;
    assert_eq!(received(&mut splice, 6).await.expect("answers"), b"3Z2DCZ");
    assert_eq!(wire.in_flight(), 0);
    assert!(wire.is_settled());
}

#[tokio::test]
async fn an_unexpected_answer_where_the_settings_belong_breaks_the_connection() {
    let (mut splice, server, wire) = connected().await;
    wire.arm("0190b5a0-0000-7000-8000-000000000003", false, None);
    let mut buf = BytesMut::new();
    request("s1", &mut buf);
    write(&mut splice, &buf).await;
    server_messages(&server, 6).await;
    // A RowDescription where the setting's ParseComplete belongs.
    server_send(&server, &backend(b'T', &[0, 0])).await;
    assert!(received(&mut splice, 1).await.is_err());
    assert!(wire.is_broken());
    assert!(
        wire.settle().now_or_never().is_some(),
        "a broken wire owes nothing"
    );
}

#[tokio::test]
async fn a_setting_whose_statement_is_not_written_yet_keeps_the_connection_unsettled() {
    let (mut splice, server, wire) = connected().await;
    wire.arm("0190b5a0-0000-7000-8000-000000000004", false, None);
    // Only a Close goes out: the setting waits for a Bind.
    let mut buf = BytesMut::new();
    frontend::close(b'S', "s9", &mut buf).expect("encodes");
    frontend::sync(&mut buf);
    write(&mut splice, &buf).await;
    let written = server_messages(&server, 2).await;
    assert_eq!(written.iter().map(|(t, _)| *t).collect::<Vec<_>>(), b"CS");
    server_send(&server, &[backend(b'3', b""), ready()].concat()).await;
    assert_eq!(received(&mut splice, 2).await.expect("answers"), b"3Z");
    assert_eq!(wire.in_flight(), 0);
    assert!(!wire.is_settled(), "a setting waiting for its statement");
    assert!(wire.settle().now_or_never().is_none());
    assert!(wire.disarm());
    assert!(wire.is_settled());
}
