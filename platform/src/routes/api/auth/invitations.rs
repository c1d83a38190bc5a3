//! `POST /api/v1/auth/invitations/accept`: turns an invitation into an account with the invited
//! role. The invitee proved they read the message, so the address counts as verified.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::{password, users};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{TenantContext, TenantDb};
use crate::routes::shared::auth::{ClientInfo, TokenResponse};
use crate::routes::text;

/// Body of `POST /api/v1/auth/invitations/accept`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    pub token: String,
    pub password: String,
    pub name: String,
}

/// Accept an invitation: creates the account and signs in.
#[utoipa::path(post, path = "/api/v1/auth/invitations/accept", tag = "auth", request_body = AcceptBody,
    responses((status = 201, body = TokenResponse), (status = 401, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn accept(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<AcceptBody>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let name = text("name", &body.name, 200)?;
    password::check_policy(&body.password)?;
    let hash = password::hash(&body.password).await?;
    let seats = t.auth.seats(ctx.tenant.id).await?;
    let mut tx = db.begin().await?;
    let (email, role) = users::accept_invitation(&mut tx, &body.token).await?;
    let user = users::create(&mut tx, seats, &email, &name, &hash, role).await?;
    users::mark_verified(&mut tx, user).await?;
    tx.commit().await?;
    let tokens = t
        .auth
        .start_session(
            &t.dataplane,
            &ctx.tenant,
            user,
            client.user_agent.as_deref(),
            client.ip_text().as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tokens.into())))
}
