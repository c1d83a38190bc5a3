//! `POST /api/v1/auth/signup`: self-service accounts, when the tenant's `signup` is `open`.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::{password, users};
use serde::Deserialize;
use tenancy::catalog::SignupPolicy;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{TenantContext, TenantDb};
use crate::routes::shared::auth::{ClientInfo, TokenResponse};
use crate::routes::text;

/// Body of `POST /api/v1/auth/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    pub email: String,
    pub password: String,
    pub name: String,
}

/// Create an account (role `member`) and sign in; a verification message goes to the outbox.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, body = TokenResponse), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn signup(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<SignupBody>,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    let email = users::parse_email(&body.email)?;
    let name = text("name", &body.name, 200)?;
    password::check_policy(&body.password)?;
    if ctx.tenant.signup != SignupPolicy::Open {
        return Err(ApiError::forbidden(
            "this tenant accepts new accounts by invitation only",
        ));
    }
    let hash = password::hash(&body.password).await?;
    let seats = t.auth.seats(ctx.tenant.id).await?;
    let mut tx = db.begin().await?;
    let role = identity::permissions::role_by_name(&mut tx, "member")
        .await?
        .ok_or_else(|| ApiError::internal("the built-in role `member` is missing"))?;
    let user = users::create(&mut tx, seats, &email, &name, &hash, role).await?;
    crate::routes::shared::auth::send_verification(&mut tx, &ctx.tenant, &t, user, &email).await?;
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
