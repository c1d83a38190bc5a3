//! A request can end, for its caller, before its connection has read all of its answers: a query
//! returns on its `ErrorResponse`, which PostgreSQL flushes at once, while the `ReadyForQuery`
//! that ends the exchange is sent only once the server has reached the `Sync` (and, under load,
//! arrives later); an abandoned request is answered to nobody. These tests put a proxy between
//! the data plane and PostgreSQL that holds the server's answers back after an error, so the
//! `ReadyForQuery` arrives late every time, and check that the next request on the same
//! connection (the pool has one) never fails and never runs under the failed request's setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use platform_tests::{TestApp, eventually};
use tenancy::catalog::Tenant;
use tenancy::dataplane::{DataPlane, PoolSizes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{INSERT_PROJECT, projects_seen, setting_seen, tenant};

/// A TCP proxy in front of the primary cluster. Armed with [`Proxy::hold_after_next_error`], it
/// forwards the server's next `ErrorResponse` and holds back whatever the server sends after it,
/// until the client writes again or [`Proxy::release`] is called.
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Hold after the next `ErrorResponse`.
    armed: AtomicBool,
    /// Answers are being held.
    holding: AtomicBool,
    /// Client writes that reached the proxy while answers were held.
    writes_while_held: AtomicUsize,
    connections: AtomicUsize,
    /// The client wrote, or the test released the hold.
    release: Notify,
}

impl Proxy {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(ProxyState::default());
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(upstream_half(client_read, server_write, Arc::clone(&s)));
                tokio::spawn(downstream_half(server_read, client_write, Arc::clone(&s)));
            }
        });
        Self { port, state }
    }

    fn hold_after_next_error(&self) {
        self.state.armed.store(true, Ordering::SeqCst);
    }

    fn holding(&self) -> bool {
        self.state.holding.load(Ordering::SeqCst)
    }

    fn release(&self) {
        self.state.release.notify_waiters();
    }

    fn writes_while_held(&self) -> usize {
        self.state.writes_while_held.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// Client to server, as is; a write during a hold is counted and ends the hold.
async fn upstream_half(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: Arc<ProxyState>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if state.holding.load(Ordering::SeqCst) {
            state.writes_while_held.fetch_add(1, Ordering::SeqCst);
            state.release.notify_waiters();
        }
    }
}

/// Server to client, message by message; after an `ErrorResponse` while armed, nothing more is
/// forwarded until the hold ends.
async fn downstream_half(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, state: Arc<ProxyState>) {
    let mut inbox: Vec<u8> = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        inbox.extend_from_slice(&buf[..n]);
        while inbox.len() >= 5 {
            let len = u32::from_be_bytes([inbox[1], inbox[2], inbox[3], inbox[4]]) as usize;
            if inbox.len() < len + 1 {
                break;
            }
            let message: Vec<u8> = inbox.drain(..=len).collect();
            let hold = message[0] == b'E' && state.armed.swap(false, Ordering::SeqCst);
            // Holding before the error is forwarded: the client cannot act on it earlier.
            let released = state.release.notified();
            let mut released = std::pin::pin!(released);
            if hold {
                released.as_mut().enable();
                state.holding.store(true, Ordering::SeqCst);
            }
            if to.write_all(&message).await.is_err() {
                return;
            }
            if hold {
                released.await;
                state.holding.store(false, Ordering::SeqCst);
            }
        }
    }
}

/// A data plane with one shared connection, through `proxy`.
fn through(app: &TestApp, proxy: &Proxy, session_reuse: bool) -> DataPlane {
    let c = platform_tests::clusters();
    let url = c.primary.url(&app.shared_db).replace(
        &format!(":{}/", c.primary.port()),
        &format!(":{}/", proxy.port),
    );
    DataPlane::new(
        app.app.tenancy.catalog.clone(),
        app.app.tenancy.keyring.clone(),
        &url,
        &c.app_password,
        PoolSizes {
            shared: 1,
            dedicated: 1,
        },
    )
    .expect("data plane")
    .with_session_reuse(session_reuse)
}

