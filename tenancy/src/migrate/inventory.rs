//! What the fleet is made of: which tenant database ([`DbKey`]) and what the catalog knows of
//! it ([`FleetDb`]). The ledger records by these; the runner (`fleet`) lists them.

use std::fmt;

use crate::ids::{DbServerId, TenantId, TenantSlug};

/// Which tenant database: the shared one, or a dedicated tenant's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DbKey {
    Shared,
    Tenant(TenantId),
}

impl fmt::Display for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => f.write_str("shared"),
            Self::Tenant(id) => id.fmt(f),
        }
    }
}

/// One tenant database of the fleet, as the catalog knows it.
#[derive(Clone, Debug)]
pub struct FleetDb {
    pub key: DbKey,
    /// The tenants it holds (one for a dedicated database; every shared tenant for the shared).
    pub slugs: Vec<TenantSlug>,
    /// The registered server's name (`shared` for the shared database if it is on none).
    pub server: String,
    pub server_id: Option<DbServerId>,
    pub db_name: String,
    /// The recorded schema version (a lower bound); `None` if never recorded.
    pub recorded: Option<i64>,
    /// `host:port`: what per-server concurrency is counted against.
    pub endpoint: String,
}
