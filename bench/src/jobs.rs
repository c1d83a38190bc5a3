//! `bench jobs`: background jobs end to end (enqueue in a tenant transaction, as a request
//! handler does -> claimed -> no-op handler -> fenced completion), against a bare
//! `SELECT … FOR UPDATE SKIP LOCKED` loop over one table with the same no-op, in the same run, on
//! the test harness's throwaway clusters. It measures and prints; it asserts nothing about speed.
//!
//! Scenarios: 1 shared tenant, 100 shared tenants, 50 dedicated databases (throughput and
//! enqueue->start latency under load), and idle latency (one job at a time). For 100 tenants it
//! also reports the spread of per-tenant p99 start latency (fairness).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use jobs::{JobContext, JobFailure, JobKind, KindSpec, NewJob, Registry, Worker, WorkerConfig};
use platform_tests::{TestApp, clusters, connect};
use tenancy::catalog::Tenant;

#[derive(Args, Debug)]
pub struct JobsArgs {
    /// Jobs per throughput scenario.
    #[arg(long, default_value_t = 5000)]
    jobs: usize,
    /// Concurrent enqueuing "requests".
    #[arg(long, default_value_t = 8)]
    enqueuers: usize,
    /// Worker concurrency (jobs running at once), also the bare loop's worker count.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Samples of idle enqueue->start latency.
    #[arg(long, default_value_t = 200)]
    idle_samples: usize,
    /// Connection budget of each database server for the dedicated scenario (the platform's
    /// default is 40): large enough by default that 25 dedicated databases per server each keep
    /// their pool, so the budget's shedding is not what is measured; set 40 to see it.
    #[arg(long, default_value_t = 250)]
    server_budget: u32,
}

/// Enqueue instants by job payload key, and start latencies (µs) per tenant.
#[derive(Default)]
struct Probe {
    enqueued: Mutex<HashMap<u64, Instant>>,
    latencies: Mutex<Vec<(usize, u64)>>,
    started: AtomicUsize,
}

fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("histogram")
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

async fn noop(probe: Arc<Probe>, ctx: JobContext) -> (JobContext, Result<(), JobFailure>) {
    let key = ctx.payload["k"].as_u64().unwrap_or_default();
    let tenant_ix = ctx.payload["t"].as_u64().unwrap_or_default() as usize;
    let at = probe.enqueued.lock().expect("probe").remove(&key);
    if let Some(at) = at {
        let us = at.elapsed().as_micros() as u64;
        probe.latencies.lock().expect("probe").push((tenant_ix, us));
    }
    probe.started.fetch_add(1, Ordering::Relaxed);
    (ctx, Ok(()))
}

struct Result1 {
    name: String,
    jobs_per_s: f64,
    hist: Histogram<u64>,
    per_tenant_p99: Vec<f64>,
}

