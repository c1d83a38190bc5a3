//! `platformctl migrate status`: one line per tenant database (the shared one counts as one), then
//! a summary line. Read-only, and accurate while a run is going on.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;
use tenancy::bootstrap::Started;
use tenancy::migrate::head_of;
use tenancy::migrate::status::Summary;
use time::format_description::well_known::Rfc3339;

use super::MigrationSet;
use super::progress::{db_fields, slugs_short};
use crate::commands::Output;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Compare with this version (default: the newest migration).
    #[arg(long, value_name = "VERSION")]
    target: Option<i64>,
    #[command(flatten)]
    migrations: MigrationSet,
}

pub async fn run(started: &Started, args: StatusArgs, out: &Output) -> anyhow::Result<ExitCode> {
    let target = match args.target {
        Some(t) => t,
        None => head_of(&args.migrations.load()?),
    };
    let rows = started.tenancy.migrator.status(target).await?;
    if !out.json {
        println!(
            "{:<34} {:<24} {:<10} {:>7} {:>6} {:<8} {:<20} ERROR",
            "DATABASE", "TENANTS", "SERVER", "VERSION", "TARGET", "STATE", "LAST RUN"
        );
    }
    for r in &rows {
        let last = r.last_run_at.and_then(|t| t.format(&Rfc3339).ok());
        let mut v = db_fields(&r.db);
        v["event"] = json!("status");
        v["version"] = json!(r.current);
        v["target"] = json!(r.target);
        v["state"] = json!(r.state.as_str());
        v["error"] = json!(r.error);
        v["last_run_at"] = json!(last);
        v["last_run"] = json!(r.last_run.map(|u| u.to_string()));
        out.emit(
            &v,
            &format!(
                "{:<34} {:<24} {:<10} {:>7} {:>6} {:<8} {:<20} {}",
                r.db.db_name,
                slugs_short(&r.db),
                r.db.server,
                r.current.map_or_else(|| "-".into(), |v| v.to_string()),
                r.target,
                r.state.as_str(),
                last.as_deref().map_or("-", |l| l.get(..19).unwrap_or(l)),
                r.error.as_deref().unwrap_or("")
            ),
        );
    }
    let s = Summary::of(&rows);
    out.emit(
        &json!({"event": "summary", "databases": rows.len(), "target": target,
                "ok": s.ok, "pending": s.pending, "running": s.running, "failed": s.failed}),
        &format!(
            "{} databases at target {target}: {} ok, {} pending, {} running, {} failed",
            rows.len(),
            s.ok,
            s.pending,
            s.running,
            s.failed
        ),
    );
    Ok(ExitCode::SUCCESS)
}
