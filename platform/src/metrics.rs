//! Prometheus metrics, served on their own listener (`PLATFORM_METRICS_LISTEN`), never on the
//! tenant listener. Off (nothing recorded, one branch per request) when the listener is unset.
//!
//! The recorder belongs to the [`Metrics`] value of one instance and is never installed as the
//! process-global `metrics` recorder: several instances in one process (the tests) keep their
//! numbers apart, and no code can reach the registry except through this value.
//!
//! Names follow OpenTelemetry's HTTP and database semantic conventions where they exist
//! (`http_server_request_duration_seconds`, `http_server_active_requests`,
//! `db_client_connection_*`); the rest are `platform_*`. Every label is bounded: route templates
//! (never raw paths), status classes, the top-N tenants plus `other` ([`tenants`]), plans,
//! placements, database servers, rate-limit scopes, flag names.

pub mod handles;
pub mod histograms;
pub mod operations;
pub mod process;
pub mod tenants;

/// The maps every request looks up (kept handles, top-N counts): a fast hasher. Their keys are
/// route templates, tenant ids, plans and server names the platform itself names, never text a
/// caller chooses.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;
use tenancy::catalog::{Placement, Tenant};
use tenancy::dataplane::DataPlane;
use tenancy::ids::TenantId;
use tenancy::settings::MetricsSettings;

use self::handles::{Handles, Tally};
use self::histograms::{Samples, labels};
use self::tenants::TopTenants;

static META: Metadata<'static> = Metadata::new("platform", Level::INFO, Some(module_path!()));

/// OpenTelemetry's recommended buckets for HTTP server durations (seconds).
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Fewer buckets where the label set is wider (per tenant, per plan).
const TENANT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Connection checkout waits (seconds): a free connection is well under a millisecond; the
/// checkout gives up after the data plane's checkout timeout (seconds).
const CHECKOUT_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0,
];
/// How often histogram samples are folded into the exported distributions between scrapes
/// (the exporter's default upkeep period).
const UPKEEP: Duration = Duration::from_secs(5);

/// The label value of requests from tenants outside the top N.
pub const OTHER: &str = "other";

/// This instance's metrics (cheap to clone; a no-op when metrics are off).
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    top: TopTenants,
    /// Series unchanged this long are dropped at a scrape.
    idle: Duration,
    /// The per-request series, buffered per thread ([`handles`]).
    handles: Handles,
    dataplane: DataPlane,
    flags: Arc<flags::Flags>,
    active: Gauge,
    /// The job worker's queue depths (set once the worker exists).
    jobs: std::sync::RwLock<Option<jobs::stats::QueueStats>>,
    /// The control plane, for the operation gauges read on scrape.
    catalog: sqlx::PgPool,
    /// The audit sealer's lag account (set once the sealer runs).
    seal_lag: OnceLock<audit::sealer::SealLag>,
    seen: operations::Seen,
    /// The tokio workers' busy time summed at the last scrape, and when (for the busy ratio).
    runtime: std::sync::Mutex<Option<(std::time::Instant, Duration)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("on", &self.0.is_some())
            .finish_non_exhaustive()
    }
}

/// What the tenant extractor tells the metrics about a request's tenant (a slot the observe
/// middleware puts in the request and reads after the response).
#[derive(Clone, Debug, Default)]
pub struct TenantSlot(Arc<OnceLock<Arc<Tenant>>>);

impl TenantSlot {
    /// Records the request's resolved tenant (the first one wins).
    pub fn set(&self, tenant: &Arc<Tenant>) {
        let _ = self.0.set(Arc::clone(tenant));
    }
}

/// One finished request, as the observe middleware saw it.
#[derive(Debug)]
pub struct Finished<'a> {
    pub route: &'a str,
    pub method: &'a Method,
    pub status: u16,
    pub seconds: f64,
    pub tenant: Option<&'a TenantSlot>,
    pub rate_limit: Option<&'a limits::Decision>,
    /// The problem type of an error response (`query-timeout`: a statement hit the timeout).
    pub problem: Option<&'static str>,
    /// The class of the route, from the router it is registered in ([`RouteClass`]).
    pub class: Option<RouteClass>,
}

/// The class of a route where it differs from the tenant API's, set on the response by a layer
/// of the router the route is registered in (so no path prefix decides it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteClass {
    /// The operator API (`/admin/v1`).
    Operator,
    /// The browser side of SSO (`/sso`).
    Sso,
}

impl RouteClass {
    /// Route layer (`axum::middleware::map_response`) marking the operator API's responses.
    pub async fn operator(mut resp: axum::response::Response) -> axum::response::Response {
        resp.extensions_mut().insert(Self::Operator);
        resp
    }

