//! `/api/v1/projects`: the reference domain's projects (trivial CRUD, tenant-scoped by RLS).

use axum::Json;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::{Authenticated, TenantDb};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::double_option;
use crate::routes::{text, ts};

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, name, description, created_at, updated_at";

fn project(r: &Row) -> Project {
    Project {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        created_at: ts(r.get(3)),
        updated_at: ts(r.get(4)),
    }
}

/// Body of `POST /api/v1/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Body of `PATCH /api/v1/projects/{project_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

fn description(d: Option<&str>) -> ApiResult<Option<String>> {
    match d {
        None => Ok(None),
        Some(d) if d.chars().count() > 10_000 => Err(ApiError::unprocessable(
            "`description` must be at most 10000 characters",
        )),
        Some(d) => Ok(Some(d.to_owned())),
    }
}

/// Create a project.
#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = NewProject,
    responses((status = 201, body = Project), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    db: TenantDb,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewProject>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let name = text("name", &body.name, 200)?;
    let description = description(body.description.as_deref())?;
    let tenant = db.tenant_id().as_uuid();
    let mut tx = db.begin().await?;
    let rows = tx
        .query(
            &format!("INSERT INTO projects (tenant_id, id, name, description) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"),
            &[&tenant, &Uuid::now_v7(), &name, &description],
        )
        .await?;
    if let Some(row) = rows.first() {
        super::store::add_creator(&mut tx, row.get(0), &auth).await?;
    }
    tx.commit().await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal("insert returned no row"))?;
    Ok((StatusCode::CREATED, Json(project(row))))
}

/// List projects, oldest first.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(PageQuery),
    responses((status = 200, body = Paged<Project>), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    db: TenantDb,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<Project>>> {
    let page = q.page()?;
    let rows = db
        .begin()
        .await?
        .query_and_commit(
            &format!("SELECT {COLUMNS} FROM projects WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"),
            &[&page.after, &(page.limit + 1)],
        )
        .await?;
    Ok(Json(Paged::from_rows(
        rows.iter().map(project).collect(),
        page.limit,
        |p| p.id,
    )))
}

/// Show a project.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}", tag = "projects",
    params(("project_id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn show(db: TenantDb, ApiPath(id): ApiPath<Uuid>) -> ApiResult<Json<Project>> {
    let row = db
        .begin()
        .await?
        .query_opt_and_commit(
            &format!("SELECT {COLUMNS} FROM projects WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(Json(project(
        &row.ok_or_else(|| ApiError::not_found("no such project"))?,
    )))
}

/// Change a project.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}", tag = "projects", request_body = ProjectPatch,
    params(("project_id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn patch(
    db: TenantDb,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ProjectPatch>,
) -> ApiResult<Json<Project>> {
    let name = body
        .name
        .as_deref()
        .map(|n| text("name", n, 200))
        .transpose()?;
    let (set_description, description) = match &body.description {
        None => (false, None),
        Some(d) => (true, description(d.as_deref())?),
    };
    let row = db
        .begin()
        .await?
        .query_opt_and_commit(
            &format!(
                "UPDATE projects SET name = COALESCE($2, name),
                        description = CASE WHEN $3 THEN $4 ELSE description END, updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &name, &set_description, &description],
        )
        .await?;
    Ok(Json(project(
        &row.ok_or_else(|| ApiError::not_found("no such project"))?,
    )))
}

/// Delete a project and its tasks.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}", tag = "projects",
    params(("project_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete(db: TenantDb, ApiPath(id): ApiPath<Uuid>) -> ApiResult<StatusCode> {
    let n = db
        .begin()
        .await?
        .execute_and_commit("DELETE FROM projects WHERE id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("no such project"));
    }
    Ok(StatusCode::NO_CONTENT)
}
