//! The physical reference: a minimal axum server with one tokio-postgres/deadpool pool running the
//! reference domain's queries (the same SQL as `platform`'s task handlers, same JSON shapes) with
//! no tenancy, no authentication, no row-level security and no middleware. Whatever the platform
//! costs on top of this is the price of tenancy, isolation and security.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

const COLUMNS: &str = "id, project_id, title, status, created_at, updated_at";

/// The baseline's pool: `size` connections to `url`.
pub fn pool(url: &str, size: usize) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name("bench-baseline");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// The baseline's routes: the same paths as the platform's task API.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/api/v1/projects/{project_id}/tasks",
            get(list).post(create),
        )
        .route("/api/v1/projects/{project_id}/tasks/{task_id}", get(show))
        .with_state(pool)
}

/// Serves the baseline on `listen` until the process is stopped.
pub async fn serve(url: &str, size: usize, listen: &str) -> anyhow::Result<()> {
    let pool = pool(url, size)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router(pool)).await?;
    Ok(())
}

#[derive(Serialize)]
struct Task {
    id: Uuid,
    project_id: Uuid,
    title: String,
    status: String,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct Page {
    items: Vec<Task>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct NewTask {
    title: String,
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

type Failure = (StatusCode, &'static str);

fn failed(e: impl std::fmt::Display) -> Failure {
    eprintln!("baseline: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn ts(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

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

async fn exists(db: &deadpool_postgres::Object, project: Uuid) -> Result<(), Failure> {
    let st = db
        .prepare_cached("SELECT 1 FROM projects WHERE id = $1")
        .await
        .map_err(failed)?;
    db.query_opt(&st, &[&project])
        .await
        .map_err(failed)?
        .map(|_| ())
        .ok_or((StatusCode::NOT_FOUND, "no such project"))
}

async fn show(
    State(pool): State<Pool>,
    Path((project, id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Task>, Failure> {
    let db = pool.get().await.map_err(failed)?;
    let st = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND id = $2"
        ))
        .await
        .map_err(failed)?;
    let row = db
        .query_opt(&st, &[&project, &id])
        .await
        .map_err(failed)?
        .ok_or((StatusCode::NOT_FOUND, "no such task"))?;
    Ok(Json(task(&row)))
}

async fn list(
    State(pool): State<Pool>,
    Path(project): Path<Uuid>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>, Failure> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let db = pool.get().await.map_err(failed)?;
    exists(&db, project).await?;
    let st = db
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE project_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .await
        .map_err(failed)?;
    let rows = db
        .query(&st, &[&project, &None::<Uuid>, &(limit + 1)])
        .await
        .map_err(failed)?;
    let mut items: Vec<Task> = rows.iter().map(task).collect();
    let more = items.len() as i64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| {
            items
                .last()
                .map(|t| URL_SAFE_NO_PAD.encode(t.id.as_bytes()))
        })
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

async fn create(
    State(pool): State<Pool>,
    Path(project): Path<Uuid>,
    Json(body): Json<NewTask>,
) -> Result<(StatusCode, Json<Task>), Failure> {
    let title = body.title.trim().to_owned();
    if title.is_empty() {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "empty title"));
    }
    let db = pool.get().await.map_err(failed)?;
    exists(&db, project).await?;
    let st = db
        .prepare_cached(&format!(
            "INSERT INTO tasks (id, project_id, title, status) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
        ))
        .await
        .map_err(failed)?;
    let rows = db
        .query(&st, &[&Uuid::now_v7(), &project, &title, &"todo"])
        .await
        .map_err(failed)?;
    let row = rows
        .first()
        .ok_or_else(|| failed("insert returned no row"))?;
    Ok((StatusCode::CREATED, Json(task(row))))
}
