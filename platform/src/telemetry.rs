//! The process's `tracing` subscriber: the log (JSON or text, `PLATFORM_LOG` filter), and, when
//! configured, OpenTelemetry traces over OTLP/HTTP and Sentry error events ([`crate::errors`]).
//!
//! Traces are on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set and `OTEL_SDK_DISABLED` is not `true`; `OTEL_SERVICE_NAME` names the service (default
//! `platform`); `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` choose the sampler (default
//! `parentbased_always_on`). Off, no OpenTelemetry layer is installed at all: the database spans
//! (target `db`) are disabled at their call sites and cost one cached interest check.
//!
//! Incoming W3C `traceparent` / `tracestate` headers are accepted from any caller (trace context
//! only: `baggage` is never read), so a caller's trace continues through the platform.

use anyhow::Context as _;
use axum::http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::subscriber::Interest;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::layer::{Context as FilterContext, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Trace export settings, read once at startup from the standard OpenTelemetry variables.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// `OTEL_SERVICE_NAME` (default `platform`).
    pub service_name: String,
    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: SamplerChoice,
}

/// The sampler named by `OTEL_TRACES_SAMPLER` (the specification's values).
#[derive(Clone, Debug, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedRatio(f64),
}

impl SamplerChoice {
    fn sampler(&self) -> Sampler {
        match *self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

impl TraceSettings {
    /// `None` when traces are off; an error names the variable with a bad value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        let ratio = || -> anyhow::Result<f64> {
            match get("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(1.0),
                Some(v) => v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .with_context(|| {
                        format!("OTEL_TRACES_SAMPLER_ARG: {v:?} is not a ratio between 0 and 1")
                    }),
            }
        };
        let sampler = match get("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None | Some("parentbased_always_on") => SamplerChoice::ParentBasedAlwaysOn,
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::Ratio(ratio()?),
            Some("parentbased_always_off") => SamplerChoice::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => SamplerChoice::ParentBasedRatio(ratio()?),
            Some(other) => anyhow::bail!(
                "OTEL_TRACES_SAMPLER: {other:?} is not one of always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off, \
                 parentbased_traceidratio"
            ),
        };
        Ok(Some(Self {
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "platform".into()),
            sampler,
        }))
    }
}

/// What must live as long as the process: the trace exporter (flushed and stopped on drop) and
/// the Sentry client. Drop it outside the async runtime (the exporter's HTTP client blocks).
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _sentry: Option<sentry::ClientInitGuard>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("traces", &self.provider.is_some())
            .field("sentry", &self._sentry.is_some())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("flushing traces failed: {e}");
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the process's subscriber: the log on standard output, plus the trace exporter and
/// Sentry when configured. Call once, before the async runtime starts.
pub fn init(
    json: bool,
    traces: Option<&TraceSettings>,
    sentry: Option<sentry::ClientInitGuard>,
) -> anyhow::Result<Telemetry> {
    init_to(BoxMakeWriter::new(std::io::stdout), json, traces, sentry)
}

/// [`init`] with the log written to `writer` (the benchmark writes it to a file).
pub fn init_to(
    writer: BoxMakeWriter,
    json: bool,
    traces: Option<&TraceSettings>,
    sentry: Option<sentry::ClientInitGuard>,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_env("PLATFORM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_postgres=warn"))
        // Database spans are for traces, not for the log.
        .add_directive("db=off".parse().context("the db log directive")?);
    let log: BoxedLayer = if json {
        crate::logjson::JsonLog::new(writer)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    };
    let mut layers = vec![log];
    let provider = match traces {
        Some(t) => {
            // The exporter's reqwest client is built without a default TLS provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .context("OTEL_EXPORTER_OTLP_ENDPOINT: the trace exporter")?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(t.sampler.sampler())
                .with_resource(
                    opentelemetry_sdk::Resource::builder_empty()
                        .with_service_name(t.service_name.clone())
                        .build(),
                )
                .build();
            // The exporter's own HTTP client must not trace itself.
            let only = Targets::new()
                .with_default(LevelFilter::INFO)
                .with_target("db", LevelFilter::INFO)
                .with_target("sqlx", LevelFilter::WARN)
                .with_target("hyper", LevelFilter::OFF)
                .with_target("hyper_util", LevelFilter::OFF)
                .with_target("reqwest", LevelFilter::OFF)
                .with_target("h2", LevelFilter::OFF);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("platform"))
                    // Per span and per poll work no one reads: code location and thread
                    // attributes (the thread name is a fresh string per span), and busy/idle
                    // timings taken at every enter and exit.
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(only.and(SampledOnly))
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    if sentry.is_some() {
        layers.push(crate::errors::layer().boxed());
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("installing the tracing subscriber")?;
    Ok(Telemetry {
        provider,
        _sentry: sentry,
    })
}

/// Marks a span whose trace the sampler dropped ([`sample`]).
#[derive(Clone, Copy, Debug)]
struct Unsampled;

/// The OpenTelemetry layer's filter: nothing under an [`Unsampled`] span reaches the layer (no
/// span builder, no attributes, no events), so an unsampled request pays for its root span only;
/// spans with no current span (requests, job runs) are roots and always reach it.
struct SampledOnly;

impl<S> Filter<S> for SampledOnly
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, _: &tracing::Metadata<'_>, cx: &FilterContext<'_, S>) -> bool {
        cx.lookup_current()
            .is_none_or(|parent| parent.extensions().get::<Unsampled>().is_none())
    }

    fn callsite_enabled(&self, _: &'static tracing::Metadata<'static>) -> Interest {
        // Decided per span, by its parent.
        Interest::sometimes()
    }
}

