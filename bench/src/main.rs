//! `bench`: every benchmark, one subcommand each. Without a subcommand it runs the load benchmark
//! and writes its table into `docs/benchmarks.md`; the same binary serves the baseline and the
//! platform as child processes (hidden subcommands), so each server runs in its own process with
//! its own runtime.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    about = "Benchmarks, each against a baseline from the same run. Without a subcommand: the load \
             benchmark, the platform vs a bare axum + PostgreSQL baseline on the same machine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    run: bench::run::RunArgs,
}

#[derive(Subcommand)]
enum Role {
    /// Rate-limit fairness: one tenant floods, another's latency with and without the flood.
    Fairness(bench::limits::FairnessArgs),
    /// The rate limiter's memory with a million distinct client addresses.
    LimiterMemory(bench::limits::MemoryArgs),
    /// Fleet migrations over N dedicated databases on two local PostgreSQL servers, against a
    /// one-database-at-a-time loop.
    Migrations(bench::migrations::MigrationsArgs),
    /// Promote a tenant with many rows under write load, against pg_dump | psql (run it on a
    /// fresh PLATFORM_DATA_DIR).
    Promote(bench::promote::PromoteBench),
    /// Password logins and refresh-token rotations per second through the real router.
    Auth(bench::auth::AuthArgs),
    /// Background jobs end to end (1 tenant, 100 shared, 50 dedicated, idle) against a bare
    /// SKIP LOCKED loop.
    Jobs(bench::jobs::JobsArgs),
    /// Serve the baseline (BENCH_BASELINE_URL, BENCH_LISTEN, BENCH_POOL_SIZE).
    #[command(hide = true)]
    ServeBaseline,
    /// Serve the platform (configured by PLATFORM_* like the `platform` binary).
    #[command(hide = true)]
    ServePlatform {
        #[arg(long)]
        log_file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.role {
        None => bench::run::run(cli.run).await,
        Some(Role::Fairness(a)) => bench::limits::fairness(a).await,
        Some(Role::LimiterMemory(a)) => bench::limits::memory(a).await,
        Some(Role::Migrations(a)) => bench::migrations::run(a).await,
        Some(Role::Promote(a)) => bench::promote::run(a).await,
        Some(Role::Auth(a)) => bench::auth::run(a).await,
        Some(Role::Jobs(a)) => bench::jobs::run(a).await,
        Some(Role::ServeBaseline) => {
            let var = |k: &str| std::env::var(k).with_context(|| format!("{k} is not set"));
            let size = var("BENCH_POOL_SIZE")?
                .parse()
                .context("BENCH_POOL_SIZE is not a number")?;
            bench::baseline::serve(&var("BENCH_BASELINE_URL")?, size, &var("BENCH_LISTEN")?).await
        }
        Some(Role::ServePlatform { log_file }) => bench::platform_server::serve(&log_file).await,
    }
}
