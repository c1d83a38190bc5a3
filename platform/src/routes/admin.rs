//! The operator API (`/admin/v1`), behind the operator bearer token.

pub mod api_keys;
pub mod audit;
pub mod billing;
pub mod db_servers;
pub mod domains;
pub mod email;
pub mod flags;
pub mod invitations;
pub mod jobs;
pub mod jwt_keys;
pub mod placement;
pub mod plans;
pub mod sso_domains;
pub mod tenants;
pub mod users;

use tenancy::catalog::{Catalog, Tenant, TenantStatus};
use tenancy::ids::TenantId;

use crate::error::ApiError;

/// The live tenant named by a path segment: its id or its slug.
pub(crate) async fn find_tenant(catalog: &Catalog, id_or_slug: &str) -> Result<Tenant, ApiError> {
    let found = match TenantId::parse(id_or_slug) {
        Some(id) => catalog.tenant(id).await?,
        None if id_or_slug.len() <= 63 => catalog.tenant_by_slug(id_or_slug).await?,
        None => None,
    };
    found
        .filter(|t| t.status != TenantStatus::Deleted)
        .ok_or_else(|| ApiError::not_found("no such tenant"))
}
