//! `/admin/v1/db-servers`: database servers for dedicated tenant databases. The URL is checked,
//! stored sealed, and never shown or logged.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenancy::catalog::{Catalog, DbServer, RegisterServerError};
use tenancy::provision::Provisioner;
use tenancy::servers::RegisterError;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::extract::admin::Operator;
use crate::routes::ts;

/// Body of `POST /admin/v1/db-servers`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// `a-z0-9-`, 1 to 63 characters.
    pub name: String,
    /// `postgres://user:password@host:port/maintenance_db` of a role that can create databases and roles.
    pub url: String,
    /// Most connections the platform keeps to this server for dedicated tenants (default 40).
    #[serde(default)]
    pub connection_budget: Option<u32>,
}

impl std::fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBody")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A database server (no credentials).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerView {
    pub id: Uuid,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub connection_budget: u32,
    pub created_at: String,
}

impl From<&DbServer> for ServerView {
    fn from(s: &DbServer) -> Self {
        Self {
            id: s.id.as_uuid(),
            name: s.name.clone(),
            host: s.host.clone(),
            port: s.port,
            connection_budget: s.connection_budget,
            created_at: ts(s.created_at),
        }
    }
}

/// Servers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    pub items: Vec<ServerView>,
}

/// Register a database server.
#[utoipa::path(post, path = "/admin/v1/db-servers", tag = "admin", request_body = RegisterBody,
    responses((status = 201, body = ServerView), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("operator" = [])))]
pub async fn register(
    _: Operator,
    State(provisioner): State<Provisioner>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> ApiResult<(StatusCode, Json<ServerView>)> {
    let name_ok = !body.name.is_empty()
        && body.name.len() <= 63
        && body
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(ApiError::unprocessable(
            "`name` must be 1 to 63 characters of a-z, 0-9 and `-`",
        ));
    }
    let budget = body.connection_budget.unwrap_or(40);
    if !(1..=10_000).contains(&budget) {
        return Err(ApiError::unprocessable(
            "`connection_budget` must be from 1 to 10000",
        ));
    }
    if body.url.len() > 2048
        || !(body.url.starts_with("postgres://") || body.url.starts_with("postgresql://"))
    {
        return Err(ApiError::unprocessable("`url` must be a postgres:// URL"));
    }
    let server = provisioner
        .register_server(&body.name, &body.url, budget, false)
        .await
        .map_err(|e| match e {
            RegisterError::BadUrl => ApiError::unprocessable("`url` is not a valid PostgreSQL URL"),
            RegisterError::Unreachable(_) => {
                ApiError::unprocessable("the server cannot be reached or refused the credentials")
            }
            RegisterError::NotPrivileged(_) => ApiError::unprocessable(
                "the credentials cannot create the data-plane role (CREATEROLE is needed)",
            ),
            RegisterError::Register(RegisterServerError::NameTaken) => {
                ApiError::conflict("a server with this name is already registered")
            }
            RegisterError::Register(RegisterServerError::Catalog(c)) => c.into(),
            RegisterError::Key(k) => ApiError::internal(k),
        })?;
    Ok((StatusCode::CREATED, Json(ServerView::from(&server))))
}

/// Registered servers (never their credentials).
#[utoipa::path(get, path = "/admin/v1/db-servers", tag = "admin",
    responses((status = 200, body = ServerList)), security(("operator" = [])))]
pub async fn list(_: Operator, State(catalog): State<Catalog>) -> ApiResult<Json<ServerList>> {
    let servers = catalog.db_servers().await?;
    Ok(Json(ServerList {
        items: servers.iter().map(ServerView::from).collect(),
    }))
}
