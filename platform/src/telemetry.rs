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
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracerProvider, ShouldSample as _,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
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
    let (dispatch, provider) = subscribers(writer, json, traces, None, sentry.is_some())?;
    tracing::dispatcher::set_global_default(dispatch)
        .context("installing the tracing subscriber")?;
    Ok(Telemetry {
        provider,
        _sentry: sentry,
    })
}

/// The same subscriber as [`init_to`] (without Sentry), not installed: for the benchmarks. With
/// `endpoint`, traces go to that OTLP/HTTP URL rather than the one the `OTEL_*` variables name.
pub fn scoped(
    writer: BoxMakeWriter,
    json: bool,
    traces: Option<&TraceSettings>,
    endpoint: Option<&str>,
) -> anyhow::Result<(tracing::Dispatch, Telemetry)> {
    let (dispatch, provider) = subscribers(writer, json, traces, endpoint, false)?;
    Ok((
        dispatch,
        Telemetry {
            provider,
            _sentry: None,
        },
    ))
}

/// One log writer for the subscribers with and without the trace layer.
#[derive(Clone)]
struct SharedWriter(std::sync::Arc<BoxMakeWriter>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SharedWriter {
    type Writer = <BoxMakeWriter as tracing_subscriber::fmt::MakeWriter<'a>>::Writer;

    fn make_writer(&'a self) -> Self::Writer {
        self.0.make_writer()
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        self.0.make_writer_for(meta)
    }
}

/// The log layer (JSON or text, `PLATFORM_LOG` filter) writing to `writer`.
fn log_layer<S>(writer: SharedWriter, json: bool) -> anyhow::Result<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_env("PLATFORM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tokio_postgres=warn"))
        // Database spans are for traces, not for the log.
        .add_directive("db=off".parse().context("the db log directive")?);
    // Request spans whatever the level: their fields (request id, route, tenant) go on every
    // line logged inside.
    let filter = filter.or(filter_fn(|m| {
        m.is_span() && m.name() == "request" && m.target() == "platform::observe"
    }));
    Ok(if json {
        crate::logjson::JsonLog::new(writer)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_filter(filter)
            .boxed()
    })
}

/// The process's subscriber: the log and Sentry's layer when asked for. With traces on, it has
/// no trace layer: the trace subscriber (the same plus the trace layer) is kept aside
/// ([`Tracing`]) for the requests that are sampled ([`Head`]) and for job runs ([`traced`]),
/// so the 99 requests in 100 that are not sampled run as with traces off.
fn subscribers(
    writer: BoxMakeWriter,
    json: bool,
    traces: Option<&TraceSettings>,
    endpoint: Option<&str>,
    sentry: bool,
) -> anyhow::Result<(tracing::Dispatch, Option<SdkTracerProvider>)> {
    let writer = SharedWriter(std::sync::Arc::new(writer));
    let Some(t) = traces else {
        let mut layers: Vec<BoxedLayer> = vec![log_layer(writer, json)?];
        if sentry {
            layers.push(crate::errors::layer().boxed());
        }
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layers));
        return Ok((dispatch, None));
    };
    // The exporter's reqwest client is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    let exporter = match endpoint {
        Some(url) => exporter.with_endpoint(url),
        None => exporter,
    }
    .build()
    .context("OTEL_EXPORTER_OTLP_ENDPOINT: the trace exporter")?;
    let sampler = t.sampler.sampler();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler.clone())
        .with_id_generator(Drawn::default())
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
    let mut traced: Vec<BoxedLayer> = vec![
        log_layer(writer.clone(), json)?,
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("platform"))
            // Per span and per poll work no one reads: code location and thread attributes
            // (the thread name is a fresh string per span), and busy/idle timings taken at every
            // enter and exit.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(only)
            .boxed(),
    ];
    let mut untraced: Vec<UntracedLayer> = vec![log_layer(writer, json)?];
    if sentry {
        traced.push(crate::errors::layer().boxed());
        untraced.push(crate::errors::layer().boxed());
    }
    let _ = TRACING.set(Tracing {
        sampler,
        traced: tracing::Dispatch::new(tracing_subscriber::registry().with(traced)),
    });
    Ok((untraced_dispatch(untraced), Some(provider)))
}

/// The trace subscriber, when traces are on: job runs are traced under it
/// (`jobs::WorkerConfig::traces`; the SDK's sampler decides for each, as for any root).
#[must_use]
pub fn traced() -> Option<tracing::Dispatch> {
    TRACING.get().map(|t| t.traced.clone())
}

/// The registry under the layers of the subscriber without the trace layer.
type UntracedBase = tracing_subscriber::layer::Layered<Targets, Registry>;
type UntracedLayer = Box<dyn Layer<UntracedBase> + Send + Sync>;

