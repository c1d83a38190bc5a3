//! Refresh tokens: minting and storing them, and rotating one on use with reuse detection and the
//! grace window described in the [`sessions`](super) module docs. Kept apart because rotation is
//! the one security-sensitive state machine of a session.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{REFRESH_GRACE, REFRESH_TTL_DAYS, Tokens};
use crate::jwt::ACCESS_TTL;
use crate::users::security_event;
use crate::{Auth, AuthChange, AuthError};
use tenancy::catalog::Tenant;
use tenancy::crypto::{Scope, hash_token, random_token};
use tenancy::dataplane::{DataPlane, TenantTx};
use tenancy::ids::{SessionId, UserId};

const SUCCESSOR_PURPOSE: &str = tenancy::crypto::registry::purpose::REFRESH_SUCCESSOR;

pub(super) fn new_refresh_token() -> String {
    format!("rt_{}", random_token(32))
}

pub(super) async fn insert_refresh(
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

impl Auth {
    /// Rotates a refresh token (see the `sessions` module docs for reuse and the grace window).
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
                self.changed(AuthChange(tenant.id)).await;
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
}
