//! Tenant resolution from a host name, cached (moka, with negative entries) and invalidated by
//! catalog notifications. Every cache key that concerns a tenant contains its [`TenantId`].

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::catalog::{Catalog, CatalogError, Tenant};
use crate::ids::{DomainName, TenantId};

/// Upper bound on how stale an entry can be if a notification were ever lost.
const TTL: Duration = Duration::from_secs(60);

/// What a `Host` says about the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostTenant {
    /// The host does not name a tenant (the base domain, an IP, an unregistered domain).
    None,
    /// The host is `{label}.{base}` but no live tenant has that slug.
    Unknown,
    /// The host names this tenant (subdomain or custom domain).
    Tenant(TenantId),
}

/// Cached host and tenant lookups.
#[derive(Clone)]
pub struct Resolver {
    catalog: Catalog,
    base: DomainName,
    hosts: Cache<DomainName, HostTenant>,
    tenants: Cache<TenantId, Option<Arc<Tenant>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    #[must_use]
    pub fn new(catalog: Catalog, base: DomainName) -> Self {
        Self {
            catalog,
            base,
            hosts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
            tenants: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// The platform's base domain.
    #[must_use]
    pub fn base_domain(&self) -> &DomainName {
        &self.base
    }

    /// Which tenant, if any, a host names.
    pub async fn host(&self, host: &DomainName) -> Result<HostTenant, Arc<CatalogError>> {
        let catalog = self.catalog.clone();
        let base = self.base.clone();
        let key = host.clone();
        self.hosts
            .try_get_with(host.clone(), async move {
                if let Some(label) = key.subdomain_of(&base) {
                    return Ok(catalog
                        .live_tenant_id_by_slug(label)
                        .await?
                        .map_or(HostTenant::Unknown, HostTenant::Tenant));
                }
                if key == base {
                    return Ok(HostTenant::None);
                }
                Ok(catalog
                    .tenant_id_by_domain(&key)
                    .await?
                    .map_or(HostTenant::None, HostTenant::Tenant))
            })
            .await
    }

    /// The tenant record (any status), cached.
    pub async fn tenant(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Arc<CatalogError>> {
        let catalog = self.catalog.clone();
        self.tenants
            .try_get_with(
                id,
                async move { Ok(catalog.tenant(id).await?.map(Arc::new)) },
            )
            .await
    }

    /// Drops what is cached about `tenant` (or everything). Host entries are all dropped: a new
    /// tenant or domain can turn a cached negative entry stale, and catalog changes are rare.
    pub async fn invalidate(&self, tenant: Option<TenantId>) {
        self.hosts.invalidate_all();
        match tenant {
            Some(id) => self.tenants.invalidate(&id).await,
            None => self.tenants.invalidate_all(),
        }
    }
}
