//! This instance's caches of catalog data, as one narrow handle for the code that changes the
//! catalog and must not wait for the change to come back through the listener.

use crate::dataplane::DataPlane;
use crate::ids::TenantId;
use crate::resolve::Resolver;

use super::Tenancy;

/// What a catalog change drops on this instance: tenant resolution (hosts, tenants) and the
/// data plane's pools of the tenant.
#[derive(Clone)]
pub struct CatalogCaches {
    resolver: Resolver,
    dataplane: DataPlane,
}

impl CatalogCaches {
    /// Drops the entries of `tenant` (or of every tenant and server).
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.resolver.invalidate(tenant).await;
        match tenant {
            Some(t) => self.dataplane.forget_tenant(t).await,
            None => self.dataplane.forget_servers(),
        }
    }
}

impl Tenancy {
    /// The caches a catalog change drops.
    #[must_use]
    pub fn caches(&self) -> CatalogCaches {
        CatalogCaches {
            resolver: self.resolver.clone(),
            dataplane: self.dataplane.clone(),
        }
    }
}
