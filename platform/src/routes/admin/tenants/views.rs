//! What the tenant routes answer: a tenant as the operator API shows it, with its placement kind
//! and request rates. Also the rate type a patch carries, checked on the way in.

use serde::{Deserialize, Serialize};
use tenancy::catalog::{Placement, RateQuota, Tenant};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::routes::ts;

/// Placement of a tenant's data.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlacementKind {
    Shared,
    Dedicated,
}

/// A tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub plan: String,
    /// `provisioning`, `active`, `suspended`.
    pub status: String,
    pub placement: PlacementKind,
    pub db_server_id: Option<Uuid>,
    /// `invite_only` or `open`.
    pub signup: String,
    pub mfa_required: bool,
    /// Tenant schema version of the database holding the tenant (the shared database's for a
    /// shared tenant), as recorded by the migration runner; `null` before its first migration.
    pub schema_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The request rate in force: the override, else the plan's (`null`: the server default).
    pub rate_limit: Option<RateLimit>,
    /// The tenant's own override of its plan's rate, if any.
    pub rate_limit_override: Option<RateLimit>,
}

/// A request rate: sustained requests per second and the burst above it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

impl From<RateQuota> for RateLimit {
    fn from(q: RateQuota) -> Self {
        Self {
            requests_per_second: q.per_second,
            burst: q.burst,
        }
    }
}

impl RateLimit {
    /// Checked: each from 1 to 1,000,000.
    pub(crate) fn quota(self) -> ApiResult<RateQuota> {
        let ok = |n: u32| (1..=1_000_000).contains(&n);
        if ok(self.requests_per_second) && ok(self.burst) {
            Ok(RateQuota {
                per_second: self.requests_per_second,
                burst: self.burst,
            })
        } else {
            Err(ApiError::unprocessable(
                "`requests_per_second` and `burst` must be from 1 to 1000000",
            ))
        }
    }
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        let (placement, db_server_id) = match &t.placement {
            Placement::Shared => (PlacementKind::Shared, None),
            Placement::Dedicated { server, .. } => {
                (PlacementKind::Dedicated, Some(server.as_uuid()))
            }
        };
        Self {
            id: t.id.as_uuid(),
            slug: t.slug.to_string(),
            name: t.name.clone(),
            plan: t.plan.clone(),
            status: t.status.as_str().to_owned(),
            placement,
            db_server_id,
            signup: t.signup.as_str().to_owned(),
            mfa_required: t.mfa_required,
            schema_version: t.schema_version,
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
            rate_limit: t.rate_limit.map(RateLimit::from),
            rate_limit_override: t.rate_limit_override.map(RateLimit::from),
        }
    }
}