/// A one-statement request of `t` that fails in the server: while executing, on a duplicate key,
/// or while being prepared. Each returns to its caller on the `ErrorResponse`.
async fn fail_in_server(dp: &DataPlane, t: &Tenant, how: usize, dup: Uuid) {
    let tx = dp.connect(t).await.expect("connect").begin();
    let e = match how {
        0 => tx.query_and_commit("SELECT 1 / 0", &[]).await.map(drop),
        1 => tx
            .execute_and_commit(INSERT_PROJECT, &[&t.id.as_uuid(), &dup])
            .await
            .map(drop),
        _ => tx
            .query_and_commit("SELECT no_such_column FROM projects", &[])
            .await
            .map(drop),
    }
    .expect_err("fails in the server");
    assert!(e.as_db_error().is_some(), "failure {how}: {e:?}");
}

async fn in_use(dp: &DataPlane) -> usize {
    dp.pool_stats().await[0].in_use
}

#[tokio::test]
async fn a_connection_is_handed_out_again_only_after_a_failed_requests_last_answer() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "late-a").await;
    let b = tenant(&app, "late-b").await;
    let upstream = platform_tests::clusters().primary.port();
    let mut of_b = Vec::new();
    for session_reuse in [true, false] {
        let proxy = Proxy::start(upstream).await;
        let dp = through(&app, &proxy, session_reuse);
        let pb = Uuid::now_v7();
        of_b.push(pb);
        dp.connect(&b)
            .await
            .expect("connect")
            .begin()
            .execute_and_commit(INSERT_PROJECT, &[&b.id.as_uuid(), &pb])
            .await
            .expect("insert");
        for how in 0..3 {
            // The connection is set for a, then b's request fails and its ReadyForQuery is held.
            assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
            proxy.hold_after_next_error();
            fail_in_server(&dp, &b, how, pb).await;
            assert!(
                proxy.holding(),
                "failure {how}: the answers after the error are held"
            );
            // The next request (a's, in one exchange) waits for the connection's last answer:
            // it writes nothing until the hold ends.
            let next = tokio::spawn({
                let (dp, a) = (dp.clone(), Arc::clone(&a));
                async move { setting_seen(&dp, &a).await }
            });
            let waiting = eventually(Duration::from_secs(10), || async {
                in_use(&dp).await == 1 && proxy.holding()
            })
            .await;
            assert!(
                waiting.is_some(),
                "failure {how}: the checkout did not wait"
            );
            assert_eq!(proxy.writes_while_held(), 0, "failure {how}");
            proxy.release();
            let seen = next.await.expect("the next request did not fail");
            assert_eq!(seen, a.id.to_string(), "failure {how}");
            assert_eq!(projects_seen(&dp, &b).await, of_b, "failure {how}");
            assert_eq!(setting_seen(&dp, &b).await, b.id.to_string());
        }
        // Drained and reused, never discarded, and nothing was written during a hold.
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.writes_while_held(), 0);
    }
    app.finish().await;
}

#[tokio::test]
async fn a_connection_whose_answers_do_not_come_is_replaced_without_failing_the_request() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "stuck-a").await;
    let b = tenant(&app, "stuck-b").await;
    let proxy = Proxy::start(platform_tests::clusters().primary.port()).await;
    let dp = through(&app, &proxy, true);
    assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
    proxy.hold_after_next_error();
    fail_in_server(&dp, &b, 0, Uuid::now_v7()).await;
    // Held until the client writes: the first connection never gets its ReadyForQuery. The
    // checkout gives up on it and opens another; the request succeeds on that one.
    assert_eq!(setting_seen(&dp, &a).await, a.id.to_string());
    assert_eq!(setting_seen(&dp, &b).await, b.id.to_string());
    // (Dropping the first connection writes its statements' Close messages, which ends the hold;
    // nothing of a request goes to it.)
    assert_eq!(proxy.connections(), 2);
    app.finish().await;
}
