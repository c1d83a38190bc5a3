//! What observability adds to one request, one setting per process (the trace sampler is
//! process-wide, as in the binary): `cargo bench -p bench --bench request_observe -- SETTING`
//! with SETTING one of `off`, `metrics`, `traces-never` (traces on, parent-based always-off: the
//! unsampled path alone), `traces-1%`, `traces-always`, `both` (metrics and traces at 1%).
//!
//! It drives GET one task of a shared tenant through the whole router (with `HTTP=1`: over a
//! loopback HTTP/1.1 connection to the router served by `axum::serve`, as the binary serves it)
//! under the platform's own subscriber installed as the process's (`platform::telemetry`, JSON
//! log to a sink, traces to an OTLP/HTTP sink in this process), warms up, then prints the
//! process's CPU per request (every thread: the trace exporter's and the database client's too)
//! and this thread's. Run it under `valgrind --tool=callgrind` for instructions per request
//! (docs/benchmarks.md).

use std::time::Instant;

use bench::world::World;
use platform::telemetry::{self, SamplerChoice, TraceSettings};
use tower::ServiceExt as _;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

fn cpu_ns(path: &str) -> u64 {
    // `schedstat`'s first field: on-CPU nanoseconds.
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// On-CPU nanoseconds of every thread of this process.
fn process_cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|t| cpu_ns(&format!("{}/schedstat", t.path().display())))
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench -p bench` runs every benchmark target with the same arguments: without a
    // setting of its own this one says how to run it and stops.
    let setting = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let requests: u32 = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let (metrics_on, sampler) = match setting.as_deref() {
        Some("off") => (false, None),
        Some("metrics") => (true, None),
        Some("traces-never") => (false, Some(SamplerChoice::ParentBasedAlwaysOff)),
        Some("traces-1%") => (false, Some(SamplerChoice::ParentBasedRatio(0.01))),
        Some("traces-always") => (false, Some(SamplerChoice::ParentBasedAlwaysOn)),
        Some("both") => (true, Some(SamplerChoice::ParentBasedRatio(0.01))),
        _ => {
            println!(
                "request_observe: skipped; run it with a setting: cargo bench -p bench --bench \
                 request_observe -- off|metrics|traces-never|traces-1%|traces-always|both"
            );
            return;
        }
    };
    let setting = setting.unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let world = rt
        .block_on(World::build(bench::micro::WORLD))
        .expect("benchmark world");
    let sink = rt
        .block_on(bench::otlp_sink::OtlpSink::start())
        .expect("OTLP sink");
    let endpoint = format!("{}/v1/traces", sink.endpoint());
    let traces = sampler.map(|sampler| TraceSettings {
        service_name: "bench".into(),
        sampler,
    });
    let (dispatch, telemetry) = telemetry::scoped(
        BoxMakeWriter::new(std::io::sink),
        true,
        traces.as_ref(),
        Some(&endpoint),
    )
    .expect("subscriber");
    // The process's subscriber, as in the binary (tasks the server spawns use it too).
    tracing::dispatcher::set_global_default(dispatch).expect("the first subscriber");
    let state = rt
        .block_on(bench::micro::state(&world))
        .expect("application state");
    let state = if metrics_on {
        state.with_metrics(bench::micro::metrics(&state))
    } else {
        state
    };
    let router = platform::router::router(state.clone());
    let shared = world.shared_tenants().next().expect("a shared tenant");
    let get_task = bench::micro::GetTask::of(shared);
    // With HTTP=1, over a loopback socket to the router served by `axum::serve` as the binary
    // serves it (hyper's own work on each request counted too; the client's is the same in
    // every setting).
    let over_http = std::env::var("HTTP").is_ok_and(|v| v == "1");
    let served = over_http.then(|| {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("listener");
            let addr = listener.local_addr().expect("address");
            let app = router
                .clone()
                .into_make_service_with_connect_info::<std::net::SocketAddr>();
            tokio::spawn(async move { axum::serve(listener, app).await.ok() });
            addr
        })
    });
    let run = |n: u32| {
        rt.block_on(async {
            if let Some(addr) = served {
                let mut sender = bench::load::connect(addr).await.expect("connect");
                for _ in 0..n {
                    let (parts, _) = get_task.request().into_parts();
                    let req = axum::http::Request::from_parts(
                        parts,
                        http_body_util::Full::new(axum::body::Bytes::new()),
                    );
                    let status = bench::load::exchange(&mut sender, req)
                        .await
                        .expect("exchange");
                    assert_eq!(status, 200);
                }
                return;
            }
            for _ in 0..n {
                let resp = router
                    .clone()
                    .oneshot(get_task.request())
                    .await
                    .expect("infallible");
                assert_eq!(resp.status(), 200);
            }
        });
    };
    run(requests / 4);
    let (process, thread, wall) = (
        process_cpu_ns(),
        cpu_ns("/proc/thread-self/schedstat"),
        Instant::now(),
    );
    run(requests);
    let per = |ns: u64| ns as f64 / f64::from(requests) / 1000.0;
    println!(
        "{setting}: {requests} requests, process CPU {:.2} µs/request, this thread {:.2} µs/request, wall {:.2} µs/request",
        per(process_cpu_ns() - process),
        per(cpu_ns("/proc/thread-self/schedstat") - thread),
        wall.elapsed().as_secs_f64() * 1e6 / f64::from(requests),
    );
    std::thread::spawn(move || drop(telemetry))
        .join()
        .expect("flushed");
    rt.block_on(state.tenancy.catalog.pool().close());
    drop(state);
    drop(rt);
    world.shutdown();
}
