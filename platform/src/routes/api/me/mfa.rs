//! `/api/v1/me/mfa/totp`: enrol (secret + `otpauth://` URI), confirm with a first code (returns
//! the recovery codes, once), and turn off with a current code.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::{mfa, users};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::routes::shared::auth::ClientInfo;

/// A new TOTP secret, to put in an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrollment {
    /// Base32.
    pub secret: String,
    pub otpauth_uri: String,
}

/// A TOTP code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    pub code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Start TOTP enrolment.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp", tag = "me",
    responses((status = 200, body = Enrollment), (status = 409, body = Problem)),
    security(("bearer" = [])))]
pub async fn enroll(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
) -> ApiResult<Json<Enrollment>> {
    let (user, _) = auth.user()?;
    let mut tx = db.begin().await?;
    let u = users::get(&mut tx, user)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the account no longer exists"))?;
    let (secret, otpauth_uri) =
        mfa::enroll(&mut tx, t.auth.keyring(), user, &auth.tenant.name, &u.email).await?;
    tx.commit().await?;
    Ok(Json(Enrollment {
        secret,
        otpauth_uri,
    }))
}

/// Confirm enrolment with a first code; returns ten recovery codes.
#[utoipa::path(post, path = "/api/v1/me/mfa/totp/confirm", tag = "me", request_body = CodeBody,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = Problem), (status = 409, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn confirm(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<CodeBody>,
) -> ApiResult<Json<RecoveryCodes>> {
    let (user, _) = auth.user()?;
    let attempt = t.auth.throttle.code(auth.tenant.id, user, client.ip)?;
    let mut tx = db.begin().await?;
    let (recovery_codes, change) =
        mfa::confirm(&mut tx, t.auth.keyring(), attempt, user, &body.code).await?;
    tx.commit().await?;
    t.auth.changed(change).await;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Turn TOTP off (needs a current code).
#[utoipa::path(delete, path = "/api/v1/me/mfa/totp", tag = "me", request_body = CodeBody,
    responses((status = 204, description = "Disabled"), (status = 401, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn disable(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<CodeBody>,
) -> ApiResult<StatusCode> {
    let (user, _) = auth.user()?;
    let attempt = t.auth.throttle.code(auth.tenant.id, user, client.ip)?;
    let mut tx = db.begin().await?;
    mfa::second_factor(&mut tx, t.auth.keyring(), attempt, user, &body.code).await?;
    let change = mfa::disable(&mut tx, user).await?;
    tx.commit().await?;
    t.auth.changed(change).await;
    Ok(StatusCode::NO_CONTENT)
}
