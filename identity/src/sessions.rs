//! Sessions (one per signed-in device) and their refresh tokens. A refresh token is opaque and
//! random, stored only as a SHA-256 hash, and rotates on every use. The tokens of one session form
//! a family: presenting a token that was already rotated revokes the whole session and records a
//! security event, unless it is the immediate predecessor of the live token and comes within the
//! grace window, in which case the same successor is returned (a client that lost the response
//! retries). The row lock (`FOR UPDATE`) serialises concurrent refreshes with one token: the first
//! rotates it, the others find it rotated and, inside the grace window, get the same successor.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::jwt::{ACCESS_TTL, AUDIENCE, AccessClaims, ISSUER};
use super::permissions::{PermissionSet, role_permissions};
use super::users::security_event;
use super::{Auth, AuthError};
use tenancy::catalog::Tenant;
use tenancy::crypto::{Scope, hash_token, random_token};
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::{RoleId, SessionId, UserId};

/// A rotated token presented again within this window returns the same successor.
pub const REFRESH_GRACE: Duration = Duration::from_secs(10);
/// A refresh token unused this long expires (the session then needs a new login).
pub const REFRESH_TTL_DAYS: i64 = 30;
const SUCCESSOR_PURPOSE: &str = "auth.refresh_successor";

/// What an access token's session stands for, checked against the database (briefly cached).
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

fn new_refresh_token() -> String {
    format!("rt_{}", random_token(32))
}

async fn insert_refresh(
    tx: &mut TenantTx,
    session: SessionId,
    token: &str,
) -> Result<Uuid, AuthError> {
    let id = Uuid::now_v7();
    let expires = OffsetDateTime::now_utc() + time::Duration::days(REFRESH_TTL_DAYS);
    tx.execute(
        "INSERT INTO refresh_tokens (tenant_id, id, session_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
        &[&tx.tenant().as_uuid(), &id, &session.as_uuid(), &hash_token(token), &expires],
    )
    .await?;
    Ok(id)
}

