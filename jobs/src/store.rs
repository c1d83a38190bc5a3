//! The statements on the `jobs` table. Every change a worker makes to a job it claimed names the
//! lease token of its claim: once another worker has rescued the job (new token), the first
//! worker's completion, retry or dead letter matches no row and its transaction rolls back.

use std::time::Duration;

use serde::Serialize;
use tenancy::dataplane::{TenantConn, TenantTx};
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

/// Defines an id newtype like `tenancy::ids` does.
macro_rules! tenancy_id {
    ($name:ident) => {
        /// A job's id (UUIDv7).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses a textual UUID.
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
tenancy_id!(JobId);

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a state name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A job claimed under a lease.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub sealed: Option<Vec<u8>>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub lease: Uuid,
    pub expires_at: Option<OffsetDateTime>,
}

/// What one claim statement returns: the jobs it claimed and, when it claimed fewer than it
/// asked for, when the tenant's next claimable job is due.
#[derive(Debug, Default)]
pub struct Claim {
    pub jobs: Vec<Claimed>,
    /// Only for a claim that came back short (a full one says nothing: more is likely due now):
    /// the earliest of the tenant's other pending or retrying jobs of these kinds (a retry, a
    /// scheduled job), running jobs' lease ends (an orphan to rescue), and the leases just taken.
    pub next_due: Option<OffsetDateTime>,
}

/// Claims up to `limit` of the tenant's due jobs of `kinds` (each with its lease length), and
/// running jobs whose lease ran out (orphans of a worker that died or stalled), skipping rows
/// another worker holds locked. `paused` kinds are left alone.
pub async fn claim(
    conn: TenantConn,
    kinds: &[(String, Duration)],
    paused: &[String],
    limit: i64,
) -> Result<Vec<Claimed>, tokio_postgres::Error> {
    Ok(claim_with_next_due(conn, kinds, paused, limit).await?.jobs)
}

/// [`claim`], and in the same statement (so in the same round trip) when the tenant's next job
/// is due if the claim comes back short ([`Claim::next_due`]).
///
/// The statement is `platform_jobs_claim` (tenant migration V21), which runs as the caller (RLS
/// applies) and keeps one generic plan per connection for its costly part: due jobs and orphans
/// are looked for apart, each in the order of its own partial index (`jobs_due`: priority, then
/// due time; `jobs_leased`: lease end), so a claim reads about as many index entries as it
/// claims, however deep the queue; then the best `limit` of both are taken and leased. Paused
/// kinds are left out here, so the function sees only the kinds to claim.
pub async fn claim_with_next_due(
    conn: TenantConn,
    kinds: &[(String, Duration)],
    paused: &[String],
    limit: i64,
) -> Result<Claim, tokio_postgres::Error> {
    let (names, leases): (Vec<&str>, Vec<f64>) = kinds
        .iter()
        .filter(|(k, _)| !paused.contains(k))
        .map(|(k, l)| (k.as_str(), l.as_secs_f64()))
        .unzip();
    let limit = i32::try_from(limit.max(0)).unwrap_or(i32::MAX);
    let rows = conn
        .begin()
        .query_and_commit(
            "SELECT * FROM platform_jobs_claim($1, $2, $3)",
            &[&names, &leases, &limit],
        )
        .await?;
    let mut out = Claim::default();
    let mut next: Option<OffsetDateTime> = None;
    let mut short = false;
    for r in &rows {
        let at: Option<OffsetDateTime> = r.get(8);
        if r.get::<_, Option<Uuid>>(0).is_some() {
            out.jobs.push(claimed(r));
        } else {
            short = true;
        }
        next = match (next, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    if short {
        out.next_due = next;
    }
    Ok(out)
}

fn claimed(r: &Row) -> Claimed {
    Claimed {
        id: JobId::from_uuid(r.get(0)),
        kind: r.get(1),
        payload: r.get(2),
        sealed: r.get(3),
        attempts: r.get(4),
        max_attempts: r.get(5),
        lease: r.get(6),
        expires_at: r.get(7),
    }
}

/// The lease was lost: another worker holds the job now (or an operator changed it).
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("the job's lease was lost; nothing was committed")]
    LeaseLost,
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// The SQLSTATE `platform_job_complete` raises when the lease no longer holds.
const LEASE_LOST: &str = "PJ001";

/// Marks the job succeeded as the last statement of `tx` with the handler's effects, `COMMIT`
/// in the same round trip: if the lease no longer holds, the statement fails, the transaction
/// aborts and the `COMMIT` rolls the effects back.
pub async fn complete(tx: TenantTx, id: JobId, lease: Uuid) -> Result<(), FenceError> {
    match tx
        .execute_and_commit(
            "SELECT platform_job_complete($1, $2)",
            &[&id.as_uuid(), &lease],
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code().is_some_and(|c| c.code() == LEASE_LOST) => Err(FenceError::LeaseLost),
        Err(e) => Err(FenceError::Db(e)),
    }
}

/// Marks succeeded, in one statement, jobs whose handlers left nothing in their transactions
/// (no effect to commit with the completion), each only if its own lease token still holds it.
/// Returns the jobs completed; the others' leases were lost (another worker holds them now).
pub async fn complete_batch(
    conn: TenantConn,
    done: &[(JobId, Uuid)],
) -> Result<Vec<JobId>, tokio_postgres::Error> {
    let ids: Vec<Uuid> = done.iter().map(|(id, _)| id.as_uuid()).collect();
    let leases: Vec<Uuid> = done.iter().map(|(_, lease)| *lease).collect();
    let rows = conn
        .begin()
        .query_and_commit(
            "UPDATE jobs SET state = 'succeeded', lease_token = NULL, lease_until = NULL,
                    finished_at = now(), last_error = NULL
             WHERE id = ANY($1) AND state = 'running'
               AND (id, lease_token) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))
             RETURNING id",
            &[&ids, &leases],
        )
        .await?;
    Ok(rows.iter().map(|r| JobId::from_uuid(r.get(0))).collect())
}

