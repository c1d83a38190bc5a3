//! `POST /api/v1/auth/token/refresh` (rotation with reuse detection) and `POST
//! /api/v1/auth/logout` (ends the refresh token's session).

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::TenantContext;
use crate::routes::shared::auth::{ClientInfo, TokenResponse};

/// A refresh token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Exchange a refresh token for new tokens (the presented one is rotated).
#[utoipa::path(post, path = "/api/v1/auth/token/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
pub async fn refresh(
    ctx: TenantContext,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<Json<TokenResponse>> {
    let tokens = t
        .auth
        .refresh(
            &t.dataplane,
            &ctx.tenant,
            &body.refresh_token,
            client.ip_text().as_deref(),
        )
        .await?;
    Ok(Json(tokens.into()))
}

/// Sign out: the refresh token's session ends (its access tokens stop working within seconds).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204, description = "Signed out")))]
pub async fn logout(
    ctx: TenantContext,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> ApiResult<StatusCode> {
    t.auth
        .logout(&t.dataplane, &ctx.tenant, &body.refresh_token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
