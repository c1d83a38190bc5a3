//! `/api/v1/sso/...`: a tenant admin manages the tenant's SSO connections (SAML, OIDC, Google)
//! and its SSO policy. Needs `sso:manage`. Client secrets go in and are never shown again.

use identity::Identity;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sso::Sso;
use sso::connections::{
    self, Connection, ConnectionId, GOOGLE_ISSUER, OidcProvider, Protocol, RoleRule, Settings,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::Authenticated;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::{text, ts};

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
}

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

/// The tenant's SSO policy.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoSettingsBody {
    /// Refuse password login for everyone but owners (break-glass).
    pub enforce_sso: bool,
}

fn view(sso: &Sso, tenant: &tenancy::catalog::Tenant, c: Connection) -> ConnectionView {
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
        saml,
        oidc,
        github,
        login_path: format!("/sso/{path}/login?connection={}", c.id),
        created_at: ts(c.created_at),
        updated_at: ts(c.updated_at),
    }
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
async fn protocol(
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

fn settings(b: &ConnectionBody, current: Option<&Connection>) -> ApiResult<Settings> {
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
    })
}

fn secret(b: &ConnectionBody) -> ApiResult<Option<&str>> {
    match &b.client_secret {
        Some(s) if s.is_empty() || s.len() > 1024 => Err(ApiError::unprocessable(
            "`client_secret` must be 1 to 1024 characters",
        )),
        Some(s) => Ok(Some(s)),
        None => Ok(None),
    }
}

/// The tenant's SSO connections.
#[utoipa::path(get, path = "/api/v1/sso/connections", tag = "sso",
    responses((status = 200, body = ConnectionList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
) -> ApiResult<Json<ConnectionList>> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let items = connections::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ConnectionList {
        items: items
            .into_iter()
            .map(|c| view(&sso, &auth.tenant, c))
            .collect(),
    }))
}

/// Adds a connection.
#[utoipa::path(post, path = "/api/v1/sso/connections", tag = "sso", request_body = ConnectionBody,
    responses((status = 201, body = ConnectionView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn create(
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    ApiJson(mut body): ApiJson<ConnectionBody>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    let kind = body
        .kind
        .clone()
        .ok_or_else(|| ApiError::unprocessable("`kind` is required"))?;
    let protocol = protocol(&sso, &kind, &mut body, None).await?;
    if matches!(protocol, Protocol::Saml(_)) && body.client_secret.is_some() {
        return Err(ApiError::unprocessable(
            "a SAML connection has no `client_secret`",
        ));
    }
    let s = settings(&body, None)?;
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let c = connections::create(&mut tx, t.auth.keyring(), protocol, secret(&body)?, &s).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view(&sso, &auth.tenant, c))))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn show(
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ConnectionView>> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let c = connections::get(&mut tx, ConnectionId::from_uuid(id))
        .await?
        .ok_or_else(|| ApiError::not_found("no such SSO connection"))?;
    tx.commit().await?;
    Ok(Json(view(&sso, &auth.tenant, c)))
}

/// Changes a connection (absent fields keep their value).
#[utoipa::path(patch, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)), request_body = ConnectionBody,
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn patch(
    auth: Authenticated,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut body): ApiJson<ConnectionBody>,
) -> ApiResult<Json<ConnectionView>> {
    if body.kind.is_some() {
        return Err(ApiError::unprocessable(
            "`kind` cannot change; make a new connection",
        ));
    }
    let id = ConnectionId::from_uuid(id);
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let current = connections::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such SSO connection"))?;
    tx.commit().await?;
    let kind = match &current.protocol {
        Protocol::Oidc(o) if o.preset.as_deref() == Some("google") => "google",
        p => p.kind(),
    };
    let protocol = protocol(&sso, kind, &mut body, Some(&current.protocol)).await?;
    let s = settings(&body, Some(&current))?;
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let c =
        connections::update(&mut tx, t.auth.keyring(), id, &protocol, secret(&body)?, &s).await?;
    tx.commit().await?;
    Ok(Json(view(&sso, &auth.tenant, c)))
}

/// Removes a connection and the identities linked through it (the users stay).
#[utoipa::path(delete, path = "/api/v1/sso/connections/{connection_id}", tag = "sso",
    params(("connection_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn delete(
    auth: Authenticated,
    State(t): State<Identity>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    connections::delete(&mut tx, ConnectionId::from_uuid(id)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's SSO policy.
#[utoipa::path(get, path = "/api/v1/sso/settings", tag = "sso",
    responses((status = 200, body = SsoSettingsBody), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn show_settings(
    auth: Authenticated,
    State(t): State<Identity>,
) -> ApiResult<Json<SsoSettingsBody>> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let enforce_sso = connections::enforce_sso(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(SsoSettingsBody { enforce_sso }))
}

/// Sets the tenant's SSO policy.
#[utoipa::path(put, path = "/api/v1/sso/settings", tag = "sso", request_body = SsoSettingsBody,
    responses((status = 200, body = SsoSettingsBody), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn put_settings(
    auth: Authenticated,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<SsoSettingsBody>,
) -> ApiResult<Json<SsoSettingsBody>> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    connections::set_enforce_sso(&mut tx, body.enforce_sso).await?;
    tx.commit().await?;
    Ok(Json(body))
}
