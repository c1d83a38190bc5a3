//! `/admin/v1/tenants`: provision, list, show, patch, delete. The handlers live here; creation's
//! body, checks and idempotent replay in `create`, the views in `views`.

mod create;
pub mod views;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy::bootstrap::CatalogCaches;
use tenancy::catalog::{
    Catalog, IdempotencyOutcome, SignupPolicy, StoredResponse, TenantPatch, TenantStatus,
};
use tenancy::provision::Provisioner;
use utoipa::ToSchema;

use super::find_tenant;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::text;
use create::{CreateTenantBody, IDEMPOTENCY_HEADER, create_tenant, stored};
use views::{RateLimit, TenantView};

fn plan(p: Option<&str>) -> ApiResult<String> {
    let p = p.unwrap_or("free");
    if p.is_empty()
        || p.len() > 64
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ApiError::unprocessable(
            "`plan` must be 1 to 64 characters of a-z, 0-9, `-`, `_`",
        ));
    }
    Ok(p.to_owned())
}

/// Provision a tenant. A dedicated tenant's database is created and migrated before it is
/// returned as `active`. With `Idempotency-Key`, a retry returns the first response.
#[utoipa::path(post, path = "/admin/v1/tenants", tag = "admin", request_body = CreateTenantBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 409, description = "Slug taken", body = Problem),
        (status = 422, description = "Invalid", body = Problem),
    ),
    security(("operator" = [])))]
pub async fn create(
    _: Operator,
    State(catalog): State<Catalog>,
    State(provisioner): State<Provisioner>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTenantBody>,
) -> ApiResult<Response> {
    let Some(key) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(match create_tenant(&provisioner, &body).await {
            Ok(t) => (StatusCode::CREATED, Json(TenantView::from(&t))).into_response(),
            Err(e) => e.into_response(),
        });
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("`Idempotency-Key` must be 1 to 255 visible ASCII characters")
        })?;
    let scope = "admin:create-tenant";
    let hash = Sha256::digest(serde_json::to_vec(&body).map_err(ApiError::internal)?);
    match catalog.begin_idempotent(scope, key, &hash).await? {
        IdempotencyOutcome::Replay(r) => Ok(stored(r)),
        IdempotencyOutcome::Mismatch => Err(ApiError::idempotency_mismatch()),
        IdempotencyOutcome::InFlight => Err(ApiError::idempotency_in_flight()),
        IdempotencyOutcome::Proceed => {
            let outcome = create_tenant(&provisioner, &body).await;
            let record = match &outcome {
                Ok(t) => Some(StoredResponse {
                    status: 201,
                    body: serde_json::to_value(TenantView::from(t)).map_err(ApiError::internal)?,
                }),
                Err(e) if e.status().is_client_error() => Some(StoredResponse {
                    status: e.status().as_u16(),
                    body: e.body(),
                }),
                Err(_) => None,
            };
            match record {
                Some(r) => catalog.finish_idempotent(scope, key, &r).await?,
                None => catalog.abandon_idempotent(scope, key).await?,
            }
            Ok(match outcome {
                Ok(t) => (StatusCode::CREATED, Json(TenantView::from(&t))).into_response(),
                Err(e) => e.into_response(),
            })
        }
    }
}

/// List tenants (not deleted), by id, with cursor pagination.
#[utoipa::path(get, path = "/admin/v1/tenants", tag = "admin", params(PageQuery),
    responses((status = 200, body = Paged<TenantView>), (status = 400, body = Problem)),
    security(("operator" = [])))]
pub async fn list(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<TenantView>>> {
    let page = q.page()?;
    let rows = catalog
        .list_tenants(
            page.after.map(tenancy::ids::TenantId::from_uuid),
            page.limit + 1,
        )
        .await?;
    let views = rows.iter().map(TenantView::from).collect();
    Ok(Json(Paged::from_rows(
        views,
        page.limit,
        |t: &TenantView| t.id,
    )))
}

/// Show a tenant by id or slug.
#[utoipa::path(get, path = "/admin/v1/tenants/{tenant}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 200, body = TenantView), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn show(
    _: Operator,
    State(catalog): State<Catalog>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<TenantView>> {
    Ok(Json(TenantView::from(
        &find_tenant(&catalog, &tenant).await?,
    )))
}

/// Status an operator may set.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SettableStatus {
    Active,
    Suspended,
}

/// Body of `PATCH /admin/v1/tenants/{tenant}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantBody {
    pub name: Option<String>,
    pub plan: Option<String>,
    pub status: Option<SettableStatus>,
    /// Who may sign up: `invite_only` or `open`.
    pub signup: Option<SignupSetting>,
    /// Require a second factor from every user of the tenant.
    pub mfa_required: Option<bool>,
    /// Override the plan's request rate; `null` goes back to the plan's. Applies within seconds.
    #[serde(default, deserialize_with = "crate::routes::double_option")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
}

/// A tenant's sign-up policy.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignupSetting {
    InviteOnly,
    Open,
}

/// Rename, change plan, suspend or reactivate a tenant. Suspension applies on every instance
/// within about a second.
#[utoipa::path(patch, path = "/admin/v1/tenants/{tenant}", tag = "admin", request_body = PatchTenantBody,
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 200, body = TenantView), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn patch(
    _: Operator,
    State(catalog): State<Catalog>,
    State(caches): State<CatalogCaches>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<PatchTenantBody>,
) -> ApiResult<Json<TenantView>> {
    let t = find_tenant(&catalog, &tenant).await?;
    let patch = TenantPatch {
        name: body
            .name
            .as_deref()
            .map(|n| text("name", n, 200))
            .transpose()?,
        plan: body.plan.as_deref().map(|p| plan(Some(p))).transpose()?,
        status: body.status.map(|s| match s {
            SettableStatus::Active => TenantStatus::Active,
            SettableStatus::Suspended => TenantStatus::Suspended,
        }),
        signup: body.signup.map(|s| match s {
            SignupSetting::InviteOnly => SignupPolicy::InviteOnly,
            SignupSetting::Open => SignupPolicy::Open,
        }),
        mfa_required: body.mfa_required,
        rate_limit: body
            .rate_limit
            .map(|r| r.map(RateLimit::quota).transpose())
            .transpose()?,
    };
    let updated = catalog
        .patch_tenant(t.id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    caches.invalidate(Some(t.id)).await;
    Ok(Json(TenantView::from(&updated)))
}

/// Delete a tenant: it stops resolving at once; `platformctl tenants purge` removes its data.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn delete(
    _: Operator,
    State(catalog): State<Catalog>,
    State(caches): State<CatalogCaches>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let t = find_tenant(&catalog, &tenant).await?;
    if !catalog.delete_tenant(t.id).await? {
        return Err(ApiError::not_found("no such tenant"));
    }
    caches.invalidate(Some(t.id)).await;
    Ok(StatusCode::NO_CONTENT)
}
