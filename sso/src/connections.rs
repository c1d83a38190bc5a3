//! SSO connections of a tenant (its database): SAML (IdP metadata and signing certificates, several
//! at once for rotation) or OIDC (issuer, client id, client secret sealed with the tenant's key);
//! attribute-to-role mapping and the default role of just-in-time users; and the tenant's SSO
//! policy ("enforce SSO").

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use identity::permissions::role_by_name;
use samael::metadata::EntityDescriptor;
use serde::{Deserialize, Serialize};
use tenancy::crypto::{Keyring, Scope};
use tenancy::dataplane::TenantTx;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::SsoError;

/// Purpose under which client secrets are sealed.
const SECRET_PURPOSE: &str = "sso.client_secret";
/// Google's issuer (the `google` preset of an OIDC connection).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// An SSO connection's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    #[must_use]
    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }
    #[must_use]
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
    /// Parses a UUID text.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
}

impl Default for ConnectionId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The protocol side of a connection (stored as JSON; never holds a secret).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Protocol {
    Saml(SamlIdp),
    Oidc(OidcProvider),
    Github(GithubApp),
}

impl Protocol {
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Saml(_) => "saml",
            Self::Oidc(_) => "oidc",
            Self::Github(_) => "github",
        }
    }
}

/// A SAML identity provider, as read from its metadata.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SamlIdp {
    pub entity_id: String,
    /// The IdP's SingleSignOnService (HTTP-Redirect binding).
    pub sso_url: String,
    /// Signing certificates (base64 DER): those of the metadata plus any added for rotation.
    pub certificates: Vec<String>,
    pub metadata_xml: String,
    pub metadata_url: Option<String>,
}

/// An OpenID provider.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OidcProvider {
    pub issuer: String,
    pub client_id: String,
    /// Scopes beyond `openid email profile`.
    #[serde(default)]
    pub extra_scopes: Vec<String>,
    /// `google` when made from the Google preset.
    pub preset: Option<String>,
}

/// A GitHub OAuth app (github.com, or a GitHub Enterprise Server at `base_url`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GithubApp {
    pub client_id: String,
    /// `None`: github.com. Else the Enterprise Server's URL (`https://github.example.com`).
    pub base_url: Option<String>,
}

impl GithubApp {
    /// Authorization, token and REST API URLs.
    #[must_use]
    pub fn urls(&self) -> (String, String, String) {
        match &self.base_url {
            None => (
                "https://github.com/login/oauth/authorize".into(),
                "https://github.com/login/oauth/access_token".into(),
                "https://api.github.com".into(),
            ),
            Some(b) => (
                format!("{b}/login/oauth/authorize"),
                format!("{b}/login/oauth/access_token"),
                format!("{b}/api/v3"),
            ),
        }
    }
}

/// One attribute value that grants a role (first match wins).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleRule {
    pub value: String,
    pub role: String,
}

/// A connection as stored.
#[derive(Clone, Debug)]
pub struct Connection {
    pub id: ConnectionId,
    pub name: String,
    pub enabled: bool,
    pub protocol: Protocol,
    pub has_secret: bool,
    pub allow_idp_initiated: bool,
    pub role_attribute: Option<String>,
    pub role_mapping: Vec<RoleRule>,
    pub default_role: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What an admin sets (create, or the full state after a patch).
#[derive(Clone, Debug)]
pub struct Settings {
    pub name: String,
    pub enabled: bool,
    pub allow_idp_initiated: bool,
    pub role_attribute: Option<String>,
    pub role_mapping: Vec<RoleRule>,
    pub default_role: String,
}

/// Reads a SAML IdP from its metadata XML, adding `extra_certificates` (PEM or base64 DER).
pub fn saml_from_metadata(
    xml: &str,
    metadata_url: Option<String>,
    extra_certificates: &[String],
) -> Result<SamlIdp, SsoError> {
    if xml.len() > 512 * 1024 {
        return Err(SsoError::Invalid(
            "`idp_metadata_xml` is larger than 512 KiB".into(),
        ));
    }
    let ed: EntityDescriptor = xml.parse().map_err(|_| {
        SsoError::Invalid("`idp_metadata_xml` is not a SAML EntityDescriptor".into())
    })?;
    let entity_id = ed
        .entity_id
        .clone()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| SsoError::Invalid("the IdP metadata has no entityID".into()))?;
    let idp = ed
        .idp_sso_descriptors
        .as_ref()
        .and_then(|d| d.first())
        .ok_or_else(|| SsoError::Invalid("the metadata has no IDPSSODescriptor".into()))?;
    let sso_url = idp
        .single_sign_on_services
        .iter()
        .find(|s| s.binding == samael::metadata::HTTP_REDIRECT_BINDING)
        .map(|s| s.location.clone())
        .ok_or_else(|| {
            SsoError::Invalid(
                "the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding".into(),
            )
        })?;
    let mut certificates = Vec::new();
    for kd in &idp.key_descriptors {
        if kd
            .key_use
            .as_deref()
            .is_some_and(|u| u != "signing" && !u.is_empty())
        {
            continue;
        }
        for c in kd.key_info.x509_data.iter().flat_map(|x| &x.certificates) {
            certificates.push(normalise_cert(c)?);
        }
    }
    for c in extra_certificates {
        certificates.push(normalise_cert(c)?);
    }
    let certificates: Vec<String> = certificates
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if certificates.is_empty() {
        return Err(SsoError::Invalid(
            "the IdP metadata has no signing certificate and none was given: responses could not be verified".into(),
        ));
    }
    Ok(SamlIdp {
        entity_id,
        sso_url,
        certificates,
        metadata_xml: xml.to_owned(),
        metadata_url,
    })
}

