//! Login requests in flight and the SAML replay cache, both in the tenant's database: a SAML
//! AuthnRequest id or an OIDC `state` is stored (hashed) when the login starts and consumed once
//! by its answer; an assertion id is remembered until the assertion expires. Because the rows are
//! the tenant's (RLS), an answer to another tenant's request is simply unknown here.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tenancy::dataplane::TenantTx;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::SsoError;
use crate::connections::ConnectionId;

/// How long a started login may take.
pub const REQUEST_TTL: Duration = Duration::from_secs(600);

fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Remembers a started login.
pub async fn remember(
    tx: &mut TenantTx,
    connection: ConnectionId,
    key: &str,
    secrets_sealed: Option<Vec<u8>>,
) -> Result<(), SsoError> {
    let expires = OffsetDateTime::now_utc() + REQUEST_TTL;
    tx.execute(
        "INSERT INTO sso_login_requests (tenant_id, id, connection_id, request_hash, secrets_sealed, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&tx.tenant().as_uuid(), &Uuid::now_v7(), &connection.as_uuid(), &hash(key), &secrets_sealed, &expires],
    )
    .await?;
    Ok(())
}

/// The state of a request key in this tenant.
#[derive(Debug)]
pub enum Lookup {
    /// Issued here, unused, unexpired: its connection and sealed secrets.
    Open(ConnectionId, Option<Vec<u8>>),
    /// Issued here and already answered.
    Used,
    /// Expired, or never issued by this tenant.
    Unknown,
}

/// Looks a request up without consuming it.
pub async fn lookup(tx: &mut TenantTx, key: &str) -> Result<Lookup, SsoError> {
    let row = tx
        .query_opt(
            "SELECT connection_id, secrets_sealed, consumed_at IS NOT NULL, expires_at > now()
             FROM sso_login_requests WHERE request_hash = $1",
            &[&hash(key)],
        )
        .await?;
    Ok(match row {
        None => Lookup::Unknown,
        Some(r) if r.get::<_, bool>(2) => Lookup::Used,
        Some(r) if !r.get::<_, bool>(3) => Lookup::Unknown,
        Some(r) => Lookup::Open(ConnectionId::from_uuid(r.get(0)), r.get(1)),
    })
}

/// Consumes a request (single use): false if it was already used or expired meanwhile.
pub async fn consume(tx: &mut TenantTx, key: &str) -> Result<bool, SsoError> {
    Ok(tx
        .execute(
            "UPDATE sso_login_requests SET consumed_at = now()
             WHERE request_hash = $1 AND consumed_at IS NULL AND expires_at > now()",
            &[&hash(key)],
        )
        .await?
        == 1)
}

/// Records an assertion id until `expires`; false if it was seen before (a replay).
pub async fn first_sighting(
    tx: &mut TenantTx,
    connection: ConnectionId,
    assertion_id: &str,
    expires: OffsetDateTime,
) -> Result<bool, SsoError> {
    // Expired entries are of no use any more: drop a few on the way.
    tx.execute(
        "DELETE FROM sso_seen_assertions WHERE (tenant_id, connection_id, assertion_id) IN
             (SELECT tenant_id, connection_id, assertion_id FROM sso_seen_assertions
              WHERE expires_at < now() LIMIT 100)",
        &[],
    )
    .await?;
    Ok(tx
        .execute(
            "INSERT INTO sso_seen_assertions (tenant_id, connection_id, assertion_id, expires_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[
                &tx.tenant().as_uuid(),
                &connection.as_uuid(),
                &assertion_id,
                &expires,
            ],
        )
        .await?
        == 1)
}

/// A started OIDC/OAuth login taken back by its `state`.
pub struct Taken<P> {
    pub connection: crate::connections::Connection,
    pub secret: Option<zeroize::Zeroizing<String>>,
    /// What was sealed when the login started (nonce, PKCE verifier).
    pub pending: P,
}

/// Seals `pending` (as JSON) with the tenant's key and remembers the login under `state`.
pub async fn start<P: serde::Serialize>(
    t: &identity::Identity,
    tenant: &tenancy::catalog::Tenant,
    connection: ConnectionId,
    state: &str,
    purpose: &str,
    pending: &P,
) -> Result<(), SsoError> {
    let pending = zeroize::Zeroizing::new(
        serde_json::to_vec(pending).map_err(|e| SsoError::Internal(e.to_string()))?,
    );
    let sealed = t
        .auth
        .keyring()
        .seal(tenancy::crypto::Scope::Tenant(tenant.id), purpose, &pending)
        .await?;
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    remember(&mut tx, connection, state, Some(sealed)).await?;
    tx.commit().await?;
    Ok(())
}

/// Consumes the login started under `state` (single use, unexpired) and returns its connection,
/// client secret and opened pending values. The state is spent whatever happens next: a second
/// try needs a new login.
pub async fn take<P: serde::de::DeserializeOwned>(
    t: &identity::Identity,
    tenant: &tenancy::catalog::Tenant,
    state: &str,
    purpose: &str,
) -> Result<Taken<P>, SsoError> {
    use crate::{Rejection, connections};
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    let (conn_id, sealed) = match lookup(&mut tx, state).await? {
        Lookup::Open(c, Some(s)) => (c, s),
        Lookup::Used => return Err(SsoError::rejected(Rejection::Replay, "state already used")),
        _ => {
            return Err(SsoError::rejected(
                Rejection::UnknownState,
                "state unknown or expired",
            ));
        }
    };
    if !consume(&mut tx, state).await? {
        return Err(SsoError::rejected(Rejection::Replay, "state already used"));
    }
    let connection = connections::get(&mut tx, conn_id)
        .await?
        .ok_or(SsoError::NoSuchConnection("the SSO connection was deleted"))?;
    let secret = connections::secret(&mut tx, t.auth.keyring(), conn_id).await?;
    tx.commit().await?;
    if !connection.enabled {
        return Err(SsoError::rejected(
            Rejection::Disabled,
            "connection disabled",
        ));
    }
    let pending = t
        .auth
        .keyring()
        .open(tenancy::crypto::Scope::Tenant(tenant.id), purpose, &sealed)
        .await
        // Sealed for another purpose: a GitHub state presented to the OIDC callback or back.
        .map_err(|_| {
            SsoError::rejected(Rejection::UnknownState, "state of another kind of login")
        })?;
    let pending =
        serde_json::from_slice(&pending).map_err(|e| SsoError::Internal(e.to_string()))?;
    Ok(Taken {
        connection,
        secret,
        pending,
    })
}
