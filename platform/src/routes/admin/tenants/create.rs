//! Creating a tenant: the request body, its checks, the call to the provisioner (then seeding the
//! built-in roles), how a provisioning failure maps to a problem, and how a stored answer is
//! replayed for a retried `Idempotency-Key`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenancy::catalog::{StoredResponse, Tenant};
use tenancy::ids::{SlugError, TenantSlug};
use tenancy::provision::{CreateTenant, PlacementRequest, ProvisionError, Provisioner};
use tenancy::servers::ServerError;
use utoipa::ToSchema;

use super::plan;
use super::views::PlacementKind;
use crate::error::{ApiError, ApiResult};
use crate::routes::text;

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

pub(super) const IDEMPOTENCY_HEADER: &str = "idempotency-key";

pub(super) fn stored(r: StoredResponse) -> Response {
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

pub(super) async fn create_tenant(
    provisioner: &Provisioner,
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
    Ok(t)
}
