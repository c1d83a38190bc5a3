//! Trace context from the request that enqueued a job to the job's run: at enqueue, the current
//! span's W3C `traceparent` goes into the payload under [`KEY`] (only when traces are on); the
//! worker takes it out again before the handler sees the payload, and the job's span links to it
//! (a link, not a parent: the job runs later, in a trace of its own).

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The payload field that carries the enqueuing request's trace context.
pub const KEY: &str = "_traceparent";

/// `payload` with the current span's trace context, if traces are on and it is an object.
pub(crate) fn attach(payload: &serde_json::Value) -> Option<serde_json::Value> {
    let serde_json::Value::Object(fields) = payload else {
        return None;
    };
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    let mut fields = fields.clone();
    fields.insert(
        KEY.to_owned(),
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
        .into(),
    );
    Some(serde_json::Value::Object(fields))
}

/// Removes the trace context from `payload`; the enqueuing span's context, if well formed.
pub(crate) fn take(payload: &mut serde_json::Value) -> Option<SpanContext> {
    let v = payload.as_object_mut()?.remove(KEY)?;
    let mut parts = v.as_str()?.split('-');
    let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The span of one job run, linked to the request that enqueued it.
pub(crate) fn span(
    kind: &str,
    job: impl std::fmt::Display,
    tenant: impl std::fmt::Display,
    link: Option<SpanContext>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format_args!("job {kind}"),
        job.kind = %kind,
        job.id = %job,
        tenant.id = %tenant,
    );
    if let Some(sc) = link {
        span.add_link(sc);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_context_round_trips_and_leaves_the_payload_as_it_was() {
        let mut p = serde_json::json!({"to": "x", KEY: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
        let sc = take(&mut p).expect("a span context");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(p, serde_json::json!({"to": "x"}));
        let mut bad = serde_json::json!({KEY: "00-zz-00-01"});
        assert!(take(&mut bad).is_none());
        // Without traces (no layer) nothing is attached.
        assert!(attach(&serde_json::json!({"to": "x"})).is_none());
    }
}