/// The process's subscriber when traces are on: `layers` (the log, Sentry's) without the trace
/// layer, under which unsampled requests run. Statement spans (target `db`) exist only for traces: the trace layer's interest
/// in their call sites makes them dynamic, and a registry whose layers all have filters of
/// their own still answers "enabled" for them, so a global filter under the layers refuses
/// them (under, not over: over per-layer filters, a global filter would turn every call site
/// the log never wants, `hyper`'s trace events among them, from "never" into "sometimes").
fn untraced_dispatch(layers: Vec<UntracedLayer>) -> tracing::Dispatch {
    let no_statements = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("db", LevelFilter::OFF);
    tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(no_statements)
            .with(layers),
    )
}

/// What head sampling needs, set once when the trace layer is built.
#[derive(Debug)]
struct Tracing {
    /// The configured sampler: requests take their decision with it before their span exists
    /// ([`head`]).
    sampler: Sampler,
    /// The process's subscriber with the trace layer: a sampled request runs under it
    /// ([`Head::run`]).
    traced: tracing::Dispatch,
}

static TRACING: std::sync::OnceLock<Tracing> = std::sync::OnceLock::new();

thread_local! {
    /// The trace id drawn for the root span being started on this thread ([`Head::root`]): the
    /// SDK gives the span this id, so its sampler sees what [`head`] saw.
    static DRAWN: std::cell::Cell<Option<TraceId>> = const { std::cell::Cell::new(None) };
}

/// Trace ids for the SDK: the id [`head`] drew for the span being started, else a random one.
#[derive(Debug, Default)]
struct Drawn(RandomIdGenerator);

