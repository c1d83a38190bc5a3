//! Operation metrics, read from the control plane on each scrape (three small aggregate queries;
//! the move and migration code needs no call of its own): placement moves by kind and state, how
//! long each unfinished move has been in its current step and how far its replication slot trails
//! the source (sampled by the move while it copies), the latest fleet migration run and its
//! databases by state; and the audit seal lag per database, from the sealer's in-memory account
//! ([`audit::sealer::SealLag`], no query).
//!
//! A label set that disappears (a move left its step, a database caught up) is set to 0 once
//! rather than left at its last value.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use metrics::Label;
use sqlx::PgPool;

/// Operation kinds and states as the `operations` table allows them (control plane V4).
const KINDS: &[&str] = &["promote", "demote", "move"];
const STATES: &[&str] = &["pending", "running", "succeeded", "failed", "cancelled"];
/// Fleet migration run states (control plane V3).
const RUN_STATES: &[&str] = &["running", "ok", "failed", "stopped", "interrupted"];
/// Ledger states of a database within a run.
const DB_STATES: &[&str] = &["pending", "running", "ok", "failed"];

/// A label set: name and value pairs.
pub type LabelSet = Vec<(&'static str, String)>;

/// One gauge family's values this scrape: label set to value.
pub type Family = BTreeMap<LabelSet, f64>;

/// The gauges this module sets, by name.
#[derive(Debug, Default)]
pub struct Readings(pub Vec<(&'static str, Family)>);

/// Remembers which label sets of each family were set, so vanished ones are zeroed once.
#[derive(Debug, Default)]
pub struct Seen(Mutex<BTreeMap<&'static str, BTreeSet<LabelSet>>>);

impl Seen {
    /// The label sets to set now: this scrape's, plus last scrape's that vanished (at 0).
    pub fn complete(&self, name: &'static str, mut now: Family) -> Family {
        let Ok(mut seen) = self.0.lock() else {
            return now;
        };
        let before = seen.entry(name).or_default();
        for gone in before.iter() {
            now.entry(gone.clone()).or_insert(0.0);
        }
        *before = now
            .iter()
            .filter(|(_, v)| **v != 0.0)
            .map(|(k, _)| k.clone())
            .collect();
        now
    }
}

/// Turns label pairs into exporter labels.
pub fn labels(pairs: &[(&'static str, String)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, v.clone()))
        .collect()
}

fn one(pairs: &[(&'static str, &str)]) -> LabelSet {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Reads the operation and fleet-migration gauges from the control plane.
pub async fn read(pool: &PgPool) -> Result<Readings, sqlx::Error> {
    let mut out = Readings::default();

    let mut by_state = Family::new();
    for k in KINDS {
        for s in STATES {
            by_state.insert(one(&[("kind", k), ("state", s)]), 0.0);
        }
    }
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, state, count(*) FROM operations GROUP BY kind, state")
            .fetch_all(pool)
            .await?;
    for (kind, state, n) in rows {
        by_state.insert(vec![("kind", kind), ("state", state)], n as f64);
    }
    out.0.push(("platform_operations", by_state));

    // Unfinished operations: time in the current step (since the last step change or progress
    // report) and since the start.
    let rows: Vec<(String, String, f64, f64)> = sqlx::query_as(
        "SELECT kind, step,
                EXTRACT(EPOCH FROM now() - updated_at)::float8,
                EXTRACT(EPOCH FROM now() - coalesce(started_at, created_at))::float8
           FROM operations WHERE state IN ('pending', 'running')",
    )
    .fetch_all(pool)
    .await?;
    let mut in_step = Family::new();
    let mut running: Family = KINDS.iter().map(|k| (one(&[("kind", k)]), 0.0)).collect();
    for (kind, step, step_age, age) in rows {
        let e = in_step
            .entry(vec![("kind", kind.clone()), ("step", step)])
            .or_default();
        *e = e.max(step_age);
        let e = running.entry(vec![("kind", kind)]).or_default();
        *e = e.max(age);
    }
    out.0.push(("platform_operation_step_seconds", in_step));

    // How far each unfinished move's replication slot trails its source (sampled by the move
    // during the initial copy, the step where it can grow).
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT kind, max((progress->>'replication_lag_bytes')::float8)
           FROM operations
          WHERE state IN ('pending', 'running') AND progress ? 'replication_lag_bytes'
          GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    let lag: Family = rows
        .into_iter()
        .map(|(kind, bytes)| (vec![("kind", kind)], bytes))
        .collect();
    out.0
        .push(("platform_operation_replication_lag_bytes", lag));
    out.0.push(("platform_operation_age_seconds", running));

    // The latest fleet migration run (run ids are UUIDv7: time-ordered).
    let run: Option<(uuid::Uuid, String, i64, i32, i32)> = sqlx::query_as(
        "SELECT id, state, target_version, planned, skipped FROM migration_runs
          ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let mut run_state: Family = RUN_STATES
        .iter()
        .map(|s| (one(&[("state", s)]), 0.0))
        .collect();
    let mut dbs: Family = DB_STATES
        .iter()
        .map(|s| (one(&[("state", s)]), 0.0))
        .collect();
    let mut planned = Family::new();
    let mut target = Family::new();
    if let Some((id, state, target_version, p, _skipped)) = run {
        run_state.insert(vec![("state", state)], 1.0);
        planned.insert(Vec::new(), f64::from(p));
        target.insert(Vec::new(), target_version as f64);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM migration_ledger WHERE run_id = $1 GROUP BY state",
        )
        .bind(id)
        .fetch_all(pool)
        .await?;
        for (state, n) in rows {
            dbs.insert(vec![("state", state)], n as f64);
        }
    }
    out.0.push(("platform_fleet_migration_last_run", run_state));
    out.0.push(("platform_fleet_migration_databases", dbs));
    out.0.push(("platform_fleet_migration_planned", planned));
    out.0
        .push(("platform_fleet_migration_target_version", target));
    Ok(out)
}

/// The audit seal lag gauges from the sealer's account.
#[must_use]
pub fn seal_lag(lag: &audit::sealer::SealLag) -> Family {
    lag.by_database()
        .into_iter()
        .map(|(db, age)| (vec![("database", db)], age.as_secs_f64()))
        .collect()
}
