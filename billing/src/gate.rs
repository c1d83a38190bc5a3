//! The billing standing on the request path, cached per tenant.
//!
//! Every tenant request under a permission asks where its tenant stands (a suspended tenant's
//! reads are refused too), so the account is not read from the control plane per request: it is
//! cached here by `TenantId` (an absent account too) and compared with this instance's clock at
//! each request, so a deadline passing needs no invalidation. Any change of `billing_accounts`
//! publishes the tenant on the catalog channel (control-plane V13's trigger), which drops the
//! entry on every instance within about a second; this instance drops it at once after its own
//! changes (a paid invoice restores access on the next request). A generation counter keeps a
//! load that raced an invalidation from caching what it read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;
use tenancy::ids::TenantId;
use time::OffsetDateTime;

use crate::Billing;
use crate::account::{Account, AccountError, Entitlement, Standing};

/// A backstop only: invalidation is by notification.
const TTL: Duration = Duration::from_secs(60);

/// The cached accounts (`None`: the tenant has none, so it is in full standing).
#[derive(Clone)]
pub(crate) struct GateCache {
    accounts: Cache<TenantId, Option<Arc<Account>>>,
    generation: Arc<AtomicU64>,
}

impl GateCache {
    pub(crate) fn new() -> Self {
        Self {
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TTL)
                .support_invalidation_closures()
                .build(),
            generation: Arc::default(),
        }
    }
}

/// What a request asks of the tenant, as far as billing is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// What a customer needs to pay: the billing view, Checkout, the Billing Portal.
    Pay,
    /// Other billing actions (plan changes and their preview).
    ManageBilling,
    /// Any other read.
    Read,
    /// Any other write.
    Write,
}

impl Standing {
    /// Whether a tenant in this standing may make a request of this use: in grace everything;
    /// restricted, everything but writes (billing actions included); suspended, only what it
    /// needs to pay.
    #[must_use]
    pub fn allows(self, u: Use) -> bool {
        match self {
            Self::Full | Self::Grace => true,
            Self::Restricted => u != Use::Write,
            Self::Suspended => u == Use::Pay,
        }
    }
}

impl Billing {
    /// The tenant's entitlement now, for the request path: from the cache (this instance's
    /// clock), the control plane on a miss.
    pub async fn entitlement(&self, tenant: TenantId) -> Result<Option<Entitlement>, AccountError> {
        let account = match self.gate.accounts.get(&tenant).await {
            Some(a) => a,
            None => {
                let generation = self.gate.generation.load(Ordering::Acquire);
                let a = self.account(tenant).await?.map(Arc::new);
                if self.gate.generation.load(Ordering::Acquire) == generation {
                    self.gate.accounts.insert(tenant, a.clone()).await;
                }
                a
            }
        };
        Ok(account.map(|a| a.entitlement(OffsetDateTime::now_utc())))
    }

    /// Drops the cached standing of `tenant` (or of every tenant, and the plans' quotas) after a
    /// change.
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        self.gate.generation.fetch_add(1, Ordering::AcqRel);
        match tenant {
            Some(t) => {
                // Only fails without invalidation closures, which the cache is built with.
                let _ = self
                    .gate
                    .accounts
                    .invalidate_entries_if(move |k, _| *k == t);
            }
            None => {
                self.gate.accounts.invalidate_all();
                // A plan may have changed (the plans' trigger notifies every tenant).
                self.quotas.invalidate_plans();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspension_leaves_only_paying_and_restriction_only_refuses_writes() {
        use Use::*;
        for u in [Pay, ManageBilling, Read, Write] {
            assert!(Standing::Full.allows(u) && Standing::Grace.allows(u));
        }
        assert!(Standing::Restricted.allows(Read) && Standing::Restricted.allows(ManageBilling));
        assert!(!Standing::Restricted.allows(Write));
        assert!(Standing::Suspended.allows(Pay));
        for u in [ManageBilling, Read, Write] {
            assert!(!Standing::Suspended.allows(u), "{u:?}");
        }
    }
}
