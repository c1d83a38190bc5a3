//! Storing connections in the tenant's database: create and update (settings checked, client
//! secret sealed with the tenant's key), read, list, delete, and opening the secret to start a
//! login.

use identity::Grantor;
use tenancy::crypto::{Keyring, Scope};
use tenancy::dataplane::TenantTx;
use zeroize::Zeroizing;

use super::validate::check_roles;
use super::{Connection, ConnectionId, Protocol, Settings};
use crate::SsoError;

/// Purpose under which client secrets are sealed.
const SECRET_PURPOSE: &str = tenancy::crypto::registry::purpose::SSO_CLIENT_SECRET;

const COLUMNS: &str = "id, name, enabled, config, secret_sealed IS NOT NULL, allow_idp_initiated, \
                       role_attribute, role_mapping, default_role, created_at, updated_at, enforces_mfa";

fn row(r: &tokio_postgres::Row) -> Result<Connection, SsoError> {
    let config: serde_json::Value = r.get(3);
    let mapping: serde_json::Value = r.get(7);
    Ok(Connection {
        id: ConnectionId(r.get(0)),
        name: r.get(1),
        enabled: r.get(2),
        protocol: serde_json::from_value(config)
            .map_err(|e| SsoError::Internal(format!("stored connection config: {e}")))?,
        has_secret: r.get(4),
        allow_idp_initiated: r.get(5),
        role_attribute: r.get(6),
        role_mapping: serde_json::from_value(mapping).unwrap_or_default(),
        default_role: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
        enforces_mfa: r.get(11),
    })
}

fn entity_id(p: &Protocol) -> Option<&str> {
    match p {
        Protocol::Saml(s) => Some(&s.entity_id),
        Protocol::Oidc(_) | Protocol::Github(_) => None,
    }
}

/// Creates a connection; the secret is sealed with the tenant's key.
pub async fn create(
    tx: &mut TenantTx,
    keyring: &Keyring,
    protocol: Protocol,
    secret: Option<&str>,
    s: &Settings,
    grantor: &Grantor<'_>,
) -> Result<Connection, SsoError> {
    check_roles(tx, grantor, s).await?;
    let id = ConnectionId::new();
    let sealed = match secret {
        Some(v) => Some(
            keyring
                .seal(Scope::Tenant(tx.tenant()), SECRET_PURPOSE, v.as_bytes())
                .await?,
        ),
        None => None,
    };
    let config = serde_json::to_value(&protocol).map_err(|e| SsoError::Internal(e.to_string()))?;
    let mapping =
        serde_json::to_value(&s.role_mapping).map_err(|e| SsoError::Internal(e.to_string()))?;
    let n = tx
        .execute(
            "INSERT INTO sso_connections (tenant_id, id, kind, name, enabled, config, secret_sealed,
                 idp_entity_id, allow_idp_initiated, role_attribute, role_mapping, default_role,
                 enforces_mfa)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
            &[
                &tx.tenant().as_uuid(),
                &id.0,
                &protocol.kind(),
                &s.name,
                &s.enabled,
                &config,
                &sealed,
                &entity_id(&protocol),
                &s.allow_idp_initiated,
                &s.role_attribute,
                &mapping,
                &s.default_role,
                &s.enforces_mfa,
            ],
        )
        .await?;
    if n == 0 {
        return Err(SsoError::DuplicateEntityId);
    }
    get(tx, id)
        .await?
        .ok_or(SsoError::NoSuchConnection("no such connection"))
}

