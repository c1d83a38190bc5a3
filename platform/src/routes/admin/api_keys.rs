//! `/admin/v1/tenants/{tenant}/api-keys`: tenant API keys, shown once, stored hashed in the
//! tenant's database, revoked at once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::{Grantor, Identity};
use tenancy::catalog::Catalog;
use tenancy::ids::ApiKeyId;
use uuid::Uuid;

use super::find_tenant;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::api_keys::{self, CreateKeyBody, KeyList, KeyView};

/// Create a tenant API key; the response is the only time the key is shown.
#[utoipa::path(post, path = "/admin/v1/tenants/{tenant}/api-keys", tag = "admin", request_body = CreateKeyBody,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 201, body = serde_json::Value), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn create(
    _: Operator,
    State(catalog): State<Catalog>,
    State(id): State<Identity>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let t = find_tenant(&catalog, &tenant).await?;
    let v = api_keys::create(&id, &t, &body, Grantor::Operator).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// The tenant's keys (never the secrets).
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}/api-keys", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 200, body = KeyList), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    State(id): State<Identity>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<KeyList>> {
    let t = find_tenant(&catalog, &tenant).await?;
    let keys = id.api_keys.list(&id.dataplane, &t).await?;
    Ok(Json(KeyList {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke a key: refused at once on this instance, within about a second on every other.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}/api-keys/{key_id}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug"), ("key_id" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn revoke(
    _: Operator,
    State(catalog): State<Catalog>,
    State(id): State<Identity>,
    ApiPath((tenant, key_id)): ApiPath<(String, Uuid)>,
) -> ApiResult<StatusCode> {
    let t = find_tenant(&catalog, &tenant).await?;
    if !id
        .api_keys
        .revoke(&id.dataplane, &t, ApiKeyId::from_uuid(key_id))
        .await?
    {
        return Err(ApiError::not_found("no such live key"));
    }
    catalog.publish(Some(t.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
