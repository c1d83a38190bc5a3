//! `/api/v1/roles`: built-in and custom roles (data, not code).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::permissions::{self, Permission};
use identity::{Auth, grants};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use tenancy::ids::RoleId;

use crate::error::{ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::shared::grantor;

/// A role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleView {
    pub id: Uuid,
    pub name: String,
    pub builtin: bool,
    pub permissions: Vec<String>,
}

impl From<permissions::Role> for RoleView {
    fn from(r: permissions::Role) -> Self {
        Self {
            id: r.id.as_uuid(),
            name: r.name,
            builtin: r.builtin,
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        }
    }
}

/// The roles.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleList {
    pub items: Vec<RoleView>,
}

/// Body of `POST /api/v1/roles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    pub name: String,
    pub permissions: Vec<String>,
}

/// Body of `PATCH /api/v1/roles/{role_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolePatch {
    /// The role's new permission set (replaces the old one).
    pub permissions: Vec<String>,
}

fn parse_permissions(names: &[String]) -> ApiResult<Vec<Permission>> {
    Ok(names
        .iter()
        .map(|p| Permission::parse(p))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The tenant's roles and their permissions.
#[utoipa::path(get, path = "/api/v1/roles", tag = "members",
    responses((status = 200, body = RoleList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(db: TenantDb) -> ApiResult<Json<RoleList>> {
    let mut tx = db.begin().await?;
    let roles = permissions::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(RoleList {
        items: roles.into_iter().map(RoleView::from).collect(),
    }))
}

/// Create a custom role.
#[utoipa::path(post, path = "/api/v1/roles", tag = "members", request_body = NewRole,
    responses((status = 201, body = RoleView), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn create(
    db: TenantDb,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewRole>,
) -> ApiResult<(StatusCode, Json<RoleView>)> {
    let perms = parse_permissions(&body.permissions)?;
    grantor(&auth).check_permissions(&perms)?;
    let mut tx = db.begin().await?;
    let role = permissions::create(&mut tx, &body.name, &perms).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// Replace a custom role's permissions (its holders have the new set on every instance at once).
#[utoipa::path(patch, path = "/api/v1/roles/{role_id}", tag = "members", request_body = RolePatch,
    params(("role_id" = Uuid, Path)),
    responses((status = 200, body = RoleView), (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn update(
    db: TenantDb,
    auth: Authenticated,
    State(checks): State<Auth>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<RolePatch>,
) -> ApiResult<Json<RoleView>> {
    let perms = parse_permissions(&body.permissions)?;
    let id = RoleId::from_uuid(id);
    let mut tx = db.begin().await?;
    grants::check_role_change(&mut tx, &grantor(&auth), id, &perms).await?;
    let (role, change) = permissions::set_permissions(&mut tx, id, &perms).await?;
    tx.commit().await?;
    checks.changed(change).await;
    Ok(Json(role.into()))
}

/// Delete a custom role nothing refers to any more.
#[utoipa::path(delete, path = "/api/v1/roles/{role_id}", tag = "members",
    params(("role_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn delete(
    db: TenantDb,
    State(checks): State<Auth>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    let change = permissions::delete(&mut tx, RoleId::from_uuid(id)).await?;
    tx.commit().await?;
    checks.changed(change).await;
    Ok(StatusCode::NO_CONTENT)
}