/// Runs `n` jobs spread over `tenants`, enqueued by `enqueuers` concurrent transactions.
async fn platform_run(
    app: &TestApp,
    tenants: &[Tenant],
    n: usize,
    enqueuers: usize,
    concurrency: usize,
    name: &str,
) -> anyhow::Result<Result1> {
    let probe = Arc::new(Probe::default());
    let p = Arc::clone(&probe);
    let spec = KindSpec::default();
    let registry =
        Registry::default().with("bench.noop", spec, move |ctx| noop(Arc::clone(&p), ctx));
    let worker = tokio::spawn(
        Worker::new(
            app.app.tenancy.clone(),
            registry,
            // Hints go to other instances too (`NOTIFY`), as in production.
            WorkerConfig {
                concurrency,
                ..WorkerConfig::default()
            },
        )
        .run(),
    );
    let kind = JobKind::parse("bench.noop")?;
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..enqueuers {
        let (next, probe, kind) = (Arc::clone(&next), Arc::clone(&probe), kind.clone());
        let dp = app.app.tenancy.dataplane.clone();
        let tenants = tenants.to_vec();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let ix = i % tenants.len();
                let mut tx = dp.connect(&tenants[ix]).await?.begin();
                let job = NewJob::new(kind.clone(), serde_json::json!({"k": i, "t": ix}));
                jobs::enqueue(&mut tx, job).await?;
                probe
                    .enqueued
                    .lock()
                    .expect("probe")
                    .insert(i as u64, Instant::now());
                tx.commit().await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while probe.started.load(Ordering::Relaxed) < n {
        anyhow::ensure!(Instant::now() < deadline, "{name}: jobs did not all run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    worker.abort();
    let mut h = hist();
    let mut per: HashMap<usize, Histogram<u64>> = HashMap::new();
    for (t, us) in probe.latencies.lock().expect("probe").iter() {
        h.record(*us).ok();
        per.entry(*t).or_insert_with(hist).record(*us).ok();
    }
    let mut per_tenant_p99: Vec<f64> = per.values().map(|h| pct(h, 0.99)).collect();
    per_tenant_p99.sort_by(f64::total_cmp);
    Ok(Result1 {
        name: name.to_owned(),
        jobs_per_s: n as f64 / elapsed.as_secs_f64(),
        hist: h,
        per_tenant_p99,
    })
}

/// Idle latency: one job at a time, waiting for it to start before the next.
async fn idle(app: &TestApp, tenant: &Tenant, samples: usize) -> anyhow::Result<Histogram<u64>> {
    let probe = Arc::new(Probe::default());
    let p = Arc::clone(&probe);
    let registry = Registry::default().with("bench.noop", KindSpec::default(), move |ctx| {
        noop(Arc::clone(&p), ctx)
    });
    let worker =
        tokio::spawn(Worker::new(app.app.tenancy.clone(), registry, WorkerConfig::default()).run());
    let kind = JobKind::parse("bench.noop")?;
    for i in 0..samples {
        let mut tx = app.app.tenancy.dataplane.connect(tenant).await?.begin();
        jobs::enqueue(
            &mut tx,
            NewJob::new(kind.clone(), serde_json::json!({"k": i, "t": 0})),
        )
        .await?;
        probe
            .enqueued
            .lock()
            .expect("probe")
            .insert(i as u64, Instant::now());
        tx.commit().await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe.started.load(Ordering::Relaxed) <= i {
            anyhow::ensure!(Instant::now() < deadline, "idle job did not start");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    worker.abort();
    let mut h = hist();
    for (_, us) in probe.latencies.lock().expect("probe").iter() {
        h.record(*us).ok();
    }
    Ok(h)
}

/// The bare loop: one table, `concurrency` workers claiming one row at a time with
/// `FOR UPDATE SKIP LOCKED` and marking it done, `enqueuers` inserting one row per transaction.
async fn bare(n: usize, enqueuers: usize, concurrency: usize) -> anyhow::Result<Result1> {
    let c = clusters();
    let admin = connect(&c.primary.url("postgres")).await;
    let db = format!("bench_bare_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await?;
    let url = c.primary.url(&db);
    connect(&url)
        .await
        .batch_execute(
            "CREATE TABLE bare_jobs (id bigserial PRIMARY KEY, k bigint NOT NULL,
                 state text NOT NULL DEFAULT 'pending', payload jsonb NOT NULL DEFAULT '{}');
             CREATE INDEX bare_pending ON bare_jobs (id) WHERE state = 'pending';",
        )
        .await?;
    let probe = Arc::new(Probe::default());
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (probe, url) = (Arc::clone(&probe), url.clone());
        workers.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let claim = client
                .prepare(
                    "UPDATE bare_jobs SET state = 'running' WHERE id = (
                        SELECT id FROM bare_jobs WHERE state = 'pending' ORDER BY id
                        FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, k",
                )
                .await?;
            let done = client
                .prepare("UPDATE bare_jobs SET state = 'done' WHERE id = $1")
                .await?;
            while probe.started.load(Ordering::Relaxed) < n {
                match client.query_opt(&claim, &[]).await? {
                    Some(row) => {
                        let (id, k): (i64, i64) = (row.get(0), row.get(1));
                        if let Some(at) = probe.enqueued.lock().expect("probe").remove(&(k as u64))
                        {
                            probe
                                .latencies
                                .lock()
                                .expect("probe")
                                .push((0, at.elapsed().as_micros() as u64));
                        }
                        probe.started.fetch_add(1, Ordering::Relaxed);
                        client.execute(&done, &[&id]).await?;
                    }
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..enqueuers {
        let (next, probe, url) = (Arc::clone(&next), Arc::clone(&probe), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let ins = client
                .prepare("INSERT INTO bare_jobs (k) VALUES ($1)")
                .await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                probe
                    .enqueued
                    .lock()
                    .expect("probe")
                    .insert(i as u64, Instant::now());
                client.execute(&ins, &[&(i as i64)]).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    for w in workers {
        w.await??;
    }
    let elapsed = start.elapsed();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await?;
    let mut h = hist();
    for (_, us) in probe.latencies.lock().expect("probe").iter() {
        h.record(*us).ok();
    }
    Ok(Result1 {
        name: "bare SKIP LOCKED loop, 1 table".into(),
        jobs_per_s: n as f64 / elapsed.as_secs_f64(),
        hist: h,
        per_tenant_p99: Vec::new(),
    })
}

async fn tenants_of(
    app: &TestApp,
    prefix: &str,
    n: usize,
    placement: &str,
) -> anyhow::Result<Vec<Tenant>> {
    let mut out = Vec::new();
    for i in 0..n {
        let server =
            (placement == "dedicated").then_some(if i % 2 == 0 { "local" } else { "second" });
        let t = app.tenant(&format!("{prefix}{i}"), placement, server).await;
        out.push(
            app.app
                .tenancy
                .catalog
                .tenant_by_slug(&t.slug)
                .await?
                .ok_or_else(|| anyhow::anyhow!("tenant"))?,
        );
    }
    Ok(out)
}

fn print(r: &Result1) {
    let spread = if r.per_tenant_p99.len() > 1 {
        let median = r.per_tenant_p99[r.per_tenant_p99.len() / 2];
        let max = r.per_tenant_p99.last().copied().unwrap_or_default();
        format!(
            " | per-tenant p99: median {median:.1} ms, max {max:.1} ms ({:.2}x)",
            max / median.max(0.001)
        )
    } else {
        String::new()
    };
    println!(
        "| {} | {:.0} | {:.1} | {:.1} |{spread}",
        r.name,
        r.jobs_per_s,
        pct(&r.hist, 0.5),
        pct(&r.hist, 0.99)
    );
}

/// Runs every scenario once, bare loop first, and prints a Markdown table.
pub async fn run(args: JobsArgs) -> anyhow::Result<()> {
    // Room for the enqueuers and every running job at once, as the bare loop has (one connection
    // each), so the pool is not what is measured.
    let pool = (args.enqueuers + args.concurrency + 8).to_string();
    let budget = args.server_budget.to_string();
    let app = TestApp::spawn_with(&[
        ("PLATFORM_SHARED_POOL_SIZE", &pool),
        ("PLATFORM_DEDICATED_POOL_SIZE", "8"),
        ("PLATFORM_SERVER_CONNECTION_BUDGET", &budget),
    ])
    .await;
    // The second server was registered by the harness with the default budget.
    app.app
        .tenancy
        .provisioner
        .register_server(
            "second",
            &clusters().second.url("postgres"),
            args.server_budget,
            true,
        )
        .await?;
    // The platform's own worker is not part of this benchmark.
    app.app.stop_jobs();
    println!(
        "jobs {} per scenario, {} enqueuers, concurrency {}, server budget {}",
        args.jobs, args.enqueuers, args.concurrency, args.server_budget
    );
    println!("| scenario | jobs/s | enqueue->start p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    print(&bare(args.jobs, args.enqueuers, args.concurrency).await?);
    let one = tenants_of(&app, "one", 1, "shared").await?;
    print(
        &platform_run(
            &app,
            &one,
            args.jobs,
            args.enqueuers,
            args.concurrency,
            "jobs, 1 shared tenant",
        )
        .await?,
    );
    let many = tenants_of(&app, "many", 100, "shared").await?;
    print(
        &platform_run(
            &app,
            &many,
            args.jobs,
            args.enqueuers,
            args.concurrency,
            "jobs, 100 shared tenants",
        )
        .await?,
    );
    let dedicated = tenants_of(&app, "ded", 50, "dedicated").await?;
    print(
        &platform_run(
            &app,
            &dedicated,
            args.jobs,
            args.enqueuers,
            args.concurrency,
            "jobs, 50 dedicated databases",
        )
        .await?,
    );
    let h = idle(&app, &one[0], args.idle_samples).await?;
    println!(
        "| jobs, idle (one at a time, {} samples) | - | {:.1} | {:.1} |",
        args.idle_samples,
        pct(&h, 0.5),
        pct(&h, 0.99)
    );
    app.finish().await;
    Ok(())
}
