//! `/api/v1/projects/{project_id}/members`: project membership, the reference domain's
//! object-level rule. Changing or removing a member needs to be an `admin` of that project (or to
//! hold the tenant-wide `members:manage`); a project `member` cannot change anyone's role, nor
//! remove anyone. The user who creates a project becomes its admin.

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenancy::dataplane::TenantTx;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::project_exists;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, Principal, TenantDb};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::ts;

/// A project role.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    Admin,
    Member,
}

impl ProjectRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// A project member.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub role: String,
    pub created_at: String,
}

/// The members.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub items: Vec<MemberView>,
}

/// Body of `POST .../members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub user_id: Uuid,
    pub role: ProjectRole,
}

/// Body of `PATCH .../members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: ProjectRole,
}

/// Whether the caller may manage the project's members.
async fn may_manage(tx: &mut TenantTx, project: Uuid, auth: &Authenticated) -> ApiResult<()> {
    if auth.can(identity::Permission::MembersManage) {
        return Ok(());
    }
    let Principal::User { id, .. } = auth.principal else {
        return Err(ApiError::forbidden(
            "only the project's admins may manage its members",
        ));
    };
    let role: Option<String> = tx
        .query_opt(
            "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
            &[&project, &id.as_uuid()],
        )
        .await?
        .map(|r| r.get(0));
    if role.as_deref() == Some("admin") {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the project's admins may manage its members",
        ))
    }
}

fn member(r: &tokio_postgres::Row) -> MemberView {
    MemberView {
        user_id: r.get(0),
        role: r.get(1),
        created_at: ts(r.get(2)),
    }
}

/// The project's members.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/members", tag = "projects",
    params(("project_id" = Uuid, Path)),
    responses((status = 200, body = MemberList), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn list(db: TenantDb, ApiPath(project): ApiPath<Uuid>) -> ApiResult<Json<MemberList>> {
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project).await?;
    let rows = tx
        .query(
            "SELECT user_id, role, created_at FROM project_members WHERE project_id = $1 ORDER BY user_id",
            &[&project],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(MemberList {
        items: rows.iter().map(member).collect(),
    }))
}

/// Add a member (project admins only).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/members", tag = "projects", request_body = NewMember,
    params(("project_id" = Uuid, Path)),
    responses((status = 201, body = MemberView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn add(
    db: TenantDb,
    auth: Authenticated,
    ApiPath(project): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewMember>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project).await?;
    may_manage(&mut tx, project, &auth).await?;
    if tx
        .query_opt("SELECT 1 FROM users WHERE id = $1", &[&body.user_id])
        .await?
        .is_none()
    {
        return Err(ApiError::unprocessable("no such user"));
    }
    let row = tx
        .query_opt(
            "INSERT INTO project_members (tenant_id, project_id, user_id, role) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING user_id, role, created_at",
            &[&auth.tenant.id.as_uuid(), &project, &body.user_id, &body.role.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::conflict("the user is already a member"))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(member(&row))))
}

/// Change a member's project role (project admins only).
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/members/{user_id}", tag = "projects", request_body = MemberPatch,
    params(("project_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 200, body = MemberView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn patch(
    db: TenantDb,
    auth: Authenticated,
    ApiPath((project, user)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<MemberPatch>,
) -> ApiResult<Json<MemberView>> {
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project).await?;
    may_manage(&mut tx, project, &auth).await?;
    let row = tx
        .query_opt(
            "UPDATE project_members SET role = $3 WHERE project_id = $1 AND user_id = $2
             RETURNING user_id, role, created_at",
            &[&project, &user, &body.role.as_str()],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such member"))?;
    tx.commit().await?;
    Ok(Json(member(&row)))
}

/// Remove a member (project admins only).
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/members/{user_id}", tag = "projects",
    params(("project_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204, description = "Removed"), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = []), ("api_key" = [])))]
pub async fn remove(
    db: TenantDb,
    auth: Authenticated,
    ApiPath((project, user)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project).await?;
    may_manage(&mut tx, project, &auth).await?;
    let n = tx
        .execute(
            "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
            &[&project, &user],
        )
        .await?;
    tx.commit().await?;
    if n == 0 {
        return Err(ApiError::not_found("no such member"));
    }
    Ok(StatusCode::NO_CONTENT)
}