    /// Route layer (`axum::middleware::map_response`) marking the SSO routes' responses.
    pub async fn sso(mut resp: axum::response::Response) -> axum::response::Response {
        resp.extensions_mut().insert(Self::Sso);
        resp
    }
}

/// Counts the request out of the in-flight gauge when it ends (also when its future is
/// dropped).
pub struct InFlight<'a>(Option<&'a Inner>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.handles.ended();
        }
    }
}

impl Metrics {
    /// Metrics for an instance; off when no metrics listener is configured.
    pub fn new(
        settings: &MetricsSettings,
        dataplane: DataPlane,
        catalog: sqlx::PgPool,
        flags: Arc<flags::Flags>,
    ) -> Self {
        if settings.listen.is_none() {
            return Self(None);
        }
        // The histograms are counted and rendered by this module ([`histograms`]); the
        // exporter holds the counters and gauges.
        let recorder = PrometheusBuilder::new()
            .idle_timeout(MetricKindMask::ALL, Some(settings.idle))
            .build_recorder();
        let handle = recorder.handle();
        let active = recorder.register_gauge(&Key::from_name("http_server_active_requests"), &META);
        let inner = Arc::new(Inner {
            recorder,
            handle,
            top: TopTenants::new(settings.top_tenants),
            idle: settings.idle,
            handles: Handles::default(),
            dataplane,
            flags,
            active,
            jobs: std::sync::RwLock::default(),
            catalog,
            seal_lag: OnceLock::new(),
            seen: operations::Seen::default(),
            runtime: std::sync::Mutex::default(),
        });
        // Every 5 s: what the threads buffered is added ([`handles`]), so a scrape finds the
        // counters current to within that, and the exporter's upkeep runs (its own thread comes
        // only with its global install, which this recorder never has).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&inner);
            rt.spawn(async move {
                let mut every = tokio::time::interval(UPKEEP);
                every.tick().await;
                loop {
                    every.tick().await;
                    let Some(m) = weak.upgrade() else { return };
                    m.flush();
                    m.handle.run_upkeep();
                }
            });
        }
        // Every checkout's wait, per database server (the data plane holds only a weak link).
        let weak = Arc::downgrade(&inner);
        inner
            .dataplane
            .set_checkout_observer(Arc::new(move |server, wait| {
                if let Some(m) = weak.upgrade() {
                    let mut local = m.handles.local();
                    local
                        .series
                        .checkout(server, || {
                            Samples::new(
                                "db_client_connection_wait_time_seconds",
                                CHECKOUT_BUCKETS,
                                labels(&[("db_server", server)]),
                            )
                        })
                        .record(wait.as_secs_f64());
                }
            }));
        Self(Some(inner))
    }

    /// Exports the audit sealer's lag (once the sealer runs).
    pub fn watch_sealer(&self, lag: audit::sealer::SealLag) {
        if let Some(m) = &self.0 {
            let _ = m.seal_lag.set(lag);
        }
    }

    /// Whether metrics are recorded.
    #[must_use]
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Counts a request in flight until the returned guard drops.
    #[must_use]
    pub fn start(&self) -> InFlight<'_> {
        InFlight(self.0.as_deref().inspect(|m| m.handles.began()))
    }

    /// Records a finished request, into this thread's buffers ([`handles`]).
    pub fn finish(&self, r: &Finished<'_>) {
        let Some(m) = &self.0 else { return };
        let class = class_index(r.status);
        let method = method_index(r.method);
        let mut local = m.handles.local();
        local
            .series
            .http(r.route, method, class, || {
                Samples::new(
                    "http_server_request_duration_seconds",
                    HTTP_BUCKETS,
                    labels(&[
                        ("http_route", r.route),
                        ("http_request_method", METHOD_LABELS[method]),
                        ("http_response_status_code", CLASS_LABELS[class]),
                    ]),
                )
            })
            .record(r.seconds);
        if let Some(t) = r.tenant.and_then(|s| s.0.get()) {
            local.count(t.id);
            let own = local
                .series
                .admitted(t.id, || m.top.admit(t.id))
                .then_some(t.id);
            let series = local.series.tenant(own, || {
                let label = tenant_label(own);
                (
                    m.counter(
                        "platform_tenant_requests_total",
                        vec![Label::new("tenant_id", label.clone())],
                    ),
                    Samples::new(
                        "platform_tenant_request_duration_seconds",
                        TENANT_BUCKETS,
                        labels(&[("tenant_id", &label)]),
                    ),
                )
            });
            series.requests.add(1);
            if r.status >= 500 {
                series
                    .errors
                    .get_or_insert_with(|| {
                        Tally::new(m.counter(
                            "platform_tenant_errors_total",
                            vec![Label::new("tenant_id", tenant_label(own))],
                        ))
                    })
                    .add(1);
            }
            series.duration.record(r.seconds);
            let placement = match t.placement {
                Placement::Shared => "shared",
                Placement::Dedicated { .. } => "dedicated",
            };
            let by_plan = || {
                vec![
                    Label::new("plan", t.plan.clone()),
                    Label::new("placement", placement),
                ]
            };
            let plan = local
                .series
                .plan(&t.plan, usize::from(placement == "dedicated"), || {
                    Samples::new(
                        "platform_plan_request_duration_seconds",
                        TENANT_BUCKETS,
                        labels(&[("plan", &t.plan), ("placement", placement)]),
                    )
                });
            plan.requests[class]
                .get_or_insert_with(|| {
                    let mut labels = by_plan();
                    labels.push(Label::new("http_response_status_code", CLASS_LABELS[class]));
                    Tally::new(m.counter("platform_plan_requests_total", labels))
                })
                .add(1);
            plan.duration.record(r.seconds);
        }
        if let Some(d) = r.rate_limit {
            let scope = d.scope.as_str();
            local
                .series
                .rate_limit(scope, d.allowed, || {
                    m.counter(
                        "platform_rate_limit_decisions_total",
                        vec![
                            Label::new("scope", scope),
                            Label::new("decision", if d.allowed { "allowed" } else { "limited" }),
                        ],
                    )
                })
                .add(1);
        }
        drop(local);
        if r.problem == Some("query-timeout") {
            m.counter("platform_db_statement_timeouts_total", vec![])
                .increment(1);
        }
        if r.status == 401 {
            m.counter(
                "platform_auth_failures_total",
                vec![Label::new("kind", auth_kind(r.route, r.class))],
            )
            .increment(1);
        }
    }

    /// Exports the job queue's depth and age per kind, from `stats` (the worker's sweeps).
    pub fn watch_jobs(&self, stats: jobs::stats::QueueStats) {
        if let Some(m) = &self.0 {
            *m.jobs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stats);
        }
    }

    /// The Prometheus text exposition, with the gauges read now (pools, process, flags, jobs).
    pub async fn render(&self) -> Option<String> {
        let m = self.0.as_ref()?;
        let jobs = m
            .jobs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(jobs::stats::QueueStats::snapshot);
        if let Some(s) = jobs {
            m.render_jobs(&s);
        }
        m.flush();
        m.top.rank();
        for p in m.dataplane.pool_stats().await {
            let server = || vec![Label::new("db_server", p.server.clone())];
            let with_state = |state: &'static str| {
                vec![
                    Label::new("db_server", p.server.clone()),
                    Label::new("state", state),
                ]
            };
            m.gauge("db_client_connection_count", with_state("used"))
                .set(as_f64(p.in_use));
            m.gauge("db_client_connection_count", with_state("idle"))
                .set(as_f64(p.open.saturating_sub(p.in_use)));
            m.gauge("db_client_connection_max", server())
                .set(as_f64(p.max));
            m.gauge("db_client_connection_pending_requests", server())
                .set(as_f64(p.waiting));
            m.gauge("platform_db_pools", server()).set(as_f64(p.pools));
            if let Some((used, budget)) = p.budget {
                m.gauge("platform_db_connection_budget_used", server())
                    .set(as_f64(used));
                m.gauge("platform_db_connection_budget", server())
                    .set(as_f64(budget));
            }
        }
        if let Some(b) = process::resident_bytes() {
            m.gauge("process_resident_memory_bytes", vec![])
                .set(b as f64);
        }
        if let Some(n) = process::open_fds() {
            m.gauge("process_open_fds", vec![]).set(n as f64);
        }
        m.render_runtime();
        for (flag, yes, no) in m.flags.counts() {
            for (result, n) in [("true", yes), ("false", no)] {
                m.counter(
                    "platform_flag_evaluations_total",
                    vec![
                        Label::new("flag", flag.clone()),
                        Label::new("result", result),
                    ],
                )
                .absolute(n);
            }
        }
        for (flag, variant, n) in m.flags.variant_counts() {
            m.counter(
                "platform_flag_variant_evaluations_total",
                vec![Label::new("flag", flag), Label::new("variant", variant)],
            )
            .absolute(n);
        }
        let mut families = match operations::read(&m.catalog).await {
            Ok(r) => r.0,
            Err(e) => {
                tracing::warn!(error = %e, "reading the operation metrics failed");
                Vec::new()
            }
        };
        if let Some(lag) = m.seal_lag.get() {
            families.push(("platform_audit_seal_lag_seconds", operations::seal_lag(lag)));
        }
        for (name, family) in families {
            for (pairs, v) in m.seen.complete(name, family) {
                m.gauge(name, operations::labels(&pairs)).set(v);
            }
        }
        m.handle.run_upkeep();
        let mut text = m.handle.render();
        m.handles.render_histograms(m.idle, &mut text);
        // The render may have dropped idle series: handles kept from before are not kept on.
        m.handles.renew();
        Some(text)
    }
}

