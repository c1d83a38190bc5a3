//! Micro-benchmark of the request path without the database (`cargo bench -p bench`): everything a
//! tenant API request does before its first statement reaches PostgreSQL, each step alone and
//! then the whole extractor chain and the middleware. Caches are warm (the steady state); the
//! clusters are started only to warm them, and no benchmarked step talks to PostgreSQL: a pool
//! checkout hands out an idle connection (deadpool's `Fast` recycling sends nothing).
//!
//! Authentication is measured both ways a request can carry it: an API key (parse + SHA-256 +
//! cached verification) and a JWT access token (Ed25519 verification, and the cache of verified
//! tokens that serves a token's later requests). The rate-limit checks are the real ones
//! (`tenancy::ratelimit`, governor), as the middleware calls them on every tenant request.
//!
//! Times are on-CPU time of the benchmarking thread ([`ThreadCpu`]), not wall time: this machine
//! is shared, and wall time would count the time other processes held the CPU.

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts as _;
use axum::http::Request;
use bench::world::World;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use identity::credentials::PresentedKey;
use platform::extract::tenant::TenantDb;
use platform::state::AppState;
use platform::telemetry::{self, SamplerChoice, TraceSettings};
use tenancy::ids::DomainName;
use tenancy::resolve::HostTenant;
use tower::ServiceExt as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// On-CPU time of the calling thread, from `/proc/thread-self/schedstat` (nanoseconds, updated at
/// scheduler ticks and switches, so each reading is exact to a few ms: samples here are flat and
/// last ~160 ms, and the error averages out). The measured routine runs on this thread (`block_on`).
struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else {
            (1e-6, "ms")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        _t: &Throughput,
        _values: &mut [f64],
    ) -> &'static str {
        "(no throughput)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The platform's JSON log format, written nowhere: formatting is measured, I/O is not.
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,sqlx=warn,tokio_postgres=warn",
        ))
        .with_writer(std::io::sink)
        .init();
    let world = rt
        .block_on(World::build(bench::micro::WORLD))
        .expect("benchmark world");
    let mut c = Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let state = rt
        .block_on(bench::micro::state(&world))
        .expect("application state");
    bench_request_path(&mut c, &rt, &world, &state);
    c.final_summary();
    rt.block_on(state.tenancy.catalog.pool().close());
    drop(state);
    drop(rt);
    world.shutdown();
}