/// A certificate as base64 DER without whitespace (accepts PEM). Checks it decodes.
fn normalise_cert(c: &str) -> Result<String, SsoError> {
    let body: String = c
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let der = STANDARD
        .decode(&body)
        .map_err(|_| SsoError::Invalid("a certificate is not base64 (PEM or DER)".into()))?;
    if der.len() < 64 || der[0] != 0x30 {
        return Err(SsoError::Invalid(
            "a certificate is not an X.509 DER structure".into(),
        ));
    }
    Ok(body)
}

/// Checks the role names of `s` exist; SSO never grants `owner`.
async fn check_roles(tx: &mut TenantTx, s: &Settings) -> Result<(), SsoError> {
    let mut names: Vec<&str> = s.role_mapping.iter().map(|r| r.role.as_str()).collect();
    names.push(&s.default_role);
    for name in names {
        if name == "owner" {
            return Err(SsoError::Invalid(
                "SSO cannot grant the `owner` role; owners are made by other owners".into(),
            ));
        }
        if role_by_name(tx, name).await?.is_none() {
            return Err(SsoError::Invalid(format!(
                "no role named `{}`",
                name.chars().take(64).collect::<String>()
            )));
        }
    }
    if s.name.trim().is_empty() || s.name.len() > 100 {
        return Err(SsoError::Invalid(
            "`name` must be 1 to 100 characters".into(),
        ));
    }
    if s.role_mapping.len() > 100 {
        return Err(SsoError::Invalid(
            "`role_mapping` has more than 100 rules".into(),
        ));
    }
    Ok(())
}

const COLUMNS: &str = "id, name, enabled, config, secret_sealed IS NOT NULL, allow_idp_initiated, \
                       role_attribute, role_mapping, default_role, created_at, updated_at";

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
) -> Result<Connection, SsoError> {
    check_roles(tx, s).await?;
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
                 idp_entity_id, allow_idp_initiated, role_attribute, role_mapping, default_role)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
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
) -> Result<Connection, SsoError> {
    check_roles(tx, s).await?;
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
                 default_role = $10, updated_at = now()
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

/// Whether the tenant refuses password login for everyone but owners.
pub async fn enforce_sso(tx: &mut TenantTx) -> Result<bool, SsoError> {
    Ok(tx
        .query_opt("SELECT enforce_sso FROM sso_settings", &[])
        .await?
        .is_some_and(|r| r.get(0)))
}

/// Sets the tenant's SSO policy.
pub async fn set_enforce_sso(tx: &mut TenantTx, on: bool) -> Result<(), SsoError> {
    if on {
        let any: bool = tx
            .query_opt(
                "SELECT EXISTS (SELECT 1 FROM sso_connections WHERE enabled)",
                &[],
            )
            .await?
            .is_some_and(|r| r.get(0));
        if !any {
            return Err(SsoError::Invalid(
                "enforcing SSO needs at least one enabled connection".into(),
            ));
        }
    }
    tx.execute(
        "INSERT INTO sso_settings (tenant_id, enforce_sso) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET enforce_sso = EXCLUDED.enforce_sso, updated_at = now()",
        &[&tx.tenant().as_uuid(), &on],
    )
    .await?;
    Ok(())
}

/// Whether `user` may sign in with a password: always, unless the tenant enforces SSO and the
/// user is not an owner (owners keep password login for break-glass).
pub async fn password_login_allowed(
    tx: &mut TenantTx,
    user: tenancy::ids::UserId,
) -> Result<bool, SsoError> {
    if !enforce_sso(tx).await? {
        return Ok(true);
    }
    let role = identity::users::get(tx, user).await?.map(|u| u.role);
    Ok(role.as_deref() == Some("owner"))
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