/// Gives back claimed jobs that were not started (their lease would run out before their turn):
/// due again at once, the attempt not counted; only where `lease` still holds them.
pub async fn release(
    conn: TenantConn,
    jobs: &[(JobId, Uuid)],
) -> Result<u64, tokio_postgres::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|(id, _)| id.as_uuid()).collect();
    let leases: Vec<Uuid> = jobs.iter().map(|(_, lease)| *lease).collect();
    conn.begin()
        .execute_and_commit(
            "UPDATE jobs SET state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'pending' END,
                    attempts = attempts - 1, lease_token = NULL, lease_until = NULL
             WHERE id = ANY($1) AND state = 'running'
               AND (id, lease_token) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
            &[&ids, &leases],
        )
        .await
}

/// Records a failed attempt: back to `retrying` after `delay`, or `dead` with the error once the
/// attempts are used up; only if `lease` still holds the job. Returns the new state.
pub async fn fail(
    conn: TenantConn,
    id: JobId,
    lease: Uuid,
    delay: Duration,
    error: &str,
) -> Result<JobState, FenceError> {
    let row = conn
        .begin()
        .query_opt_and_commit(
            "UPDATE jobs SET
                state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retrying' END,
                run_at = CASE WHEN attempts >= max_attempts THEN run_at
                              ELSE now() + make_interval(secs => $3) END,
                finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                last_error = $4, lease_token = NULL, lease_until = NULL
             WHERE id = $1 AND lease_token = $2 AND state = 'running'
             RETURNING state",
            &[&id.as_uuid(), &lease, &delay.as_secs_f64(), &error],
        )
        .await?;
    let state: String = row.ok_or(FenceError::LeaseLost)?.get(0);
    Ok(JobState::parse(&state).unwrap_or(JobState::Dead))
}

/// Extends a running job's lease to `length` from now, if `lease` still holds it; `false` when
/// the lease was lost.
pub async fn renew(
    conn: TenantConn,
    id: JobId,
    lease: Uuid,
    length: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let n = conn
        .begin()
        .execute_and_commit(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            &[&id.as_uuid(), &lease, &length.as_secs_f64()],
        )
        .await?;
    Ok(n == 1)
}

/// Ends a job that will never run (its token expired): `cancelled`, if `lease` holds it.
pub async fn expire(conn: TenantConn, id: JobId, lease: Uuid) -> Result<(), FenceError> {
    let n = conn
        .begin()
        .execute_and_commit(
            "UPDATE jobs SET state = 'cancelled', last_error = 'expired before it ran',
                    lease_token = NULL, lease_until = NULL, finished_at = now()
             WHERE id = $1 AND lease_token = $2 AND state = 'running'",
            &[&id.as_uuid(), &lease],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(FenceError::LeaseLost)
    }
}
