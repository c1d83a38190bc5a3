//! `/.well-known/jwks.json`: the public keys that verify access tokens (current and recently
//! retired), for any service that wants to check a token itself.

use axum::Json;
use axum::extract::State;
use identity::Auth;

use crate::error::{ApiResult, Problem};

/// The JSON Web Key Set of the access-token signing keys.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, body = serde_json::Value), (status = 503, body = Problem)))]
pub async fn jwks(State(auth): State<Auth>) -> ApiResult<Json<serde_json::Value>> {
    Ok(Json(auth.jwt.jwks().await?))
}
