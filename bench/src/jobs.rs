//! `bench jobs`: background jobs end to end (enqueue in a tenant transaction, as a request
//! handler does -> claimed -> no-op handler -> fenced completion), against a bare
//! `SELECT … FOR UPDATE SKIP LOCKED` loop over one table with the same no-op, in the same run, on
//! the test harness's throwaway clusters. It measures and prints; it asserts nothing about speed.
//!
//! Scenarios: 1 shared tenant, 100 shared tenants, 50 dedicated databases (throughput until every
//! job has completed, and enqueue->start latency under load), and idle latency (one job at a
//! time). For 100 tenants and 50 databases it also reports the spread of per-tenant p99 start
//! latency (fairness), and for each scenario the CPU time per job of this process (enqueuers and
//! worker) and of PostgreSQL (both clusters), which says where a job's cost is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use jobs::{JobContext, JobFailure, JobKind, KindSpec, NewJob, Registry, Worker, WorkerConfig};
use platform_tests::{TestApp, clusters, connect};
use tenancy::catalog::{Placement, Tenant};

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
    /// Jobs claimed per round trip by the worker (`WorkerConfig::batch`; its default if unset).
    #[arg(long)]
    batch: Option<usize>,
    /// Do not forward hints to other instances by `NOTIFY` (to see what it costs).
    #[arg(long)]
    no_notify: bool,
    /// Run only these scenarios (comma-separated: bare, one, many, dedicated, idle).
    #[arg(long, default_value = "bare,one,many,dedicated,idle")]
    only: String,
    /// Connection budget of each database server for the dedicated scenario: the platform's
    /// default (40), so 25 dedicated databases per server share 40 connections with the
    /// enqueuing requests.
    #[arg(long, default_value_t = 40)]
    server_budget: u32,
    /// Also break PostgreSQL's time per job down by statement and trigger function
    /// (`pg_stat_statements`, `track_functions`) for the bare loop and the shared-tenant
    /// scenarios (restarts the primary cluster to load the extension).
    #[arg(long)]
    pg_stats: bool,
}

/// CPU time used so far by this process (the enqueuers and the worker) and by the two
/// PostgreSQL clusters (postmasters, their live children, and the children they reaped), in
/// clock ticks (Linux `USER_HZ`, 100 per second).
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    client: u64,
    server: u64,
}

/// utime + stime (+ cutime + cstime with `children`) and the parent pid from `/proc/<pid>/stat`.
fn ticks(pid: &str, children: bool) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15, cutime 16, cstime 17.
    let own = n(11) + n(12);
    let reaped = if children { n(13) + n(14) } else { 0 };
    Some((own + reaped, n(1)))
}

impl Cpu {
    fn now() -> Self {
        let client = ticks("self", false).map_or(0, |(t, _)| t);
        let masters: Vec<u64> = [&clusters().primary, &clusters().second]
            .iter()
            .filter_map(|c| std::fs::read_to_string(c.dir().join("postmaster.pid")).ok())
            .filter_map(|p| p.lines().next().and_then(|l| l.trim().parse().ok()))
            .collect();
        let mut server = 0;
        for m in &masters {
            server += ticks(&m.to_string(), true).map_or(0, |(t, _)| t);
        }
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if let Some((t, ppid)) = ticks(pid, false)
                    && masters.contains(&ppid)
                {
                    server += t;
                }
            }
        }
        Self { client, server }
    }

    /// CPU µs per job since `before`: (this process, PostgreSQL).
    fn per_job(self, before: Self, jobs: usize) -> (f64, f64) {
        let us = |t: u64| t as f64 * 10_000.0 / jobs.max(1) as f64;
        (
            us(self.client.saturating_sub(before.client)),
            us(self.server.saturating_sub(before.server)),
        )
    }
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
    /// CPU µs per job: (this process, PostgreSQL).
    cpu: (f64, f64),
    hist: Histogram<u64>,
    per_tenant_p99: Vec<f64>,
}

/// Owner connections to every database the scenario's tenants are in, with those tenants' ids:
/// to count the jobs completed (not only started).
struct Completed(Vec<(tokio_postgres::Client, Vec<uuid::Uuid>)>);

impl Completed {
    async fn open(app: &TestApp, tenants: &[Tenant]) -> anyhow::Result<Self> {
        let names: HashMap<_, _> = app
            .app
            .tenancy
            .catalog
            .db_servers()
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        let mut by_db: HashMap<String, Vec<uuid::Uuid>> = HashMap::new();
        for t in tenants {
            let url = match &t.placement {
                Placement::Shared => clusters().primary.url(&app.shared_db),
                Placement::Dedicated { server, database } => {
                    if names.get(server).map(String::as_str) == Some("second") {
                        clusters().second.url(database)
                    } else {
                        clusters().primary.url(database)
                    }
                }
            };
            by_db.entry(url).or_default().push(t.id.as_uuid());
        }
        let mut out = Vec::new();
        for (url, ids) in by_db {
            out.push((connect(&url).await, ids));
        }
        Ok(Self(out))
    }

