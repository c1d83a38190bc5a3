//! `/api/v1/roles`: built-in and custom roles (data, not code).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenancy::auth::permissions::{self, Permission};
use tenancy::bootstrap::Tenancy;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::tenant::Authenticated;

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
            permissions: r.permissions,
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

/// The tenant's roles and their permissions.
#[utoipa::path(get, path = "/api/v1/roles", tag = "members",
    responses((status = 200, body = RoleList), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(auth: Authenticated, State(t): State<Arc<Tenancy>>) -> ApiResult<Json<RoleList>> {
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
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
    auth: Authenticated,
    State(t): State<Arc<Tenancy>>,
    ApiJson(body): ApiJson<NewRole>,
) -> ApiResult<(StatusCode, Json<RoleView>)> {
    let perms = body
        .permissions
        .iter()
        .map(|p| Permission::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = t.auth.begin(&t.dataplane, &auth.tenant).await?;
    let role = permissions::create(&mut tx, &body.name, &perms).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}
