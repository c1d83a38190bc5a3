//! `/admin/v1/jobs`: operators list jobs across tenants, retry or discard one, and pause or
//! resume a kind on every instance. Thin: the work is `jobs::admin`.

use axum::Json;
use axum::extract::State;
use jobs::admin::{Cursor, Filter, Fleet, JobAdminError, JobView};
use jobs::{JobId, JobKind, JobState};
use serde::{Deserialize, Serialize};
use tenancy::catalog::Catalog;
use tenancy::dataplane::DataPlane;
use tenancy::ids::TenantId;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::ts;

/// A job (never its payload).
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    /// `pending`, `running`, `retrying`, `succeeded`, `dead` or `cancelled`.
    pub state: String,
    pub priority: i16,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
}

impl From<JobView> for Job {
    fn from(j: JobView) -> Self {
        Self {
            id: j.id.to_string(),
            tenant_id: j.tenant_id.to_string(),
            kind: j.kind,
            state: j.state.as_str().to_owned(),
            priority: j.priority,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: ts(j.run_at),
            last_error: j.last_error,
            created_at: ts(j.created_at),
            finished_at: j.finished_at.map(ts),
        }
    }
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<Job>,
    pub next_cursor: Option<String>,
}

/// Filters and page of `GET /admin/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct JobQuery {
    /// Only this tenant's jobs (its id).
    pub tenant: Option<String>,
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `?tenant=` of a job action: where the job is (else every tenant is searched).
#[derive(Debug, Deserialize, IntoParams)]
pub struct JobTenant {
    pub tenant: Option<String>,
}

impl From<JobAdminError> for ApiError {
    fn from(e: JobAdminError) -> Self {
        match e {
            JobAdminError::NotFound => Self::not_found("no such job"),
            JobAdminError::NoTenant => Self::not_found("no such tenant"),
            JobAdminError::Conflict(..) => Self::conflict(e.to_string()),
            JobAdminError::Catalog(c) => c.into(),
            JobAdminError::Connect(c) => c.into(),
            JobAdminError::Db(d) => d.into(),
        }
    }
}

fn tenant_param(t: Option<&str>) -> Result<Option<TenantId>, ApiError> {
    t.map(|t| {
        TenantId::parse(t).ok_or_else(|| ApiError::bad_request("`tenant` must be a tenant id"))
    })
    .transpose()
}

fn job_id(id: &str) -> Result<JobId, ApiError> {
    JobId::parse(id).ok_or_else(|| ApiError::not_found("no such job"))
}

/// The `state`, `kind` and `limit` parameters of a job listing (operators' and tenants').
pub(crate) fn filter_and_limit(
    state: Option<&str>,
    kind: Option<&str>,
    limit: Option<&str>,
) -> Result<(Filter, i64), ApiError> {
    let filter = Filter {
        tenant: None,
        state: state
            .map(|s| {
                JobState::parse(s).ok_or_else(|| {
                    ApiError::bad_request(
                        "`state` is one of pending, running, retrying, succeeded, dead, cancelled",
                    )
                })
            })
            .transpose()?,
        kind: kind
            .map(|k| JobKind::parse(k).map_err(|e| ApiError::bad_request(e.to_string())))
            .transpose()?,
    };
    let limit = match limit {
        None => 20,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::bad_request("`limit` must be a whole number from 1 to 100"))?,
    };
    Ok((filter, limit))
}

/// List jobs, by tenant and then id.
#[utoipa::path(get, path = "/admin/v1/jobs", tag = "admin", params(JobQuery),
    responses((status = 200, body = JobPage), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    State(dataplane): State<DataPlane>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<JobPage>> {
    let (mut filter, limit) =
        filter_and_limit(q.state.as_deref(), q.kind.as_deref(), q.limit.as_deref())?;
    filter.tenant = tenant_param(q.tenant.as_deref())?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            Cursor::parse(c)
                .ok_or_else(|| ApiError::bad_request("`cursor` is not a cursor this API issued"))
        })
        .transpose()?;
    let (items, next) =
        jobs::admin::list(Fleet::new(&catalog, &dataplane), &filter, cursor, limit).await?;
    Ok(Json(JobPage {
        items: items.into_iter().map(Job::from).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// Run a job again now (pending, retrying, dead or cancelled).
#[utoipa::path(post, path = "/admin/v1/jobs/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "Job id"), JobTenant),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn retry(
    _: Operator,
    State(catalog): State<Catalog>,
    State(dataplane): State<DataPlane>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<JobTenant>,
) -> ApiResult<Json<Job>> {
    let tenant = tenant_param(q.tenant.as_deref())?;
    Ok(Json(
        jobs::admin::retry(Fleet::new(&catalog, &dataplane), job_id(&id)?, tenant)
            .await?
            .into(),
    ))
}

/// Cancel a job that has not succeeded (a running one's completion is then refused).
#[utoipa::path(post, path = "/admin/v1/jobs/{id}/discard", tag = "admin",
    params(("id" = String, Path, description = "Job id"), JobTenant),
    responses((status = 200, body = Job), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn discard(
    _: Operator,
    State(catalog): State<Catalog>,
    State(dataplane): State<DataPlane>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<JobTenant>,
) -> ApiResult<Json<Job>> {
    let tenant = tenant_param(q.tenant.as_deref())?;
    Ok(Json(
        jobs::admin::discard(Fleet::new(&catalog, &dataplane), job_id(&id)?, tenant)
            .await?
            .into(),
    ))
}

/// A kind's pause state.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindState {
    pub kind: String,
    pub paused: bool,
}

async fn set_paused(catalog: &Catalog, kind: &str, paused: bool) -> ApiResult<Json<KindState>> {
    let k = JobKind::parse(kind).map_err(|e| ApiError::bad_request(e.to_string()))?;
    jobs::admin::set_paused(catalog, &k, paused)
        .await
        .map_err(|e| ApiError::unavailable("the catalog is unavailable", e))?;
    Ok(Json(KindState {
        kind: k.to_string(),
        paused,
    }))
}

/// Stop claiming jobs of a kind on every instance (running ones finish).
#[utoipa::path(post, path = "/admin/v1/jobs/kinds/{kind}/pause", tag = "admin",
    params(("kind" = String, Path, description = "Job kind")),
    responses((status = 200, body = KindState), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn pause(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(kind): ApiPath<String>,
) -> ApiResult<Json<KindState>> {
    set_paused(&catalog, &kind, true).await
}

/// Claim jobs of a kind again.
#[utoipa::path(post, path = "/admin/v1/jobs/kinds/{kind}/resume", tag = "admin",
    params(("kind" = String, Path, description = "Job kind")),
    responses((status = 200, body = KindState), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn resume(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(kind): ApiPath<String>,
) -> ApiResult<Json<KindState>> {
    set_paused(&catalog, &kind, false).await
}
