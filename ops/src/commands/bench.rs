//! `platformctl bench ...`: benchmarks that measure (never assert), each next to its baseline
//! measured in the same run. Results are recorded in `docs/benchmarks.md`.

mod migrations;
mod promote;

use std::process::ExitCode;

use clap::Subcommand;

use super::Output;

#[derive(Subcommand)]
pub enum Bench {
    /// Fleet migrations over N dedicated databases on two local PostgreSQL servers.
    Migrations(migrations::MigrationsArgs),
    /// Promote a tenant with many rows under write load, against pg_dump | psql.
    Promote(promote::PromoteBench),
}

pub async fn run(cmd: Bench, out: &Output) -> anyhow::Result<ExitCode> {
    match cmd {
        Bench::Migrations(args) => migrations::run(args, out).await,
        Bench::Promote(args) => promote::promote(args, out).await,
    }
}
