//! `/healthz` (the process is alive) and `/readyz` (control plane and shared database reachable).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use tenancy::catalog::Catalog;
use tenancy::dataplane::DataPlane;

use crate::error::{ApiError, ApiResult};

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Value)))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the control plane and the shared database answer.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Value), (status = 503, body = crate::error::Problem)))]
pub async fn readyz(
    State(catalog): State<Catalog>,
    State(dp): State<DataPlane>,
) -> ApiResult<Json<Value>> {
    catalog
        .ping()
        .await
        .map_err(|e| ApiError::unavailable("the control plane is unreachable", e))?;
    dp.ping_shared()
        .await
        .map_err(|e| ApiError::unavailable("the shared database is unreachable", e))?;
    Ok(Json(json!({ "status": "ready" })))
}
