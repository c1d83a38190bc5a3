//! What the connection routes answer: a connection with its protocol side and what to give the
//! IdP (SP entity id, ACS URL, redirect URIs), never a secret.

use serde::Serialize;
use sso::Sso;
use sso::connections::{Connection, Protocol};
use utoipa::ToSchema;
use uuid::Uuid;

use super::input::RoleRuleBody;
use crate::routes::ts;

/// The SAML side of a connection, with what to give the IdP.
#[derive(Debug, Serialize, ToSchema)]
pub struct SamlView {
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    pub certificate_count: usize,
    pub idp_metadata_url: Option<String>,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub sp_metadata_url: String,
}

/// The OIDC side of a connection, with the redirect URI to register.
#[derive(Debug, Serialize, ToSchema)]
pub struct OidcView {
    pub issuer: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: Vec<String>,
    pub preset: Option<String>,
    pub redirect_uri: String,
}

/// The GitHub side of a connection, with the callback URL to register in the OAuth app.
#[derive(Debug, Serialize, ToSchema)]
pub struct GithubView {
    pub client_id: String,
    pub has_client_secret: bool,
    pub base_url: Option<String>,
    pub redirect_uri: String,
}

/// An SSO connection (secrets never shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub enabled: bool,
    pub allow_idp_initiated: bool,
    pub role_attribute: Option<String>,
    pub role_mapping: Vec<RoleRuleBody>,
    pub default_role: String,
    /// Whether an SSO login through this connection stands in for the user's own TOTP.
    pub enforces_mfa: bool,
    pub saml: Option<SamlView>,
    pub oidc: Option<OidcView>,
    pub github: Option<GithubView>,
    /// Where a user starts a login through this connection (on the tenant's host).
    pub login_path: String,
    pub created_at: String,
    pub updated_at: String,
}

/// The connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub items: Vec<ConnectionView>,
}

pub(super) fn view(sso: &Sso, tenant: &tenancy::catalog::Tenant, c: Connection) -> ConnectionView {
    let mut github = None;
    let (saml, oidc, path) = match &c.protocol {
        Protocol::Saml(s) => {
            let sp = sso.saml_sp(tenant);
            (
                Some(SamlView {
                    idp_entity_id: s.entity_id.clone(),
                    idp_sso_url: s.sso_url.clone(),
                    certificate_count: s.certificates.len(),
                    idp_metadata_url: s.metadata_url.clone(),
                    sp_metadata_url: sp.entity_id.clone(),
                    sp_entity_id: sp.entity_id,
                    acs_url: sp.acs_url,
                }),
                None,
                "saml",
            )
        }
        Protocol::Oidc(o) => (
            None,
            Some(OidcView {
                issuer: o.issuer.clone(),
                client_id: o.client_id.clone(),
                has_client_secret: c.has_secret,
                scopes: o.extra_scopes.clone(),
                preset: o.preset.clone(),
                redirect_uri: sso.oidc_redirect_uri(tenant),
            }),
            "oidc",
        ),
        Protocol::Github(g) => {
            github = Some(GithubView {
                client_id: g.client_id.clone(),
                has_client_secret: c.has_secret,
                base_url: g.base_url.clone(),
                redirect_uri: sso.github_redirect_uri(tenant),
            });
            (None, None, "github")
        }
    };
    ConnectionView {
        id: c.id.as_uuid(),
        kind: c.protocol.kind().to_owned(),
        name: c.name,
        enabled: c.enabled,
        allow_idp_initiated: c.allow_idp_initiated,
        role_attribute: c.role_attribute,
        role_mapping: c
            .role_mapping
            .into_iter()
            .map(|r| RoleRuleBody {
                value: r.value,
                role: r.role,
            })
            .collect(),
        default_role: c.default_role,
        enforces_mfa: c.enforces_mfa,
        saml,
        oidc,
        github,
        login_path: format!("/sso/{path}/login?connection={}", c.id),
        created_at: ts(c.created_at),
        updated_at: ts(c.updated_at),
    }
}
