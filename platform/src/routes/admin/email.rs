//! `GET /admin/v1/email/dkim`: the DNS TXT record that publishes the platform's DKIM key (the
//! key is generated and sealed on first use).

use axum::Json;
use axum::extract::State;
use email::{DkimRecord, Mailer};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;

/// The record to publish.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dkim {
    pub selector: String,
    pub domain: String,
    /// `<selector>._domainkey.<domain>`.
    pub txt_name: String,
    /// `v=DKIM1; k=ed25519; p=...`.
    pub txt_value: String,
}

/// The platform's DKIM record.
#[utoipa::path(get, path = "/admin/v1/email/dkim", tag = "admin",
    responses((status = 200, body = Dkim), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn dkim(_: Operator, State(mailer): State<Mailer>) -> ApiResult<Json<Dkim>> {
    let DkimRecord {
        selector,
        domain,
        txt_name,
        txt_value,
    } = mailer.dkim_record().await.map_err(ApiError::internal)?;
    Ok(Json(Dkim {
        selector,
        domain,
        txt_name,
        txt_value,
    }))
}
