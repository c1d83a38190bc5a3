//! Request-rate limits (GCRA, `governor`), keyed per tenant (its plan's quota or its override),
//! per principal (user or API key), per client address on public and sensitive endpoints, and
//! per client address on the admin API. No HTTP here: the server's middleware asks for a
//! [`Decision`] and renders it as headers.
//!
//! governor applies one quota per limiter, so tenants are grouped by quota: one keyed limiter per
//! distinct quota (a handful: the plans plus the overrides). A tenant whose quota changes moves
//! to the limiter of its new quota on its next request (its record is re-read after the catalog
//! notification), starting with a full bucket. Memory stays bounded: [`RateLimits::purge`]
//! (every few seconds, from the server) drops keys whose bucket is full again
//! (`retain_recent`) and shrinks the maps.
//!
//! Failed authentication has its own budgets ([`RateLimits::begin_authentication`]): per client
//! address and per claimed tenant, taken before any lookup, so a flood of made-up credentials
//! is answered 429 without database work. Every per-address limit keys on [`AddressKey`]
//! (IPv6 by its /64).

mod address;
pub mod attempts;

pub use address::AddressKey;
pub use attempts::Refused;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use attempts::{BudgetAttempt, FailureBudget};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use tenancy::catalog::{RateQuota, Tenant};
use tenancy::ids::TenantId;
pub use tenancy::settings::LimitSettings;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

tenancy::text_enum!(
    /// Which limit a decision is about.
    pub enum Scope {
        /// The tenant's plan quota.
        Tenant = "tenant",
        /// One user or API key within its tenant.
        Principal = "principal",
        /// One client address on the public and sensitive endpoints.
        Ip = "ip",
        /// One client address on the admin API.
        Admin = "admin",
        /// Failed authentication from one client address.
        AuthAddress = "auth_address",
        /// Failed authentication with credentials that claim one tenant.
        AuthTenant = "auth_tenant",
    }
);

/// The answer for one key: allowed or not, and the numbers for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub scope: Scope,
    pub allowed: bool,
    /// The burst (requests allowed at once from a full bucket).
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (allowed) or the next request is allowed (refused).
    pub reset_secs: u64,
}

impl Decision {
    /// The tighter of two decisions: a refusal first, then the fewer remaining requests.
    #[must_use]
    pub fn tighter(self, other: Self) -> Self {
        match (self.allowed, other.allowed) {
            (false, true) => self,
            (true, false) => other,
            _ if other.remaining < self.remaining => other,
            _ => self,
        }
    }
}

