//! Failed-login throttling per account and per client address: after a few failures each further
//! attempt must wait exponentially longer (capped). Counters live in memory per instance and
//! expire after a quiet period; a success clears the account's counter.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::future::Cache;

use tenancy::ids::TenantId;

/// Failures allowed on an account before attempts are slowed down.
const ACCOUNT_FREE: u32 = 5;
/// Failures allowed from one address (across accounts) before attempts are slowed down.
const IP_FREE: u32 = 20;
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Per-account and per-address failure counters.
#[derive(Clone)]
pub struct Throttle {
    accounts: Cache<(TenantId, String), Failures>,
    addresses: Cache<IpAddr, Failures>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

fn wait(f: Option<Failures>, free: u32) -> Option<Duration> {
    let f = f?;
    if f.count < free {
        return None;
    }
    let exp = (f.count - free).min(10);
    let wait = Duration::from_secs(1u64 << exp).min(MAX_WAIT);
    let elapsed = f.last.elapsed();
    (elapsed < wait).then(|| wait - elapsed)
}

impl Throttle {
    #[must_use]
    pub fn new() -> Self {
        Self {
            accounts: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(FORGET_AFTER)
                .build(),
            addresses: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(FORGET_AFTER)
                .build(),
        }
    }

    /// How long the caller must wait before another attempt, if at all.
    pub async fn retry_after(
        &self,
        tenant: TenantId,
        email: &str,
        ip: Option<IpAddr>,
    ) -> Option<Duration> {
        let account = wait(
            self.accounts.get(&(tenant, email.to_owned())).await,
            ACCOUNT_FREE,
        );
        let address = match ip {
            Some(ip) => wait(self.addresses.get(&ip).await, IP_FREE),
            None => None,
        };
        account.max(address)
    }

    /// Records a failure.
    pub async fn failed(&self, tenant: TenantId, email: &str, ip: Option<IpAddr>) {
        let bump = |f: Option<Failures>| Failures {
            count: f.map_or(1, |f| f.count.saturating_add(1)),
            last: Instant::now(),
        };
        self.accounts
            .entry((tenant, email.to_owned()))
            .and_upsert_with(|e| async move { bump(e.map(|e| e.into_value())) })
            .await;
        if let Some(ip) = ip {
            self.addresses
                .entry(ip)
                .and_upsert_with(|e| async move { bump(e.map(|e| e.into_value())) })
                .await;
        }
    }

    /// Clears the account's counter after a successful login.
    pub async fn succeeded(&self, tenant: TenantId, email: &str) {
        self.accounts.invalidate(&(tenant, email.to_owned())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_slow_down_the_account_and_the_address() {
        let th = Throttle::new();
        let t = TenantId::new();
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..ACCOUNT_FREE {
            assert!(th.retry_after(t, "a@x.test", Some(ip)).await.is_none());
            th.failed(t, "a@x.test", Some(ip)).await;
        }
        assert!(th.retry_after(t, "a@x.test", None).await.is_some());
        // Another account from another address is not affected; a success clears the account.
        assert!(th.retry_after(t, "b@x.test", None).await.is_none());
        th.succeeded(t, "a@x.test").await;
        assert!(th.retry_after(t, "a@x.test", None).await.is_none());
        // Spraying many accounts from one address slows that address down.
        for i in 0..IP_FREE {
            th.failed(t, &format!("user{i}@x.test"), Some(ip)).await;
        }
        assert!(th.retry_after(t, "fresh@x.test", Some(ip)).await.is_some());
        assert!(th.retry_after(t, "fresh@x.test", None).await.is_none());
        // The wait grows with further failures and is capped.
        assert!(
            wait(
                Some(Failures {
                    count: 100,
                    last: Instant::now()
                }),
                5
            ) <= Some(MAX_WAIT)
        );
    }
}