impl Inner {
    /// Adds what every thread buffered to the exporter's series, the tenants' requests to the
    /// top-N counts and the requests in flight to their gauge.
    fn flush(&self) {
        let gathered = self.handles.flush();
        self.top.add(gathered.counts);
        #[expect(
            clippy::cast_precision_loss,
            reason = "requests in flight are far below 2^52"
        )]
        self.active.set(gathered.in_flight.max(0) as f64);
    }

    /// The tokio runtime: workers, live tasks, the global queue's depth, and the share of the
    /// workers' time spent busy since the previous scrape (tokio's stable runtime metrics).
    fn render_runtime(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rt = handle.metrics();
        let workers = rt.num_workers();
        self.gauge("tokio_workers", vec![]).set(as_f64(workers));
        self.gauge("tokio_alive_tasks", vec![])
            .set(as_f64(rt.num_alive_tasks()));
        self.gauge("tokio_global_queue_depth", vec![])
            .set(as_f64(rt.global_queue_depth()));
        let busy: Duration = (0..workers).map(|w| rt.worker_total_busy_duration(w)).sum();
        let now = std::time::Instant::now();
        let mut last = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, before)) = *last {
            let wall = now.duration_since(at).as_secs_f64() * as_f64(workers.max(1));
            if wall > 0.0 {
                let ratio = busy.saturating_sub(before).as_secs_f64() / wall;
                self.gauge("tokio_workers_busy_ratio", vec![])
                    .set(ratio.clamp(0.0, 1.0));
            }
        }
        *last = Some((now, busy));
    }

    /// Queue depth and the oldest due job's age per kind and state (`dead` counts what waits for
    /// an operator), and how old that picture is (one sweep period when healthy).
    fn render_jobs(&self, s: &jobs::stats::Snapshot) {
        let Some(at) = s.taken_at else { return };
        for ((kind, state), d) in &s.depths {
            let labels = || {
                vec![
                    Label::new("job_kind", kind.clone()),
                    Label::new("job_state", state.clone()),
                ]
            };
            self.gauge("platform_jobs_queue_depth", labels())
                .set(d.jobs as f64);
            self.gauge("platform_jobs_oldest_due_age_seconds", labels())
                .set(d.oldest_due_seconds.unwrap_or(0.0));
        }
        self.gauge("platform_jobs_depth_age_seconds", vec![])
            .set((time::OffsetDateTime::now_utc() - at).as_seconds_f64());
    }

    fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "connection counts are far below 2^52"
)]
fn as_f64(n: usize) -> f64 {
    n as f64
}

