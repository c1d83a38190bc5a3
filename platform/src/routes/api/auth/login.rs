//! `POST /api/v1/auth/login` and its second step `POST /api/v1/auth/mfa/verify`. An unknown
//! email or an SSO-only account costs the same argon2 work as a wrong password and gets the same
//! answer; with SSO enforced, every refused login gets one answer. Failures slow
//! further attempts down per account and per address. With TOTP on, the password step returns
//! only a short-lived, single-use `mfa_token`, never a token that grants access.

use identity::Identity;

use audit::Outcome;
use axum::Json;
use axum::extract::State;
use identity::onetime::{self, Purpose};
use identity::{AuthError, mfa, users};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use tenancy::ids::EmailAddress;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::{TenantContext, TenantDb};
use crate::routes::shared::auth::{ClientInfo, TokenResponse};

/// Body of `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

/// Body of `POST /api/v1/auth/mfa/verify`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerifyBody {
    pub mfa_token: String,
    /// A TOTP code or a recovery code.
    pub code: String,
}

/// Sign in with email and password: tokens, or `{"mfa_required": true, "mfa_token"}`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = TokenResponse, description = "Tokens, or `{mfa_required, mfa_token}`"),
              (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Json<Value>> {
    let email = body.email.trim().to_lowercase();
    if email.len() > 254 || body.password.len() > 1024 {
        return Err(AuthError::InvalidCredentials.into());
    }
    let attempt = t.auth.throttle.password(ctx.tenant.id, &email, client.ip)?;
    let mut tx = db.begin().await?;
    // A malformed address has no account: it takes the unknown-user path below.
    let found = match EmailAddress::parse(&email) {
        Ok(address) => users::credentials(&mut tx, &address).await?,
        Err(_) => None,
    };
    let policy = sso::connections::password_login(&mut tx, found.as_ref().map(|f| f.0)).await?;
    tx.commit().await?;
    // Always exactly one argon2 verification, whatever the account (none, SSO-only, any role).
    let ok = t
        .auth
        .verify_password(
            found.as_ref().map(|(_, hash, _)| hash.as_str()),
            &body.password,
        )
        .await;
    // "Enforce SSO": one answer for every refused login, right password or not, known account
    // or not; only an owner with the right password gets through (break-glass).
    if policy.refuses(ok) {
        attempt.failed();
        crate::audit::attempt(
            &t.dataplane,
            &ctx.tenant,
            "auth.login",
            Outcome::Failure,
            &json!({ "reason": "sso_required" }),
        )
        .await;
        return Err(ApiError::forbidden(
            "this tenant requires single sign-on: sign in through its identity provider",
        ));
    }
    let (Some((user, _, totp)), true) = (found, ok) else {
        attempt.failed();
        crate::audit::attempt(
            &t.dataplane,
            &ctx.tenant,
            "auth.login",
            Outcome::Failure,
            &json!({ "reason": "invalid_credentials" }),
        )
        .await;
        return Err(AuthError::InvalidCredentials.into());
    };
    attempt.succeeded();
    // The session created below is recorded as the user's own doing.
    tenancy::context::set_actor(audit::Actor::user(user));
    if totp {
        let mut tx = db.begin().await?;
        let token = onetime::create(&mut tx, user, Purpose::MfaLogin, json!({})).await?;
        tx.commit().await?;
        return Ok(Json(json!({ "mfa_required": true, "mfa_token": token })));
    }
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
    Ok(Json(json!(TokenResponse::from(tokens))))
}

/// Complete a login with a TOTP code (or a recovery code).
#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth", request_body = MfaVerifyBody,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn verify(
    db: TenantDb,
    ctx: TenantContext,
    State(t): State<Identity>,
    client: ClientInfo,
    ApiJson(body): ApiJson<MfaVerifyBody>,
) -> ApiResult<Json<TokenResponse>> {
    let mut tx = db.begin().await?;
    let user = onetime::peek(&mut tx, Purpose::MfaLogin, &body.mfa_token).await?;
    let attempt = t.auth.throttle.code(ctx.tenant.id, user, client.ip)?;
    if let Err(e) = mfa::second_factor(&mut tx, t.auth.keyring(), attempt, user, &body.code).await {
        drop(tx);
        tenancy::context::set_actor(audit::Actor::user(user));
        crate::audit::attempt(
            &t.dataplane,
            &ctx.tenant,
            "auth.mfa_verify",
            Outcome::Failure,
            &json!({ "reason": "invalid_code" }),
        )
        .await;
        return Err(e.into());
    }
    tenancy::context::set_actor(audit::Actor::user(user));
    let (_, detail) = onetime::consume(&mut tx, Purpose::MfaLogin, &body.mfa_token).await?;
    // An SSO login that waited for this code: its first link and mapped role, now proved.
    let changed = sso::provision::after_mfa(&mut tx, user, &detail).await?;
    tx.commit().await?;
    if let Some(change) = changed {
        t.auth.changed(change).await;
    }
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
    Ok(Json(tokens.into()))
}
