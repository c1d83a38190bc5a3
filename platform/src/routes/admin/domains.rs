//! `/admin/v1/tenants/{tenant}/domains`: custom domains that route to a tenant.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenancy::bootstrap::CatalogCaches;
use tenancy::catalog::{Catalog, CatalogDomainError};
use tenancy::ids::DomainName;
use tenancy::resolve::Resolver;
use utoipa::ToSchema;

use super::find_tenant;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ts;

/// Body of `POST .../domains`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomainBody {
    /// A host name outside the platform's base domain, e.g. `app.acme.com`.
    pub domain: String,
}

/// A custom domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    pub domain: String,
    pub created_at: String,
}

/// Domains of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainList {
    pub items: Vec<DomainView>,
}

/// Route a custom domain to the tenant.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/domains", tag = "admin", request_body = AddDomainBody,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 201, body = DomainView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn add(
    _: Operator,
    State(catalog): State<Catalog>,
    State(resolver): State<Resolver>,
    State(caches): State<CatalogCaches>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<AddDomainBody>,
) -> ApiResult<(StatusCode, Json<DomainView>)> {
    let t = find_tenant(&catalog, &tenant).await?;
    let domain = DomainName::parse_custom(&body.domain, resolver.base_domain())
        .map_err(|e| ApiError::unprocessable(format!("`domain` is invalid: {e}")))?;
    let created = catalog
        .add_domain(t.id, &domain)
        .await
        .map_err(|e| match e {
            CatalogDomainError::Taken => ApiError::conflict("this domain is already registered"),
            CatalogDomainError::Catalog(c) => c.into(),
        })?;
    caches.invalidate(Some(t.id)).await;
    Ok((
        StatusCode::CREATED,
        Json(DomainView {
            domain: domain.to_string(),
            created_at: ts(created),
        }),
    ))
}

/// The tenant's custom domains.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/domains", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 200, body = DomainList), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<DomainList>> {
    let t = find_tenant(&catalog, &tenant).await?;
    let items = catalog
        .domains(t.id)
        .await?
        .into_iter()
        .map(|(d, at)| DomainView {
            domain: d.to_string(),
            created_at: ts(at),
        })
        .collect();
    Ok(Json(DomainList { items }))
}

/// Stop routing a custom domain to the tenant.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/domains/{domain}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug"), ("domain" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn remove(
    _: Operator,
    State(catalog): State<Catalog>,
    State(caches): State<CatalogCaches>,
    ApiPath((tenant, domain)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let t = find_tenant(&catalog, &tenant).await?;
    let domain = DomainName::from_host_header(&domain)
        .ok_or_else(|| ApiError::not_found("no such domain"))?;
    if !catalog.remove_domain(t.id, &domain).await? {
        return Err(ApiError::not_found("no such domain"));
    }
    caches.invalidate(Some(t.id)).await;
    Ok(StatusCode::NO_CONTENT)
}
