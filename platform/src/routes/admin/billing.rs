//! `/admin/v1/...billing`: a tenant's billing as it applies now (the tenant's own view: plan,
//! standing, deadlines, quotas and their usage), an operator's grant of a plan without Stripe
//! (enterprise contracts, trials), and reconciliation with Stripe's event list after an outage.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use serde::{Deserialize, Serialize};
use tenancy::catalog::Catalog;
use tenancy::dataplane::DataPlane;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::find_tenant;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::api::billing::{BillingView, view};

/// A tenant's billing as it applies now: what `GET /api/v1/billing` shows the tenant.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/billing", tag = "admin",
    params(("tenant" = String, Path, description = "id or slug")),
    responses((status = 200, body = BillingView), (status = 404, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn show(
    _: Operator,
    State(catalog): State<Catalog>,
    State(billing): State<Arc<Billing>>,
    State(dataplane): State<DataPlane>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<BillingView>> {
    let t = find_tenant(&catalog, &tenant).await?;
    Ok(Json(view(&billing, &catalog, &dataplane, &t).await?))
}

/// Body of `PUT /admin/v1/tenants/{tenant}/billing/grant`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub plan: String,
    /// RFC 3339; absent: until revoked by another grant or a subscription.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

/// Grant a plan without Stripe.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/billing/grant", tag = "admin",
    params(("tenant" = String, Path, description = "id or slug")),
    request_body = GrantBody,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn grant(
    _: Operator,
    State(catalog): State<Catalog>,
    State(billing): State<Arc<Billing>>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<StatusCode> {
    let t = find_tenant(&catalog, &tenant).await?;
    billing.grant(t.id, &body.plan, body.until).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /admin/v1/billing/reconcile`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBody {
    /// Unix seconds; default: 5 minutes before the newest event recorded.
    #[serde(default)]
    pub since: Option<i64>,
}

/// What a reconciliation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileView {
    pub listed: usize,
    pub applied: usize,
}

/// Apply the Stripe events this platform missed (`GET /v1/events`), e.g. after an outage of the
/// webhook endpoint. Safe to repeat: an event already applied changes nothing.
#[utoipa::path(post, path = "/admin/v1/billing/reconcile", tag = "admin",
    request_body = ReconcileBody,
    responses((status = 200, body = ReconcileView), (status = 401, body = Problem), (status = 502, body = Problem)),
    security(("operator" = [])))]
pub async fn reconcile(
    _: Operator,
    State(billing): State<Arc<Billing>>,
    ApiJson(body): ApiJson<ReconcileBody>,
) -> ApiResult<Json<ReconcileView>> {
    let r = billing.reconcile(body.since).await.map_err(|e| match e {
        billing::reconcile::ReconcileError::Stripe(s) => {
            ApiError::from(billing::manage::ManageError::Stripe(s))
        }
        e => ApiError::internal(e),
    })?;
    Ok(Json(ReconcileView {
        listed: r.listed,
        applied: r.applied,
    }))
}
