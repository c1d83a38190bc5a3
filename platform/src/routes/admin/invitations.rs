//! `POST /admin/v1/tenants/{tenant}/invitations`: an operator invites a tenant's first owner (or
//! anyone, with any role).

use identity::{Grantor, Identity};
use tenancy::catalog::Catalog;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::find_tenant;
use crate::error::{ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::invitations::{Invitation, InviteBody, create};

/// Invite someone to a tenant.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/invitations", tag = "admin", request_body = InviteBody,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 201, body = Invitation), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn invite(
    _: Operator,
    State(t): State<Identity>,
    State(catalog): State<Catalog>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<InviteBody>,
) -> ApiResult<(StatusCode, Json<Invitation>)> {
    let tenant = find_tenant(&catalog, &tenant).await?;
    let inv = create(&t, &tenant, &body, None, Grantor::Operator).await?;
    Ok((StatusCode::CREATED, Json(inv)))
}
