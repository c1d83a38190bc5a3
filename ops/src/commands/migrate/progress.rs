//! How a run's events reach the operator: a progress bar (indicatif, on stderr) when stdout is a
//! terminal and `--json` is not given; otherwise one JSON object per line and per event.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tenancy::migrate::fleet::{DbResult, Events, FleetDb, FleetEvent};
use tenancy::migrate::ledger::Phase;

/// The tenants of a database, for display: a few slugs and how many more.
pub fn slugs_short(db: &FleetDb) -> String {
    const SHOWN: usize = 3;
    if db.slugs.is_empty() {
        return "-".into();
    }
    let mut s = db
        .slugs
        .iter()
        .take(SHOWN)
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if db.slugs.len() > SHOWN {
        s.push_str(&format!(" (+{})", db.slugs.len() - SHOWN));
    }
    s
}

/// The identifying fields of a database, for JSON lines.
pub fn db_fields(db: &FleetDb) -> Value {
    json!({
        "db": db.key.to_string(),
        "tenants": db.slugs.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "server": db.server,
        "database": db.db_name,
    })
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Canary => "canary",
        Phase::Main => "main",
    }
}

/// A JSON line for a finished database.
pub fn result_line(event: &str, r: &DbResult) -> Value {
    let mut v = db_fields(&r.db);
    v["event"] = json!(event);
    v["phase"] = json!(phase(r.phase));
    v["state"] = json!(if r.ok() { "ok" } else { "failed" });
    v["version_before"] = json!(r.before);
    v["version_after"] = json!(r.after);
    v["duration_ms"] = json!(u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX));
    if let Some(e) = &r.error {
        v["error"] = json!(e);
    }
    v
}

/// JSON lines on stdout, one per event.
pub fn json_lines() -> Events {
    Arc::new(|e: &FleetEvent<'_>| {
        let line = match e {
            FleetEvent::Planned {
                run,
                target,
                total,
                to_check,
                skipped,
            } => json!({"event": "planned", "run": run.map(|r| r.to_string()), "target": target,
                        "total": total, "to_check": to_check, "skipped": skipped}),
            FleetEvent::WouldMigrate { db } => {
                let mut v = db_fields(db);
                v["event"] = json!("would_migrate");
                v["version"] = json!(db.recorded);
                v
            }
            FleetEvent::Started { db, phase: p } => {
                let mut v = db_fields(db);
                v["event"] = json!("started");
                v["phase"] = json!(phase(*p));
                v
            }
            FleetEvent::Finished { result } => result_line("finished", result),
            FleetEvent::CanaryFailed { failed } => {
                json!({"event": "canary_failed", "failed": failed})
            }
        };
        println!("{line}");
    })
}

/// A progress bar on stderr; failures are printed above it as they happen.
pub fn bar() -> (Events, ProgressBar) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} databases ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let events: Events = Arc::new(move |e: &FleetEvent<'_>| match e {
        FleetEvent::Planned {
            to_check, skipped, ..
        } => {
            b.set_length(u64::try_from(*to_check).unwrap_or(u64::MAX));
            b.set_message(format!("{skipped} already at target"));
        }
        FleetEvent::WouldMigrate { db } => b.println(format!(
            "would migrate {} [{}] on {} (recorded version {})",
            db.db_name,
            slugs_short(db),
            db.server,
            db.recorded
                .map_or_else(|| "unknown".into(), |v| v.to_string())
        )),
        FleetEvent::Started { .. } => {}
        FleetEvent::Finished { result } => {
            b.inc(1);
            if let Some(err) = &result.error {
                b.println(format!(
                    "FAILED {} [{}] on {}: {err}",
                    result.db.db_name,
                    slugs_short(&result.db),
                    result.db.server
                ));
            }
        }
        FleetEvent::CanaryFailed { failed } => {
            b.println(format!(
                "{failed} canary database(s) failed: stopping before the rest"
            ));
        }
    });
    (events, bar)
}
