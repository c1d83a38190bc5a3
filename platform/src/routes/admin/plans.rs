//! `/admin/v1/plans`: plans and their request rates and audit retention. A change applies to
//! every tenant on the plan, on every instance, within about a second (catalog notification).

use tenancy::catalog::Catalog;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenancy::catalog::Plan;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};

/// A plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub name: String,
    pub requests_per_second: i32,
    pub burst: i32,
    pub audit_retention_days: i32,
}

impl From<Plan> for PlanView {
    fn from(p: Plan) -> Self {
        Self {
            name: p.name,
            requests_per_second: p.requests_per_second,
            burst: p.burst,
            audit_retention_days: p.audit_retention_days,
        }
    }
}

/// Body of `PUT /admin/v1/plans/{plan}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    pub requests_per_second: i32,
    pub burst: i32,
    pub audit_retention_days: i32,
}

/// List plans.
#[utoipa::path(get, path = "/admin/v1/plans", tag = "admin",
    responses((status = 200, body = Vec<PlanView>), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn list(_: Operator, State(catalog): State<Catalog>) -> ApiResult<Json<Vec<PlanView>>> {
    Ok(Json(
        catalog
            .plans()
            .await?
            .into_iter()
            .map(PlanView::from)
            .collect(),
    ))
}

/// Create or change a plan.
#[utoipa::path(put, path = "/admin/v1/plans/{plan}", tag = "admin", request_body = PlanBody,
    params(("plan" = String, Path, description = "Plan name")),
    responses((status = 200, body = PlanView), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn put(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PlanBody>,
) -> ApiResult<Json<PlanView>> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ApiError::unprocessable(
            "a plan name is 1 to 64 characters of a-z, 0-9, `-` and `_`",
        ));
    }
    let ok = |n: i32| (1..=1_000_000).contains(&n);
    if !ok(body.requests_per_second) || !ok(body.burst) || !ok(body.audit_retention_days) {
        return Err(ApiError::unprocessable(
            "`requests_per_second`, `burst` and `audit_retention_days` must be from 1 to 1000000",
        ));
    }
    let plan = catalog
        .put_plan(&Plan {
            name,
            requests_per_second: body.requests_per_second,
            burst: body.burst,
            audit_retention_days: body.audit_retention_days,
        })
        .await?;
    Ok(Json(plan.into()))
}
