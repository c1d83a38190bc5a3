//! `/api/v1/users`: the tenant's users; changing a user's role; signing a user out everywhere.
//! A role is given only under the grant rule (`identity::grants`).

use identity::Identity;

use axum::Json;
use axum::extract::State;
use identity::{grants, users};
use serde::{Deserialize, Serialize};
use tenancy::ids::UserId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::shared::grantor;
use crate::routes::ts;

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub created_at: String,
}

impl From<users::User> for UserView {
    fn from(u: users::User) -> Self {
        Self {
            id: u.id.as_uuid(),
            email: u.email,
            name: u.name,
            role: u.role,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            created_at: ts(u.created_at),
        }
    }
}

/// Body of `PATCH /api/v1/users/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: String,
}

/// The tenant's users, oldest first.
#[utoipa::path(get, path = "/api/v1/users", tag = "members", params(PageQuery),
    responses((status = 200, body = Paged<UserView>), (status = 403, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(
    db: TenantDb,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<UserView>>> {
    let page = q.page()?;
    let mut tx = db.begin().await?;
    let rows = users::list(&mut tx, page.after, page.limit + 1).await?;
    tx.commit().await?;
    Ok(Json(Paged::from_rows(
        rows.into_iter().map(UserView::from).collect(),
        page.limit,
        |u| u.id,
    )))
}

/// Change a user's role.
#[utoipa::path(patch, path = "/api/v1/users/{user_id}", tag = "members", request_body = UserPatch,
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn patch(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult<Json<UserView>> {
    let id = UserId::from_uuid(id);
    let grantor = grantor(&auth);
    let mut tx = db.begin().await?;
    let current = users::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    // Changing a role takes the old one away: the caller must be able to give both.
    grants::grantable_role(&mut tx, &grantor, &current.role).await?;
    let role = grants::grantable_role(&mut tx, &grantor, &body.role).await?;
    let change = users::set_role(&mut tx, id, role).await?;
    let updated = users::get(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    tx.commit().await?;
    t.auth.changed(change).await;
    Ok(Json(updated.into()))
}

/// Sign a user out of every session (an administrator's action).
#[utoipa::path(delete, path = "/api/v1/users/{user_id}/sessions", tag = "members",
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = serde_json::Value, description = "`{\"revoked\": n}`"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn revoke_sessions(
    db: TenantDb,
    auth: Authenticated,
    State(t): State<Identity>,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<serde_json::Value>> {
    let mut tx = db.begin().await?;
    let found = users::get(&mut tx, UserId::from_uuid(id)).await?;
    tx.commit().await?;
    if found.is_none() {
        return Err(ApiError::not_found("no such user"));
    }
    let n = t
        .auth
        .revoke_sessions(
            &t.dataplane,
            &auth.tenant,
            UserId::from_uuid(id),
            None,
            None,
            "admin",
        )
        .await?;
    Ok(Json(serde_json::json!({ "revoked": n })))
}
