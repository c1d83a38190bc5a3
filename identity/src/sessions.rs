//! Sessions (one per signed-in device) and their refresh tokens. A refresh token is opaque and
//! random, stored only as a SHA-256 hash, and rotates on every use. The tokens of one session form
//! a family: presenting a token that was already rotated revokes the whole session and records a
//! security event, unless it is the immediate predecessor of the live token and comes within the
//! grace window, in which case the same successor is returned (a client that lost the response
//! retries). The row lock (`FOR UPDATE`) serialises concurrent refreshes with one token: the first
//! rotates it, the others find it rotated and, inside the grace window, get the same successor.
//!
//! Rotation lives in `refresh`, the cached look-ups of every authenticated request in `principal`.

mod principal;
mod refresh;

use std::time::Duration;

use time::OffsetDateTime;

use super::jwt::{ACCESS_TTL, AUDIENCE, AccessClaims, ISSUER};
use super::permissions::PermissionSet;
use super::{Auth, AuthChange, AuthError};
use refresh::{insert_refresh, new_refresh_token};
use tenancy::catalog::Tenant;
use tenancy::crypto::hash_token;
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::{SessionId, UserId};

/// A rotated token presented again within this window returns the same successor.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);
/// A refresh token unused this long expires (the session then needs a new login).
pub const REFRESH_TTL_DAYS: i64 = 30;

/// What an access token's session stands for, checked against the database (cached until the
/// tenant's auth state changes).
#[derive(Clone, Debug)]
pub struct SessionPrincipal {
    pub user: UserId,
    pub session: SessionId,
    pub role: String,
    pub permissions: PermissionSet,
    pub mfa_enabled: bool,
}

/// Tokens handed to a client after login or refresh.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub session: SessionId,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// A session as listed.
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
}

impl Auth {
    async fn access_token(
        &self,
        tenant: &Tenant,
        user: UserId,
        session: SessionId,
        role: &str,
    ) -> Result<String, AuthError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(ACCESS_TTL.as_secs()).unwrap_or(600);
        self.jwt
            .issue(&AccessClaims {
                iss: ISSUER.into(),
                aud: AUDIENCE.into(),
                sub: user.to_string(),
                tid: tenant.id.to_string(),
                sid: session.to_string(),
                iat: now,
                exp: now + ttl,
                roles: vec![role.to_owned()],
            })
            .await
    }

    async fn role_name(&self, tx: &mut TenantTx, user: UserId) -> Result<String, AuthError> {
        Ok(tx
            .query_opt(
                "SELECT r.name FROM users u JOIN roles r ON r.id = u.role_id WHERE u.id = $1",
                &[&user.as_uuid()],
            )
            .await?
            .map(|r| r.get(0))
            .unwrap_or_default())
    }

    /// Opens a session for `user` and issues its first tokens.
    pub async fn start_session(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        user: UserId,
        user_agent: Option<&str>,
        ip: Option<&str>,
    ) -> Result<Tokens, AuthError> {
        let session = SessionId::new();
        let refresh = new_refresh_token();
        let mut tx = self.begin(dp, tenant).await?;
        let ua: Option<String> = user_agent.map(|u| u.chars().take(512).collect());
        crate::users::alert_new_device(&mut tx, user, ua.as_deref(), ip).await?;
        tx.execute(
            "INSERT INTO sessions (tenant_id, id, user_id, user_agent, ip) VALUES ($1, $2, $3, $4, $5)",
            &[&tenant.id.as_uuid(), &session.as_uuid(), &user.as_uuid(), &ua, &ip],
        )
        .await?;
        insert_refresh(&mut tx, session, &refresh).await?;
        let role = self.role_name(&mut tx, user).await?;
        tx.commit().await?;
        Ok(Tokens {
            access_token: self.access_token(tenant, user, session, &role).await?,
            refresh_token: refresh,
            expires_in: ACCESS_TTL.as_secs(),
            session,
        })
    }

    /// Revokes the session a refresh token belongs to (logout). Unknown tokens are ignored.
    pub async fn logout(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        presented: &str,
    ) -> Result<(), AuthError> {
        let mut tx = self.begin(dp, tenant).await?;
        let row = tx
            .query_opt(
                "UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout'
                 WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL
                 RETURNING id",
                &[&hash_token(presented)],
            )
            .await?;
        tx.commit().await?;
        if row.is_some() {
            self.changed(AuthChange(tenant.id)).await;
        }
        Ok(())
    }

    /// Revokes sessions of `user`: one (`only`), all but one (`except`), or all. Returns how many.
    pub async fn revoke_sessions(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        user: UserId,
        only: Option<SessionId>,
        except: Option<SessionId>,
        reason: &str,
    ) -> Result<u64, AuthError> {
        let mut tx = self.begin(dp, tenant).await?;
        let n = tx
            .execute(
                "UPDATE sessions SET revoked_at = now(), revoked_reason = $4
                 WHERE user_id = $1 AND revoked_at IS NULL
                   AND ($2::uuid IS NULL OR id = $2) AND ($3::uuid IS NULL OR id <> $3)",
                &[
                    &user.as_uuid(),
                    &only.map(|s| s.as_uuid()),
                    &except.map(|s| s.as_uuid()),
                    &reason,
                ],
            )
            .await?;
        tx.commit().await?;
        if n > 0 {
            self.changed(AuthChange(tenant.id)).await;
        }
        Ok(n)
    }

    /// The live sessions of `user`.
    pub async fn sessions(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        user: UserId,
    ) -> Result<Vec<Session>, AuthError> {
        let mut tx = self.begin(dp, tenant).await?;
        let rows = tx
            .query(
                "SELECT id, user_agent, ip, created_at, last_seen_at FROM sessions
                 WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
                &[&user.as_uuid()],
            )
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| Session {
                id: SessionId::from_uuid(r.get(0)),
                user_agent: r.get(1),
                ip: r.get(2),
                created_at: r.get(3),
                last_seen_at: r.get(4),
            })
            .collect())
    }
}
