//! SSO connections of a tenant (its database): SAML (IdP metadata and signing certificates, several
//! at once for rotation) or OIDC (issuer, client id, client secret sealed with the tenant's key);
//! attribute-to-role mapping and the default role of just-in-time users; and the tenant's SSO
//! policy ("enforce SSO").
//!
//! The types live here; checking input in `validate`, the queries in `store`, the SSO policy in
//! `policy`. Callers use the functions through this module.

mod policy;
mod store;
mod validate;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

pub use policy::{PasswordLogin, enforce_sso, password_login, set_enforce_sso};
pub use store::{by_idp_entity_id, create, delete, get, list, secret, update, usable};
pub use validate::saml_from_metadata;

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
    /// The IdP enforces MFA: an SSO login stands in for the user's own TOTP (off by default).
    pub enforces_mfa: bool,
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
    pub enforces_mfa: bool,
}
