//! Weighted fair choice among tenants with work (stride scheduling): each tenant has a virtual
//! "pass"; claiming `n` jobs advances it by `n / weight`, and the ready tenant with the lowest
//! pass goes next. A tenant that becomes ready starts at the current virtual time, so a tenant
//! with one job waits for at most one pick of every other busy tenant, however deep their queues.

use std::collections::HashMap;

use tenancy::ids::TenantId;
use tokio::time::Instant;

#[derive(Debug)]
struct Entry {
    pass: f64,
    weight: f64,
    /// When the tenant has work due; `None` while a claim for it is in flight.
    due: Option<Instant>,
    /// Work was announced while a claim was in flight (the claim may have missed it).
    hinted: Option<Instant>,
}

/// The tenants known to have work, and their fair-share state.
#[derive(Debug, Default)]
pub struct Fair {
    tenants: HashMap<TenantId, Entry>,
    vnow: f64,
}

impl Fair {
    /// Records that `tenant` has work due at `at` (earlier of this and what was known).
    pub fn ready(&mut self, tenant: TenantId, weight: u32, at: Instant) {
        let vnow = self.vnow;
        let e = self.tenants.entry(tenant).or_insert(Entry {
            pass: vnow,
            weight: f64::from(weight.max(1)),
            due: Some(at),
            hinted: None,
        });
        e.weight = f64::from(weight.max(1));
        if let Some(due) = e.due.as_mut() {
            *due = (*due).min(at);
        } else {
            // In flight: the claim may have missed this work; remember it (see `claimed`).
            e.hinted = Some(e.hinted.map_or(at, |h| h.min(at)));
        }
    }

    /// The due tenant with the lowest pass, taken out of the ready set until [`Self::claimed`].
    pub fn pick(&mut self, now: Instant) -> Option<TenantId> {
        let (id, e) = self
            .tenants
            .iter_mut()
            .filter(|(_, e)| e.due.is_some_and(|d| d <= now))
            .min_by(|a, b| a.1.pass.total_cmp(&b.1.pass))?;
        self.vnow = self.vnow.max(e.pass);
        e.due = None;
        Some(*id)
    }

    /// A claim for `tenant` returned `n` jobs; `next` is when more is due (`None`: nothing left).
    pub fn claimed(&mut self, tenant: TenantId, n: usize, next: Option<Instant>) {
        let Some(e) = self.tenants.get_mut(&tenant) else {
            return;
        };
        e.pass += n.max(1) as f64 / e.weight;
        let next = match (next, e.hinted.take()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match next {
            Some(at) => e.due = Some(at),
            None => {
                self.tenants.remove(&tenant);
            }
        }
    }

    /// The tenant is being claimed right now.
    #[must_use]
    pub fn in_flight(&self, tenant: TenantId) -> bool {
        self.tenants.get(&tenant).is_some_and(|e| e.due.is_none())
    }

    /// The earliest time some tenant is due.
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.tenants.values().filter_map(|e| e.due).min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_tenant_with_one_job_goes_next_however_deep_the_other_queue() {
        let mut f = Fair::default();
        let now = Instant::now();
        let (a, b) = (TenantId::new(), TenantId::new());
        f.ready(a, 1, now);
        for _ in 0..1000 {
            assert_eq!(f.pick(now), Some(a));
            f.claimed(a, 8, Some(now));
        }
        f.ready(b, 1, now);
        assert_eq!(f.pick(now), Some(b));
    }

    #[test]
    fn weights_share_the_picks() {
        let mut f = Fair::default();
        let now = Instant::now();
        let (a, b) = (TenantId::new(), TenantId::new());
        f.ready(a, 1, now);
        f.ready(b, 4, now);
        let mut got = HashMap::new();
        for _ in 0..500 {
            let t = f.pick(now).expect("someone is due");
            *got.entry(t).or_insert(0) += 1;
            f.claimed(t, 1, Some(now));
        }
        assert_eq!(got[&a], 100);
        assert_eq!(got[&b], 400);
    }

    #[test]
    fn a_tenant_not_due_yet_is_not_picked() {
        let mut f = Fair::default();
        let now = Instant::now();
        let a = TenantId::new();
        f.ready(a, 1, now + Duration::from_secs(5));
        assert_eq!(f.pick(now), None);
        assert_eq!(f.next_due(), Some(now + Duration::from_secs(5)));
    }
}
