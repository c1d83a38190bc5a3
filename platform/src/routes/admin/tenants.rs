//! `/admin/v1/tenants`: provision, list, show, patch, delete.

use identity::Identity;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tenancy::bootstrap::Tenancy;
use tenancy::catalog::{
    Catalog, IdempotencyOutcome, Placement, RateQuota, SignupPolicy, StoredResponse, Tenant,
    TenantPatch, TenantStatus,
};
use tenancy::ids::{SlugError, TenantSlug};
use tenancy::provision::{CreateTenant, PlacementRequest, ProvisionError, Provisioner};
use tenancy::servers::ServerError;
use utoipa::ToSchema;
use uuid::Uuid;

use super::find_tenant;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::admin::Operator;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::{text, ts};

/// Placement of a tenant's data.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlacementKind {
    Shared,
    Dedicated,
}

/// Body of `POST /admin/v1/tenants`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    /// DNS label: `a-z0-9-`, 3 to 63 characters, no leading or trailing hyphen, not reserved.
    pub slug: String,
    pub name: String,
    /// Plan name (default `free`).
    #[serde(default)]
    pub plan: Option<String>,
    /// `shared` (default) or `dedicated`.
    #[serde(default)]
    pub placement: Option<PlacementKind>,
    /// For a dedicated tenant: the registered database server (default: the configured one).
    #[serde(default)]
    pub db_server: Option<String>,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub plan: String,
    /// `provisioning`, `active`, `suspended`.
    pub status: String,
    pub placement: PlacementKind,
    pub db_server_id: Option<Uuid>,
    /// `invite_only` or `open`.
    pub signup: String,
    pub mfa_required: bool,
    /// Tenant schema version of the database holding the tenant (the shared database's for a
    /// shared tenant), as recorded by the migration runner; `null` before its first migration.
    pub schema_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The request rate in force: the override, else the plan's (`null`: the server default).
    pub rate_limit: Option<RateLimit>,
    /// The tenant's own override of its plan's rate, if any.
    pub rate_limit_override: Option<RateLimit>,
}

/// A request rate: sustained requests per second and the burst above it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

impl From<RateQuota> for RateLimit {
    fn from(q: RateQuota) -> Self {
        Self {
            requests_per_second: q.per_second,
            burst: q.burst,
        }
    }
}

impl RateLimit {
    /// Checked: each from 1 to 1,000,000.
    pub(crate) fn quota(self) -> ApiResult<RateQuota> {
        let ok = |n: u32| (1..=1_000_000).contains(&n);
        if ok(self.requests_per_second) && ok(self.burst) {
            Ok(RateQuota {
                per_second: self.requests_per_second,
                burst: self.burst,
            })
        } else {
            Err(ApiError::unprocessable(
                "`requests_per_second` and `burst` must be from 1 to 1000000",
            ))
        }
    }
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        let (placement, db_server_id) = match &t.placement {
            Placement::Shared => (PlacementKind::Shared, None),
            Placement::Dedicated { server, .. } => {
                (PlacementKind::Dedicated, Some(server.as_uuid()))
            }
        };
        Self {
            id: t.id.as_uuid(),
            slug: t.slug.to_string(),
            name: t.name.clone(),
            plan: t.plan.clone(),
            status: t.status.as_str().to_owned(),
            placement,
            db_server_id,
            signup: t.signup.as_str().to_owned(),
            mfa_required: t.mfa_required,
            schema_version: t.schema_version,
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
            rate_limit: t.rate_limit.map(RateLimit::from),
            rate_limit_override: t.rate_limit_override.map(RateLimit::from),
        }
    }
}

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

fn slug_error(e: &SlugError) -> ApiError {
    ApiError::unprocessable(format!("`slug` is invalid: {e}"))
}

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::SlugTaken => Self::conflict("a tenant with this slug already exists"),
            ProvisionError::UnknownServer(name) => {
                Self::unprocessable(format!("no database server named `{name}` is registered"))
            }
            ProvisionError::Server(ServerError::Catalog(c)) | ProvisionError::Catalog(c) => {
                c.into()
            }
            ProvisionError::Server(ServerError::Key(k)) | ProvisionError::Key(k) => {
                Self::internal(k)
            }
            ProvisionError::Server(_) => {
                Self::unavailable("the database server is unavailable; nothing was created", e)
            }
        }
    }
}

const IDEMPOTENCY_HEADER: &str = "idempotency-key";

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
    State(id): State<Identity>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateTenantBody>,
) -> ApiResult<Response> {
    let Some(key) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(match create_tenant(&provisioner, &id, &body).await {
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
            let outcome = create_tenant(&provisioner, &id, &body).await;
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

fn stored(r: StoredResponse) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let mut resp = (status, Json(r.body)).into_response();
    if status.is_client_error() {
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
    }
    resp
}

async fn create_tenant(
    provisioner: &Provisioner,
    id: &Identity,
    body: &CreateTenantBody,
) -> ApiResult<Tenant> {
    let slug = TenantSlug::parse(&body.slug).map_err(|e| slug_error(&e))?;
    let name = text("name", &body.name, 200)?;
    let plan = plan(body.plan.as_deref())?;
    let placement = match (
        body.placement.unwrap_or(PlacementKind::Shared),
        &body.db_server,
    ) {
        (PlacementKind::Shared, None) => PlacementRequest::Shared,
        (PlacementKind::Shared, Some(_)) => {
            return Err(ApiError::unprocessable(
                "`db_server` applies only to `\"placement\": \"dedicated\"`",
            ));
        }
        (PlacementKind::Dedicated, server) => PlacementRequest::Dedicated {
            server: server.clone(),
        },
    };
    let t = provisioner
        .create_tenant(CreateTenant {
            slug,
            name,
            plan,
            placement,
        })
        .await?;
    // Built-in roles now; should this fail, they are seeded on the tenant's first use.
    if let Err(e) = id.auth.seed(&id.dataplane, &t).await {
        tracing::warn!(tenant.id = %t.id, error = %e, "seeding built-in roles failed; will retry lazily");
    }
    Ok(t)
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
    State(tenancy): State<Arc<Tenancy>>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<PatchTenantBody>,
) -> ApiResult<Json<TenantView>> {
    let t = find_tenant(&tenancy.catalog, &tenant).await?;
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
    let updated = tenancy
        .catalog
        .patch_tenant(t.id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    tenancy.invalidate(Some(t.id)).await;
    Ok(Json(TenantView::from(&updated)))
}

/// Delete a tenant: it stops resolving at once; `platformctl tenants purge` removes its data.
#[utoipa::path(delete, path = "/admin/v1/tenants/{tenant}", tag = "admin",
    params(("tenant" = String, Path, description = "Tenant id or slug")),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("operator" = [])))]
pub async fn delete(
    _: Operator,
    State(tenancy): State<Arc<Tenancy>>,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let t = find_tenant(&tenancy.catalog, &tenant).await?;
    if !tenancy.catalog.delete_tenant(t.id).await? {
        return Err(ApiError::not_found("no such tenant"));
    }
    tenancy.invalidate(Some(t.id)).await;
    Ok(StatusCode::NO_CONTENT)
}