fn bench_request_path(
    c: &mut Criterion<ThreadCpu>,
    rt: &tokio::runtime::Runtime,
    world: &World,
    state: &AppState,
) {
    let router = platform::router::router(state.clone());
    let t = &state.tenancy;
    let id = &state.identity;
    let shared = world.shared_tenants().next().expect("a shared tenant");
    let dedicated = world
        .dedicated_tenants()
        .next()
        .expect("a dedicated tenant");
    let host = DomainName::from_host_header(&format!("{}.localhost", shared.slug)).expect("host");
    let tenant_of = |slug: String| async move {
        let HostTenant::Tenant(id) = t
            .resolver
            .host(&DomainName::from_host_header(&format!("{slug}.localhost")).expect("host"))
            .await
            .expect("catalog")
        else {
            panic!("{slug} does not resolve");
        };
        t.resolver
            .tenant(id)
            .await
            .expect("catalog")
            .expect("tenant")
    };
    // Warm every cache the request path uses (host, tenant, key verification, both pools).
    let (shared_tenant, dedicated_tenant) = rt.block_on(async {
        let shared_tenant = tenant_of(shared.slug.clone()).await;
        let dedicated_tenant = tenant_of(dedicated.slug.clone()).await;
        for (tenant, key) in [
            (&shared_tenant, &shared.api_key),
            (&dedicated_tenant, &dedicated.api_key),
        ] {
            let k = PresentedKey::parse(key).expect("key parses");
            let verified = id.api_keys.verify(&t.dataplane, tenant, &k).await;
            assert!(matches!(verified, Ok(Some(_))), "the key verifies");
            drop(t.dataplane.connect(tenant).await.expect("connect"));
        }
        (shared_tenant, dedicated_tenant)
    });

    let mut g = c.benchmark_group("request_path");
    // Equal samples of ~160 ms each: long enough for the tick-granular CPU clock.
    g.sampling_mode(SamplingMode::Flat).sample_size(50);
    g.bench_function("resolve tenant from host (cache hit)", |b| {
        b.to_async(rt).iter(|| async {
            let HostTenant::Tenant(id) = t.resolver.host(black_box(&host)).await.expect("hit")
            else {
                unreachable!("warmed")
            };
            t.resolver.tenant(id).await.expect("hit")
        });
    });
    g.bench_function("parse API key (SHA-256)", |b| {
        b.iter(|| PresentedKey::parse(black_box(&shared.api_key)));
    });
    g.bench_function("parse + verify API key (cache hit)", |b| {
        b.to_async(rt).iter(|| async {
            let k = PresentedKey::parse(black_box(&shared.api_key)).expect("parses");
            id.api_keys
                .verify(&t.dataplane, &shared_tenant, &k)
                .await
                .expect("hit")
        });
    });
    let token = rt.block_on(async {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        id.auth
            .jwt
            .issue(&identity::jwt::AccessClaims {
                iss: identity::jwt::ISSUER.into(),
                aud: identity::jwt::AUDIENCE.into(),
                sub: uuid::Uuid::now_v7().to_string(),
                tid: shared_tenant.id.to_string(),
                sid: uuid::Uuid::now_v7().to_string(),
                iat: now,
                exp: now + 600,
                roles: vec!["admin".into()],
            })
            .await
            .expect("token")
    });
    g.bench_function("verify a JWT (EdDSA signature, first presentation)", |b| {
        b.to_async(rt).iter(|| async {
            id.auth
                .jwt
                .verify_signed(black_box(&token))
                .await
                .expect("ok")
        });
    });
    g.bench_function("verify a JWT (verified-token cache hit)", |b| {
        b.to_async(rt)
            .iter(|| async { id.auth.jwt.verify(black_box(&token)).await.expect("ok") });
    });
    // What the rate-limit layer does on an authenticated tenant request: the tenant's bucket,
    // then the principal's (one key each, so the buckets stay hot as in a steady stream).
    let limits = &state.limits;
    let principal = uuid::Uuid::now_v7();
    g.bench_function("check a rate limit (tenant + principal, governor)", |b| {
        b.iter(|| {
            let d = limits.check_tenant(black_box(&shared_tenant));
            black_box(d.tighter(limits.check_principal(shared_tenant.id, principal)))
        });
    });
    g.bench_function("pick pool + check out (shared)", |b| {
        b.to_async(rt)
            .iter(|| async { t.dataplane.connect(&shared_tenant).await.expect("conn") });
    });
    g.bench_function("pick pool + check out (dedicated)", |b| {
        b.to_async(rt)
            .iter(|| async { t.dataplane.connect(&dedicated_tenant).await.expect("conn") });
    });
    for (label, who) in [("shared", shared), ("dedicated", dedicated)] {
        let host = format!("{}.localhost", who.slug);
        let auth = format!("Bearer {}", who.api_key);
        let uri = format!(
            "/api/v1/projects/{}/tasks/{}",
            who.data.project, who.data.tasks[0]
        );
        g.bench_function(
            format!("TenantDb extractor: host + key + tenant + pool ({label})"),
            |b| {
                b.to_async(rt).iter_batched(
                    || {
                        Request::get(&uri)
                            .header("host", &host)
                            .header("authorization", &auth)
                            .body(())
                            .expect("request")
                            .into_parts()
                            .0
                    },
                    // The connection goes back to the pool in the measured routine, as it
                    // does at the end of every request.
                    |mut parts| async move {
                        drop(
                            TenantDb::from_request_parts(&mut parts, state)
                                .await
                                .expect("extracts"),
                        );
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    g.bench_function(
        "middleware + routing: GET /healthz through the router",
        |b| {
            b.to_async(rt).iter_batched(
                || {
                    Request::get("/healthz")
                        .header("host", "localhost")
                        .body(Body::empty())
                        .expect("request")
                },
                |req| {
                    let router = router.clone();
                    async move { router.oneshot(req).await.expect("infallible") }
                },
                BatchSize::SmallInput,
            );
        },
    );
    // The same request with no subscriber on this thread: what the JSON log line costs.
    g.bench_function("middleware + routing: GET /healthz, logging off", |b| {
        let _off = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::new());
        b.to_async(rt).iter_batched(
            || {
                Request::get("/healthz")
                    .header("host", "localhost")
                    .body(Body::empty())
                    .expect("request")
            },
            |req| {
                let router = router.clone();
                async move { router.oneshot(req).await.expect("infallible") }
            },
            BatchSize::SmallInput,
        );
    });
    // GET one task through the whole router under the platform's own subscriber
    // (`platform::telemetry`), with metrics and traces (parent-based, 1% sampled, exported to an
    // OTLP/HTTP sink in this process) off and on: what observability adds to a request (the 99 in
    // 100 traces do not sample and the one they do). The cases without traces run first: once a
    // trace layer is built the process has a sampler (process-wide, as in the binary, where it
    // exists only with traces on). The statement's round trip is not this thread's CPU.
    let sink = rt
        .block_on(bench::otlp_sink::OtlpSink::start())
        .expect("OTLP sink");
    let endpoint = format!("{}/v1/traces", sink.endpoint());
    let on = TraceSettings {
        service_name: "bench".into(),
        sampler: SamplerChoice::ParentBasedRatio(0.01),
    };
    let metrics = bench::micro::metrics(state);
    // What metrics add to a request, alone: the in-flight gauge and the finished request's
    // series (route histogram, the tenant's and the plan's series, the rate-limit decision),
    // as the observe middleware records them.
    let slot = platform::metrics::TenantSlot::default();
    slot.set(&shared_tenant);
    let decision = limits::Decision {
        scope: limits::Scope::Tenant,
        allowed: true,
        limit: 100,
        remaining: 99,
        reset_secs: 1,
    };
    let get = axum::http::Method::GET;
    let finished = platform::metrics::Finished {
        route: "/api/v1/projects/{project_id}/tasks/{task_id}",
        method: &get,
        status: 200,
        seconds: 0.001,
        tenant: Some(&slot),
        rate_limit: Some(&decision),
        problem: None,
        class: None,
    };
    g.bench_function("metrics: one request's in-flight gauge and series", |b| {
        b.iter(|| {
            let in_flight = metrics.start();
            metrics.finish(black_box(&finished));
            drop(in_flight);
        });
    });
    let metered = platform::router::router(state.with_metrics(metrics.clone()));
    let get_task = bench::micro::GetTask::of(shared);
    for (label, traces, router) in [
        ("metrics off, traces off", None, &router),
        ("metrics on, traces off", None, &metered),
        ("metrics off, traces on (1%)", Some(&on), &router),
        ("metrics on, traces on (1%)", Some(&on), &metered),
    ] {
        let (dispatch, telemetry) = telemetry::scoped(
            BoxMakeWriter::new(std::io::sink),
            true,
            traces,
            Some(&endpoint),
        )
        .expect("subscriber");
        g.bench_function(format!("observability: GET one task, {label}"), |b| {
            let _scoped = tracing::dispatcher::set_default(&dispatch);
            b.to_async(rt).iter_batched(
                || get_task.request(),
                |req| {
                    let router = router.clone();
                    async move {
                        let resp = router.oneshot(req).await.expect("infallible");
                        assert_eq!(resp.status(), 200);
                    }
                },
                BatchSize::SmallInput,
            );
        });
        // Flushing blocks: off the runtime.
        std::thread::spawn(move || drop(telemetry))
            .join()
            .expect("flushed");
    }
    g.finish();
}
