//! `/api/v1/jobs`: the tenant's own background jobs (permission `jobs:read`), by id, for a
//! tenant admin who wants to know whether what they asked for (an invitation, an export) ran.
//! Never a payload; the work is `jobs::admin::list_in` under the tenant's RLS scope.

use axum::Json;
use jobs::JobId;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::extract::tenant::TenantDb;
use crate::routes::admin::jobs::{Job, JobPage, filter_and_limit};

/// Filters and page of `GET /api/v1/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TenantJobQuery {
    /// Only jobs in this state.
    pub state: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// This tenant's jobs, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(TenantJobQuery),
    responses((status = 200, body = JobPage), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("api_key" = []), ("bearer" = [])))]
pub async fn list(db: TenantDb, ApiQuery(q): ApiQuery<TenantJobQuery>) -> ApiResult<Json<JobPage>> {
    let (filter, limit) =
        filter_and_limit(q.state.as_deref(), q.kind.as_deref(), q.limit.as_deref())?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            JobId::parse(c)
                .ok_or_else(|| ApiError::bad_request("`cursor` is not a cursor this API issued"))
        })
        .transpose()?;
    let mut tx = db.begin().await?;
    let items = jobs::admin::list_in(&mut tx, &filter, after, limit).await?;
    tx.commit().await?;
    let next_cursor = (items.len() as i64 >= limit)
        .then(|| items.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(JobPage {
        items: items.into_iter().map(Job::from).collect(),
        next_cursor,
    }))
}
