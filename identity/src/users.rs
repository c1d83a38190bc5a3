//! Users of a tenant: accounts, invitations, roles, and the outbox their messages go to.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuthChange, AuthError};
use crate::seats::Seats;
use tenancy::crypto::Keyring;
use tenancy::crypto::{hash_token, random_token};
use tenancy::dataplane::TenantTx;
use tenancy::ids::EmailAddress;
use tenancy::ids::{RoleId, UserId};

/// A user as shown.
#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: String,
    pub role_id: RoleId,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "u.id, u.email, u.name, r.name, u.role_id, u.email_verified_at IS NOT NULL, \
                       u.totp_enabled_at IS NOT NULL, u.created_at";

fn user(r: &tokio_postgres::Row) -> User {
    User {
        id: UserId::from_uuid(r.get(0)),
        email: r.get(1),
        name: r.get(2),
        role: r.get(3),
        role_id: RoleId::from_uuid(r.get(4)),
        email_verified: r.get(5),
        mfa_enabled: r.get(6),
        created_at: r.get(7),
    }
}

/// Normalises and checks an email address given by a client.
pub fn parse_email(email: &str) -> Result<EmailAddress, AuthError> {
    EmailAddress::parse(email)
        .map_err(|_| AuthError::Invalid("`email` is not a valid address".into()))
}

/// Creates a user; `EmailTaken` if the address is in use in this tenant, `SeatLimit` if the
/// plan's seats are taken (see [`crate::seats`]).
pub async fn create(
    tx: &mut TenantTx,
    seats: Seats,
    email: &EmailAddress,
    name: &str,
    password_hash: &str,
    role: RoleId,
) -> Result<UserId, AuthError> {
    crate::seats::take(tx, seats).await?;
    let id = UserId::new();
    let n = tx
        .execute(
            "INSERT INTO users (tenant_id, id, email, name, password_hash, role_id)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &tx.tenant().as_uuid(),
                &id.as_uuid(),
                &email.as_str(),
                &name,
                &password_hash,
                &role.as_uuid(),
            ],
        )
        .await?;
    if n == 0 {
        return Err(AuthError::EmailTaken);
    }
    Ok(id)
}

/// A user by id.
pub async fn get(tx: &mut TenantTx, id: UserId) -> Result<Option<User>, AuthError> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = $1"
            ),
            &[&id.as_uuid()],
        )
        .await?
        .map(|r| user(&r)))
}

/// Login material of a user by email: id, password hash, whether TOTP is on.
pub async fn credentials(
    tx: &mut TenantTx,
    email: &EmailAddress,
) -> Result<Option<(UserId, String, bool)>, AuthError> {
    Ok(tx
        .query_opt(
            "SELECT id, password_hash, totp_enabled_at IS NOT NULL FROM users WHERE lower(email) = lower($1)",
            &[&email.as_str()],
        )
        .await?
        .map(|r| (UserId::from_uuid(r.get(0)), r.get(1), r.get(2))))
}

/// Users, oldest first, one page.
pub async fn list(
    tx: &mut TenantTx,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<User>, AuthError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM users u JOIN roles r ON r.id = u.role_id
                 WHERE ($1::uuid IS NULL OR u.id > $1) ORDER BY u.id LIMIT $2"
            ),
            &[&after, &limit],
        )
        .await?;
    Ok(rows.iter().map(user).collect())
}

/// Changes a user's role: a change to what the auth caches hold, for [`crate::Auth::changed`]
/// after the commit.
pub async fn set_role(
    tx: &mut TenantTx,
    id: UserId,
    role: RoleId,
) -> Result<AuthChange, AuthError> {
    tx.execute(
        "UPDATE users SET role_id = $2, updated_at = now() WHERE id = $1",
        &[&id.as_uuid(), &role.as_uuid()],
    )
    .await?;
    Ok(AuthChange(tx.tenant()))
}

/// Sets a new password hash.
pub async fn set_password(tx: &mut TenantTx, id: UserId, hash: &str) -> Result<(), AuthError> {
    tx.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[&id.as_uuid(), &hash],
    )
    .await?;
    Ok(())
}

/// Records that the user proved they own their address.
pub async fn mark_verified(tx: &mut TenantTx, id: UserId) -> Result<(), AuthError> {
    tx.execute(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1",
        &[&id.as_uuid()],
    )
    .await?;
    Ok(())
}

/// The keyring purpose of a sealed message body (see the sealed-column registry).
pub const OUTBOX_BODY_PURPOSE: &str = jobs::enqueue::SEALED_PURPOSE;

