//! `/admin/v1/plans`: plans and their request rates, audit retention and usage quota (tasks
//! per month, billing's). A change applies to every tenant on the plan, on every instance, within
//! about a second (catalog notification).

use std::collections::HashMap;
use std::sync::Arc;

use billing::Billing;
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
    /// Tasks a tenant on the plan may create per calendar month, UTC (none: unlimited).
    pub tasks_per_month: Option<i64>,
}

impl PlanView {
    fn new(p: Plan, quotas: &HashMap<String, Option<i64>>) -> Self {
        Self {
            tasks_per_month: quotas.get(&p.name).copied().flatten(),
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
    /// Tasks a tenant on the plan may create per calendar month, UTC: `null` for unlimited;
    /// absent: unchanged (unlimited for a new plan).
    #[serde(default, deserialize_with = "crate::routes::double_option")]
    #[schema(value_type = Option<i64>)]
    pub tasks_per_month: Option<Option<i64>>,
}

/// List plans.
#[utoipa::path(get, path = "/admin/v1/plans", tag = "admin",
    responses((status = 200, body = Vec<PlanView>), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    State(billing): State<Arc<Billing>>,
) -> ApiResult<Json<Vec<PlanView>>> {
    let quotas = billing.plan_task_quotas().await?;
    Ok(Json(
        catalog
            .plans()
            .await?
            .into_iter()
            .map(|p| PlanView::new(p, &quotas))
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
    State(billing): State<Arc<Billing>>,
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
    if let Some(Some(q)) = body.tasks_per_month
        && !(0..=1_000_000_000).contains(&q)
    {
        return Err(ApiError::unprocessable(
            "`tasks_per_month` must be from 0 to 1000000000, or null for unlimited",
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
    // The quota is billing's: set after the plan exists (a failure leaves the plan changed and
    // answers an error; the PUT is safe to repeat).
    if let Some(q) = body.tasks_per_month {
        billing.set_plan_task_quota(&plan.name, q).await?;
    }
    let quotas = billing.plan_task_quotas().await?;
    Ok(Json(PlanView::new(plan, &quotas)))
}
