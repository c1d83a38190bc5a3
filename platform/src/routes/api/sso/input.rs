//! Request bodies of the connection routes and how they become the domain's [`Protocol`] and
//! [`Settings`] (a create, or a patch over the current connection): required fields per kind,
//! metadata fetched by URL, issuer and URL checks, length limits.

use serde::{Deserialize, Serialize};
use sso::Sso;
use sso::connections::{
    self, Connection, GOOGLE_ISSUER, OidcProvider, Protocol, RoleRule, Settings,
};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::routes::text;

/// One attribute value that grants a role; the first matching rule wins.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRuleBody {
    pub value: String,
    pub role: String,
}

/// Body of `POST /api/v1/sso/connections` and `PATCH /api/v1/sso/connections/{connection_id}`.
/// `kind` (create only): `saml`, `oidc`, `google` (OIDC with Google's issuer) or `github`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// SAML: the IdP's metadata document (or `idp_metadata_url`).
    pub idp_metadata_xml: Option<String>,
    pub idp_metadata_url: Option<String>,
    /// SAML: extra signing certificates (PEM or base64 DER), for rotation.
    pub certificates: Option<Vec<String>>,
    /// OIDC: the issuer (discovery at `{issuer}/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// OIDC: sealed with the tenant's key; never returned.
    pub client_secret: Option<String>,
    /// OIDC: scopes beyond `openid email profile`.
    pub scopes: Option<Vec<String>>,
    /// GitHub: a GitHub Enterprise Server's URL (absent: github.com).
    pub github_base_url: Option<String>,
    /// SAML: accept unsolicited (IdP-initiated) responses. Off by default.
    pub allow_idp_initiated: Option<bool>,
    /// The attribute (SAML) or claim (OIDC) whose values map to roles, e.g. `groups`.
    pub role_attribute: Option<String>,
    pub role_mapping: Option<Vec<RoleRuleBody>>,
    /// Role of users created at their first SSO login (default `member`; never `owner`).
    pub default_role: Option<String>,
    /// The IdP enforces MFA: an SSO login then stands in for the user's own TOTP. Off by
    /// default: a user with TOTP goes through `/api/v1/auth/mfa/verify` after SSO too.
    pub enforces_mfa: Option<bool>,
}

fn scopes(list: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let list = list.unwrap_or_default();
    if list.len() > 20
        || list.iter().any(|s| {
            s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        })
    {
        return Err(ApiError::unprocessable(
            "`scopes` must be at most 20 scope tokens of printable ASCII",
        ));
    }
    Ok(list)
}