/// A message to send: an `email.*` job (see [`message_kind`]).
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// What it is (`invitation`, `verify_email`, `password_reset`).
    pub kind: &'a str,
    pub recipient: &'a EmailAddress,
    pub subject: &'a str,
    /// The text, which may hold a single-use token: stored only sealed.
    pub body: &'a str,
    /// How long it is worth sending (the life of the token it carries); dropped unsent after.
    pub lifetime: std::time::Duration,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("body", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The job kind that sends a message of `kind`, named for what it does.
#[must_use]
pub fn message_kind(kind: &str) -> jobs::JobKind {
    let name = match kind {
        "invitation" => "email.invitation",
        "password_reset" => "email.password_reset",
        _ => "email.verification",
    };
    jobs::JobKind::parse(name).expect("a valid kind name")
}

/// Enqueues the message as an `email.*` job in the caller's transaction: sent only if it
/// commits. The body never rests in plain text: it is the job's payload secret, sealed with the
/// tenant's data key (purpose [`OUTBOX_BODY_PURPOSE`]); the job is dropped unsent after the
/// message's lifetime.
pub async fn outbox(tx: &mut TenantTx, keyring: &Keyring, m: Message<'_>) -> Result<(), AuthError> {
    let job = jobs::NewJob::new(
        message_kind(m.kind),
        serde_json::json!({ "recipient": m.recipient.as_str(), "subject": m.subject }),
    )
    .seal_secret(keyring, tx, m.body)
    .await?
    .expires_at(OffsetDateTime::now_utc() + m.lifetime);
    jobs::enqueue(tx, job)
        .await
        .map_err(|jobs::EnqueueError::Db(e)| e)?;
    Ok(())
}

/// Enqueues an `email.new_device_sign_in` message if `user` has signed in before but never from
/// this device (user agent): the first session of an account is not news to its owner.
pub async fn alert_new_device(
    tx: &mut TenantTx,
    user: UserId,
    user_agent: Option<&str>,
    ip: Option<&str>,
) -> Result<(), AuthError> {
    let Some(r) = tx
        .query_opt(
            "SELECT u.email,
                    EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id),
                    EXISTS (SELECT 1 FROM sessions s WHERE s.user_id = u.id
                            AND s.user_agent IS NOT DISTINCT FROM $2)
             FROM users u WHERE u.id = $1",
            &[&user.as_uuid(), &user_agent],
        )
        .await?
    else {
        return Ok(());
    };
    let (email, signed_in_before, seen): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
    if !signed_in_before || seen {
        return Ok(());
    }
    let time = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let job = jobs::NewJob::new(
        jobs::JobKind::parse("email.new_device_sign_in").expect("a valid kind name"),
        serde_json::json!({
            "recipient": email,
            "vars": {
                "device": user_agent.unwrap_or("an unknown device"),
                "ip": ip.unwrap_or("an unknown address"),
                "time": time,
            },
        }),
    )
    .expires_at(OffsetDateTime::now_utc() + time::Duration::days(1));
    jobs::enqueue(tx, job)
        .await
        .map_err(|jobs::EnqueueError::Db(e)| e)?;
    Ok(())
}

/// Withdraws the unsent messages of `kind` to `recipient` (superseded by a newer one).
pub async fn withdraw_messages(
    tx: &mut TenantTx,
    kind: &str,
    recipient: &EmailAddress,
) -> Result<u64, AuthError> {
    Ok(tx
        .execute(
            "UPDATE jobs SET state = 'cancelled', finished_at = now(), lease_token = NULL,
                    lease_until = NULL, last_error = 'superseded by a newer message'
             WHERE kind = $1 AND payload->>'recipient' = $2 AND state IN ('pending', 'retrying')",
            &[&message_kind(kind).as_str(), &recipient.as_str()],
        )
        .await?)
}

/// How long an invitation stays valid.
pub const INVITATION_TTL_DAYS: i64 = 7;

/// Creates an invitation, which reserves a seat (`SeatLimit` if none is left); returns its token
/// (shown once, stored hashed).
pub async fn invite(
    tx: &mut TenantTx,
    seats: Seats,
    email: &EmailAddress,
    role: RoleId,
    invited_by: Option<UserId>,
) -> Result<(Uuid, String, OffsetDateTime), AuthError> {
    crate::seats::take(tx, seats).await?;
    let token = format!("inv_{}", random_token(32));
    let id = Uuid::now_v7();
    let expires = OffsetDateTime::now_utc() + time::Duration::days(INVITATION_TTL_DAYS);
    tx.execute(
        "INSERT INTO invitations (tenant_id, id, email, role_id, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &tx.tenant().as_uuid(),
            &id,
            &email.as_str(),
            &role.as_uuid(),
            &hash_token(&token),
            &invited_by.map(|u| u.as_uuid()),
            &expires,
        ],
    )
    .await?;
    Ok((id, token, expires))
}

/// Consumes an invitation (single use, unexpired): its email and role.
pub async fn accept_invitation(
    tx: &mut TenantTx,
    token: &str,
) -> Result<(EmailAddress, RoleId), AuthError> {
    tx.query_opt(
        "UPDATE invitations SET accepted_at = now()
         WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()
         RETURNING email, role_id",
        &[&hash_token(token)],
    )
    .await?
    .map(|r| {
        (
            EmailAddress::from_trusted(r.get(0)),
            RoleId::from_uuid(r.get(1)),
        )
    })
    .ok_or(AuthError::InvalidToken)
}

/// Records a security event.
pub async fn security_event(
    tx: &mut TenantTx,
    kind: &str,
    user: Option<UserId>,
    session: Option<Uuid>,
    detail: serde_json::Value,
) -> Result<(), AuthError> {
    tx.execute(
        "INSERT INTO security_events (tenant_id, id, kind, user_id, session_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&tx.tenant().as_uuid(), &Uuid::now_v7(), &kind, &user.map(|u| u.as_uuid()), &session, &detail],
    )
    .await?;
    Ok(())
}
