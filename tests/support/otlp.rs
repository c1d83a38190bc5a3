//! An OTLP/HTTP trace receiver: an axum server accepting `POST /v1/traces` (protobuf), decoded
//! with the OpenTelemetry project's own message types (`opentelemetry-proto`), keeping every
//! span it receives for the test to inspect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// A received span with its resource's service name.
#[derive(Clone, Debug)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    /// The span's trace id in lowercase hex (as in `traceparent`).
    #[must_use]
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span's id in lowercase hex.
    #[must_use]
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span's id in lowercase hex (empty for a root).
    #[must_use]
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// A string or integer attribute, as text.
    #[must_use]
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(i) => i.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            })
    }
}

/// Lowercase hex of an id.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running receiver (stopped on drop).
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<Received>>>,
    endpoint: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn traces(
    State(spans): State<Arc<Mutex<Vec<Received>>>>,
    body: Bytes,
) -> Result<Vec<u8>, StatusCode> {
    let req = ExportTraceServiceRequest::decode(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut got = spans
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                got.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    Ok(ExportTraceServiceResponse::default().encode_to_vec())
}

impl OtlpReceiver {
    /// Starts a receiver on a loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("otlp listener");
        let addr = listener.local_addr().expect("otlp address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&spans));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            spans,
            endpoint: format!("http://{addr}"),
            task,
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    #[must_use]
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to 30 s) until a received span satisfies `pred`; returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Received) -> bool) -> Received {
        let mut found = None;
        crate::eventually(Duration::from_secs(30), || {
            found = self.spans().into_iter().find(|s| pred(s));
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap_or_else(|| panic!("no span {what} within 30 s; got {:#?}", self.spans()))
    }
}
