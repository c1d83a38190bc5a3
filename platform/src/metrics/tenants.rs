//! The bounded per-tenant label: the busiest tenants get a series of their own, every other
//! tenant is counted under `other`, so a fleet of thousands of tenants adds at most N + 1 series
//! per per-tenant metric.
//!
//! A tenant is admitted at once while there is room (a fresh instance shows its first tenants
//! without waiting); every [`REFRESH`] the labelled set becomes the N tenants with the most
//! requests since, with counts halved so the ranking follows recent traffic. Counters stay
//! monotonic: a tenant that leaves the set stops increasing its series (dropped after the
//! exporter's idle timeout) and its requests go to `other` from then on.

use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tenancy::ids::TenantId;

use super::{FastMap as HashMap, FastSet as HashSet};

/// How often the labelled set is ranked again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The top-N tracker.
#[derive(Debug)]
pub struct TopTenants {
    n: usize,
    labelled: RwLock<HashSet<TenantId>>,
    /// Requests per tenant since the last ranking (halved at each ranking).
    counts: Mutex<HashMap<TenantId, u64>>,
    ranked: Mutex<Instant>,
}

impl TopTenants {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            labelled: RwLock::new(HashSet::with_capacity_and_hasher(n, Default::default())),
            counts: Mutex::new(HashMap::default()),
            ranked: Mutex::new(Instant::now()),
        }
    }

    /// Adds requests per tenant (each worker thread counts its own and hands them over in
    /// batches, [`super::handles`]).
    pub fn add(&self, requests: HashMap<TenantId, u64>) {
        if requests.is_empty() {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        for (tenant, n) in requests {
            *counts.entry(tenant).or_insert(0) += n;
        }
    }

    /// Whether `tenant` has a series of its own (admitted now if there is room).
    pub fn admit(&self, tenant: TenantId) -> bool {
        {
            let set = self.labelled.read().unwrap_or_else(PoisonError::into_inner);
            if set.contains(&tenant) {
                return true;
            }
            if set.len() >= self.n {
                return false;
            }
        }
        let mut set = self
            .labelled
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if set.len() < self.n {
            set.insert(tenant);
            return true;
        }
        set.contains(&tenant)
    }

    /// Ranks the tenants again if [`REFRESH`] has passed since the last ranking.
    pub fn rank(&self) {
        {
            let mut last = self.ranked.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() < REFRESH {
                return;
            }
            *last = Instant::now();
        }
        let top: HashSet<TenantId> = {
            let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
            let mut all: Vec<(TenantId, u64)> = counts.iter().map(|(t, c)| (*t, *c)).collect();
            // Most requests first; ties by id so the ranking is stable.
            all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            counts.retain(|_, c| {
                *c /= 2;
                *c > 0
            });
            all.into_iter().take(self.n).map(|(t, _)| t).collect()
        };
        *self
            .labelled
            .write()
            .unwrap_or_else(PoisonError::into_inner) = top;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::from_uuid(uuid::Uuid::now_v7())
    }

    #[test]
    fn first_tenants_are_admitted_while_there_is_room() {
        let top = TopTenants::new(2);
        let (a, b, c) = (tenant(), tenant(), tenant());
        assert!(top.admit(a));
        assert!(top.admit(b));
        assert!(!top.admit(c), "a third tenant goes to `other`");
        assert!(top.admit(a));
    }

    #[test]
    fn ranking_gives_the_busiest_tenants_their_series() {
        let top = TopTenants::new(2);
        let (quiet, a, b) = (tenant(), tenant(), tenant());
        assert!(top.admit(quiet));
        top.add(HashMap::from_iter([(quiet, 1)]));
        assert!(top.admit(a));
        assert!(!top.admit(b), "no room before the ranking");
        top.add(HashMap::from_iter([(a, 10), (b, 10)]));
        *top.ranked.lock().unwrap_or_else(PoisonError::into_inner) -= REFRESH;
        top.rank();
        assert!(top.admit(a) && top.admit(b));
        assert!(!top.admit(quiet), "the quiet tenant lost its series");
    }
}
