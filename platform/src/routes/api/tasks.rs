//! `/api/v1/projects/{project_id}/tasks`: the reference domain's tasks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::project_exists;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::tenant::TenantDb;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{PageQuery, Paged};
use crate::routes::{text, ts};

/// Where a task stands.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Todo,
    Doing,
    Done,
}

impl TaskStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Todo => "todo",
            Self::Doing => "doing",
            Self::Done => "done",
        }
    }
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub project_id: Uuid,
    pub title: String,
    /// `todo`, `doing` or `done`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, project_id, title, status, created_at, updated_at";

fn task(r: &Row) -> Task {
    Task {
        id: r.get(0),
        project_id: r.get(1),
        title: r.get(2),
        status: r.get(3),
        created_at: ts(r.get(4)),
        updated_at: ts(r.get(5)),
    }
}

/// Body of `POST .../tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub title: String,
    /// Default `todo`.
    #[serde(default)]
    pub status: Option<TaskStatus>,
}

/// Body of `PATCH .../tasks/{task_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub status: Option<TaskStatus>,
}

/// Create a task in a project (within the plan's monthly quota: beyond it, 429 `quota-exceeded`).
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/tasks", tag = "tasks", request_body = NewTask,
    params(("project_id" = Uuid, Path)),
    responses((status = 201, body = Task), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)),
    security(("api_key" = [])))]
pub async fn create(
    db: TenantDb,
    State(billing): State<Arc<Billing>>,
    ApiPath(project_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewTask>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    let title = text("title", &body.title, 500)?;
    let status = body.status.unwrap_or(TaskStatus::Todo).as_str();
    let tenant = db.tenant_id().as_uuid();
    // The usage quota: the plan's (cached) read before the transaction, checked in it.
    let quota = billing.task_quota(db.tenant_id()).await?;
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project_id).await?;
    billing.admit_task(&mut tx, &quota).await?;
    let rows = tx
        .query_and_commit(
            &format!(
                "INSERT INTO tasks (tenant_id, id, project_id, title, status) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[&tenant, &Uuid::now_v7(), &project_id, &title, &status],
        )
        .await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal("insert returned no row"))?;
    Ok((StatusCode::CREATED, Json(task(row))))
}

/// List a project's tasks, oldest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/tasks", tag = "tasks",
    params(("project_id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Paged<Task>), (status = 400, body = Problem), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn list(
    db: TenantDb,
    ApiPath(project_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<Paged<Task>>> {
    let page = q.page()?;
    let mut tx = db.begin().await?;
    project_exists(&mut tx, project_id).await?;
    let rows = tx
        .query_and_commit(
            &format!(
                "SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
            ),
            &[&project_id, &page.after, &(page.limit + 1)],
        )
        .await?;
    Ok(Json(Paged::from_rows(
        rows.iter().map(task).collect(),
        page.limit,
        |t| t.id,
    )))
}

/// Show a task.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/tasks/{task_id}", tag = "tasks",
    params(("project_id" = Uuid, Path), ("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn show(
    db: TenantDb,
    ApiPath((project_id, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Task>> {
    let row = db
        .begin()
        .await?
        .query_opt_and_commit(
            &format!("SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND id = $2"),
            &[&project_id, &id],
        )
        .await?;
    Ok(Json(task(
        &row.ok_or_else(|| ApiError::not_found("no such task"))?,
    )))
}

/// Change a task.
#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/tasks/{task_id}", tag = "tasks", request_body = TaskPatch,
    params(("project_id" = Uuid, Path), ("task_id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = Problem), (status = 422, body = Problem)),
    security(("api_key" = [])))]
pub async fn patch(
    db: TenantDb,
    ApiPath((project_id, id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<TaskPatch>,
) -> ApiResult<Json<Task>> {
    let title = body
        .title
        .as_deref()
        .map(|t| text("title", t, 500))
        .transpose()?;
    let status = body.status.map(TaskStatus::as_str);
    let row = db
        .begin()
        .await?
        .query_opt_and_commit(
            &format!(
                "UPDATE tasks SET title = COALESCE($3, title), status = COALESCE($4, status), updated_at = now()
                 WHERE project_id = $1 AND id = $2 RETURNING {COLUMNS}"
            ),
            &[&project_id, &id, &title, &status],
        )
        .await?;
    Ok(Json(task(
        &row.ok_or_else(|| ApiError::not_found("no such task"))?,
    )))
}

/// Delete a task.
#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/tasks/{task_id}", tag = "tasks",
    params(("project_id" = Uuid, Path), ("task_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = Problem)),
    security(("api_key" = [])))]
pub async fn delete(
    db: TenantDb,
    ApiPath((project_id, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let n = db
        .begin()
        .await?
        .execute_and_commit(
            "DELETE FROM tasks WHERE project_id = $1 AND id = $2",
            &[&project_id, &id],
        )
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("no such task"));
    }
    Ok(StatusCode::NO_CONTENT)
}
