//! `/api/v1/sso/domains`: the tenant's verified email domains. An admin (`sso:manage`) claims a
//! domain and gets the TXT record to publish, asks for the check, lists and removes them. A
//! connection asserts identities only for addresses in verified domains (docs/sso.md). Every
//! change is in the operators' trail (the control-plane trigger on `sso_domains`, with the
//! tenant, the acting admin, the route and the request id): the tenant's own log takes only
//! its own tables' row events, and the application may not append success events to it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sso::Sso;
use sso::domains::DomainClaim;
use utoipa::ToSchema;

use crate::error::{ApiResult, Problem};
use crate::extract::tenant::Authenticated;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ts;

/// Body of `POST /api/v1/sso/domains`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimDomainBody {
    /// The email domain, e.g. `acme.com` (exact: subdomains are verified on their own).
    pub domain: String,
}

/// The DNS record that proves the tenant controls the domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct TxtRecord {
    /// Always `TXT`.
    pub r#type: String,
    /// `_platform-verify.<domain>`.
    pub name: String,
    pub value: String,
}

/// A domain of the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct SsoDomainView {
    pub domain: String,
    pub verified: bool,
    pub verified_at: Option<String>,
    /// `dns` or `operator` once verified.
    pub method: Option<String>,
    /// Publish this, then `POST /api/v1/sso/domains/{domain}/check`.
    pub record: TxtRecord,
    pub created_at: String,
}

/// The tenant's domains.
#[derive(Debug, Serialize, ToSchema)]
pub struct SsoDomainList {
    pub items: Vec<SsoDomainView>,
}

pub(crate) fn view(c: DomainClaim) -> SsoDomainView {
    SsoDomainView {
        record: TxtRecord {
            r#type: "TXT".into(),
            name: c.record_name(),
            value: c.token,
        },
        domain: c.domain.as_str().to_owned(),
        verified: c.verified_at.is_some(),
        verified_at: c.verified_at.map(ts),
        method: c.method,
        created_at: ts(c.created_at),
    }
}

/// Claims a domain: answers the TXT record to publish (a second claim answers the same).
#[utoipa::path(post, path = "/api/v1/sso/domains", tag = "sso", request_body = ClaimDomainBody,
    responses((status = 201, body = SsoDomainView), (status = 403, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn claim(
    auth: Authenticated,
    State(sso): State<Sso>,
    ApiJson(body): ApiJson<ClaimDomainBody>,
) -> ApiResult<(StatusCode, Json<SsoDomainView>)> {
    let domain = sso.domains().parse(&body.domain)?;
    let c = sso.domains().claim(auth.tenant.id, &domain).await?;
    Ok((StatusCode::CREATED, Json(view(c))))
}

/// The tenant's domains, verified or not.
#[utoipa::path(get, path = "/api/v1/sso/domains", tag = "sso",
    responses((status = 200, body = SsoDomainList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(auth: Authenticated, State(sso): State<Sso>) -> ApiResult<Json<SsoDomainList>> {
    let items = sso.domains().list(auth.tenant.id).await?;
    Ok(Json(SsoDomainList {
        items: items.into_iter().map(view).collect(),
    }))
}

/// Looks the TXT record up and marks the domain verified when it holds the token (422 with the
/// record to publish when it does not; 409 when another tenant verified the domain first).
#[utoipa::path(post, path = "/api/v1/sso/domains/{domain}/check", tag = "sso",
    params(("domain" = String, Path)),
    responses((status = 200, body = SsoDomainView), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem), (status = 502, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn check(
    auth: Authenticated,
    State(sso): State<Sso>,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<Json<SsoDomainView>> {
    let domain = sso.domains().parse(&domain)?;
    let c = sso.domains().check(auth.tenant.id, &domain).await?;
    Ok(Json(view(c)))
}

/// Removes a domain: connections no longer assert identities in it.
#[utoipa::path(delete, path = "/api/v1/sso/domains/{domain}", tag = "sso",
    params(("domain" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn remove(
    auth: Authenticated,
    State(sso): State<Sso>,
    ApiPath(domain): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let domain = sso.domains().parse(&domain)?;
    sso.domains().remove(auth.tenant.id, &domain).await?;
    Ok(StatusCode::NO_CONTENT)
}
