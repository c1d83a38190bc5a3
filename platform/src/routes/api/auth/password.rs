//! Password reset: `forgot` writes a single-use, 30-minute token to the outbox, sealed, revoking
//! the user's earlier reset tokens (answering the same
//! whether or not the address has an account), `reset` consumes it, sets the new password and
//! signs every session out.

use identity::Identity;

use axum::extract::State;
use axum::http::StatusCode;
use identity::onetime::{self, Purpose};
use identity::{password, users};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{TenantContext, TenantDb};

/// Body of `POST /api/v1/auth/password/forgot`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotBody {
    pub email: String,
}

/// Body of `POST /api/v1/auth/password/reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    pub token: String,
    pub password: String,
}

/// Ask for a password reset message (always 202: no account enumeration).
#[utoipa::path(post, path = "/api/v1/auth/password/forgot", tag = "auth", request_body = ForgotBody,
    responses((status = 202, description = "A message is sent if the account exists"), (status = 422, body = Problem)))]
pub async fn forgot(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<ForgotBody>,
) -> ApiResult<StatusCode> {
    let email = users::parse_email(&body.email)?;
    let mut tx = db.begin().await?;
    if let Some((user, _, _)) = users::credentials(&mut tx, &email).await? {
        // Only the newest reset works: earlier tokens are revoked and their messages withdrawn.
        onetime::revoke(&mut tx, user, Purpose::PasswordReset).await?;
        users::withdraw_messages(&mut tx, "password_reset", &email).await?;
        let token =
            onetime::create(&mut tx, user, Purpose::PasswordReset, serde_json::json!({})).await?;
        let link = format!("{}/reset-password?token={token}", t.base_url(&ctx.tenant));
        users::outbox(
            &mut tx,
            t.auth.keyring(),
            users::Message {
                kind: "password_reset",
                recipient: &email,
                subject: "Reset your password",
                body: &format!("Reset your password: {link}\nreset token: {token}\n"),
                lifetime: Purpose::PasswordReset.ttl(),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with a reset token; every session of the account is signed out.
#[utoipa::path(post, path = "/api/v1/auth/password/reset", tag = "auth", request_body = ResetBody,
    responses((status = 204, description = "Password changed"), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn reset(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<ResetBody>,
) -> ApiResult<StatusCode> {
    password::check_policy(&body.password)?;
    let hash = password::hash(&body.password).await?;
    let mut tx = db.begin().await?;
    let (user, _) = onetime::consume(&mut tx, Purpose::PasswordReset, &body.token).await?;
    users::set_password(&mut tx, user, &hash).await?;
    // Whoever could read the reset message owns the address.
    users::mark_verified(&mut tx, user).await?;
    tx.commit().await?;
    t.auth
        .revoke_sessions(
            &t.dataplane,
            &ctx.tenant,
            user,
            None,
            None,
            "password_reset",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
