//! The benchmark run: build the world, start the baseline and the platform as child processes of
//! this binary (so each has its own runtime and its memory can be read from `/proc`), warm each
//! cell up, then drive baseline and platform cells in alternation, round after round, with the
//! same load generator; print the table and write it into `docs/benchmarks.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::header::HeaderValue;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::load::{self, Identity, Target, Workload};
use crate::probe::{self, ConnectionProbe, CpuMeter};
use crate::report::{self, Cell, Measured, Meta, Paced};
use crate::world::{BenchTenant, World, WorldConfig};

/// Options of a benchmark run.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Seconds of measured load per cell and round.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Concurrent HTTP/1.1 keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Rounds; each round runs baseline, then every platform cell, per workload.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of unmeasured warm-up per cell before each workload's first round.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Shared tenants in the many-tenants cell.
    #[arg(long, default_value_t = 900)]
    pub shared_tenants: usize,
    /// Dedicated tenants (each with its own database on the second server).
    #[arg(long, default_value_t = 100)]
    pub dedicated_tenants: usize,
    /// Tasks in each tenant's (and the baseline's) project.
    #[arg(long, default_value_t = 100)]
    pub tasks: usize,
    /// Platform shared pool size (`PLATFORM_SHARED_POOL_SIZE`); the baseline pool has the same size.
    #[arg(long, default_value_t = 16)]
    pub shared_pool: usize,
    /// Connections per dedicated pool (`PLATFORM_DEDICATED_POOL_SIZE`); default: the shared pool's
    /// size, so the baseline and every platform cell have the same pool.
    #[arg(long)]
    pub dedicated_pool: Option<usize>,
    /// Connection budget of the dedicated-database server, a hard limit on open connections. The
    /// default lets each of the 100 dedicated tenants keep at least two connections open (the
    /// platform's default, 40, keeps 40 of them warm: the rest reconnect, see docs/benchmarks.md).
    #[arg(long, default_value_t = 250)]
    pub budget: u32,
    /// How the platform's requests authenticate: `jwt` (a user's access token: Ed25519 signature,
    /// claims, live session) or `key` (a tenant API key).
    #[arg(long, default_value = "jwt", value_parser = ["jwt", "key"])]
    pub auth: String,
    /// Workloads to run (default: all): `get`, `list`, `post`.
    #[arg(long, value_delimiter = ',', value_parser = ["get", "list", "post"])]
    pub workloads: Vec<String>,
    /// Platform cells to run (default: all): `shared`, `dedicated`, `many`. The baseline always runs.
    #[arg(long, value_delimiter = ',', value_parser = ["shared", "dedicated", "many"])]
    pub cells: Vec<String>,
    /// Where the platform's JSON request log goes (`off`: no logging, for comparison only).
    #[arg(long, default_value = "/dev/null")]
    pub platform_log: PathBuf,
    /// Record Prometheus metrics in the platform (`PLATFORM_METRICS_LISTEN` on a free loopback
    /// port; nothing scrapes it during the run, so this measures recording, not rendering).
    #[arg(long)]
    pub metrics: bool,
    /// Export traces from the platform (OTLP/HTTP to a receiver in this process that accepts
    /// and counts them), parent-based, sampling `--trace-ratio` of new traces.
    #[arg(long)]
    pub traces: bool,
    /// With `--traces` or `--observed`: the share of new traces sampled (0 measures the
    /// unsampled path alone).
    #[arg(long, default_value_t = 0.01)]
    pub trace_ratio: f64,
    /// Also drive the shared tenant on a second platform process with metrics recorded and
    /// traces exported (sampling `--trace-ratio`), in every round next to the first process
    /// (which `--metrics` and `--traces` leave off by default), in alternating order: the
    /// observability overhead measured in one run, on the same machine state. `--observed=metrics`
    /// or `--observed=traces` turns on only one of them in the second process; `--observed=none`
    /// neither (two identical processes: the method's own noise and bias).
    #[arg(long, num_args = 0..=1, default_missing_value = "both",
          value_parser = ["both", "metrics", "traces", "none"])]
    pub observed: Option<String>,
    /// The markdown file to write the section into.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    pub output: PathBuf,
    /// Share of the baseline's saturated (closed-loop) throughput at which the open-loop runs
    /// pace every cell; their added latency is the latency figure.
    #[arg(long, default_value_t = 0.5)]
    pub open_loop_load: f64,
    /// Skip the open-loop runs.
    #[arg(long)]
    pub no_open_loop: bool,
    /// Print the table only; do not write the file.
    #[arg(long)]
    pub no_write: bool,
}