/// Updates a connection: its settings, and optionally protocol and secret.
pub async fn update(
    tx: &mut TenantTx,
    keyring: &Keyring,
    id: ConnectionId,
    protocol: &Protocol,
    secret: Option<&str>,
    s: &Settings,
    grantor: &Grantor<'_>,
) -> Result<Connection, SsoError> {
    check_roles(tx, grantor, s).await?;
    let sealed = match secret {
        Some(v) => Some(
            keyring
                .seal(Scope::Tenant(tx.tenant()), SECRET_PURPOSE, v.as_bytes())
                .await?,
        ),
        None => None,
    };
    let config = serde_json::to_value(protocol).map_err(|e| SsoError::Internal(e.to_string()))?;
    let mapping =
        serde_json::to_value(&s.role_mapping).map_err(|e| SsoError::Internal(e.to_string()))?;
    let n = tx
        .execute(
            "UPDATE sso_connections SET name = $2, enabled = $3, config = $4,
                 secret_sealed = COALESCE($5, secret_sealed), idp_entity_id = $6,
                 allow_idp_initiated = $7, role_attribute = $8, role_mapping = $9,
                 default_role = $10, enforces_mfa = $11, updated_at = now()
             WHERE id = $1",
            &[
                &id.0,
                &s.name,
                &s.enabled,
                &config,
                &sealed,
                &entity_id(protocol),
                &s.allow_idp_initiated,
                &s.role_attribute,
                &mapping,
                &s.default_role,
                &s.enforces_mfa,
            ],
        )
        .await?;
    if n == 0 {
        return Err(SsoError::NoSuchConnection("no such connection"));
    }
    get(tx, id)
        .await?
        .ok_or(SsoError::NoSuchConnection("no such connection"))
}

/// A connection by id.
pub async fn get(tx: &mut TenantTx, id: ConnectionId) -> Result<Option<Connection>, SsoError> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM sso_connections WHERE id = $1"),
        &[&id.0],
    )
    .await?
    .map(|r| row(&r))
    .transpose()
}

/// The SAML connection of the IdP with this entity id.
pub async fn by_idp_entity_id(
    tx: &mut TenantTx,
    entity_id: &str,
) -> Result<Option<Connection>, SsoError> {
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM sso_connections WHERE idp_entity_id = $1"),
        &[&entity_id],
    )
    .await?
    .map(|r| row(&r))
    .transpose()
}

/// Every connection, oldest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Connection>, SsoError> {
    tx.query(
        &format!("SELECT {COLUMNS} FROM sso_connections ORDER BY id"),
        &[],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// Deletes a connection (its identities, requests and replay entries go with it).
pub async fn delete(tx: &mut TenantTx, id: ConnectionId) -> Result<(), SsoError> {
    let n = tx
        .execute("DELETE FROM sso_connections WHERE id = $1", &[&id.0])
        .await?;
    if n == 0 {
        return Err(SsoError::NoSuchConnection("no such connection"));
    }
    Ok(())
}

/// The connection's client secret, opened.
pub async fn secret(
    tx: &mut TenantTx,
    keyring: &Keyring,
    id: ConnectionId,
) -> Result<Option<Zeroizing<String>>, SsoError> {
    let sealed: Option<Vec<u8>> = tx
        .query_opt(
            "SELECT secret_sealed FROM sso_connections WHERE id = $1",
            &[&id.0],
        )
        .await?
        .and_then(|r| r.get(0));
    match sealed {
        Some(s) => Ok(Some(
            keyring
                .open_string(Scope::Tenant(tx.tenant()), SECRET_PURPOSE, &s)
                .await?,
        )),
        None => Ok(None),
    }
}

/// An enabled connection of the tenant and its opened client secret (for starting a login).
pub async fn usable(
    t: &identity::Identity,
    tenant: &tenancy::catalog::Tenant,
    id: ConnectionId,
) -> Result<(Connection, Option<Zeroizing<String>>), SsoError> {
    let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
    let conn = get(&mut tx, id)
        .await?
        .ok_or(SsoError::NoSuchConnection("no such SSO connection"))?;
    let secret = secret(&mut tx, t.auth.keyring(), id).await?;
    tx.commit().await?;
    if !conn.enabled {
        return Err(SsoError::rejected(
            crate::Rejection::Disabled,
            "connection disabled",
        ));
    }
    Ok((conn, secret))
}
