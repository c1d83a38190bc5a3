//! `POST /api/v1/auth/email/verify`: proves ownership of an address with a single-use token sent
//! to it (through the outbox). Verification does not gate login; it gates inviting others.

use axum::http::StatusCode;
use identity::onetime::{self, Purpose};
use identity::users;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::TenantDb;

/// A single-use token from a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    pub token: String,
}

/// Verify an email address.
#[utoipa::path(post, path = "/api/v1/auth/email/verify", tag = "auth", request_body = TokenBody,
    responses((status = 204, description = "Verified"), (status = 401, body = Problem)))]
pub async fn verify(db: TenantDb, ApiJson(body): ApiJson<TokenBody>) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    let (user, _) = onetime::consume(&mut tx, Purpose::VerifyEmail, &body.token).await?;
    users::mark_verified(&mut tx, user).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
