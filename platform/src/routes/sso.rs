//! `/sso/...` on a tenant's host: the browser side of SSO. SAML SP metadata, SP-initiated login
//! (a redirect to the IdP), the assertion consumer service; OIDC login (a redirect to the
//! provider) and its callback. A successful login answers the same tokens a password login
//! does (one new session). Every refusal is a 4xx problem and an `sso.rejected` security event.

use identity::Identity;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sso::Sso;
use sso::connections::ConnectionId;
use sso::saml::{SignedIn, Verified};
use tenancy::catalog::Tenant;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::TenantContext;
use crate::routes::shared::auth::{ClientInfo, TokenResponse};

fn see_other(location: &str) -> ApiResult<Response> {
    let v = HeaderValue::from_str(location).map_err(ApiError::internal)?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response())
}

fn connection_param(query: Option<&str>) -> ApiResult<ConnectionId> {
    query
        .and_then(|q| Sso::form_field(q.as_bytes(), "connection"))
        .and_then(|c| ConnectionId::parse(&c))
        .ok_or_else(|| ApiError::bad_request("`connection` (a connection id) is required"))
}

/// Signs the verified identity in and issues tokens (or, for a user who still owes their TOTP,
/// `{"mfa_required": true, "mfa_token"}` as a password login does), recording any refusal.
async fn finish(
    t: &Identity,
    sso: &Sso,
    tenant: &Tenant,
    client: &ClientInfo,
    v: Verified,
) -> ApiResult<Json<Value>> {
    let user = match sso.sign_in(t, tenant, &v).await {
        Ok(SignedIn::Session(u)) => u,
        Ok(SignedIn::Mfa { mfa_token, .. }) => {
            return Ok(Json(
                json!({ "mfa_required": true, "mfa_token": mfa_token }),
            ));
        }
        Err(e) => {
            return Err(sso::provision::refuse(t, tenant, Some(&v.connection), e)
                .await
                .into());
        }
    };
    let tokens = t
        .auth
        .start_session(
            &t.dataplane,
            tenant,
            user,
            client.user_agent.as_deref(),
            client.ip_text().as_deref(),
        )
        .await?;
    Ok(Json(json!(TokenResponse::from(tokens))))
}

/// The tenant's SAML service-provider metadata (give it to the IdP).
#[utoipa::path(get, path = "/sso/saml/metadata", tag = "sso",
    responses((status = 200, content_type = "application/samlmetadata+xml", description = "SP metadata"),
              (status = 404, body = Problem)))]
pub async fn saml_metadata(ctx: TenantContext, State(sso): State<Sso>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/samlmetadata+xml"),
        )],
        sso.saml_metadata(&ctx.tenant),
    )
        .into_response()
}

/// Starts an SP-initiated SAML login: 303 to the IdP with an AuthnRequest.
#[utoipa::path(get, path = "/sso/saml/login", tag = "sso",
    params(("connection" = uuid::Uuid, Query)),
    responses((status = 303, description = "To the IdP"), (status = 404, body = Problem)))]
pub async fn saml_login(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let id = connection_param(q.as_deref())?;
    let url = sso.saml_login(&t, &ctx.tenant, id, "").await?;
    see_other(&url)
}

/// The assertion consumer service: a `SAMLResponse` posted by the browser (HTTP-POST binding).
#[utoipa::path(post, path = "/sso/saml/acs", tag = "sso",
    request_body(content_type = "application/x-www-form-urlencoded", description = "`SAMLResponse`, `RelayState`"),
    responses((status = 200, body = TokenResponse, description = "Tokens, or `{mfa_required, mfa_token}` for a user with TOTP"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn saml_acs(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    client: ClientInfo,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let Some(response) = Sso::form_field(&body, "SAMLResponse") else {
        return Err(ApiError::bad_request("the form has no `SAMLResponse`"));
    };
    let v = match sso.saml_acs(&t, &ctx.tenant, &response).await {
        Ok(v) => v,
        Err(e) => {
            return Err(sso::provision::refuse(&t, &ctx.tenant, None, e)
                .await
                .into());
        }
    };
    finish(&t, &sso, &ctx.tenant, &client, v).await
}

/// Starts an OIDC login: 303 to the provider (code flow, PKCE, state, nonce).
#[utoipa::path(get, path = "/sso/oidc/login", tag = "sso",
    params(("connection" = uuid::Uuid, Query)),
    responses((status = 303, description = "To the provider"), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub async fn oidc_login(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let id = connection_param(q.as_deref())?;
    let url = sso.oidc_start(&t, &ctx.tenant, id).await?;
    see_other(&url)
}

/// Starts a GitHub login: 303 to GitHub (OAuth 2.0 code flow, PKCE, state).
#[utoipa::path(get, path = "/sso/github/login", tag = "sso",
    params(("connection" = uuid::Uuid, Query)),
    responses((status = 303, description = "To GitHub"), (status = 404, body = Problem)))]
pub async fn github_login(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let id = connection_param(q.as_deref())?;
    let url = sso.github_start(&t, &ctx.tenant, id).await?;
    see_other(&url)
}

/// The GitHub OAuth app's callback: exchanges the code, reads the primary verified email.
#[utoipa::path(get, path = "/sso/github/callback", tag = "sso",
    params(("code" = String, Query), ("state" = String, Query)),
    responses((status = 200, body = TokenResponse, description = "Tokens, or `{mfa_required, mfa_token}` for a user with TOTP"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn github_callback(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    client: ClientInfo,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    callback(&t, &sso, &ctx.tenant, &client, q, true).await
}

/// The OIDC redirect URI: exchanges the code and signs the user in.
#[utoipa::path(get, path = "/sso/oidc/callback", tag = "sso",
    params(("code" = String, Query), ("state" = String, Query)),
    responses((status = 200, body = TokenResponse, description = "Tokens, or `{mfa_required, mfa_token}` for a user with TOTP"), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn oidc_callback(
    ctx: TenantContext,
    State(t): State<Identity>,
    State(sso): State<Sso>,
    client: ClientInfo,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    callback(&t, &sso, &ctx.tenant, &client, q, false).await
}

/// The shared part of the OIDC and GitHub callbacks.
async fn callback(
    t: &Identity,
    sso: &Sso,
    tenant: &Tenant,
    client: &ClientInfo,
    q: Option<String>,
    github: bool,
) -> ApiResult<Json<Value>> {
    let q = q.unwrap_or_default();
    let field = |n: &str| Sso::form_field(q.as_bytes(), n);
    if let Some(err) = field("error") {
        let e = sso::SsoError::Rejected {
            reason: sso::Rejection::Token,
            detail: format!(
                "the provider answered error `{}`",
                err.chars().take(100).collect::<String>()
            ),
        };
        return Err(sso::provision::refuse(t, tenant, None, e).await.into());
    }
    let (Some(code), Some(state)) = (field("code"), field("state")) else {
        return Err(ApiError::bad_request("`code` and `state` are required"));
    };
    let verified = if github {
        sso.github_callback(t, tenant, &code, &state).await
    } else {
        sso.oidc_callback(t, tenant, &code, &state).await
    };
    let v = match verified {
        Ok(v) => v,
        Err(e) => return Err(sso::provision::refuse(t, tenant, None, e).await.into()),
    };
    finish(t, sso, tenant, client, v).await
}