/// Takes the sampling decision for a root span that is not entered yet (its parent set, as by
/// [`continue_trace`]): whether its trace is sampled. An unsampled span is marked so that the
/// OpenTelemetry layer skips every span and event under it.
pub fn sample(span: &tracing::Span) -> bool {
    let sampled = span.context().span().span_context().is_sampled();
    if !sampled {
        span.with_subscriber(|(id, dispatch)| {
            if let Some(data) = dispatch
                .downcast_ref::<Registry>()
                .and_then(|registry| registry.span(id))
            {
                let mut ext = data.extensions_mut();
                if ext.get_mut::<Unsampled>().is_none() {
                    ext.insert(Unsampled);
                }
            }
        });
    }
    sampled
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        // Trace context only: never `baggage`.
        match key {
            "traceparent" | "tracestate" => self.0.get(key).and_then(|v| v.to_str().ok()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// How a request joins a trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct Joined {
    /// The OpenTelemetry layer sees the span (traces are on).
    pub exported: bool,
    /// The caller's trace id, from a well-formed `traceparent`.
    pub remote: Option<TraceId>,
}

impl Joined {
    /// The trace id the request belongs to: the span's when traces are on (the caller's if it
    /// sent one), else the caller's, else none. Call once the span has been entered.
    #[must_use]
    pub fn trace_id(&self, span: &tracing::Span) -> Option<TraceId> {
        if self.exported {
            let cx = span.context();
            let id = cx.span().span_context().trace_id();
            if id != TraceId::INVALID {
                return Some(id);
            }
        }
        self.remote
    }
}

/// Continues the caller's trace: makes the W3C `traceparent` of `headers` (if any, and well
/// formed) the parent of the new, not yet entered `span`; without one the span is a root.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) -> Joined {
    let remote = headers
        .contains_key("traceparent")
        .then(|| TraceContextPropagator::new().extract(&Headers(headers)))
        .filter(|cx| cx.span().span_context().is_valid());
    let trace = remote
        .as_ref()
        .map(|cx| cx.span().span_context().trace_id());
    // Refused (no layer) when traces are off, where the caller's id still goes to the log.
    let exported = span.set_parent(remote.unwrap_or_default()).is_ok();
    Joined {
        exported,
        remote: trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// Counts the spans and events that reach a layer.
    struct Seen(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }

        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn nothing_under_an_unsampled_span_reaches_the_trace_layer() {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = || seen.load(std::sync::atomic::Ordering::SeqCst);
        let subscriber =
            tracing_subscriber::registry().with(Seen(seen.clone()).with_filter(SampledOnly));
        tracing::subscriber::with_default(subscriber, || {
            // No OpenTelemetry layer here: no trace is sampled, so `sample` marks the span.
            let dropped = tracing::info_span!("request");
            assert!(!sample(&dropped));
            dropped.in_scope(|| {
                let statement = tracing::info_span!(target: "db", "statement");
                statement.in_scope(|| tracing::info!("inside"));
                tracing::info!("inside");
            });
            assert_eq!(n(), 1, "the root only");
            // An unmarked (sampled) root: its statement and events reach the layer.
            let kept = tracing::info_span!("request");
            kept.in_scope(|| {
                let statement = tracing::info_span!(target: "db", "statement");
                statement.in_scope(|| tracing::info!("inside"));
            });
            assert_eq!(n(), 1 + 3);
        });
    }

    #[test]
    fn off_without_an_endpoint_and_when_disabled() {
        assert_eq!(TraceSettings::from_lookup(env(&[])).ok(), Some(None));
        assert_eq!(
            TraceSettings::from_lookup(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("OTEL_SDK_DISABLED", "true"),
            ]))
            .ok(),
            Some(None)
        );
    }

    #[test]
    fn parent_based_ratio_from_the_standard_variables() {
        let s = TraceSettings::from_lookup(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SERVICE_NAME", "api"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        ]))
        .ok()
        .flatten();
        assert_eq!(
            s,
            Some(TraceSettings {
                service_name: "api".into(),
                sampler: SamplerChoice::ParentBasedRatio(0.01),
            })
        );
    }

    #[test]
    fn a_bad_sampler_names_its_variable() {
        for (var, pairs) in [
            (
                "OTEL_TRACES_SAMPLER:",
                [("OTEL_TRACES_SAMPLER", "sometimes"), ("", "")],
            ),
            (
                "OTEL_TRACES_SAMPLER_ARG:",
                [
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
            ),
        ] {
            let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
            all.extend(pairs);
            let err = TraceSettings::from_lookup(env(&all))
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.starts_with(var)),
                "{err:?} should name {var}"
            );
        }
    }

    #[test]
    fn baggage_is_never_read() {
        let mut h = HeaderMap::new();
        h.insert(
            "baggage",
            "user.email=a@example.com".parse().expect("header"),
        );
        let x = Headers(&h);
        assert_eq!(x.get("baggage"), None);
        assert!(!x.keys().contains(&"baggage"));
    }

    #[test]
    fn the_callers_trace_id_without_a_layer() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("header"),
        );
        let span = tracing::Span::none();
        let joined = continue_trace(&span, &h);
        assert!(!joined.exported);
        assert_eq!(
            joined.trace_id(&span).map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        h.insert("traceparent", "00-zz-00-01".parse().expect("header"));
        assert_eq!(continue_trace(&span, &h).trace_id(&span), None);
    }
}