impl IdGenerator for Drawn {
    fn new_trace_id(&self) -> TraceId {
        DRAWN
            .with(std::cell::Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
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

/// A request's place in a trace, decided before its span exists ([`head`]).
#[derive(Debug, Default)]
pub struct Head {
    /// Traces are on and this request's trace is sampled: the trace subscriber, which the
    /// request's span and everything the request does are made under.
    traced: Option<tracing::Dispatch>,
    /// The caller's trace context, from a well-formed `traceparent`.
    remote: Option<opentelemetry::Context>,
    /// The trace id: the caller's, else one drawn here when traces are on.
    trace_id: Option<TraceId>,
}

/// Head sampling: continues the caller's trace (a well-formed W3C `traceparent` in `headers`
/// makes it the parent) and takes the configured sampler's decision now, on the trace id the
/// request's span will carry (the caller's, or one drawn here and handed to the SDK).
#[must_use]
pub fn head(headers: &HeaderMap) -> Head {
    decide(TRACING.get(), headers)
}

fn decide(tracing: Option<&Tracing>, headers: &HeaderMap) -> Head {
    let remote = headers
        .contains_key("traceparent")
        .then(|| TraceContextPropagator::new().extract(&Headers(headers)))
        .filter(|cx| cx.span().span_context().is_valid());
    let remote_id = remote
        .as_ref()
        .map(|cx| cx.span().span_context().trace_id());
    let Some(tracing) = tracing else {
        // Traces off: the caller's id still goes to the log.
        return Head {
            trace_id: remote_id,
            ..Head::default()
        };
    };
    let trace_id = remote_id.unwrap_or_else(|| RandomIdGenerator::default().new_trace_id());
    let decision = tracing.sampler.should_sample(
        remote.as_ref(),
        trace_id,
        "request",
        &SpanKind::Server,
        &[],
        &[],
    );
    Head {
        traced: (decision.decision == SamplingDecision::RecordAndSample)
            .then(|| tracing.traced.clone()),
        remote,
        trace_id: Some(trace_id),
    }
}

/// A trace id as the W3C text form (32 lower-case hex digits), without an allocation.
#[derive(Clone, Copy, Debug)]
pub struct TraceIdText([u8; 32]);

impl TraceIdText {
    #[must_use]
    pub fn new(id: TraceId) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; 32];
        for (pair, b) in out.chunks_exact_mut(2).zip(id.to_bytes()) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        Self(out)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Head {
    /// This request's trace is exported.
    #[must_use]
    pub fn traced(&self) -> bool {
        self.traced.is_some()
    }

    /// The trace id for the log line.
    #[must_use]
    pub fn trace_id(&self) -> Option<TraceId> {
        self.trace_id
    }

    /// Creates the request's root span with `make` under this decision. Sampled, the span is
    /// made under the trace subscriber, `before_start` records what must be set before the span
    /// starts (its kind and name are fixed from then on), and the span starts here, in the
    /// caller's trace or with the drawn trace id. Unsampled, it is made as with traces off.
    pub fn root(
        &self,
        make: impl FnOnce() -> tracing::Span,
        before_start: impl FnOnce(&tracing::Span),
    ) -> tracing::Span {
        let Some(traced) = &self.traced else {
            return make();
        };
        tracing::dispatcher::with_default(traced, || {
            let span = make();
            before_start(&span);
            if let Some(cx) = &self.remote {
                let _ = span.set_parent(cx.clone());
            } else {
                DRAWN.with(|d| d.set(self.trace_id));
            }
            // Starts the span now, while the drawn id is there to take.
            let _ = span.context();
            DRAWN.with(|d| d.set(None));
            span
        })
    }

    /// Runs `request` (everything the request does after its span exists): sampled, under the
    /// trace subscriber; unsampled, as with traces off (nothing of it reaches the trace layer,
    /// and nothing is switched per poll). A task the request spawns runs under the process's
    /// subscriber.
    pub async fn run<T>(&self, request: impl Future<Output = T>) -> T {
        use tracing::instrument::WithSubscriber as _;
        match &self.traced {
            Some(traced) => request.with_subscriber(traced.clone()).await,
            None => request.await,
        }
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

    fn counter() -> (
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        impl Fn() -> usize,
    ) {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = {
            let seen = seen.clone();
            move || seen.load(std::sync::atomic::Ordering::SeqCst)
        };
        (seen, n)
    }

    fn log<S>() -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::fmt::layer().with_writer(std::io::sink)
    }

    /// A request as the middleware runs it: its root span, then a statement's span and events
    /// under it, inside [`Head::run`].
    fn request(head: &Head) -> tracing::Span {
        let span = head.root(|| tracing::info_span!("request"), |_| {});
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(head.run(async {
            span.in_scope(|| {
                let statement = tracing::info_span!(target: "db", "statement");
                statement.in_scope(|| tracing::info!("inside"));
                tracing::info!("inside");
            });
        }));
        span
    }

    #[test]
    fn an_unsampled_request_never_reaches_the_trace_layer() {
        let (seen, n) = counter();
        let (logged, logged_n) = counter();
        // The trace subscriber (`Seen` stands for the trace layer) and the process's, without
        // it: the log sees an unsampled request, not its statements.
        let traced =
            tracing::Dispatch::new(tracing_subscriber::registry().with(log()).with(Seen(seen)));
        let process = untraced_dispatch(vec![log().boxed(), Seen(logged).boxed()]);
        tracing::dispatcher::with_default(&process, || {
            drop(request(&Head::default()));
            assert_eq!(n(), 0, "neither the request's span nor anything under it");
            assert_eq!(logged_n(), 3, "the span and both events, no statement span");
            // A sampled one: the span, the statement's and both events.
            drop(request(&Head {
                traced: Some(traced.clone()),
                ..Head::default()
            }));
            assert_eq!(n(), 4);
            assert_eq!(logged_n(), 3, "the process's subscriber saw none of it");
            // A job run under the trace subscriber (`jobs::WorkerConfig::traces`).
            tracing::dispatcher::with_default(&traced, || {
                tracing::info_span!("job").in_scope(|| tracing::info!("inside"));
            });
            assert_eq!(n(), 4 + 2);
        });
    }

    #[test]
    fn the_sdk_samples_exactly_the_requests_the_head_decided_with_the_same_trace_id() {
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)));
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_id_generator(Drawn::default())
            .build();
        let (seen, n) = counter();
        let tracing = Tracing {
            sampler: sampler.clone(),
            traced: tracing::Dispatch::new(
                tracing_subscriber::registry()
                    .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
                    .with(Seen(seen))
                    .with(log()),
            ),
        };
        let process = untraced_dispatch(vec![log().boxed()]);
        tracing::dispatcher::with_default(&process, || {
            let (mut traced, mut dropped) = (0, 0);
            for _ in 0..200 {
                let before = n();
                let head = decide(Some(&tracing), &HeaderMap::new());
                let span = request(&head);
                if head.traced() {
                    traced += 1;
                    let sc = span.context().span().span_context().clone();
                    assert!(sc.is_sampled(), "the SDK must not draw a second time");
                    assert_eq!(Some(sc.trace_id()), head.trace_id());
                    assert_eq!(n() - before, 4);
                } else {
                    dropped += 1;
                    assert!(head.trace_id().is_some(), "the log line still gets an id");
                    assert_eq!(n(), before);
                }
            }
            // Half of 200, give or take: both branches ran.
            assert!(
                traced > 50 && dropped > 50,
                "{traced} traced, {dropped} dropped"
            );
            // A caller's sampled trace is continued whatever the ratio.
            let mut h = HeaderMap::new();
            h.insert(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .parse()
                    .expect("header"),
            );
            let never = Tracing {
                sampler: Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
                traced: tracing.traced.clone(),
            };
            let head = decide(Some(&never), &h);
            assert!(head.traced());
            let span = request(&head);
            assert_eq!(
                span.context().span().span_context().trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
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
        let head = decide(None, &h);
        assert!(!head.traced());
        assert_eq!(
            head.trace_id().map(|t| t.to_string()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        h.insert("traceparent", "00-zz-00-01".parse().expect("header"));
        assert_eq!(decide(None, &h).trace_id(), None);
    }

    #[test]
    fn the_log_lines_trace_id_is_the_w3c_text() {
        for _ in 0..100 {
            let id = RandomIdGenerator::default().new_trace_id();
            assert_eq!(TraceIdText::new(id).as_str(), id.to_string());
        }
        let id = TraceId::from_hex("000000000000000000000000000000ff").expect("hex");
        assert_eq!(
            TraceIdText::new(id).as_str(),
            "000000000000000000000000000000ff"
        );
    }
}
