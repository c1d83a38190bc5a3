//! `/api/v1/api-keys`: tenant administrators manage their own API keys (each with a role the
//! creator may give: `identity::grants`).

use identity::Identity;
use tenancy::catalog::Catalog;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tenancy::ids::ApiKeyId;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::Authenticated;
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::api_keys::{self, CreateKeyBody, KeyList, KeyView};
use crate::routes::shared::grantor;

/// Create an API key; the response is the only time the key is shown.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateKeyBody,
    responses((status = 201, body = serde_json::Value), (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn create(
    auth: Authenticated,
    State(t): State<Identity>,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let v = api_keys::create(&t, &auth.tenant, &body, grantor(&auth)).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// The tenant's keys (never the secrets).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = KeyList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(auth: Authenticated, State(t): State<Identity>) -> ApiResult<Json<KeyList>> {
    let keys = t.api_keys.list(&t.dataplane, &auth.tenant).await?;
    Ok(Json(KeyList {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}

/// Revoke a key.
#[utoipa::path(delete, path = "/api/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = Uuid, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn revoke(
    auth: Authenticated,
    State(t): State<Identity>,
    State(catalog): State<Catalog>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    if !t
        .api_keys
        .revoke(&t.dataplane, &auth.tenant, ApiKeyId::from_uuid(id))
        .await?
    {
        return Err(ApiError::not_found("no such live key"));
    }
    catalog.publish(Some(auth.tenant.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
