//! Tenants in the catalog: create, read, list (cursor), patch, soft-delete, purge. The types live
//! here; the row mapping, the reads and the writes in the child modules.

mod read;
mod row;
mod write;

use time::OffsetDateTime;

use super::CatalogError;
use crate::ids::{DbServerId, TenantId, TenantSlug};

/// Lifecycle of a tenant. `deleted` tenants do not resolve; `platformctl tenants purge` removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStatus {
    Provisioning,
    Active,
    Suspended,
    Deleted,
}

impl TenantStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            _ => Self::Deleted,
        }
    }
}

/// Where a tenant's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Rows in the shared database, isolated by row-level security.
    Shared,
    /// Its own database on a registered server.
    Dedicated {
        server: DbServerId,
        database: String,
    },
}

impl Placement {
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Dedicated { .. } => "dedicated",
        }
    }
}

/// A tenant as the catalog knows it.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    pub placement: Placement,
    pub epoch: i64,
    /// A dedicated tenant's data-plane URL, sealed with its DEK (purpose [`DB_URL_PURPOSE`]).
    pub db_url_sealed: Option<Vec<u8>>,
    /// Who may create an account: only invitees (default) or anyone.
    pub signup: SignupPolicy,
    /// Every user of the tenant must use a second factor.
    pub mfa_required: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The recorded schema version of the tenant's database (the shared one's for shared
    /// tenants): a lower bound, `None` if never recorded. The server compares it with the minimum
    /// its code needs.
    pub schema_version: Option<i64>,
    /// The effective request rate: the tenant's override, else its plan's (`None`: the plan is
    /// not in `plans`, the server's default applies).
    pub rate_limit: Option<RateQuota>,
    /// The tenant's own override, if any.
    pub rate_limit_override: Option<RateQuota>,
    /// How long its audit events are kept (its plan's; `None`: kept).
    pub audit_retention_days: Option<i32>,
}

/// A tenant's sign-up policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupPolicy {
    InviteOnly,
    Open,
}

impl SignupPolicy {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InviteOnly => "invite_only",
            Self::Open => "open",
        }
    }
}

/// Sealing purpose of a dedicated tenant's data-plane URL.
pub const DB_URL_PURPOSE: &str = crate::crypto::registry::purpose::TENANT_DB_URL;

/// A tenant to insert.
#[derive(Clone, Debug)]
pub struct NewTenant {
    pub id: TenantId,
    pub slug: TenantSlug,
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    pub placement: Placement,
    pub db_url_sealed: Option<Vec<u8>>,
}

/// Fields an operator may change.
#[derive(Clone, Debug, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub plan: Option<String>,
    pub status: Option<TenantStatus>,
    pub signup: Option<SignupPolicy>,
    pub mfa_required: Option<bool>,
    /// `Some(None)` removes the tenant's rate-limit override (back to its plan's).
    pub rate_limit: Option<Option<RateQuota>>,
}

/// A request rate: sustained requests per second and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateQuota {
    pub per_second: u32,
    pub burst: u32,
}

/// Inserting a tenant failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertTenantError {
    #[error("the slug is taken")]
    SlugTaken,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}
