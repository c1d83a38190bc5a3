//! Single-use, expiring tokens stored only as hashes: email verification, password reset and the
//! second step of an MFA login. Consuming one is a single `UPDATE .. WHERE used_at IS NULL`, so
//! two concurrent uses cannot both succeed.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use tenancy::crypto::{hash_token, random_token};
use tenancy::dataplane::TenantTx;
use tenancy::ids::UserId;

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
    MfaLogin,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::MfaLogin => "mfa_login",
        }
    }

    /// How long a token of this purpose lives.
    #[must_use]
    pub fn ttl(self) -> Duration {
        match self {
            Self::VerifyEmail => Duration::from_secs(48 * 3600),
            Self::PasswordReset => Duration::from_secs(30 * 60),
            Self::MfaLogin => Duration::from_secs(5 * 60),
        }
    }
}

/// Creates a token; returns its value (never stored).
pub async fn create(
    tx: &mut TenantTx,
    user: UserId,
    purpose: Purpose,
    detail: serde_json::Value,
) -> Result<String, AuthError> {
    let token = random_token(32);
    let expires = OffsetDateTime::now_utc() + purpose.ttl();
    tx.execute(
        "INSERT INTO one_time_tokens (tenant_id, id, user_id, purpose, token_hash, detail, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &tx.tenant().as_uuid(),
            &Uuid::now_v7(),
            &user.as_uuid(),
            &purpose.as_str(),
            &hash_token(&token),
            &detail,
            &expires,
        ],
    )
    .await?;
    Ok(token)
}

/// Revokes every unused token of `user` for `purpose` (a new password reset makes the earlier
/// ones worthless: only the newest message can reset the password).
pub async fn revoke(tx: &mut TenantTx, user: UserId, purpose: Purpose) -> Result<u64, AuthError> {
    Ok(tx
        .execute(
            "UPDATE one_time_tokens SET used_at = now()
             WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
            &[&user.as_uuid(), &purpose.as_str()],
        )
        .await?)
}

/// Consumes a token: its user and detail, once.
pub async fn consume(
    tx: &mut TenantTx,
    purpose: Purpose,
    token: &str,
) -> Result<(UserId, serde_json::Value), AuthError> {
    tx.query_opt(
        "UPDATE one_time_tokens SET used_at = now()
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
         RETURNING user_id, detail",
        &[&hash_token(token), &purpose.as_str()],
    )
    .await?
    .map(|r| (UserId::from_uuid(r.get(0)), r.get(1)))
    .ok_or(AuthError::InvalidToken)
}

/// Looks at a token without consuming it (the MFA step checks the code first).
pub async fn peek(tx: &mut TenantTx, purpose: Purpose, token: &str) -> Result<UserId, AuthError> {
    tx.query_opt(
        "SELECT user_id FROM one_time_tokens
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
        &[&hash_token(token), &purpose.as_str()],
    )
    .await?
    .map(|r| UserId::from_uuid(r.get(0)))
    .ok_or(AuthError::InvalidToken)
}