fn quota(q: RateQuota) -> Quota {
    let per_second = NonZeroU32::new(q.per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(per_second).allow_burst(burst)
}

fn keyed<K: std::hash::Hash + Eq + Clone>(q: RateQuota) -> Keyed<K> {
    RateLimiter::keyed(quota(q)).with_middleware::<StateInformationMiddleware>()
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn decide<K: std::hash::Hash + Eq + Clone>(scope: Scope, limiter: &Keyed<K>, key: &K) -> Decision {
    match limiter.check_key(key) {
        Ok(snapshot) => {
            let q = snapshot.quota();
            let limit = q.burst_size().get();
            let remaining = snapshot.remaining_burst_capacity();
            let refill = q.replenish_interval() * (limit - remaining);
            Decision {
                scope,
                allowed: true,
                limit,
                remaining,
                reset_secs: ceil_secs(refill),
            }
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.clock().now());
            Decision {
                scope,
                allowed: false,
                limit: not_until.quota().burst_size().get(),
                remaining: 0,
                reset_secs: ceil_secs(wait).max(1),
            }
        }
    }
}

struct Inner {
    settings: LimitSettings,
    tenants: RwLock<HashMap<RateQuota, Arc<Keyed<TenantId>>>>,
    principals: Keyed<(TenantId, Uuid)>,
    ips: Keyed<AddressKey>,
    admin: Keyed<AddressKey>,
    auth_addresses: FailureBudget<AddressKey>,
    auth_tenants: FailureBudget<TenantId>,
    /// Keys the credential fingerprints (random per process, so no one can aim collisions).
    fingerprints: std::hash::RandomState,
}

/// A request's authentication in progress, holding its places in the failure budgets. Call
/// [`Self::succeeded`] when the credential (or the tenant) proved good, or [`Self::not_counted`]
/// when the attempt failed for a reason that is not the client's (the database was
/// unavailable); dropped, it counts as a failure.
pub struct AuthAttempt {
    address: Option<BudgetAttempt<AddressKey>>,
    tenant: Option<BudgetAttempt<TenantId>>,
}

impl AuthAttempt {
    /// Gives the places back.
    pub fn succeeded(self) {
        if let Some(a) = self.address {
            a.succeeded();
        }
        if let Some(t) = self.tenant {
            t.succeeded();
        }
    }

    /// Gives the places back: the attempt says nothing about the client.
    pub fn not_counted(self) {
        self.succeeded();
    }
}

/// Every limiter of this instance (cheap to clone).
#[derive(Clone)]
pub struct RateLimits {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    #[must_use]
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                principals: keyed(settings.principal),
                ips: keyed(settings.sensitive_ip),
                admin: keyed(settings.admin_ip),
                auth_addresses: FailureBudget::new(
                    settings.auth_failures_address.failures,
                    settings.auth_failures_address.interval(),
                ),
                auth_tenants: FailureBudget::new(
                    settings.auth_failures_tenant.failures,
                    settings.auth_failures_tenant.interval(),
                ),
                fingerprints: std::hash::RandomState::new(),
                tenants: RwLock::new(HashMap::new()),
                settings,
            }),
        }
    }

    #[must_use]
    pub fn settings(&self) -> &LimitSettings {
        &self.inner.settings
    }

    fn tenant_limiter(&self, q: RateQuota) -> Arc<Keyed<TenantId>> {
        if let Some(l) = self
            .inner
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&q)
        {
            return Arc::clone(l);
        }
        let mut map = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(q).or_insert_with(|| Arc::new(keyed(q))))
    }

    /// One request of `tenant`, against its quota.
    #[must_use]
    pub fn check_tenant(&self, tenant: &Tenant) -> Decision {
        let q = tenant
            .rate_limit
            .unwrap_or(self.inner.settings.tenant_default);
        decide(Scope::Tenant, &self.tenant_limiter(q), &tenant.id)
    }

    /// One request of a principal (user or API key id) of `tenant`.
    #[must_use]
    pub fn check_principal(&self, tenant: TenantId, principal: Uuid) -> Decision {
        decide(
            Scope::Principal,
            &self.inner.principals,
            &(tenant, principal),
        )
    }

    /// One request from `ip` to a public, sensitive endpoint.
    #[must_use]
    pub fn check_sensitive_ip(&self, ip: IpAddr) -> Decision {
        decide(Scope::Ip, &self.inner.ips, &AddressKey::of(ip))
    }

    /// One request from `ip` to the admin API.
    #[must_use]
    pub fn check_admin_ip(&self, ip: IpAddr) -> Decision {
        decide(Scope::Admin, &self.inner.admin, &AddressKey::of(ip))
    }

    /// The fingerprint of a presented credential (its parts: host, token) for
    /// [`Self::begin_authentication`].
    #[must_use]
    pub fn fingerprint(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::BuildHasher as _;
        self.inner.fingerprints.hash_one(parts)
    }

    /// Before a request's tenant or credential is looked up: takes a place in the failure budget
    /// of the client address and, for a credential whose check costs the claimed tenant's
    /// database (`claimed`), in that tenant's. `fingerprint` names the credential (and host):
    /// concurrent attempts with the same one share a place. Refused: a 429 decision.
    pub fn begin_authentication(
        &self,
        ip: Option<IpAddr>,
        claimed: Option<TenantId>,
        fingerprint: u64,
    ) -> Result<AuthAttempt, Decision> {
        let refusal = |scope, budget: u32, r: Refused| Decision {
            scope,
            allowed: false,
            limit: budget,
            remaining: 0,
            reset_secs: ceil_secs(r.retry_after).max(1),
        };
        let address = match ip {
            Some(ip) => Some(
                self.inner
                    .auth_addresses
                    .begin(AddressKey::of(ip), fingerprint)
                    .map_err(|r| {
                        refusal(
                            Scope::AuthAddress,
                            self.inner.settings.auth_failures_address.failures,
                            r,
                        )
                    })?,
            ),
            None => None,
        };
        let tenant = match claimed {
            Some(t) => match self.inner.auth_tenants.begin(t, fingerprint) {
                Ok(a) => Some(a),
                Err(r) => {
                    // Not this client's failure: its address place goes back.
                    if let Some(a) = address {
                        a.succeeded();
                    }
                    return Err(refusal(
                        Scope::AuthTenant,
                        self.inner.settings.auth_failures_tenant.failures,
                        r,
                    ));
                }
            },
            None => None,
        };
        Ok(AuthAttempt { address, tenant })
    }

    /// Drops keys whose bucket is full again (indistinguishable from a new key) and releases
    /// the memory; quota groups left empty are removed.
    pub fn purge(&self) {
        let mut map = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, l| {
            l.retain_recent();
            l.shrink_to_fit();
            !l.is_empty()
        });
        drop(map);
        for l in [&self.inner.ips, &self.inner.admin] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        self.inner.auth_addresses.purge();
        self.inner.auth_tenants.purge();
        self.inner.principals.retain_recent();
        self.inner.principals.shrink_to_fit();
    }

    /// Keys held, all limiters together.
    #[must_use]
    pub fn keys(&self) -> usize {
        let tenants: usize = self
            .inner
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|l| l.len())
            .sum();
        tenants
            + self.inner.principals.len()
            + self.inner.ips.len()
            + self.inner.admin.len()
            + self.inner.auth_addresses.len()
            + self.inner.auth_tenants.len()
    }

    /// The client's address: the socket peer, or, when the peer is a trusted proxy, the
    /// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (addresses
    /// further left were written by the client and prove nothing).
    #[must_use]
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        address::client_ip(&self.inner.settings.trusted_proxies, peer, forwarded_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> RateLimits {
        RateLimits::new(LimitSettings {
            trusted_proxies: trusted.iter().map(|c| c.parse().expect("cidr")).collect(),
            ..LimitSettings::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let l = limits(&["10.0.0.0/8"]);
        // An untrusted peer: its header is ignored.
        assert_eq!(
            l.client_ip(Some(ip("203.0.113.9")), &["1.2.3.4"]),
            Some(ip("203.0.113.9"))
        );
        // A trusted peer: the right-most untrusted address.
        assert_eq!(
            l.client_ip(Some(ip("10.0.0.1")), &["6.6.6.6, 198.51.100.7, 10.0.0.2"]),
            Some(ip("198.51.100.7"))
        );
        // Trusted peer, no header: the peer.
        assert_eq!(l.client_ip(Some(ip("10.0.0.1")), &[]), Some(ip("10.0.0.1")));
        // Garbage stops the walk.
        assert_eq!(
            l.client_ip(Some(ip("10.0.0.1")), &["x, 10.0.0.3"]),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(l.client_ip(None, &["1.2.3.4"]), None);
    }

    #[test]
    fn a_full_bucket_refuses_with_a_wait_and_keys_are_purged() {
        let l = RateLimits::new(LimitSettings {
            sensitive_ip: RateQuota {
                per_second: 1,
                burst: 2,
            },
            ..LimitSettings::default()
        });
        let a = ip("192.0.2.1");
        let first = l.check_sensitive_ip(a);
        assert!(first.allowed && first.limit == 2 && first.remaining == 1);
        assert!(l.check_sensitive_ip(a).allowed);
        let refused = l.check_sensitive_ip(a);
        assert!(!refused.allowed && refused.remaining == 0 && refused.reset_secs >= 1);
        // Another address has its own bucket.
        assert!(l.check_sensitive_ip(ip("192.0.2.2")).allowed);
        assert_eq!(l.keys(), 2);
    }

    #[test]
    fn per_address_limits_key_ipv6_by_its_64() {
        let l = RateLimits::new(LimitSettings {
            sensitive_ip: RateQuota {
                per_second: 1,
                burst: 2,
            },
            ..LimitSettings::default()
        });
        assert!(l.check_sensitive_ip(ip("2001:db8:0:1::1")).allowed);
        assert!(l.check_sensitive_ip(ip("2001:db8:0:1::2")).allowed);
        assert!(!l.check_sensitive_ip(ip("2001:db8:0:1:ffff::3")).allowed);
        assert!(l.check_sensitive_ip(ip("2001:db8:0:2::1")).allowed);
    }

    #[test]
    fn failed_authentication_is_limited_per_address_and_per_claimed_tenant() {
        let l = limits(&[]);
        let per_address = l.settings().auth_failures_address.failures;
        let per_tenant = l.settings().auth_failures_tenant.failures;
        let a = Some(ip("2001:db8:0:1::1"));
        for fp in 0..u64::from(per_address) {
            drop(l.begin_authentication(a, None, fp).expect("allowed"));
        }
        let refused = l
            .begin_authentication(Some(ip("2001:db8:0:1::77")), None, 999)
            .err()
            .expect("refused");
        assert_eq!(refused.scope, Scope::AuthAddress);
        assert_eq!(refused.limit, per_address);
        // Successes cost nothing, from a fresh address.
        let b = Some(ip("192.0.2.1"));
        for fp in 0..1000 {
            l.begin_authentication(b, None, fp)
                .expect("allowed")
                .succeeded();
        }
        // A claimed tenant's budget spans addresses.
        let t = TenantId::new();
        for i in 0..per_tenant {
            let from = IpAddr::from([198, 51, (i / 250) as u8, (i % 250) as u8]);
            drop(
                l.begin_authentication(Some(from), Some(t), u64::from(i))
                    .expect("allowed"),
            );
        }
        let refused = l
            .begin_authentication(Some(ip("203.0.113.1")), Some(t), 1)
            .err()
            .expect("refused");
        assert_eq!(refused.scope, Scope::AuthTenant);
        // ... and its refusal does not count against the address.
        for fp in 0..u64::from(per_address) {
            drop(
                l.begin_authentication(Some(ip("203.0.113.1")), None, fp)
                    .expect("allowed"),
            );
        }
    }
}
