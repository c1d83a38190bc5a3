//! `POST /api/v1/me/email/verification`: sends a new verification message.

use identity::Identity;

use axum::extract::State;
use axum::http::StatusCode;
use identity::users;

use tenancy::ids::EmailAddress;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::routes::shared::auth::send_verification;

/// Send a new email verification message (to the outbox).
#[utoipa::path(post, path = "/api/v1/me/email/verification", tag = "me",
    responses((status = 202, description = "Sent"), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn resend(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
) -> ApiResult<StatusCode> {
    let (id, _) = auth.user()?;
    let mut tx = db.begin().await?;
    let u = users::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    if u.email_verified {
        return Err(ApiError::conflict("the address is already verified"));
    }
    let email = EmailAddress::from_trusted(u.email);
    send_verification(&mut tx, &auth.tenant, &t, id, &email).await?;
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}
