//! One rule for everything the auth caches hold (a session's liveness, its user's role and MFA
//! state, a role's permissions): every change to it goes through [`Auth::changed`] after its
//! commit. That drops this instance's entries of the tenant and publishes the tenant on
//! [`CHANNEL`] (a `NOTIFY` on the control plane); every instance's notification listener hands
//! the tenant to [`Auth::invalidate`], so a revocation or a permission taken away applies
//! everywhere within the notification's delivery, not after the cache's TTL, which is only the
//! safety net for a publish that failed (see [`crate::SESSION_CHECK_TTL`]).
//!
//! Dropping is by stamp, not by scanning the cache: each entry remembers the clock reading taken
//! before its load read the database, and an entry whose load began before its tenant's last
//! change is stale. A load racing a change (it read before the commit, it is inserted after the
//! change was applied) therefore never outlives the change, which moka's invalidation closures
//! could not promise (they spare entries inserted after them).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use moka::future::Cache;

use crate::{Auth, AuthError};
use tenancy::ids::TenantId;

/// The control-plane LISTEN/NOTIFY channel of auth changes. The payload is a tenant id.
pub const CHANNEL: &str = "platform_auth";

/// How long publishing a change may take before it is given up (and logged): the change is
/// committed already, and the TTL is the safety net.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A change to what the auth caches hold, made in a transaction of `0`'s database that is not
/// committed yet. Hand it to [`Auth::changed`] once the transaction has committed.
#[must_use = "hand it to `Auth::changed` after the commit, or other instances keep serving the old state"]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthChange(pub TenantId);

/// A cached value and the clock reading taken before it was loaded.
pub(crate) type Stamped<V> = (u64, V);

/// When each tenant last changed, and when everything was last dropped, on one clock.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    clock: AtomicU64,
    all: AtomicU64,
    tenants: RwLock<HashMap<TenantId, u64>>,
}

impl Freshness {
    /// The reading a load takes before it reads the database.
    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Whether a value loaded from reading `stamp` on is at least as new as `tenant`'s last change.
    fn fresh(&self, tenant: TenantId, stamp: u64) -> bool {
        stamp >= self.all.load(Ordering::SeqCst)
            && self
                .tenants
                .read()
                .is_ok_and(|m| m.get(&tenant).is_none_or(|&at| stamp >= at))
    }

    /// Marks `tenant` (or everything) changed: every value loaded before now is stale.
    fn change(&self, tenant: Option<TenantId>) {
        let at = self.clock.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(mut m) = self.tenants.write() else {
            // Poisoned: `fresh` answers false for every value from now on, which is safe.
            return;
        };
        match tenant {
            Some(t) => {
                m.insert(t, at);
            }
            None => {
                self.all.store(at, Ordering::SeqCst);
                // Every tenant's mark is older than `all` now.
                m.clear();
            }
        }
    }
}

impl Auth {
    /// Applies a committed change to what the auth caches hold: drops this instance's entries of
    /// the tenant at once and publishes the tenant on [`CHANNEL`] so every other instance drops
    /// its entries. Publishing is best effort: a failure is logged, and the TTL bounds how long
    /// other instances may serve the old state.
    pub async fn changed(&self, change: AuthChange) {
        let AuthChange(tenant) = change;
        self.invalidate(Some(tenant));
        let notify = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(tenant.to_string())
            .execute(self.catalog.pool());
        match tokio::time::timeout(PUBLISH_TIMEOUT, notify).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "an auth change could not be published; other instances apply it when their cache expires");
            }
            Err(_) => {
                tracing::warn!(tenant.id = %tenant, "publishing an auth change timed out; other instances apply it when their cache expires");
            }
        }
    }

    /// Drops this instance's cached session checks and role permissions of `tenant` (or of all
    /// tenants), without publishing: what the notification listener calls for a change published
    /// by any instance. Everything else goes through [`Auth::changed`].
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        self.freshness.change(tenant);
        if tenant.is_none() {
            // Stale already; this frees their memory.
            self.principals.invalidate_all();
            self.roles.invalidate_all();
        }
    }

    /// `cache`'s value for `key` (of `tenant`), loaded by `load` when it is missing or older than
    /// the tenant's last change.
    pub(crate) async fn fresh<K, V, F, Fut>(
        &self,
        cache: &Cache<K, Stamped<V>>,
        tenant: TenantId,
        key: K,
        load: F,
    ) -> Result<V, Arc<AuthError>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, AuthError>> + Send,
    {
        if let Some((at, v)) = cache.get(&key).await {
            if self.freshness.fresh(tenant, at) {
                return Ok(v);
            }
            cache.invalidate(&key).await;
        }
        let stamped = |freshness: Arc<Freshness>, fut: Fut| async move {
            let at = freshness.now();
            fut.await.map(|v| (at, v))
        };
        // Loaded, or a load this request joins. A stale answer is a joined load that began
        // before the change: dropped, and loaded again; the last resort reads the database
        // without the cache.
        for _ in 0..2 {
            let (at, v) = cache
                .try_get_with(key.clone(), stamped(Arc::clone(&self.freshness), load()))
                .await?;
            if self.freshness.fresh(tenant, at) {
                return Ok(v);
            }
            cache.invalidate(&key).await;
        }
        load().await.map_err(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_loaded_before_its_tenants_change_is_stale_and_one_loaded_after_is_fresh() {
        let f = Freshness::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let before = f.now();
        assert!(f.fresh(a, before));
        f.change(Some(a));
        assert!(!f.fresh(a, before), "loaded before a's change");
        assert!(f.fresh(b, before), "another tenant's change");
        let after = f.now();
        assert!(f.fresh(a, after));
        f.change(None);
        assert!(
            !f.fresh(a, after) && !f.fresh(b, after),
            "everything dropped"
        );
        assert!(f.fresh(b, f.now()));
    }
}
