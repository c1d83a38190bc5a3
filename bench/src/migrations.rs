//! `bench migrations`: starts two throwaway PostgreSQL clusters
//! (`tenancy::embedded::Cluster`), provisions N dedicated tenant databases across them through the
//! real provisioning path, then measures in one run:
//! (a) the fleet runner applying one new migration (a table with an index) to every database,
//! (b) a no-op fleet pass (recorded versions), and (b') a no-op pass that connects to every
//! database (`--verify`), and the baseline: an equivalent migration applied one database at a
//! time in a plain loop. Peak connections per server are sampled from `pg_stat_activity`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt as _;
use refinery::{Migration, Runner};
use serde_json::json;
use tenancy::bootstrap::SharedSchema;
use tenancy::crypto::MasterKey;
use tenancy::embedded::Cluster;
use tenancy::ids::TenantSlug;
use tenancy::migrate::fleet::{FleetOptions, FleetReport};
use tenancy::provision::{CreateTenant, PlacementRequest};
use tenancy::settings::Settings;

use crate::output::Output;

#[derive(Args, Debug)]
pub struct MigrationsArgs {
    /// Dedicated tenant databases to provision (split evenly over the two servers).
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Where the two clusters live (removed first, and after unless `--keep`).
    #[arg(long, default_value = "/tmp/platform-bench-migrations")]
    dir: PathBuf,
    /// Fleet passes to measure, as `concurrency:per_server` pairs; each applies its own new
    /// migration. The first is pass (a) and is also used for the no-op passes.
    #[arg(long, value_delimiter = ',', default_value = "16:8")]
    passes: Vec<String>,
    /// Tenants provisioned at once while setting up.
    #[arg(long, default_value_t = 8)]
    provision_concurrency: usize,
    /// Keep the clusters' directory afterwards.
    #[arg(long)]
    keep: bool,
    /// One JSON object with every number instead of the text report.
    #[arg(long)]
    json: bool,
}

fn bench_migration(version: i64, table: &str) -> anyhow::Result<Migration> {
    let sql = format!(
        "CREATE TABLE {table} (
             tenant_id  uuid NOT NULL,
             id         uuid NOT NULL,
             kind       text NOT NULL,
             payload    jsonb,
             created_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (tenant_id, id));
         CREATE INDEX {table}_kind ON {table} (tenant_id, kind, created_at);
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON {table}
             USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());
         GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO platform_app;"
    );
    Ok(Migration::unapplied(&format!("V{version}__{table}"), &sql)?)
}

/// CPU seconds spent so far by each server (its postmaster's reaped children: every backend that
/// has exited) and by this process; the difference across a phase is what the phase cost.
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    a: f64,
    b: f64,
    runner: f64,
}

impl CpuTimes {
    fn now(a: &Cluster, b: &Cluster) -> Self {
        let ticks = |path: &Path, fields: [usize; 2]| -> f64 {
            // Fields after the parenthesised command name; utime is field 14 (1-based).
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1;
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let get = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
                    Some(get(fields[0])? + get(fields[1])?)
                })
                .map_or(0.0, |t| t / 100.0)
        };
        let server = |c: &Cluster| {
            std::fs::read_to_string(c.dir().join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
                .map_or(0.0, |pid| {
                    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
                    // cutime + cstime (reaped backends) and the postmaster's own.
                    ticks(&stat, [16, 17]) + ticks(&stat, [14, 15])
                })
        };
        Self {
            a: server(a),
            b: server(b),
            runner: ticks(Path::new("/proc/self/stat"), [14, 15]),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            a: self.a - before.a,
            b: self.b - before.b,
            runner: self.runner - before.runner,
        }
    }

    fn json(self) -> serde_json::Value {
        json!({"server_a_s": (self.a * 100.0).round() / 100.0, "server_b_s": (self.b * 100.0).round() / 100.0,
               "runner_s": (self.runner * 100.0).round() / 100.0})
    }

    fn text(self) -> String {
        format!(
            "CPU: server a {:.1}s, server b {:.1}s, runner {:.1}s",
            self.a, self.b, self.runner
        )
    }
}

/// Flushes both servers' dirty buffers, so a phase does not pay for the previous one's
/// checkpoint (provisioning and each pass leave a lot of WAL behind).
async fn settle(servers: &[(String, String)]) -> anyhow::Result<()> {
    for (_, url) in servers {
        tenancy::pg::connect(&url.parse()?)
            .await?
            .batch_execute("CHECKPOINT")
            .await?;
    }
    Ok(())
}

