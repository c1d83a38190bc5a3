//! Micro-benchmark of the request path without the database (`cargo bench -p bench`): everything a
//! tenant API request does before its first statement reaches PostgreSQL, each step alone and
//! then the whole extractor chain and the middleware. Caches are warm (the steady state); the
//! clusters are started only to warm them, and no benchmarked step talks to PostgreSQL: a pool
//! checkout hands out an idle connection (deadpool's `Fast` recycling sends nothing).
//!
//! JWT verification and rate limits do not exist yet: API-key parsing (SHA-256) and the cached
//! key verification stand in for authentication until they land.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts as _;
use axum::http::Request;
use bench::world::{ADMIN_TOKEN, World, WorldConfig};
use criterion::{BatchSize, Criterion};
use platform::extract::admin::AdminToken;
use platform::extract::tenant::TenantDb;
use platform::state::AppState;
use tenancy::credentials::PresentedKey;
use tenancy::ids::DomainName;
use tenancy::resolve::HostTenant;
use tower::ServiceExt as _;

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
        .block_on(World::build(WorldConfig {
            shared_tenants: 1,
            dedicated_tenants: 1,
            tasks_per_project: 51,
            shared_pool: 4,
            dedicated_pool: 2,
            budget: 40,
        }))
        .expect("benchmark world");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let state = rt.block_on(async {
        let started = tenancy::bootstrap::start(&world.settings().expect("settings"))
            .await
            .expect("bootstrap");
        AppState {
            tenancy: Arc::new(started.tenancy),
            admin_token: AdminToken::new(ADMIN_TOKEN),
        }
    });
    bench_request_path(&mut c, &rt, &world, &state);
    c.final_summary();
    rt.block_on(state.tenancy.catalog.pool().close());
    drop(state);
    drop(rt);
    world.shutdown();
}

fn bench_request_path(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    world: &World,
    state: &AppState,
) {
    let router = platform::router::router(state.clone());
    let t = &state.tenancy;
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
            let verified = t.api_keys.verify(&t.dataplane, tenant, &k).await;
            assert!(matches!(verified, Ok(Some(_))), "the key verifies");
            drop(t.dataplane.connect(tenant).await.expect("connect"));
        }
        (shared_tenant, dedicated_tenant)
    });

    let mut g = c.benchmark_group("request_path");
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
            t.api_keys
                .verify(&t.dataplane, &shared_tenant, &k)
                .await
                .expect("hit")
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
                    |mut parts| async move {
                        TenantDb::from_request_parts(&mut parts, state)
                            .await
                            .expect("extracts")
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
    g.finish();
}
