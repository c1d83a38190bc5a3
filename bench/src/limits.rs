//! Rate-limit benchmarks (issue 8). `bench fairness`: tenant A floods at a multiple of its quota
//! while tenant B sends steady traffic; B's latency and errors are measured with and without the
//! flood, alternating, in the same run, against the real platform over TCP. `bench
//! limiter-memory`: the limiter's resident memory with a million distinct client addresses, and
//! after the periodic purge. Both write their section into `docs/benchmarks.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use limits::{LimitSettings, RateLimits};

use crate::load::{self, Outcome, Target, Workload};
use crate::report::write_marked;
use crate::run::{identity, local_addr, spawn};
use crate::world::{World, WorldConfig};

const FAIR_START: &str = "<!-- fairness-benchmark:start -->";
const FAIR_END: &str = "<!-- fairness-benchmark:end -->";
const MEM_START: &str = "<!-- limiter-memory:start -->";
const MEM_END: &str = "<!-- limiter-memory:end -->";

/// Options of `bench fairness`.
#[derive(Debug, Clone, clap::Args)]
pub struct FairnessArgs {
    /// Tenant A's quota, requests per second (its burst is the same).
    #[arg(long, default_value_t = 200)]
    pub quota: u32,
    /// A sends this multiple of its quota.
    #[arg(long, default_value_t = 10)]
    pub flood_factor: u32,
    /// B's steady rate, requests per second.
    #[arg(long, default_value_t = 100)]
    pub b_rate: u32,
    /// Seconds per phase and round.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Rounds of (quiet, flood).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Write into this markdown file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    pub output: std::path::PathBuf,
    /// Print only.
    #[arg(long)]
    pub no_write: bool,
}

fn ms(o: &Outcome, q: f64) -> f64 {
    o.latency_us.value_at_quantile(q) as f64 / 1000.0
}

fn error_rate(o: &Outcome) -> f64 {
    let total = o.ok + o.errors;
    if total == 0 {
        0.0
    } else {
        100.0 * o.errors as f64 / total as f64
    }
}

/// Runs the fairness benchmark.
pub async fn fairness(args: FairnessArgs) -> anyhow::Result<()> {
    let world = World::build(WorldConfig {
        shared_tenants: 2,
        dedicated_tenants: 1,
        tasks_per_project: 51,
        shared_pool: 16,
        dedicated_pool: 4,
        budget: 40,
    })
    .await?;
    let result = drive_fairness(&args, &world).await;
    tokio::task::spawn_blocking(move || world.shutdown()).await?;
    let section = result?;
    println!("{section}");
    if !args.no_write {
        write_marked(&args.output, FAIR_START, FAIR_END, &section)?;
    }
    Ok(())
}

