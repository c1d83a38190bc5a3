//! `/admin/v1/tenants/{tenant}/sso-domains/{domain}`: the operator marks an email domain verified
//! for a tenant (when the customer proved it another way than DNS). Refused (409) when another
//! tenant holds it verified. Recorded in the operators' trail (control-plane trigger).

use axum::Json;
use axum::extract::State;
use sso::Sso;
use sso::domains::Method;
use tenancy::catalog::Catalog;

use super::find_tenant;
use crate::error::{ApiResult, Problem};
use crate::extract::ApiPath;
use crate::extract::admin::Operator;
use crate::routes::api::sso::domains::{SsoDomainView, view};

/// Marks a domain verified for the tenant.
#[utoipa::path(put, path = "/admin/v1/tenants/{tenant}/sso-domains/{domain}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug"), ("domain" = String, Path)),
    responses((status = 200, body = SsoDomainView), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn verify(
    _: Operator,
    State(catalog): State<Catalog>,
    State(sso): State<Sso>,
    ApiPath((tenant, domain)): ApiPath<(String, String)>,
) -> ApiResult<Json<SsoDomainView>> {
    let t = find_tenant(&catalog, &tenant).await?;
    let domain = sso.domains().parse(&domain)?;
    let c = sso.domains().mark(t.id, &domain, Method::Operator).await?;
    Ok(Json(view(c)))
}
