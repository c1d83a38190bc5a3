//! What operators see and do: list jobs (one tenant, or walking every tenant in id order),
//! retry or discard one, pause and resume a kind. Platform's admin routes and `platformctl jobs`
//! both call these.

use tenancy::bootstrap::Tenancy;
use tenancy::catalog::{Catalog, CatalogError, Tenant};
use tenancy::dataplane::ConnectError;
use tenancy::dataplane::DataPlane;
use tenancy::ids::TenantId;
use time::OffsetDateTime;
use tokio_postgres::Row;

/// What the operators' job functions reach: the catalog (which tenants, where) and the data
/// plane (their databases). Narrower than the whole [`Tenancy`].
#[derive(Clone, Copy)]
pub struct Fleet<'a> {
    pub catalog: &'a Catalog,
    pub dataplane: &'a DataPlane,
}

impl<'a> Fleet<'a> {
    /// The fleet of a catalog and a data plane (a handler's narrow state).
    #[must_use]
    pub fn new(catalog: &'a Catalog, dataplane: &'a DataPlane) -> Self {
        Self { catalog, dataplane }
    }

    /// The fleet of a whole tenancy core (the CLI's).
    #[must_use]
    pub fn of(tenancy: &'a Tenancy) -> Self {
        Self {
            catalog: &tenancy.catalog,
            dataplane: &tenancy.dataplane,
        }
    }
}

use crate::kind::JobKind;
use crate::store::{JobId, JobState};

/// A job as operators see it (never its payload: it may be personal data).
#[derive(Clone, Debug)]
pub struct JobView {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: String,
    pub state: JobState,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "id, tenant_id, kind, state, priority, attempts, max_attempts, run_at, \
                       last_error, created_at, finished_at";

fn view(r: &Row) -> JobView {
    let state: String = r.get(3);
    JobView {
        id: JobId::from_uuid(r.get(0)),
        tenant_id: TenantId::from_uuid(r.get(1)),
        kind: r.get(2),
        state: JobState::parse(&state).unwrap_or(JobState::Dead),
        priority: r.get(4),
        attempts: r.get(5),
        max_attempts: r.get(6),
        run_at: r.get(7),
        last_error: r.get(8),
        created_at: r.get(9),
        finished_at: r.get(10),
    }
}

/// An operator's job action failed.
#[derive(Debug, thiserror::Error)]
pub enum JobAdminError {
    #[error("no such job")]
    NotFound,
    #[error("no such tenant")]
    NoTenant,
    #[error("a {0} job cannot be {1}")]
    Conflict(&'static str, &'static str),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the job store failed")]
    Db(#[from] tokio_postgres::Error),
}

/// Which jobs to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub tenant: Option<TenantId>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
}

/// Where a listing resumes: after this tenant's job.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    pub tenant: TenantId,
    pub job: JobId,
}

impl Cursor {
    #[must_use]
    pub fn encode(&self) -> String {
        format!("{}.{}", self.tenant, self.job)
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let (t, j) = s.split_once('.')?;
        Some(Self {
            tenant: TenantId::parse(t)?,
            job: JobId::parse(j)?,
        })
    }
}

async fn tenant(fleet: Fleet<'_>, id: TenantId) -> Result<Tenant, JobAdminError> {
    fleet
        .catalog
        .tenant(id)
        .await?
        .filter(|t| t.status.as_str() != "deleted")
        .ok_or(JobAdminError::NoTenant)
}

async fn list_one(
    fleet: Fleet<'_>,
    t: &Tenant,
    filter: &Filter,
    after: Option<JobId>,
    limit: i64,
) -> Result<Vec<JobView>, JobAdminError> {
    let mut tx = fleet.dataplane.connect(t).await?.begin();
    let jobs = list_in(&mut tx, filter, after, limit).await?;
    tx.commit().await?;
    Ok(jobs)
}

/// The jobs of `tx`'s tenant (its RLS scope) matching `filter` (its `tenant` is not used), by
/// id after `after`: the operators' listing of one tenant, and the tenant's own view.
pub async fn list_in(
    tx: &mut tenancy::dataplane::TenantTx,
    filter: &Filter,
    after: Option<JobId>,
    limit: i64,
) -> Result<Vec<JobView>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM jobs
                 WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR kind = $2)
                   AND ($3::uuid IS NULL OR id > $3)
                 ORDER BY id LIMIT $4"
            ),
            &[
                &filter.state.map(JobState::as_str),
                &filter.kind.as_ref().map(JobKind::as_str),
                &after.map(|j| j.as_uuid()),
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(view).collect())
}

/// One page of jobs (by tenant, then id) and the cursor of the next page.
pub async fn list(
    fleet: Fleet<'_>,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<JobView>, Option<Cursor>), JobAdminError> {
    let mut out = Vec::new();
    let page_end = |out: &Vec<JobView>| {
        (out.len() as i64 >= limit).then(|| {
            let last: &JobView = out.last().expect("limit > 0");
            Cursor {
                tenant: last.tenant_id,
                job: last.id,
            }
        })
    };
    if let Some(id) = filter.tenant {
        let t = tenant(fleet, id).await?;
        let after = cursor.filter(|c| c.tenant == id).map(|c| c.job);
        out = list_one(fleet, &t, filter, after, limit).await?;
        let next = page_end(&out);
        return Ok((out, next));
    }
    // Walk the tenants from the cursor's.
    let mut after_tenant = cursor.map(|c| c.tenant);
    let mut first = cursor;
    if let Some(c) = cursor {
        // The cursor's own tenant may have more after its job.
        if let Some(t) = fleet.catalog.tenant(c.tenant).await? {
            out = list_one(fleet, &t, filter, Some(c.job), limit).await?;
        }
        first = None;
    }
    let _ = first;
    while (out.len() as i64) < limit {
        let page = fleet.catalog.list_tenants(after_tenant, 100).await?;
        let Some(last) = page.last() else { break };
        after_tenant = Some(last.id);
        for t in &page {
            let rest = limit - out.len() as i64;
            if rest <= 0 {
                break;
            }
            out.extend(list_one(fleet, t, filter, None, rest).await?);
        }
    }
    let next = page_end(&out);
    Ok((out, next))
}

