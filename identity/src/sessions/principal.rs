//! Cached look-ups behind every authenticated request: the principal of an access token's session
//! (live session, role, permissions, MFA) and a role's permissions. Both are cached per tenant
//! until the tenant's auth state changes ([`crate::changes`]); a failed look-up is reported as the
//! data plane being unavailable.

use std::sync::Arc;

use super::SessionPrincipal;
use crate::permissions::{PermissionSet, role_permissions};
use crate::{Auth, AuthError};
use tenancy::catalog::Tenant;
use tenancy::dataplane::DataPlane;
use tenancy::ids::{RoleId, SessionId, UserId};

/// A cached lookup failed: the database was unreachable or failed (the caller answers 503).
fn unavailable(e: &Arc<AuthError>) -> AuthError {
    AuthError::Connect(tenancy::dataplane::ConnectError::Unavailable(
        Arc::clone(e) as _
    ))
}

impl Auth {
    /// The principal of an access token's session, if the session is live (cached).
    pub async fn session_principal(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        user: UserId,
        session: SessionId,
    ) -> Result<Option<Arc<SessionPrincipal>>, AuthError> {
        let load = || {
            let (dp, t) = (dp.clone(), tenant.clone());
            async move {
                let mut tx = dp.connect(&t).await?.begin();
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
            }
        };
        let found = self
            .fresh(&self.principals, tenant.id, (tenant.id, session), load)
            .await
            .map_err(|e| unavailable(&e))?;
        // A token whose `sub` does not own the session never matches.
        Ok(found.filter(|p| p.user == user))
    }

    /// A role's name and permissions (`None`: built-in `admin`), cached.
    pub async fn role(
        &self,
        dp: &DataPlane,
        tenant: &Tenant,
        role: Option<RoleId>,
    ) -> Result<Arc<(String, PermissionSet)>, AuthError> {
        let load = || {
            let (dp, t) = (dp.clone(), tenant.clone());
            async move {
                let mut tx = dp.connect(&t).await?.begin();
                let found = role_permissions(&mut tx, role).await?;
                tx.commit().await?;
                Ok::<_, AuthError>(Arc::new(found.unwrap_or_default()))
            }
        };
        self.fresh(&self.roles, tenant.id, (tenant.id, role), load)
            .await
            .map_err(|e| unavailable(&e))
    }
}
