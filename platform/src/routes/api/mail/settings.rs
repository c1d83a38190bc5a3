//! `/api/v1/email/settings`: the tenant's email settings: open tracking, off by default (see
//! `email::tracking`).

use axum::Json;
use email::tracking;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::TenantDb;

/// The tenant's email settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// Whether HTML mail carries a 1×1 image whose first fetch records an `opened` event.
    pub open_tracking: bool,
}

/// This tenant's email settings.
#[utoipa::path(get, path = "/api/v1/email/settings", tag = "email",
    responses((status = 200, body = EmailSettings), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn get(db: TenantDb) -> ApiResult<Json<EmailSettings>> {
    let mut tx = db.begin().await?;
    let open_tracking = tracking::enabled(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(EmailSettings { open_tracking }))
}

/// Change this tenant's email settings.
#[utoipa::path(put, path = "/api/v1/email/settings", tag = "email", request_body = EmailSettings,
    responses((status = 200, body = EmailSettings), (status = 422, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn put(
    db: TenantDb,
    ApiJson(b): ApiJson<EmailSettings>,
) -> ApiResult<Json<EmailSettings>> {
    let mut tx = db.begin().await?;
    tracking::set_enabled(&mut tx, b.open_tracking).await?;
    tx.commit().await?;
    Ok(Json(b))
}