/// A cached lookup failed: the database was unreachable or failed (the caller answers 503).
fn unavailable(e: &Arc<AuthError>) -> AuthError {
    AuthError::Connect(tenancy::dataplane::ConnectError::Unavailable(
        Arc::clone(e) as _
    ))
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

    /// Rotates a refresh token (see the module docs for reuse and the grace window).
    pub async fn refresh(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        presented: &str,
        ip: Option<&str>,
    ) -> Result<Tokens, AuthError> {
        let mut tx = self.begin(dp, tenant).await?;
        let row = tx
            .query_opt(
                "SELECT t.id, t.session_id, t.replaced_by, t.rotated_at, t.successor_sealed,
                        t.expires_at > now(), s.revoked_at IS NULL, s.user_id
                 FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
                 WHERE t.token_hash = $1 FOR UPDATE OF t",
                &[&hash_token(presented)],
            )
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let id: Uuid = row.get(0);
        let session = SessionId::from_uuid(row.get(1));
        let replaced_by: Option<Uuid> = row.get(2);
        let rotated_at: Option<OffsetDateTime> = row.get(3);
        let successor_sealed: Option<Vec<u8>> = row.get(4);
        let unexpired: bool = row.get(5);
        let live_session: bool = row.get(6);
        let user = UserId::from_uuid(row.get(7));
        // A separate statement: after waiting for the row lock, it sees what the winner of a
        // concurrent refresh committed (the first statement's snapshot predates it).
        let successor_is_live: Option<bool> = match replaced_by {
            Some(next) => tx
                .query_opt(
                    "SELECT replaced_by IS NULL FROM refresh_tokens WHERE id = $1",
                    &[&next],
                )
                .await?
                .map(|r| r.get(0)),
            None => None,
        };
        if !live_session || !unexpired {
            return Err(AuthError::InvalidToken);
        }
        let refresh = match (replaced_by, rotated_at, successor_sealed) {
            (None, _, _) => {
                let next = new_refresh_token();
                let next_id = insert_refresh(&mut tx, session, &next).await?;
                let sealed = self
                    .keyring()
                    .seal(Scope::Tenant(tenant.id), SUCCESSOR_PURPOSE, next.as_bytes())
                    .await?;
                tx.execute(
                    "UPDATE refresh_tokens SET rotated_at = now(), replaced_by = $2, successor_sealed = $3 WHERE id = $1",
                    &[&id, &next_id, &sealed],
                )
                .await?;
                next
            }
            (Some(_), Some(at), Some(sealed))
                if successor_is_live == Some(true)
                    && OffsetDateTime::now_utc() - at <= REFRESH_GRACE =>
            {
                // The immediate predecessor, inside the grace window: the same successor.
                let next = self
                    .keyring()
                    .open_string(Scope::Tenant(tenant.id), SUCCESSOR_PURPOSE, &sealed)
                    .await?;
                next.to_string()
            }
            _ => {
                tx.execute(
                    "UPDATE sessions SET revoked_at = now(), revoked_reason = 'refresh_token_reuse'
                     WHERE id = $1 AND revoked_at IS NULL",
                    &[&session.as_uuid()],
                )
                .await?;
                security_event(
                    &mut tx,
                    "refresh_token_reuse",
                    Some(user),
                    Some(session.as_uuid()),
                    serde_json::json!({ "ip": ip }),
                )
                .await?;
                tx.commit().await?;
                self.forget_session(tenant, session).await;
                tracing::warn!(tenant.id = %tenant.id, session.id = %session, "refresh token reuse; session revoked");
                return Err(AuthError::TokenReused);
            }
        };
        tx.execute(
            "UPDATE sessions SET last_seen_at = now(), ip = COALESCE($2, ip) WHERE id = $1",
            &[&session.as_uuid(), &ip],
        )
        .await?;
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
        if let Some(r) = row {
            self.forget_session(tenant, SessionId::from_uuid(r.get(0)))
                .await;
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
        let t = tenant.id;
        self.principals
            .invalidate_entries_if(move |k, v| {
                k.0 == t && v.as_ref().is_some_and(|p| p.user == user)
            })
            .ok();
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

    async fn forget_session(&self, tenant: &Tenant, session: SessionId) {
        self.principals.invalidate(&(tenant.id, session)).await;
    }

    /// The principal of an access token's session, if the session is live (cached briefly).
    pub async fn session_principal(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        user: UserId,
        session: SessionId,
    ) -> Result<Option<Arc<SessionPrincipal>>, AuthError> {
        let dp = dp.clone();
        let this = self.clone();
        let t = tenant.clone();
        let found = self
            .principals
            .try_get_with((tenant.id, session), async move {
                let mut tx = this.begin(&dp, &t).await?;
                let row = tx
                    .query_opt(
                        "SELECT u.role_id, u.totp_enabled_at IS NOT NULL FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL",
                        &[&session.as_uuid(), &user.as_uuid()],
                    )
                    .await?;
                let Some(row) = row else {
                    tx.commit().await?;
                    return Ok::<_, AuthError>(None);
                };
                let role = RoleId::from_uuid(row.get(0));
                let mfa_enabled: bool = row.get(1);
                let perms = role_permissions(&mut tx, Some(role)).await?;
                tx.commit().await?;
                Ok(perms.map(|(role, permissions)| {
                    Arc::new(SessionPrincipal {
                        user,
                        session,
                        role,
                        permissions,
                        mfa_enabled,
                    })
                }))
            })
            .await
            .map_err(|e| unavailable(&e))?;
        // A token whose `sub` does not own the session never matches.
        Ok(found.filter(|p| p.user == user))
    }

    /// A role's name and permissions (`None`: built-in `admin`), cached briefly.
    pub async fn role(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        role: Option<RoleId>,
    ) -> Result<Arc<(String, PermissionSet)>, AuthError> {
        let dp = dp.clone();
        let this = self.clone();
        let t = tenant.clone();
        self.roles
            .try_get_with((tenant.id, role), async move {
                let mut tx = this.begin(&dp, &t).await?;
                let found = role_permissions(&mut tx, role).await?;
                tx.commit().await?;
                Ok::<_, AuthError>(Arc::new(found.unwrap_or_default()))
            })
            .await
            .map_err(|e| unavailable(&e))
    }
}
