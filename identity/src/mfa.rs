//! TOTP (RFC 6238, via totp-rs): 30 s steps, ±1 step of tolerance, and each step usable once per
//! user: accepting a code advances `users.totp_last_step` with a conditional `UPDATE`, so a replay
//! (or a concurrent second use) of a code finds the step already taken. The secret is sealed with
//! the tenant's data key. Ten recovery codes, shown once, stored as hashes, each consumed by one
//! conditional `UPDATE` (two concurrent uses: exactly one succeeds).
//!
//! Every code check goes through the code throttle: the functions that check a code take the
//! [`Attempt`] that [`crate::throttle::Throttle::code`] gave out and end it with the result, so
//! no caller can check a code unthrottled.

use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Totp};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{AuthChange, AuthError};
use crate::throttle::Attempt;
use tenancy::crypto::{Keyring, Scope, hash_token, random_token};
use tenancy::dataplane::TenantTx;
use tenancy::ids::UserId;

const STEP: u64 = 30;
const SECRET_PURPOSE: &str = tenancy::crypto::registry::purpose::TOTP_SECRET;
/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, AuthError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer.replace(':', " ")))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|e| AuthError::crypto("building a TOTP generator", e.to_string()))
}

/// The code for `secret` at `unix_time` (tests use it as an authenticator app would).
pub fn code_at(secret_base32: &str, unix_time: u64) -> Option<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).ok()?;
    let t = Builder::new()
        .with_secret(secret)
        .with_step_duration(STEP)
        .build_noncompliant();
    Some(t.generate(unix_time).to_string())
}

fn now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Starts enrolment: a new secret (sealed, not yet enabled). Returns (base32 secret, otpauth URI).
pub async fn enroll(
    tx: &mut TenantTx,
    keyring: &Keyring,
    user: UserId,
    issuer: &str,
    account: &str,
) -> Result<(String, String), AuthError> {
    let enabled = tx
        .query_opt(
            "SELECT totp_enabled_at IS NOT NULL FROM users WHERE id = $1",
            &[&user.as_uuid()],
        )
        .await?
        .is_some_and(|r| r.get(0));
    if enabled {
        return Err(AuthError::TotpAlreadyEnabled);
    }
    let secret = Zeroizing::new(random_bytes());
    let t = totp(&secret, issuer, account)?;
    let sealed = keyring
        .seal(Scope::Tenant(tx.tenant()), SECRET_PURPOSE, &secret)
        .await?;
    tx.execute(
        "UPDATE users SET totp_secret_sealed = $2 WHERE id = $1",
        &[&user.as_uuid(), &sealed],
    )
    .await?;
    let uri = t
        .to_url()
        .map_err(|e| AuthError::crypto("building a TOTP generator", e.to_string()))?;
    Ok((totp_rs::Secret::from(secret.to_vec()).to_base32(), uri))
}