/// Runs the benchmark.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.shared_tenants >= 1 && args.dedicated_tenants >= 1,
        "--shared-tenants and --dedicated-tenants must be at least 1"
    );
    let config = WorldConfig {
        shared_tenants: args.shared_tenants,
        dedicated_tenants: args.dedicated_tenants,
        tasks_per_project: args.tasks.max(51),
        shared_pool: args.shared_pool,
        dedicated_pool: args.dedicated_pool.unwrap_or(args.shared_pool),
        budget: args.budget,
    };
    eprintln!(
        "setting up: 2 PostgreSQL clusters, {} tenants ({} dedicated databases), {} tasks each",
        config.shared_tenants + config.dedicated_tenants,
        config.dedicated_tenants,
        config.tasks_per_project
    );
    let started = std::time::Instant::now();
    let world = World::build(config).await?;
    eprintln!("set up in {:.0} s", started.elapsed().as_secs_f64());
    let result = drive(&args, &world).await;
    tokio::task::spawn_blocking(move || world.shutdown()).await?;
    let section = result?;
    println!("{section}");
    if !args.no_write {
        report::write_section(&args.output, &section)
            .with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!("written to {}", args.output.display());
    }
    Ok(())
}

async fn drive(args: &RunArgs, world: &World) -> anyhow::Result<String> {
    let baseline_addr = local_addr()?;
    let platform_addr = local_addr()?;
    let baseline = spawn(
        &["serve-baseline"],
        &[
            ("BENCH_BASELINE_URL", world.baseline_url()),
            ("BENCH_LISTEN", baseline_addr.to_string()),
            ("BENCH_POOL_SIZE", args.shared_pool.to_string()),
        ],
    )?;
    let (observed_metrics, observed_traces) = match args.observed.as_deref() {
        Some("metrics") => (true, false),
        Some("traces") => (false, true),
        Some("none") => (false, false),
        Some(_) => (true, true),
        None => (false, false),
    };
    let otlp_sink = if args.traces || observed_traces {
        Some(crate::otlp_sink::OtlpSink::start().await?)
    } else {
        None
    };
    let platform_process = |addr: SocketAddr, metrics: bool, traces: bool| {
        let mut env = world.platform_env(&addr.to_string());
        if metrics {
            env.push(("PLATFORM_METRICS_LISTEN", local_addr()?.to_string()));
        }
        if let (true, Some(sink)) = (traces, &otlp_sink) {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint()));
            env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()));
            env.push(("OTEL_TRACES_SAMPLER_ARG", args.trace_ratio.to_string()));
        }
        spawn(
            &[
                "serve-platform",
                "--log-file",
                &args.platform_log.display().to_string(),
            ],
            &env,
        )
    };
    let platform = platform_process(platform_addr, args.metrics, args.traces)?;
    let observed_addr = local_addr()?;
    let observed = if args.observed.is_some() {
        Some(platform_process(
            observed_addr,
            observed_metrics,
            observed_traces,
        )?)
    } else {
        None
    };
    let platform_pid = platform.id().context("platform process id")?;
    let observed_pid = match &observed {
        Some(o) => o.id().context("observed platform process id")?,
        None => platform_pid,
    };
    let baseline_pid = baseline.id().context("baseline process id")?;
    load::wait_ready(baseline_addr, Duration::from_secs(60)).await?;
    load::wait_ready(platform_addr, Duration::from_secs(60)).await?;
    if observed.is_some() {
        load::wait_ready(observed_addr, Duration::from_secs(60)).await?;
    }

    let probe =
        ConnectionProbe::connect(&[world.primary.url("postgres"), world.second.url("postgres")])
            .await?;
    let postgres = {
        let c = crate::world::connect(&world.primary.url("postgres")).await?;
        let v: String = c.query_one("SHOW server_version", &[]).await?.get(0);
        format!("PostgreSQL {v} on loopback (two local clusters)")
    };
    let picked = |list: &[String], name: &str| list.is_empty() || list.iter().any(|n| n == name);
    let cpu = CpuMeter::new(&[world.primary.dir(), world.second.dir()])?;
    let mut minter = crate::tokens::Minter::default();
    let pick_cells = |targets: Vec<(Cell, Target)>| -> Vec<(Cell, Target)> {
        targets
            .into_iter()
            .filter(|(c, _)| match c {
                Cell::Baseline => true,
                Cell::SharedTenant => picked(&args.cells, "shared"),
                Cell::SharedObserved => args.observed.is_some(),
                Cell::DedicatedTenant => picked(&args.cells, "dedicated"),
                Cell::ManyTenants => picked(&args.cells, "many"),
            })
            .collect()
    };
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|w| {
            picked(
                &args.workloads,
                match w {
                    Workload::GetTask => "get",
                    Workload::ListTasks => "list",
                    Workload::PostTask => "post",
                },
            )
        })
        .collect();
    let duration = Duration::from_secs(args.duration);
    let warmup = Duration::from_secs(args.warmup);
    let mut measured = Vec::new();
    let mut paced = Vec::new();
    let mut seal: Vec<(Cell, Vec<f64>)> = Vec::new();
    for &w in &workloads {
        // Fresh access tokens (10 minutes) for each workload's runs, minted outside the measurement.
        let tokens = if args.auth == "jwt" {
            Some(minter.mint(world).await?)
        } else {
            None
        };
        let cells = pick_cells(targets(
            world,
            [baseline_addr, platform_addr, observed_addr],
            tokens.as_ref(),
        )?);
        for (cell, target) in &cells {
            eprintln!("[{}] warming up {cell:?}", w.label());
            load::run(target, w, args.connections, warmup).await;
        }
        for round in 1..=args.rounds {
            // The two processes of the shared tenant take turns going first.
            let mut order: Vec<&(Cell, Target)> = cells.iter().collect();
            if round % 2 == 0
                && let Some(a) = order.iter().position(|(c, _)| *c == Cell::SharedTenant)
                && let Some(b) = order.iter().position(|(c, _)| *c == Cell::SharedObserved)
            {
                order.swap(a, b);
            }
            for (cell, target) in order {
                let server = match cell {
                    Cell::Baseline => baseline_pid,
                    Cell::SharedObserved => observed_pid,
                    _ => platform_pid,
                };
                // Seal latency of the audited writes (POST on the platform only).
                let sealing = if w == Workload::PostTask && *cell != Cell::Baseline {
                    let urls = world.tenant_db_urls(match cell {
                        Cell::SharedTenant | Cell::SharedObserved => {
                            Box::new(world.shared_tenants().take(1)) as Box<dyn Iterator<Item = _>>
                        }
                        Cell::DedicatedTenant => Box::new(world.dedicated_tenants().take(1)),
                        _ => Box::new(world.tenants.iter()),
                    });
                    Some(crate::seal::SealSampler::start(&urls).await?)
                } else {
                    None
                };
                let sampling = probe.start();
                let before = cpu.snapshot(server);
                let outcome = load::run(target, w, args.connections, duration).await;
                let cpu_used = cpu.snapshot(server) - before;
                let connections = sampling.stop().await;
                if let Some(sealing) = sealing {
                    let mut l = sealing.stop().await;
                    match seal.iter_mut().find(|(c, _)| c == cell) {
                        Some((_, all)) => all.append(&mut l),
                        None => seal.push((*cell, l)),
                    }
                }
                let rss_kib = probe::memory_kib(server, "VmRSS");
                eprintln!(
                    "[{}] round {round}/{}: {cell:?}: {:.0} req/s, p99 {:.2} ms, errors {}",
                    w.label(),
                    args.rounds,
                    outcome.rps(),
                    outcome.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                    outcome.errors
                );
                measured.push(Measured {
                    round,
                    workload: w,
                    cell: *cell,
                    outcome,
                    rss_kib,
                    connections,
                    cpu: cpu_used,
                });
            }
        }
        if args.no_open_loop {
            continue;
        }
        // Open loop: every cell at the same fixed rate, a share of the baseline's saturated
        // throughput, so latency is measured below saturation (queueing excluded).
        let mut base = load::Outcome::empty();
        for m in measured
            .iter()
            .filter(|m| m.workload == w && m.cell == Cell::Baseline)
        {
            base.absorb(&m.outcome);
        }
        let rate = base.rps() * args.open_loop_load;
        for (cell, target) in &cells {
            let outcome = load::run_paced(target, w, args.connections, rate, duration).await;
            eprintln!(
                "[{}] open loop at {rate:.0} req/s: {cell:?}: {:.0} req/s, p99 {:.2} ms, errors {}",
                w.label(),
                outcome.rps(),
                outcome.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
                outcome.errors
            );
            paced.push(Paced {
                workload: w,
                cell: *cell,
                rate,
                outcome,
            });
        }
    }
    let peak_rss_kib = probe::memory_kib(platform_pid, "VmHWM");
    drop((baseline, platform, observed));
    let meta = Meta {
        date: {
            let t = time::OffsetDateTime::now_utc();
            format!(
                "{}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        },
        machine: probe::machine(),
        postgres,
        command: command_line(),
        shared_tenants: args.shared_tenants,
        dedicated_tenants: args.dedicated_tenants,
        setup: setup_lines(args),
        peak_rss_kib,
        seal,
        observed: args.observed.clone().unwrap_or_default(),
        trace_ratio: args.trace_ratio,
        shared_pool: args.shared_pool,
        budget: args.budget,
    };
    if let Some(sink) = &otlp_sink {
        eprintln!(
            "traces: {} OTLP exports, {} bytes received",
            sink.received.0.load(std::sync::atomic::Ordering::Relaxed),
            sink.received.1.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    Ok(report::render(&meta, &measured, &paced))
}

fn setup_lines(args: &RunArgs) -> Vec<String> {
    vec![
        format!(
            "Load: {} HTTP/1.1 keep-alive connections (closed loop), {} s per cell and round, {} rounds, {} s unmeasured warm-up per cell and workload; cells alternate baseline → shared → dedicated → many within each round. The single-tenant cells put all {} connections on one tenant (the dedicated one is the promoted-tenant case)",
            args.connections, args.duration, args.rounds, args.warmup, args.connections
        ),
        if let Some(what) = &args.observed {
            format!(
                "Observed: the shared-tenant cell also runs on a second platform process with {}, in every round next to the first process ({}), the two taking turns going first",
                match what.as_str() {
                    "metrics" => "metrics recorded (`PLATFORM_METRICS_LISTEN`, not scraped), traces off".to_owned(),
                    "none" => "metrics and traces off (the same as the first: the comparison's own noise)".to_owned(),
                    "traces" => format!("metrics off, traces exported to an OTLP/HTTP receiver in the load generator (parent-based, {}% of new traces sampled)", args.trace_ratio * 100.0),
                    _ => format!("metrics recorded (`PLATFORM_METRICS_LISTEN`, not scraped) and traces exported to an OTLP/HTTP receiver in the load generator (parent-based, {}% of new traces sampled)", args.trace_ratio * 100.0),
                },
                match (args.metrics, args.traces) {
                    (false, false) => "metrics and traces off",
                    (true, false) => "metrics on, traces off",
                    (false, true) => "metrics off, traces on",
                    (true, true) => "metrics and traces on",
                }
            )
        } else {
            "Observed: not run (`--observed` adds the shared-tenant cell with metrics and traces on)".into()
        },
        if args.no_open_loop {
            "Open loop: skipped (`--no-open-loop`)".into()
        } else {
            format!(
                "Open loop: after each workload's rounds, every cell once for {} s at a fixed total rate of {:.0}% of the baseline's closed-loop throughput, over the same {} connections, each on its own schedule (`load::run_paced`)",
                args.duration,
                args.open_loop_load * 100.0,
                args.connections
            )
        },
        "Load generator, baseline server and platform server are three processes on the same machine as both PostgreSQL clusters (all share the 2 cores)".into(),
        format!(
            "Baseline: axum, one deadpool-postgres pool of {} connections (superuser, no RLS, no tenant_id), no middleware; the same SQL and JSON as the platform's task handlers",
            args.shared_pool
        ),
        format!(
            "Platform: `platform::App` over TCP, served with connect-info like the binary, with its whole stack: request id, tracing span + one JSON log line per request (to `{}`), body limit, catch-panic, tenant resolution from the `Host` subdomain (cached), {}, permission check, `TenantConn` (shared pool {} / dedicated pools of {}, second-server budget {}: open connections never exceed it), tenant setting kept per connection (one exchange per one-statement request when the connection is already set for the tenant, else `BEGIN; SET app.tenant_id` + statement + `COMMIT` pipelined), forced RLS",
            args.platform_log.display(),
            if args.auth == "jwt" {
                "authentication by a user's JWT access token (`--auth jwt`: Ed25519 signature with a cache of verified tokens, `tid` must match the host, live-session check cached briefly)"
            } else {
                "authentication by a tenant API key (`--auth key`: SHA-256 + cached verification)"
            },
            args.shared_pool,
            args.dedicated_pool.unwrap_or(args.shared_pool),
            args.budget
        ),
        format!(
            "Data: one project of {} tasks per tenant; the baseline holds the same volume as the shared database (one project per shared tenant, only one requested); POST adds rows during the run; GET one task picks a random task of the project; the many-tenants cell picks a tenant uniformly at random per request",
            args.tasks.max(51)
        ),
    ]
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut s = String::from("cargo run --release -p bench --");
    for a in args {
        s.push(' ');
        s.push_str(&a);
    }
    s
}

pub(crate) fn identity(
    t: &BenchTenant,
    tokens: Option<&HashMap<Uuid, String>>,
) -> anyhow::Result<Identity> {
    let credential = match tokens {
        Some(tokens) => tokens.get(&t.id).context("a token for every tenant")?,
        None => &t.api_key,
    };
    Ok(Identity {
        host: HeaderValue::from_str(&format!("{}.localhost", t.slug))?,
        authorization: Some(HeaderValue::from_str(&format!("Bearer {credential}"))?),
        data: t.data.clone(),
    })
}

/// Every cell's target; `[baseline, platform, observed platform]` addresses.
fn targets(
    world: &World,
    [baseline, platform, observed]: [SocketAddr; 3],
    tokens: Option<&HashMap<Uuid, String>>,
) -> anyhow::Result<Vec<(Cell, Target)>> {
    let one = |t: Option<&BenchTenant>| -> anyhow::Result<Arc<[Identity]>> {
        Ok(Arc::from(vec![identity(
            t.context("no such tenant")?,
            tokens,
        )?]))
    };
    let all: Vec<Identity> = world
        .tenants
        .iter()
        .map(|t| identity(t, tokens))
        .collect::<anyhow::Result<_>>()?;
    let target = |addr, identities| Target { addr, identities };
    Ok(vec![
        (
            Cell::Baseline,
            target(
                baseline,
                Arc::from(vec![Identity {
                    host: HeaderValue::from_static("localhost"),
                    authorization: None,
                    data: world.baseline.clone(),
                }]),
            ),
        ),
        (
            Cell::SharedTenant,
            target(platform, one(world.shared_tenants().next())?),
        ),
        (
            Cell::SharedObserved,
            target(observed, one(world.shared_tenants().next())?),
        ),
        (
            Cell::DedicatedTenant,
            target(platform, one(world.dedicated_tenants().next())?),
        ),
        (Cell::ManyTenants, target(platform, Arc::from(all))),
    ])
}

pub(crate) fn local_addr() -> anyhow::Result<SocketAddr> {
    Ok(SocketAddr::from((
        [127, 0, 0, 1],
        tenancy::embedded::free_port()?,
    )))
}

/// Starts this binary in a server role; it is killed when the handle is dropped.
pub(crate) fn spawn(args: &[&str], env: &[(&'static str, String)]) -> anyhow::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // Only the benchmark's configuration, not whatever PLATFORM_* the caller's shell has.
    for (k, _) in std::env::vars() {
        if k.starts_with("PLATFORM_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v)));
    cmd.spawn().context("starting a benchmark server process")
}
