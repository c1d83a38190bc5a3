//! A Sentry ingestion endpoint for tests: an axum server accepting envelopes at
//! `POST /api/{project}/envelope/`, as the SDK sends them to the DSN's host, keeping each
//! envelope's raw text and its `event` items.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

/// One envelope as received.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The whole envelope as text (headers and items).
    pub raw: String,
    /// Its `event` items.
    pub events: Vec<Value>,
}

/// A running receiver (stopped on drop).
pub struct SentryReceiver {
    envelopes: Arc<Mutex<Vec<Envelope>>>,
    dsn: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SentryReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Parses an envelope: a header line, then items, each a header line with its `type` (and
/// `length`, when given) followed by its payload.
fn parse(body: &[u8]) -> Envelope {
    let raw = String::from_utf8_lossy(body).into_owned();
    let mut events = Vec::new();
    let mut rest: &[u8] = body;
    let line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let l = rest[..end].to_vec();
        *rest = rest.get(end + 1..).unwrap_or(&[]);
        Some(l)
    };
    let _envelope_header = line(&mut rest);
    while let Some(h) = line(&mut rest) {
        if h.is_empty() {
            continue;
        }
        let Ok(header) = serde_json::from_slice::<Value>(&h) else {
            break;
        };
        let payload = match header.get("length").and_then(Value::as_u64) {
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                let p = rest[..n].to_vec();
                rest = &rest[n..];
                if rest.first() == Some(&b'\n') {
                    rest = &rest[1..];
                }
                p
            }
            None => line(&mut rest).unwrap_or_default(),
        };
        if header.get("type").and_then(Value::as_str) == Some("event")
            && let Ok(e) = serde_json::from_slice(&payload)
        {
            events.push(e);
        }
    }
    Envelope { raw, events }
}

async fn envelope(State(got): State<Arc<Mutex<Vec<Envelope>>>>, body: Bytes) -> &'static str {
    if let Ok(mut g) = got.lock() {
        g.push(parse(&body));
    }
    "{}"
}

impl SentryReceiver {
    /// Starts a receiver on a loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("sentry listener");
        let addr = listener.local_addr().expect("sentry address");
        let envelopes = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/api/{project}/envelope/", post(envelope))
            .with_state(Arc::clone(&envelopes));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            envelopes,
            dsn: format!("http://publickey@{addr}/42"),
            task,
        }
    }

    /// The value for `SENTRY_DSN`.
    #[must_use]
    pub fn dsn(&self) -> &str {
        &self.dsn
    }

    /// Every envelope received so far.
    #[must_use]
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.envelopes.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits (up to 30 s) for an envelope with an event satisfying `pred`; returns both.
    pub async fn wait_for_event(&self, pred: impl Fn(&Value) -> bool) -> (Envelope, Value) {
        let mut found = None;
        crate::eventually(Duration::from_secs(30), || {
            found = self.envelopes().into_iter().find_map(|env| {
                let e = env.events.iter().find(|e| pred(e))?.clone();
                Some((env, e))
            });
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no matching Sentry event within 30 s; got {:#?}",
                self.envelopes()
            )
        })
    }
}
