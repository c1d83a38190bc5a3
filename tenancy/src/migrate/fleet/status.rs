//! "Where do we stand?": per tenant database, the tenants it holds, its server, its recorded
//! version against the target, its state and the last run that touched it. Read-only; correct
//! while a run is going on (a run's liveness comes from its lock, see [`super::ledger`]).

use time::OffsetDateTime;
use uuid::Uuid;

use super::{FleetDb, FleetError, Migrator};
use crate::migrate::ledger::{self, INTERRUPTED};

/// The state of one tenant database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DbState {
    Pending,
    Running,
    Ok,
    Failed,
}

impl DbState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// One row of `platformctl migrate status`.
#[derive(Clone, Debug)]
pub struct DbStatus {
    pub db: FleetDb,
    /// The recorded version (a lower bound), if any.
    pub current: Option<i64>,
    pub target: i64,
    pub state: DbState,
    pub error: Option<String>,
    /// When the last run that touched this database finished (or started, if it has not).
    pub last_run_at: Option<OffsetDateTime>,
    pub last_run: Option<Uuid>,
}

/// How many databases are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub pending: usize,
    pub running: usize,
    pub ok: usize,
    pub failed: usize,
}

impl Summary {
    #[must_use]
    pub fn of(rows: &[DbStatus]) -> Self {
        let mut s = Self::default();
        for r in rows {
            match r.state {
                DbState::Pending => s.pending += 1,
                DbState::Running => s.running += 1,
                DbState::Ok => s.ok += 1,
                DbState::Failed => s.failed += 1,
            }
        }
        s
    }
}

impl Migrator {
    /// The state of every tenant database against `target`.
    pub async fn status(&self, target: i64) -> Result<Vec<DbStatus>, FleetError> {
        let fleet = self.fleet().await?;
        let latest = ledger::entries::latest_entries(self.catalog()).await?;
        let by_key: std::collections::HashMap<&str, &ledger::entries::LatestEntry> =
            latest.iter().map(|e| (e.db_key.as_str(), e)).collect();
        Ok(fleet
            .into_iter()
            .map(|db| {
                let key = db.key.to_string();
                let entry = by_key.get(key.as_str()).copied();
                let current = db.recorded;
                let at_target = current.is_some_and(|v| v >= target);
                let (state, error) = match entry {
                    Some(e) if e.run_alive && e.state == "running" => (DbState::Running, None),
                    Some(e) if e.run_alive && e.state == "pending" && !at_target => {
                        (DbState::Pending, None)
                    }
                    _ if at_target => (DbState::Ok, None),
                    Some(e) if e.state == "failed" => (DbState::Failed, e.error.clone()),
                    Some(e) if e.state == "running" => {
                        (DbState::Failed, Some(INTERRUPTED.to_owned()))
                    }
                    _ => (DbState::Pending, None),
                };
                DbStatus {
                    current,
                    target,
                    state,
                    error,
                    last_run_at: entry.and_then(|e| e.finished_at.or(e.started_at)),
                    last_run: entry.map(|e| e.run_id),
                    db,
                }
            })
            .collect())
    }
}
