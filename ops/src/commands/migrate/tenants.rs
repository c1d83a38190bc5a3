//! `platformctl migrate tenants`: the fleet runner. Exit code 1 if any database failed (or a
//! canary stopped the run); the last lines list the failed databases.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tenancy::bootstrap::Started;
use tenancy::migrate::fleet::FleetOptions;

use super::MigrationSet;
use super::progress::{self, result_line, slugs_short};
use crate::commands::Output;

#[derive(Args, Debug)]
pub struct TenantsArgs {
    /// Databases migrated at once, in total.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Databases migrated at once on one database server.
    #[arg(long, default_value_t = 8)]
    per_server: usize,
    /// Only this tenant's database (repeatable; a shared tenant selects the shared database).
    #[arg(long = "tenant", value_name = "SLUG")]
    tenants: Vec<String>,
    /// Only databases on this registered server.
    #[arg(long, value_name = "NAME")]
    server: Option<String>,
    /// Migrate N dedicated databases first; if any fails, stop before touching the rest.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canary: usize,
    /// Migrate up to this version (default: the newest migration).
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
    /// Show what would be migrated; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Connect to every database to check its real version instead of trusting the recorded one.
    #[arg(long)]
    verify: bool,
    /// Seconds a migration may wait for a table lock before that database fails (rerun to
    /// retry); 0 waits as long as it takes.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lock_timeout: u64,
    #[command(flatten)]
    migrations: MigrationSet,
}

pub async fn run(started: &Started, args: TenantsArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let migrations = args.migrations.load()?;
    let opts = FleetOptions {
        concurrency: args.concurrency,
        per_server: args.per_server,
        tenants: args.tenants,
        server: args.server,
        canary: args.canary,
        target: args.target,
        dry_run: args.dry_run,
        verify: args.verify,
        lock_timeout: (args.lock_timeout > 0).then(|| Duration::from_secs(args.lock_timeout)),
    };
    // JSON lines whenever a person is not watching a terminal.
    let json = out.json || !std::io::stdout().is_terminal();
    let (events, bar) = if json {
        (progress::json_lines(), None)
    } else {
        let (e, b) = progress::bar();
        (e, Some(b))
    };
    let report = started
        .tenancy
        .migrator
        .run(migrations, &opts, events)
        .await?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let failed: Vec<_> = report.failed().collect();
    let ok = report.results.len() - failed.len();
    let summary = json!({
        "event": "summary",
        "run": report.run.map(|r| r.to_string()),
        "dry_run": opts.dry_run,
        "target": report.target,
        "total": report.total,
        "skipped": report.skipped,
        "ok": ok,
        "failed": failed.len(),
        "not_started": report.not_started,
        "stopped_by_canary": report.stopped_by_canary,
        "concurrency": report.concurrency,
        "per_server": report.per_server,
        "peak_per_server": report.peak_per_server,
        "elapsed_ms": u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    });
    let human = if opts.dry_run {
        format!(
            "dry run: {} of {} databases would be migrated to version {} ({} already there)",
            report.not_started, report.total, report.target, report.skipped
        )
    } else {
        format!(
            "target {}: {} databases, {} already at target, {} ok, {} failed, {} not started{} in {:.1}s (concurrency {}, per server {})",
            report.target,
            report.total,
            report.skipped,
            ok,
            failed.len(),
            report.not_started,
            if report.stopped_by_canary {
                " (canary failed: stopped)"
            } else {
                ""
            },
            report.elapsed.as_secs_f64(),
            report.concurrency,
            report.per_server
        )
    };
    let o = Output { json };
    o.emit(&summary, &human);
    // The last lines: what failed.
    for r in &failed {
        o.emit(
            &result_line("failed", r),
            &format!(
                "FAILED {} [{}] on {}: {}",
                r.db.db_name,
                slugs_short(&r.db),
                r.db.server,
                r.error.as_deref().unwrap_or("")
            ),
        );
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