/// The `tenant_id` label of a tenant's own series, or of `other`.
fn tenant_label(own: Option<TenantId>) -> String {
    own.map_or_else(|| OTHER.to_owned(), |id| id.to_string())
}

/// Status class labels, by [`class_index`].
const CLASS_LABELS: [&str; handles::CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Method labels, by [`method_index`]: the standard set, and `_OTHER` for any other method
/// (OpenTelemetry's rule: an attacker must not be able to create series with made-up methods).
const METHOD_LABELS: [&str; handles::METHODS] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "_OTHER",
];

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The kind of a refused authentication (a 401), from the class of the route it happened on
/// and, for the sign-in routes, the route itself.
fn auth_kind(route: &str, class: Option<RouteClass>) -> &'static str {
    match (class, route) {
        (Some(RouteClass::Operator), _) => "operator_token",
        (Some(RouteClass::Sso), _) => "sso",
        (None, "/api/v1/auth/login") => "password",
        (None, "/api/v1/auth/mfa/verify") => "mfa_code",
        (None, "/api/v1/auth/token/refresh" | "/api/v1/auth/logout") => "refresh_token",
        (None, _) => "credential",
    }
}

/// The metrics listener's router: `GET /metrics` only.
pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Metrics>) -> axum::response::Response {
    match metrics.render().await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => crate::error::ApiError::not_found("metrics are off").into_response(),
    }
}

/// Serves the metrics listener until the task is aborted.
pub fn serve(listener: tokio::net::TcpListener, metrics: Metrics) -> tokio::task::JoinHandle<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(metrics)).await {
            tracing::error!(error = %e, listen = ?addr, "the metrics listener stopped");
        }
    })
}
