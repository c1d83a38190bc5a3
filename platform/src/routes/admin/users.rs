//! `DELETE /admin/v1/tenants/{tenant}/users/{user_id}/sessions`: an operator signs a tenant's
//! user out everywhere (their access tokens stop working within seconds).

use identity::Identity;
use tenancy::catalog::Catalog;

use axum::Json;
use axum::extract::State;
use tenancy::ids::UserId;
use uuid::Uuid;

use super::find_tenant;
use crate::error::{ApiResult, Problem};
use crate::extract::ApiPath;
use crate::extract::admin::Operator;

/// Revoke every session of a user.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/users/{user_id}/sessions", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug"), ("user_id" = Uuid, Path)),
    responses((status = 200, body = serde_json::Value, description = "`{\"revoked\": n}`"), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn revoke_sessions(
    _: Operator,
    State(t): State<Identity>,
    State(catalog): State<Catalog>,
    ApiPath((tenant, user)): ApiPath<(String, Uuid)>,
) -> ApiResult<Json<serde_json::Value>> {
    let tenant = find_tenant(&catalog, &tenant).await?;
    let n = t
        .auth
        .revoke_sessions(
            &t.dataplane,
            &tenant,
            UserId::from_uuid(user),
            None,
            None,
            "operator",
        )
        .await?;
    Ok(Json(serde_json::json!({ "revoked": n })))
}