/// Builds the protocol side from the body (create, or a patch that replaces it).
pub(super) async fn protocol(
    sso: &Sso,
    kind: &str,
    b: &mut ConnectionBody,
    current: Option<&Protocol>,
) -> ApiResult<Protocol> {
    match kind {
        "saml" => {
            let extra = b.certificates.take().unwrap_or_default();
            let (xml, url) = match (b.idp_metadata_xml.take(), b.idp_metadata_url.take()) {
                (Some(x), None) => (x, None),
                (None, Some(u)) => (sso.fetch_metadata(&u).await?, Some(u)),
                (None, None) => match current {
                    Some(Protocol::Saml(s)) => (s.metadata_xml.clone(), s.metadata_url.clone()),
                    _ => {
                        return Err(ApiError::unprocessable(
                            "a SAML connection needs `idp_metadata_xml` or `idp_metadata_url`",
                        ));
                    }
                },
                (Some(_), Some(_)) => {
                    return Err(ApiError::unprocessable(
                        "give `idp_metadata_xml` or `idp_metadata_url`, not both",
                    ));
                }
            };
            Ok(Protocol::Saml(connections::saml_from_metadata(
                &xml, url, &extra,
            )?))
        }
        "oidc" | "google" => {
            let cur = match current {
                Some(Protocol::Oidc(o)) => Some(o),
                _ => None,
            };
            let issuer = if kind == "google" {
                GOOGLE_ISSUER.to_owned()
            } else {
                b.issuer
                    .take()
                    .or_else(|| cur.map(|o| o.issuer.clone()))
                    .ok_or_else(|| ApiError::unprocessable("an OIDC connection needs `issuer`"))?
            };
            if kind != "google" {
                sso.check_url(&issuer, "issuer").await?;
            }
            let client_id = b
                .client_id
                .take()
                .or_else(|| cur.map(|o| o.client_id.clone()))
                .ok_or_else(|| ApiError::unprocessable("an OIDC connection needs `client_id`"))?;
            let client_id = text("client_id", &client_id, 256)?;
            let extra_scopes = match b.scopes.take() {
                Some(s) => scopes(Some(s))?,
                None => cur.map(|o| o.extra_scopes.clone()).unwrap_or_default(),
            };
            Ok(Protocol::Oidc(OidcProvider {
                issuer: issuer.trim_end_matches('/').to_owned(),
                client_id,
                extra_scopes,
                preset: (kind == "google")
                    .then(|| "google".to_owned())
                    .or_else(|| cur.and_then(|o| o.preset.clone())),
            }))
        }
        "github" => {
            let cur = match current {
                Some(Protocol::Github(g)) => Some(g),
                _ => None,
            };
            let client_id = b
                .client_id
                .take()
                .or_else(|| cur.map(|g| g.client_id.clone()))
                .ok_or_else(|| ApiError::unprocessable("a GitHub connection needs `client_id`"))?;
            let base_url = match b.github_base_url.take() {
                Some(u) => {
                    sso.check_url(&u, "github_base_url").await?;
                    Some(u.trim_end_matches('/').to_owned())
                }
                None => cur.and_then(|g| g.base_url.clone()),
            };
            Ok(Protocol::Github(connections::GithubApp {
                client_id: text("client_id", &client_id, 256)?,
                base_url,
            }))
        }
        _ => Err(ApiError::unprocessable(
            "`kind` must be `saml`, `oidc`, `google` or `github`",
        )),
    }
}

pub(super) fn settings(b: &ConnectionBody, current: Option<&Connection>) -> ApiResult<Settings> {
    let name = match (&b.name, current) {
        (Some(n), _) => text("name", n, 100)?,
        (None, Some(c)) => c.name.clone(),
        (None, None) => return Err(ApiError::unprocessable("`name` is required")),
    };
    Ok(Settings {
        name,
        enabled: b.enabled.or(current.map(|c| c.enabled)).unwrap_or(true),
        allow_idp_initiated: b
            .allow_idp_initiated
            .or(current.map(|c| c.allow_idp_initiated))
            .unwrap_or(false),
        role_attribute: match &b.role_attribute {
            Some(a) => Some(text("role_attribute", a, 256)?),
            None => current.and_then(|c| c.role_attribute.clone()),
        },
        role_mapping: match &b.role_mapping {
            Some(m) => m
                .iter()
                .map(|r| RoleRule {
                    value: r.value.clone(),
                    role: r.role.clone(),
                })
                .collect(),
            None => current.map(|c| c.role_mapping.clone()).unwrap_or_default(),
        },
        default_role: b
            .default_role
            .clone()
            .or(current.map(|c| c.default_role.clone()))
            .unwrap_or_else(|| "member".to_owned()),
        enforces_mfa: b
            .enforces_mfa
            .or(current.map(|c| c.enforces_mfa))
            .unwrap_or(false),
    })
}

pub(super) fn secret(b: &ConnectionBody) -> ApiResult<Option<&str>> {
    match &b.client_secret {
        Some(s) if s.is_empty() || s.len() > 1024 => Err(ApiError::unprocessable(
            "`client_secret` must be 1 to 1024 characters",
        )),
        Some(s) => Ok(Some(s)),
        None => Ok(None),
    }
}
