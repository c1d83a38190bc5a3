//! A trace sink for `--traces`: accepts OTLP/HTTP exports (`POST /v1/traces`) and counts them,
//! so the platform pays for sampling, building and exporting spans as it would against a
//! collector on the same host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

/// A running sink (stopped on drop).
#[derive(Debug)]
pub struct OtlpSink {
    addr: std::net::SocketAddr,
    /// Export requests and bytes received.
    pub received: Arc<(AtomicU64, AtomicU64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(State(n): State<Arc<(AtomicU64, AtomicU64)>>, body: Bytes) -> &'static [u8] {
    n.0.fetch_add(1, Ordering::Relaxed);
    n.1.fetch_add(body.len() as u64, Ordering::Relaxed);
    // An empty ExportTraceServiceResponse.
    b""
}

impl OtlpSink {
    /// Starts the sink on a loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let received = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&received));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Ok(Self {
            addr,
            received,
            task,
        })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
