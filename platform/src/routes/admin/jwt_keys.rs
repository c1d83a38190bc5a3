//! `POST /admin/v1/jwt-keys/rotate`: a new access-token signing key. The previous key keeps
//! verifying, and stays in the JWKS, until the tokens it signed have expired.

use identity::Identity;

use axum::Json;
use axum::extract::State;

use crate::error::{ApiResult, Problem};
use crate::extract::admin::Operator;

/// Rotate the JWT signing key.
#[utoipa::path(post, path = "/admin/v1/jwt-keys/rotate", tag = "admin",
    responses((status = 200, body = serde_json::Value, description = "`{\"kid\": ...}`"), (status = 401, body = Problem)),
    security(("operator" = [])))]
pub async fn rotate(_: Operator, State(t): State<Identity>) -> ApiResult<Json<serde_json::Value>> {
    let kid = t.auth.jwt.rotate().await?;
    Ok(Json(serde_json::json!({ "kid": kid })))
}
