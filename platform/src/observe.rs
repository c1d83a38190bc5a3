//! Request middleware: a request id on every request and response (a well-formed incoming
//! `x-request-id` is kept), a tracing span with the request id, method, route and tenant, and one
//! JSON log line per request with status, latency and the trace id. A 5xx is logged here, once,
//! with its internal cause (and so reported to Sentry, [`crate::errors`]). The same place records
//! the request metrics ([`crate::metrics`]) and continues the caller's W3C trace
//! ([`crate::telemetry`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sentry::SentryFutureExt as _;
use tracing::Instrument as _;

use crate::error::{ApiError, InternalCause};
use crate::metrics::{Finished, Metrics, TenantSlot};

/// The request's id.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

pub const REQUEST_ID: &str = "x-request-id";

fn well_formed(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then(|| s.to_owned())
}

/// The middleware.
pub async fn observe(State(metrics): State<Metrics>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(well_formed)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    // The sampling decision comes first: an unsampled request's span never reaches the trace
    // layer, so it costs that layer nothing.
    let head = crate::telemetry::head(req.headers());
    let span = head.root(
        || {
            tracing::info_span!(
                "request",
                request_id = %id,
                method = %req.method(),
                route = %route,
                tenant.id = tracing::field::Empty,
                otel.name = tracing::field::Empty,
                otel.kind = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
                http.response.status_code = tracing::field::Empty,
            )
        },
        // Semantic-convention names for the exported span (the log keeps its short fields).
        |span| {
            span.record("otel.name", format!("{} {route}", req.method()));
            span.record("otel.kind", "server");
        },
    );
    let traced = head.traced();
    let method = req.method().clone();
    let hub = crate::errors::request_hub(&id, &route);
    let slot = metrics.is_on().then(|| {
        let slot = TenantSlot::default();
        req.extensions_mut().insert(slot.clone());
        slot
    });
    let trace_id = head.trace_id().map(crate::telemetry::TraceIdText::new);
    // Unsampled, nothing the request does reaches the trace layer.
    head.run(async move {
        let in_flight = metrics.start();
        let started = Instant::now();
        let inner = next.run(req).instrument(span.clone());
        let mut resp = match &hub {
            Some(hub) => inner.bind_hub(Arc::clone(hub)).await,
            None => inner.await,
        };
        let seconds = started.elapsed().as_secs_f64();
        drop(in_flight);
        metrics.finish(&Finished {
            route: &route,
            method: &method,
            status: resp.status().as_u16(),
            seconds,
            tenant: slot.as_ref(),
            rate_limit: resp.extensions().get::<limits::Decision>(),
            problem: resp
                .extensions()
                .get::<crate::error::ProblemKind>()
                .map(|k| k.0),
            class: resp
                .extensions()
                .get::<crate::metrics::RouteClass>()
                .copied(),
        });
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
        let status = resp.status().as_u16();
        let latency_ms = seconds * 1000.0;
        if traced {
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
        }
        let trace_id = trace_id.as_ref().map(crate::telemetry::TraceIdText::as_str);
        let _entered = span.enter();
        let panicked = resp.extensions().get::<Panicked>().is_some();
        match resp.extensions().get::<InternalCause>() {
            // The panic hook has reported it (with its backtrace) already.
            Some(InternalCause(cause)) if status >= 500 && panicked => {
                tracing::error!(target: crate::errors::PANIC_TARGET, status, latency_ms, trace_id,
                    error = %crate::errors::mask(cause), "request failed");
            }
            // On the request's hub, so the error event carries its request id, route and tenant.
            Some(InternalCause(cause)) if status >= 500 => sentry::Hub::run(
                hub.unwrap_or_else(sentry::Hub::current),
                // The log line's cause is masked as the Sentry event's is (a database message or
                // a panic's may quote a value).
                || {
                    tracing::error!(status, latency_ms, trace_id, error = %crate::errors::mask(cause),
                    "request failed")
                },
            ),
            _ => tracing::info!(status, latency_ms, trace_id, "request finished"),
        }
        resp
    })
    .await
}

/// Marks the response of a request whose handler panicked.
#[derive(Clone, Copy, Debug)]
struct Panicked;

/// Turns a caught panic into a problem response (the panic message is logged, not sent).
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".into());
    let mut resp = ApiError::internal(format!("panic: {msg}")).into_response();
    resp.extensions_mut().insert(Panicked);
    resp
}
