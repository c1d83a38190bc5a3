//! `/admin/v1/tenants/{tenant}/placement` and `/admin/v1/operations/{id}`: promote, demote and
//! move tenants as long-running operations.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy::catalog::Catalog;
use tenancy::catalog::operations::{OperationKind, OperationRow, OperationState, Step};
use tenancy::ids::OperationId;
use tenancy::placement::{MoveRequest, Mover, StartMoveError};
use utoipa::ToSchema;
use uuid::Uuid;

use super::find_tenant;
use super::tenants::views::PlacementKind;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ts;

/// Body of `POST .../placement`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementBody {
    pub placement: PlacementKind,
    /// For `dedicated`: the server (required).
    #[serde(default)]
    pub db_server: Option<String>,
}

/// A long-running operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationView {
    pub id: Uuid,
    /// `promote`, `demote` or `move`.
    #[schema(value_type = String)]
    pub kind: OperationKind,
    pub tenant_id: Uuid,
    /// `pending`, `running`, `succeeded`, `failed`, `cancelled`.
    #[schema(value_type = String)]
    pub state: OperationState,
    /// `prepare`, `publish`, `subscribe`, `copy`, `fence`, `drain`, `verify`, `switch`,
    /// `cleanup`, `done`.
    #[schema(value_type = String)]
    pub step: Step,
    #[schema(value_type = Object)]
    pub source: Value,
    #[schema(value_type = Object)]
    pub target: Value,
    /// Rows copied, timings per step (`*_ms`), `write_pause_ms`.
    #[schema(value_type = Object)]
    pub progress: Value,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<&OperationRow> for OperationView {
    fn from(o: &OperationRow) -> Self {
        Self {
            id: o.id.as_uuid(),
            kind: o.kind,
            tenant_id: o.tenant_id.as_uuid(),
            state: o.state,
            step: o.step,
            source: o.source.clone(),
            target: o.target.clone(),
            progress: o.progress.clone(),
            error: o.error.clone(),
            cancel_requested: o.cancel_requested,
            created_at: ts(o.created_at),
            started_at: o.started_at.map(ts),
            finished_at: o.finished_at.map(ts),
        }
    }
}

/// Promote (`dedicated` from shared), demote (`shared`) or move (`dedicated` on another server).
/// Returns the operation at once; follow it at `/admin/v1/operations/{id}`.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/placement", tag = "admin", request_body = PlacementBody,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 202, body = OperationView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn change(
    _: Operator,
    State(catalog): State<Catalog>,
    State(mover): State<Mover>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<PlacementBody>,
) -> ApiResult<(StatusCode, Json<OperationView>)> {
    let t = find_tenant(&catalog, &tenant).await?;
    let to = match (body.placement, body.db_server) {
        (PlacementKind::Shared, None) => MoveRequest::Shared,
        (PlacementKind::Shared, Some(_)) => {
            return Err(ApiError::unprocessable(
                "`db_server` applies only to `dedicated`",
            ));
        }
        (PlacementKind::Dedicated, Some(server)) => MoveRequest::Dedicated { server },
        (PlacementKind::Dedicated, None) => {
            return Err(ApiError::unprocessable(
                "`db_server` is required for `dedicated`",
            ));
        }
    };
    let op = mover.start(&t, &to).await.map_err(|e| match e {
        StartMoveError::AlreadyThere => ApiError::conflict("the tenant is already there"),
        StartMoveError::Busy => {
            ApiError::conflict("the tenant already has an operation in progress")
        }
        StartMoveError::NotMovable => {
            ApiError::conflict("only active or suspended tenants can move")
        }
        StartMoveError::UnknownServer(s) => {
            ApiError::unprocessable(format!("no database server named `{s}` is registered"))
        }
        StartMoveError::Catalog(c) => c.into(),
    })?;
    let id = op.id;
    tokio::spawn(async move {
        if let Err(e) = mover.run(id).await {
            tracing::warn!(operation.id = %id, error = %e, "operation stopped; it will be resumed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(OperationView::from(&op))))
}

/// An operation's state, step, progress, timings and error.
#[utoipa::path(get, path = "/admin/v1/operations/{operation_id}", tag = "admin",
    params(("operation_id" = Uuid, Path)),
    responses((status = 200, body = OperationView), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn show(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(id): ApiPath<OperationId>,
) -> ApiResult<Json<OperationView>> {
    let op = catalog
        .operation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such operation"))?;
    Ok(Json(OperationView::from(&op)))
}

/// Cancel an operation: before cutover it rolls back; after, it completes.
#[utoipa::path(post, path = "/admin/v1/operations/{operation_id}/cancel", tag = "admin",
    params(("operation_id" = Uuid, Path)),
    responses((status = 202, body = OperationView), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("operator" = [])))]
pub async fn cancel(
    _: Operator,
    State(catalog): State<Catalog>,
    State(mover): State<Mover>,
    ApiPath(id): ApiPath<OperationId>,
) -> ApiResult<(StatusCode, Json<OperationView>)> {
    let op = catalog
        .operation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such operation"))?;
    if !mover.cancel(id).await? {
        return Err(ApiError::conflict(format!(
            "the operation is already {}",
            op.state
        )));
    }
    let op = catalog
        .operation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such operation"))?;
    Ok((StatusCode::ACCEPTED, Json(OperationView::from(&op))))
}