fn random_bytes() -> Vec<u8> {
    use rand::RngCore as _;
    let mut b = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// Ends a throttled code check with its result: a wrong code counts, anything else that went
/// wrong (the database, the enrolment state) does not.
fn judged<T>(attempt: Attempt, result: Result<T, AuthError>) -> Result<T, AuthError> {
    match &result {
        Ok(_) => attempt.succeeded(),
        Err(AuthError::InvalidCode) => attempt.failed(),
        Err(_) => attempt.not_counted(),
    }
    result
}

/// Checks a code and takes its step (once per user). `pending`: check the not-yet-enabled secret.
async fn check_code(
    tx: &mut TenantTx,
    keyring: &Keyring,
    user: UserId,
    code: &str,
    pending: bool,
) -> Result<(), AuthError> {
    let row = tx
        .query_opt(
            "SELECT totp_secret_sealed, totp_enabled_at IS NOT NULL FROM users WHERE id = $1",
            &[&user.as_uuid()],
        )
        .await?
        .ok_or(AuthError::InvalidCode)?;
    let sealed: Option<Vec<u8>> = row.get(0);
    let enabled: bool = row.get(1);
    if enabled == pending {
        return Err(if pending {
            AuthError::TotpAlreadyEnabled
        } else {
            AuthError::InvalidCode
        });
    }
    let sealed = sealed.ok_or(AuthError::InvalidCode)?;
    let secret = keyring
        .open(Scope::Tenant(tx.tenant()), SECRET_PURPOSE, &sealed)
        .await?;
    let t = totp(&secret, "x", "")?;
    let code = code.trim();
    let now = now();
    let current = now / STEP;
    let mut matched = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = t.generate(step * STEP).to_string();
        if expected.len() == code.len() && bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            matched = Some(step);
        }
    }
    let step = i64::try_from(matched.ok_or(AuthError::InvalidCode)?).unwrap_or(i64::MAX);
    let taken = tx
        .execute(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
            &[&user.as_uuid(), &step],
        )
        .await?;
    if taken == 1 {
        Ok(())
    } else {
        Err(AuthError::InvalidCode)
    }
}

/// Enables TOTP after a first valid code; returns ten fresh recovery codes (shown once) and the
/// change to the user's MFA state, for [`crate::Auth::changed`] after the commit.
pub async fn confirm(
    tx: &mut TenantTx,
    keyring: &Keyring,
    attempt: Attempt,
    user: UserId,
    code: &str,
) -> Result<(Vec<String>, AuthChange), AuthError> {
    judged(attempt, check_code(tx, keyring, user, code, true).await)?;
    tx.execute(
        "UPDATE users SET totp_enabled_at = now() WHERE id = $1",
        &[&user.as_uuid()],
    )
    .await?;
    tx.execute(
        "DELETE FROM recovery_codes WHERE user_id = $1",
        &[&user.as_uuid()],
    )
    .await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let c = format!("rc-{}", random_token(10));
        tx.execute(
            "INSERT INTO recovery_codes (tenant_id, id, user_id, code_hash) VALUES ($1, $2, $3, $4)",
            &[&tx.tenant().as_uuid(), &Uuid::now_v7(), &user.as_uuid(), &hash_token(&c)],
        )
        .await?;
        codes.push(c);
    }
    Ok((codes, AuthChange(tx.tenant())))
}

/// Consumes a recovery code (atomically: a second use, concurrent or not, fails).
async fn use_recovery_code(tx: &mut TenantTx, user: UserId, code: &str) -> Result<(), AuthError> {
    let n = tx
        .execute(
            "UPDATE recovery_codes SET used_at = now()
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            &[&user.as_uuid(), &hash_token(code.trim())],
        )
        .await?;
    if n == 1 {
        Ok(())
    } else {
        Err(AuthError::InvalidCode)
    }
}

/// Checks a TOTP code or, failing that, a recovery code.
pub async fn second_factor(
    tx: &mut TenantTx,
    keyring: &Keyring,
    attempt: Attempt,
    user: UserId,
    code: &str,
) -> Result<(), AuthError> {
    let result = if code.trim().starts_with("rc-") {
        use_recovery_code(tx, user, code).await
    } else {
        check_code(tx, keyring, user, code, false).await
    };
    judged(attempt, result)
}

/// Turns TOTP off (the caller has checked a current code): a change to the user's MFA state, for
/// [`crate::Auth::changed`] after the commit.
pub async fn disable(tx: &mut TenantTx, user: UserId) -> Result<AuthChange, AuthError> {
    tx.execute(
        "UPDATE users SET totp_secret_sealed = NULL, totp_enabled_at = NULL WHERE id = $1",
        &[&user.as_uuid()],
    )
    .await?;
    tx.execute(
        "DELETE FROM recovery_codes WHERE user_id = $1",
        &[&user.as_uuid()],
    )
    .await?;
    Ok(AuthChange(tx.tenant()))
}