    /// Jobs of the benchmark's kind that succeeded.
    async fn count(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for (client, ids) in &self.0 {
            let c: i64 = client
                .query_one(
                    "SELECT count(*) FROM jobs
                     WHERE kind = 'bench.noop' AND state = 'succeeded' AND tenant_id = ANY($1)",
                    &[ids],
                )
                .await?
                .get(0);
            n += usize::try_from(c).unwrap_or(0);
        }
        Ok(n)
    }
}

/// Runs `n` jobs spread over `tenants`, enqueued by `enqueuers` concurrent transactions; done
/// when every job has completed (succeeded in its database).
async fn platform_run(
    app: &TestApp,
    tenants: &[Tenant],
    n: usize,
    enqueuers: usize,
    config: WorkerConfig,
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
            config,
        )
        .run(),
    );
    let kind = JobKind::parse("bench.noop")?;
    let completed = Completed::open(app, tenants).await?;
    let cpu = Cpu::now();
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
    while completed.count().await? < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name}: jobs did not all complete"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed();
    let cpu = Cpu::now().per_job(cpu, n);
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
        cpu,
        hist: h,
        per_tenant_p99,
    })
}

/// Idle latency: one job at a time, waiting for it to start before the next.
async fn idle(
    app: &TestApp,
    tenant: &Tenant,
    samples: usize,
    config: WorkerConfig,
) -> anyhow::Result<Histogram<u64>> {
    let probe = Arc::new(Probe::default());
    let p = Arc::clone(&probe);
    let registry = Registry::default().with("bench.noop", KindSpec::default(), move |ctx| {
        noop(Arc::clone(&p), ctx)
    });
    let worker = tokio::spawn(Worker::new(app.app.tenancy.clone(), registry, config).run());
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
async fn bare(
    n: usize,
    enqueuers: usize,
    concurrency: usize,
    pg_stats: bool,
) -> anyhow::Result<Result1> {
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
    if pg_stats {
        crate::jobs_profile::reset(&db).await?;
    }
    let cpu = Cpu::now();
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
    let cpu = Cpu::now().per_job(cpu, n);
    if pg_stats {
        crate::jobs_profile::report("bare loop", &db, n, "bare_jobs").await?;
    }
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
        cpu,
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
        "| {} | {:.0} | {:.1} | {:.1} | {:.0} / {:.0} |{spread}",
        r.name,
        r.jobs_per_s,
        pct(&r.hist, 0.5),
        pct(&r.hist, 0.99),
        r.cpu.0,
        r.cpu.1,
    );
}

/// Runs every scenario once, bare loop first, and prints a Markdown table.
pub async fn run(args: JobsArgs) -> anyhow::Result<()> {
    if args.pg_stats {
        crate::jobs_profile::enable().await?;
    }
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
    let config = WorkerConfig {
        concurrency: args.concurrency,
        batch: args.batch.unwrap_or(WorkerConfig::default().batch),
        notify: !args.no_notify,
        ..WorkerConfig::default()
    };
    let on = |s: &str| args.only.split(',').any(|o| o == s);
    println!(
        "jobs {} per scenario, {} enqueuers, concurrency {}, batch {}, server budget {}",
        args.jobs, args.enqueuers, config.concurrency, config.batch, args.server_budget
    );
    println!(
        "| scenario | jobs/s | enqueue->start p50 ms | p99 ms | CPU µs/job bench / PostgreSQL |"
    );
    println!("|---|---|---|---|---|");
    if on("bare") {
        let r = bare(args.jobs, args.enqueuers, args.concurrency, args.pg_stats).await?;
        print(&r);
    }
    let one = tenants_of(&app, "one", 1, "shared").await?;
    for (scenario, label) in [
        ("one", "jobs, 1 shared tenant"),
        ("many", "jobs, 100 shared tenants"),
    ] {
        if !on(scenario) {
            continue;
        }
        let tenants = if scenario == "one" {
            one.clone()
        } else {
            tenants_of(&app, "many", 100, "shared").await?
        };
        if args.pg_stats {
            crate::jobs_profile::reset(&app.shared_db).await?;
        }
        let r = platform_run(
            &app,
            &tenants,
            args.jobs,
            args.enqueuers,
            config.clone(),
            label,
        )
        .await?;
        print(&r);
        if args.pg_stats {
            crate::jobs_profile::report(label, &app.shared_db, args.jobs, "jobs").await?;
        }
    }
    if on("dedicated") {
        let dedicated = tenants_of(&app, "ded", 50, "dedicated").await?;
        print(
            &platform_run(
                &app,
                &dedicated,
                args.jobs,
                args.enqueuers,
                config.clone(),
                "jobs, 50 dedicated databases",
            )
            .await?,
        );
    }
    if on("idle") {
        let h = idle(&app, &one[0], args.idle_samples, config).await?;
        println!(
            "| jobs, idle (one at a time, {} samples) | - | {:.1} | {:.1} | - |",
            args.idle_samples,
            pct(&h, 0.5),
            pct(&h, 0.99)
        );
    }
    app.finish().await;
    Ok(())
}