/// Finds the tenant of job `id` (given, or by walking the tenants).
async fn locate(
    fleet: Fleet<'_>,
    id: JobId,
    hint: Option<TenantId>,
) -> Result<Tenant, JobAdminError> {
    if let Some(t) = hint {
        return tenant(fleet, t).await;
    }
    let mut after = None;
    loop {
        let page = fleet.catalog.list_tenants(after, 100).await?;
        let Some(last) = page.last() else {
            return Err(JobAdminError::NotFound);
        };
        after = Some(last.id);
        for t in page {
            let conn = fleet.dataplane.connect(&t).await?;
            let found = conn
                .begin()
                .query_opt_and_commit("SELECT 1 FROM jobs WHERE id = $1", &[&id.as_uuid()])
                .await?;
            if found.is_some() {
                return Ok(t);
            }
        }
    }
}

/// Runs a job again now: a pending, retrying, dead or cancelled job goes back to `pending` (with
/// one more attempt allowed if it used them all).
pub async fn retry(
    fleet: Fleet<'_>,
    id: JobId,
    hint: Option<TenantId>,
) -> Result<JobView, JobAdminError> {
    change(
        fleet,
        id,
        hint,
        "retried",
        &["pending", "retrying", "dead", "cancelled"],
        "state = 'pending', run_at = now(), lease_token = NULL, lease_until = NULL,
         finished_at = NULL, max_attempts = GREATEST(max_attempts, attempts + 1)",
    )
    .await
}

/// Cancels a job that has not succeeded. A running one keeps running, but its worker's lease no
/// longer holds: its completion is refused and rolled back.
pub async fn discard(
    fleet: Fleet<'_>,
    id: JobId,
    hint: Option<TenantId>,
) -> Result<JobView, JobAdminError> {
    change(
        fleet,
        id,
        hint,
        "discarded",
        &["pending", "running", "retrying", "dead"],
        "state = 'cancelled', lease_token = NULL, lease_until = NULL, finished_at = now(),
         last_error = COALESCE(last_error, 'discarded by an operator')",
    )
    .await
}

async fn change(
    fleet: Fleet<'_>,
    id: JobId,
    hint: Option<TenantId>,
    verb: &'static str,
    from: &[&str],
    set: &str,
) -> Result<JobView, JobAdminError> {
    let t = locate(fleet, id, hint).await?;
    let mut tx = fleet.dataplane.connect(&t).await?.begin();
    let Some(row) = tx
        .query_opt(
            "SELECT state FROM jobs WHERE id = $1 FOR UPDATE",
            &[&id.as_uuid()],
        )
        .await?
    else {
        return Err(JobAdminError::NotFound);
    };
    let state: String = row.get(0);
    if !from.contains(&state.as_str()) {
        let s = JobState::parse(&state).map_or("finished", JobState::as_str);
        return Err(JobAdminError::Conflict(s, verb));
    }
    let row = tx
        .query_opt(
            &format!("UPDATE jobs SET {set} WHERE id = $1 RETURNING {COLUMNS}"),
            &[&id.as_uuid()],
        )
        .await?
        .ok_or(JobAdminError::NotFound)?;
    tx.hint_after_commit();
    tx.commit().await?;
    let job = view(&row);
    // The operators' trail (the control plane): the job row is in the tenant's database, so
    // this is a second write after the first committed; a failure here is reported.
    sqlx::query("SELECT platform_admin_audit_append($1, $2, 'job', $3, 'success', $4)")
        .bind(t.id.as_uuid())
        .bind(format!("job.{verb}"))
        .bind(id.to_string())
        .bind(serde_json::json!({ "kind": job.kind, "from": state, "to": job.state.as_str() }))
        .execute(fleet.catalog.pool())
        .await
        .map_err(CatalogError::from)?;
    Ok(job)
}

/// The kinds operators paused.
pub async fn paused_kinds(catalog: &Catalog) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT kind FROM job_kind_pauses ORDER BY kind")
        .fetch_all(catalog.pool())
        .await
}

/// Pauses (`true`) or resumes a kind on every instance: workers stop claiming it (jobs running
/// now finish). Returns whether anything changed.
pub async fn set_paused(
    catalog: &Catalog,
    kind: &JobKind,
    paused: bool,
) -> Result<bool, sqlx::Error> {
    let sql = if paused {
        "INSERT INTO job_kind_pauses (kind) VALUES ($1) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM job_kind_pauses WHERE kind = $1"
    };
    let mut tx = catalog.pool().begin().await?;
    let n = sqlx::query(sql)
        .bind(kind.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("SELECT pg_notify($1, 'kinds')")
        .bind(crate::CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n > 0)
}
