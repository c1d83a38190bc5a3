//! How a `tenants` row (joined with its plan and the shared schema version) becomes a [`Tenant`]:
//! the selected columns and the row type every tenant query reads into. Kept apart from the
//! queries so the reads and the writes share one mapping.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Placement, RateQuota, SignupPolicy, Tenant, TenantStatus};
use crate::ids::{DbServerId, TenantId, TenantSlug};

#[derive(FromRow)]
pub(super) struct TenantRow {
    id: Uuid,
    slug: String,
    name: String,
    plan: String,
    status: String,
    placement: String,
    db_server_id: Option<Uuid>,
    db_name: Option<String>,
    epoch: i64,
    db_url_sealed: Option<Vec<u8>>,
    signup: String,
    mfa_required: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    schema_version: Option<i64>,
    rate_limit_rps: Option<i32>,
    rate_limit_burst: Option<i32>,
    plan_rps: Option<i32>,
    plan_burst: Option<i32>,
    audit_retention_days: Option<i32>,
}

fn positive(v: Option<i32>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

impl From<TenantRow> for Tenant {
    fn from(r: TenantRow) -> Self {
        let placement = match (r.placement.as_str(), r.db_server_id, r.db_name) {
            ("dedicated", Some(server), Some(database)) => Placement::Dedicated {
                server: DbServerId::from_uuid(server),
                database,
            },
            _ => Placement::Shared,
        };
        Self {
            id: TenantId::from_uuid(r.id),
            slug: TenantSlug::from_trusted(r.slug),
            name: r.name,
            plan: r.plan,
            status: TenantStatus::parse(&r.status),
            placement,
            epoch: r.epoch,
            db_url_sealed: r.db_url_sealed,
            signup: if r.signup == "open" {
                SignupPolicy::Open
            } else {
                SignupPolicy::InviteOnly
            },
            mfa_required: r.mfa_required,
            created_at: r.created_at,
            updated_at: r.updated_at,
            schema_version: r.schema_version,
            rate_limit: match (
                positive(r.rate_limit_rps.or(r.plan_rps)),
                positive(r.rate_limit_burst.or(r.plan_burst)),
            ) {
                (Some(per_second), Some(burst)) => Some(RateQuota { per_second, burst }),
                _ => None,
            },
            rate_limit_override: match (positive(r.rate_limit_rps), positive(r.rate_limit_burst)) {
                (Some(per_second), Some(burst)) => Some(RateQuota { per_second, burst }),
                _ => None,
            },
            audit_retention_days: r.audit_retention_days,
        }
    }
}

/// A shared tenant's schema version is the shared database's (one row of `shared_schema`).
pub(super) const COLUMNS: &str = "id, slug, name, plan, status, placement, db_server_id, db_name, epoch, db_url_sealed, signup, mfa_required, created_at, updated_at,
     CASE WHEN placement = 'shared' THEN (SELECT ss.schema_version FROM shared_schema ss)
          ELSE schema_version END AS schema_version,
     rate_limit_rps, rate_limit_burst,
     (SELECT p.requests_per_second FROM plans p WHERE p.name = plan) AS plan_rps,
     (SELECT p.burst FROM plans p WHERE p.name = plan) AS plan_burst,
     (SELECT p.audit_retention_days FROM plans p WHERE p.name = plan) AS audit_retention_days";
