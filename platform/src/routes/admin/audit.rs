//! `GET /admin/v1/audit-events`: the operators' audit trail (control plane), newest first, with
//! the same filters as the tenant's log plus `tenant`.

use tenancy::catalog::Catalog;

use audit::events::list_admin;
use axum::Json;
use axum::extract::State;

use crate::audit_query::{AuditPage, AuditQuery};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::extract::admin::Operator;

/// List the admin audit trail.
#[utoipa::path(get, path = "/admin/v1/audit-events", tag = "admin", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    if q.format.is_some() {
        return Err(ApiError::bad_request(
            "`format` is not a parameter of this listing",
        ));
    }
    let filter = q.filter()?;
    let (limit, before) = q.page()?;
    let events = list_admin(catalog.pool(), &filter, before, limit + 1)
        .await
        .map_err(|e| ApiError::unavailable("the catalog is unavailable", e))?;
    Ok(Json(AuditPage::from_events(events, limit)))
}