async fn drive_fairness(args: &FairnessArgs, world: &World) -> anyhow::Result<String> {
    let mut shared = world.shared_tenants();
    let a = shared.next().context("tenant A")?;
    let b = shared.next().context("tenant B")?;
    // A's own quota, as an operator sets it (the override column of the catalog).
    let env = world.platform_env("127.0.0.1:0");
    let control = env
        .iter()
        .find(|(k, _)| *k == "PLATFORM_DATABASE_URL")
        .map(|(_, v)| v.clone())
        .context("control-plane URL")?;
    let quota = i32::try_from(args.quota)?;
    crate::world::connect(&control)
        .await?
        .execute(
            "UPDATE tenants SET rate_limit_rps = $1, rate_limit_burst = $1 WHERE id = $2",
            &[&quota, &a.id],
        )
        .await?;
    let addr = local_addr()?;
    let _platform = spawn(
        &["serve-platform", "--log-file", "/dev/null"],
        &world.platform_env(&addr.to_string()),
    )?;
    load::wait_ready(addr, Duration::from_secs(60)).await?;
    let target = |t| -> anyhow::Result<Target> {
        Ok(Target {
            addr,
            identities: Arc::from(vec![identity(t, None)?]),
        })
    };
    let (ta, tb) = (target(a)?, target(b)?);
    let flood_rate = f64::from(args.quota * args.flood_factor);
    let b_rate = f64::from(args.b_rate);
    let d = Duration::from_secs(args.duration);
    eprintln!("warming up");
    load::run_paced(&tb, Workload::GetTask, 4, b_rate, Duration::from_secs(3)).await;
    let mut rows = Vec::new();
    let (mut quiet_all, mut flood_all) = (Outcome::empty(), Outcome::empty());
    for round in 1..=args.rounds {
        let quiet = load::run_paced(&tb, Workload::GetTask, 4, b_rate, d).await;
        let (flooded, a_out) = tokio::join!(
            load::run_paced(&tb, Workload::GetTask, 4, b_rate, d),
            load::run_paced(&ta, Workload::GetTask, 16, flood_rate, d)
        );
        eprintln!(
            "round {round}: B quiet p99 {:.2} ms, B flooded p99 {:.2} ms, A {} ok / {} refused",
            ms(&quiet, 0.99),
            ms(&flooded, 0.99),
            a_out.ok,
            a_out.refused
        );
        rows.push(format!(
            "| {round} | B alone | {:.0} | {:.2} | {:.2} | {:.2}% | {} | – | – |",
            quiet.rps(),
            ms(&quiet, 0.5),
            ms(&quiet, 0.99),
            error_rate(&quiet),
            quiet.refused
        ));
        rows.push(format!(
            "| {round} | B while A floods | {:.0} | {:.2} | {:.2} | {:.2}% | {} | {:.0} sent/s, {:.0} accepted/s | {} |",
            flooded.rps(), ms(&flooded, 0.5), ms(&flooded, 0.99), error_rate(&flooded), flooded.refused,
            (a_out.ok + a_out.errors) as f64 / a_out.elapsed.as_secs_f64(), a_out.rps(), a_out.refused
        ));
        quiet_all.absorb(&quiet);
        flood_all.absorb(&flooded);
    }
    let rise = 100.0 * (ms(&flood_all, 0.99) / ms(&quiet_all, 0.99) - 1.0);
    let mut s = String::new();
    s.push_str(&format!(
        "Tenant A: quota {q} req/s (burst {q}), sends {f} req/s ({x}x) on 16 connections, open loop. \
         Tenant B: {b} req/s on 4 connections, open loop, no quota of its own in reach. Both shared \
         tenants, `GET one task`; platform as a child process over TCP. {r} rounds of {d} s per phase, \
         B alone then B during A's flood, alternating.\n\n",
        q = args.quota, f = flood_rate, x = args.flood_factor, b = args.b_rate, r = args.rounds, d = args.duration
    ));
    s.push_str("| round | phase | B req/s | B p50 ms | B p99 ms | B errors | B 429s | A | A 429s |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s.push_str(&format!(
        "\nAll rounds: B p50 {:.2} → {:.2} ms, p99 {:.2} → {:.2} ms ({rise:+.1}%), B errors {} → {} (429s: {} → {}).\n",
        ms(&quiet_all, 0.5), ms(&flood_all, 0.5), ms(&quiet_all, 0.99), ms(&flood_all, 0.99),
        quiet_all.errors, flood_all.errors, quiet_all.refused, flood_all.refused
    ));
    Ok(s)
}

/// Options of `bench limiter-memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Distinct client addresses.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u32,
    /// Write into this markdown file.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md"))]
    pub output: std::path::PathBuf,
    #[arg(long)]
    pub no_write: bool,
}

fn rss_kib() -> u64 {
    crate::probe::memory_kib(std::process::id(), "VmRSS").unwrap_or(0)
}

/// Measures the limiter's memory with `keys` distinct addresses, then after a purge.
pub async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    let settings = LimitSettings::default();
    let refill = Duration::from_secs_f64(1.0 / f64::from(settings.sensitive_ip.per_second));
    let limits = RateLimits::new(settings);
    let before = rss_kib();
    let started = Instant::now();
    for i in 0..args.keys {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000_u32.wrapping_add(i)));
        std::hint::black_box(limits.check_sensitive_ip(ip));
    }
    let took = started.elapsed();
    let filled = rss_kib();
    let held = limits.keys();
    // Every bucket is full again after one refill interval: all keys are purgeable.
    tokio::time::sleep(refill * 2).await;
    let purge_started = Instant::now();
    limits.purge();
    let purge_took = purge_started.elapsed();
    let after = rss_kib();
    let left = limits.keys();
    let per_key = (filled.saturating_sub(before) as f64 * 1024.0) / f64::from(args.keys.max(1));
    let section = format!(
        "`cargo run --release -p bench -- limiter-memory` ({keys} distinct IPv4 addresses, one \
         request each, on the per-address limiter of the sensitive endpoints; process RSS from \
         `/proc/self/status`):\n\n\
         | | value |\n|---|---|\n\
         | RSS before | {before} KiB |\n\
         | RSS with {keys} keys held | {filled} KiB (+{delta} KiB, ~{per_key:.0} bytes per key) |\n\
         | keys held | {held} |\n\
         | time per check (new key, one thread) | {ns:.0} ns |\n\
         | purge (`retain_recent` + `shrink_to_fit`) | {purge_ms:.0} ms, {left} keys left |\n\
         | RSS after purge | {after} KiB |\n",
        keys = args.keys,
        delta = filled.saturating_sub(before),
        ns = took.as_nanos() as f64 / f64::from(args.keys.max(1)),
        purge_ms = purge_took.as_secs_f64() * 1000.0,
    );
    println!("{section}");
    if !args.no_write {
        write_marked(&args.output, MEM_START, MEM_END, &section)?;
    }
    Ok(())
}