/// Samples `pg_stat_activity` on each server until stopped; keeps the peak client backends.
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Vec<(String, Arc<AtomicI64>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sampler {
    async fn start(servers: &[(String, String)]) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut peaks = Vec::new();
        let mut tasks = Vec::new();
        for (name, url) in servers {
            let client = tenancy::pg::connect(&url.parse()?).await?;
            let peak = Arc::new(AtomicI64::new(0));
            peaks.push((name.clone(), Arc::clone(&peak)));
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    // Client backends other than this sampler's own.
                    if let Ok(row) = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity
                              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await
                    {
                        peak.fetch_max(row.get::<_, i64>(0), Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        Ok(Self { stop, peaks, tasks })
    }

    async fn finish(self) -> BTreeMap<String, i64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.ok();
        }
        self.peaks
            .into_iter()
            .map(|(n, p)| (n, p.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Runs the benchmark and prints its report.
pub async fn run(args: MigrationsArgs) -> anyhow::Result<()> {
    let out = &Output { json: args.json };
    let say = |s: &str| eprintln!("[bench] {s}");
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).ok();
    }
    std::fs::create_dir_all(&args.dir)?;
    let (dir_a, dir_b) = (args.dir.join("a"), args.dir.join("b"));
    let a = tokio::task::spawn_blocking(move || Cluster::ensure_running(&dir_a)).await??;
    let b = tokio::task::spawn_blocking(move || Cluster::ensure_running(&dir_b)).await??;
    let result = measure(&args, &a, &b, &say, out).await;
    for c in [&a, &b] {
        c.stop().ok();
    }
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).ok();
    }
    result
}

async fn measure(
    args: &MigrationsArgs,
    a: &Cluster,
    b: &Cluster,
    say: &dyn Fn(&str),
    out: &Output,
) -> anyhow::Result<()> {
    let admin = tenancy::pg::connect(&a.url("postgres").parse()?).await?;
    for db in ["bench_control", "bench_shared"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await?;
    }
    let key = MasterKey::generate().to_base64();
    let (control, shared) = (a.url("bench_control"), a.url("bench_shared"));
    let settings = Settings::from_lookup(|k| match k {
        "PLATFORM_DATABASE_URL" => Some(control.clone()),
        "PLATFORM_SHARED_DATABASE_URL" => Some(shared.clone()),
        "PLATFORM_MASTER_KEY" => Some(key.clone()),
        "PLATFORM_DEFAULT_DB_SERVER" => Some("a".into()),
        _ => None,
    })?;
    let started = tenancy::bootstrap::start_with(&settings, SharedSchema::Migrate).await?;
    let t = &started.tenancy;
    t.provisioner
        .register_server("a", &a.url("postgres"), 200, true)
        .await?;
    t.provisioner
        .register_server("b", &b.url("postgres"), 200, true)
        .await?;

    say(&format!(
        "provisioning {} dedicated tenants over servers a and b ({} at once)",
        args.tenants, args.provision_concurrency
    ));
    let clock = Instant::now();
    let provisioned = futures_util::stream::iter(0..args.tenants)
        .map(|i| {
            let p = t.provisioner.clone();
            async move {
                p.create_tenant(CreateTenant {
                    slug: TenantSlug::parse(&format!("bench-{i:05}"))?,
                    name: format!("Bench {i}"),
                    plan: "pro".into(),
                    placement: PlacementRequest::Dedicated {
                        server: Some(if i % 2 == 0 { "a" } else { "b" }.into()),
                    },
                })
                .await
                .with_context(|| format!("provisioning tenant {i}"))
            }
        })
        .buffer_unordered(args.provision_concurrency.max(1))
        .fold(0usize, |n, r| async move {
            r.map(|_| n + 1).unwrap_or_else(|e| {
                eprintln!("[bench] {e:#}");
                n
            })
        })
        .await;
    let provision_time = clock.elapsed();
    anyhow::ensure!(
        provisioned == args.tenants,
        "only {provisioned} tenants were provisioned"
    );
    say(&format!(
        "provisioned {provisioned} in {:.1}s",
        provision_time.as_secs_f64()
    ));

    let passes: Vec<(usize, usize)> = args
        .passes
        .iter()
        .map(|p| {
            let (c, s) = p
                .split_once(':')
                .context("a pass is `concurrency:per_server`")?;
            Ok((c.parse()?, s.parse()?))
        })
        .collect::<anyhow::Result<_>>()?;
    let (concurrency, per_server) = *passes.first().context("at least one pass")?;
    let head = tenancy::migrate::tenant_head_version();
    let mut with_a = tenancy::migrate::tenant_migrations();
    let servers = [
        ("a".to_owned(), a.url("postgres")),
        ("b".to_owned(), b.url("postgres")),
    ];
    let opts = FleetOptions {
        concurrency,
        per_server,
        ..FleetOptions::default()
    };
    let quiet: tenancy::migrate::fleet::Events = Arc::new(|_| {});

    // (a) one new migration over the fleet, per concurrency setting (each its own migration).
    let mut version = head;
    let mut measured = Vec::new();
    let mut pass_cpu = Vec::new();
    for (i, (c, s)) in passes.iter().enumerate() {
        version += 1;
        with_a.push(bench_migration(version, &format!("bench_events_p{i}"))?);
        say(&format!(
            "(a) fleet pass applying one new migration, concurrency {c}, per server {s}"
        ));
        settle(&servers).await?;
        let sampler = Sampler::start(&servers).await?;
        let cpu = CpuTimes::now(a, b);
        let o = FleetOptions {
            concurrency: *c,
            per_server: *s,
            ..FleetOptions::default()
        };
        let pass = t
            .migrator
            .run(with_a.clone(), &o, Arc::clone(&quiet))
            .await?;
        let sampled = sampler.finish().await;
        pass_cpu.push(CpuTimes::now(a, b).since(cpu));
        check(&pass, "pass (a)")?;
        measured.push((*c, *s, pass, sampled));
    }
    let mut with_baseline = with_a.clone();
    with_baseline.push(bench_migration(version + 1, "bench_events_loop")?);
    let (_, _, pass_a, sampled_a) = measured.first().cloned().context("a pass")?;
    // (b) no-op pass, by recorded versions.
    say("(b) no-op fleet pass");
    let pass_b = t
        .migrator
        .run(with_a.clone(), &opts, Arc::clone(&quiet))
        .await?;
    check(&pass_b, "pass (b)")?;
    // (b') no-op pass that connects to every database.
    say("(b') no-op fleet pass with --verify");
    let sampler = Sampler::start(&servers).await?;
    let verify_opts = FleetOptions {
        verify: true,
        ..opts.clone()
    };
    let pass_v = t
        .migrator
        .run(with_a.clone(), &verify_opts, Arc::clone(&quiet))
        .await?;
    let sampled_v = sampler.finish().await;
    check(&pass_v, "pass (b')")?;

    // Baseline: the same kind of migration, one database at a time, in a plain loop.
    say("baseline: one database at a time");
    let fleet = t.migrator.fleet().await?;
    settle(&servers).await?;
    let cpu = CpuTimes::now(a, b);
    let clock = Instant::now();
    for db in &fleet {
        let url = match db.server.as_str() {
            "b" => b.url(&db.db_name),
            _ => a.url(&db.db_name),
        };
        let mut client = tenancy::pg::connect(&url.parse()?).await?;
        Runner::new(&with_baseline).run_async(&mut client).await?;
    }
    let baseline = clock.elapsed();
    let baseline_cpu = CpuTimes::now(a, b).since(cpu);

    // Where the time goes: only connecting (and `SELECT 1`) to every database.
    let urls: Vec<String> = fleet
        .iter()
        .map(|db| match db.server.as_str() {
            "b" => b.url(&db.db_name),
            _ => a.url(&db.db_name),
        })
        .collect();
    settle(&servers).await?;
    let cpu = CpuTimes::now(a, b);
    let clock = Instant::now();
    for url in &urls {
        let c = tenancy::pg::connect(&url.parse()?).await?;
        c.simple_query("SELECT 1").await?;
    }
    let connect_loop = clock.elapsed();
    let connect_loop_cpu = CpuTimes::now(a, b).since(cpu);
    let cpu = CpuTimes::now(a, b);
    let clock = Instant::now();
    futures_util::stream::iter(urls.iter())
        .map(|url| async move {
            let c = tenancy::pg::connect(&url.parse()?).await?;
            c.simple_query("SELECT 1").await?;
            anyhow::Ok(())
        })
        .buffer_unordered(concurrency)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("[bench] connect: {e:#}");
            }
        })
        .await;
    let connect_parallel = clock.elapsed();
    let connect_parallel_cpu = CpuTimes::now(a, b).since(cpu);
    say(&format!(
        "baseline {}; connect loop {}; connect {concurrency} at a time {}",
        baseline_cpu.text(),
        connect_loop_cpu.text(),
        connect_parallel_cpu.text()
    ));
    say(&format!(
        "connect + SELECT 1 to every database: {:.2}s one at a time, {:.2}s {concurrency} at a time",
        connect_loop.as_secs_f64(),
        connect_parallel.as_secs_f64()
    ));

    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // The machine is shared; record how busy it was (1-minute load average, 2 cores).
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    let ratio = baseline.as_secs_f64() / pass_a.elapsed.as_secs_f64().max(1e-9);
    let sweep: Vec<_> = measured
        .iter()
        .zip(&pass_cpu)
        .map(|((c, s, p, sampled), cpu)| {
            json!({"concurrency": c, "per_server": s, "ms": ms(p.elapsed), "cpu": cpu.json(),
                   "peak_runner_connections_per_server": p.peak_per_server,
                   "peak_client_backends_per_server": sampled,
                   "speedup_vs_loop": (baseline.as_secs_f64() / p.elapsed.as_secs_f64().max(1e-9) * 10.0).round() / 10.0})
        })
        .collect();
    for ((c, s, p, sampled), cpu) in measured.iter().zip(&pass_cpu) {
        say(&format!(
            "pass concurrency {c} per server {s}: {:.2}s, {:.1}x the loop, peak runner connections {:?}, peak client backends {:?}; {}",
            p.elapsed.as_secs_f64(),
            baseline.as_secs_f64() / p.elapsed.as_secs_f64().max(1e-9),
            p.peak_per_server,
            sampled,
            cpu.text()
        ));
    }
    let report = json!({
        "event": "bench_migrations",
        "load_average_1m_at_end": load,
        "tenant_databases": args.tenants,
        "databases_incl_shared": fleet.len(),
        "servers": 2,
        "provision_ms": ms(provision_time),
        "concurrency": concurrency,
        "per_server": per_server,
        "passes": sweep,
        "a_migrate_ms": ms(pass_a.elapsed),
        "a_migrated": pass_a.results.len(),
        "a_peak_runner_connections_per_server": pass_a.peak_per_server,
        "a_peak_client_backends_per_server": sampled_a,
        "b_noop_ms": ms(pass_b.elapsed),
        "b_noop_skipped": pass_b.skipped,
        "b_verify_noop_ms": ms(pass_v.elapsed),
        "b_verify_peak_client_backends_per_server": sampled_v,
        "baseline_loop_ms": ms(baseline),
        "baseline_cpu": baseline_cpu.json(),
        "connect_only_loop_cpu": connect_loop_cpu.json(),
        "connect_only_parallel_cpu": connect_parallel_cpu.json(),
        "connect_only_loop_ms": ms(connect_loop),
        "connect_only_parallel_ms": ms(connect_parallel),
        "speedup_vs_loop": (ratio * 10.0).round() / 10.0,
    });
    out.emit(
        &report,
        &format!(
            "{} dedicated databases (+ shared) on 2 servers, provisioned in {:.1}s (load average at the end: {load})\n\
             (a)  one new migration, fleet runner (concurrency {}, per server {}): {:.2}s; peak runner connections per server {:?}; peak client backends per server {:?}\n\
             (b)  no-op pass (recorded versions): {:.3}s ({} skipped)\n\
             (b') no-op pass connecting to every database (--verify): {:.2}s; peak client backends per server {:?}\n\
             baseline, same migration one database at a time: {:.2}s\n\
             speed-up of (a) over the loop: {:.1}x",
            args.tenants,
            provision_time.as_secs_f64(),
            concurrency,
            per_server,
            pass_a.elapsed.as_secs_f64(),
            pass_a.peak_per_server,
            sampled_a,
            pass_b.elapsed.as_secs_f64(),
            pass_b.skipped,
            pass_v.elapsed.as_secs_f64(),
            sampled_v,
            baseline.as_secs_f64(),
            ratio
        ),
    );
    t.catalog.pool().close().await;
    Ok(())
}

fn check(r: &FleetReport, what: &str) -> anyhow::Result<()> {
    if let Some(f) = r.failed().next() {
        anyhow::bail!(
            "{what}: {} failed, e.g. {}: {}",
            r.failed().count(),
            f.db.db_name,
            f.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
