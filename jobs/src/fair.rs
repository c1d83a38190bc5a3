//! Weighted fair choice among tenants with work (stride scheduling): each tenant has a virtual
//! "pass"; a claim of `n` jobs advances it by `n / weight`, and the eligible tenant with the
//! lowest pass goes next. A tenant that becomes ready starts at the current virtual time, so a
//! tenant with one job waits for at most the claims already in flight, however deep the other
//! queues.
//!
//! A claim is charged when it is picked (its full size), and what it did not get is refunded
//! when it returns: so a tenant with a backlog can have several claims in flight (each charged),
//! and a tenant that becomes ready meanwhile still goes before the next of them.

use std::collections::HashMap;

use tenancy::ids::TenantId;
use tokio::time::Instant;

#[derive(Debug)]
struct Entry {
    pass: f64,
    weight: f64,
    /// When the tenant may be claimed next (work is known or likely); `None`: wait for a claim
    /// in flight to say.
    due: Option<Instant>,
    /// Claims in flight.
    in_flight: usize,
    /// The last claim to return was full: more is likely, so another claim may go while one is
    /// still in flight.
    backlog: bool,
    /// Work was announced while claims were in flight (they may have missed it).
    hinted: Option<Instant>,
}

impl Entry {
    /// Whether another claim may be picked now (apart from the caller's own conditions).
    fn pickable(&self) -> bool {
        self.due.is_some() && (self.in_flight == 0 || self.backlog)
    }
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
            due: None,
            in_flight: 0,
            backlog: false,
            hinted: None,
        });
        e.weight = f64::from(weight.max(1));
        if e.in_flight > 0 {
            // Claims in flight may have missed this work; remember it (see `claimed`).
            e.hinted = Some(e.hinted.map_or(at, |h| h.min(at)));
        }
        if e.in_flight == 0 || e.backlog {
            e.due = Some(e.due.map_or(at, |d| d.min(at)));
        }
    }

    /// The due tenant with the lowest pass among those `eligible(tenant, claims in flight)`
    /// allows, charged a claim of `size(tenant)` jobs. A tenant with a claim in flight is picked
    /// again only while its backlog lasts (its last claim came back full).
    pub fn pick(
        &mut self,
        now: Instant,
        eligible: impl Fn(TenantId, usize) -> bool,
        size: impl Fn(TenantId) -> usize,
    ) -> Option<TenantId> {
        let (id, e) = self
            .tenants
            .iter_mut()
            .filter(|(id, e)| {
                e.pickable() && e.due.is_some_and(|d| d <= now) && eligible(**id, e.in_flight)
            })
            .min_by(|a, b| a.1.pass.total_cmp(&b.1.pass))?;
        self.vnow = self.vnow.max(e.pass);
        e.pass += size(*id).max(1) as f64 / e.weight;
        e.in_flight += 1;
        if !e.backlog {
            e.due = None;
        }
        Some(*id)
    }

    /// A claim of `size` jobs for `tenant` returned `n`; `next` is when more is due (`None`:
    /// nothing left that this claim saw).
    pub fn claimed(&mut self, tenant: TenantId, size: usize, n: usize, next: Option<Instant>) {
        let Some(e) = self.tenants.get_mut(&tenant) else {
            return;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        // Charged for what it took (at least one, so empty claims are not free).
        let size = size.max(1);
        e.pass -= (size - n.clamp(1, size)) as f64 / e.weight;
        e.backlog = n >= size;
        let next = match (next, e.hinted.take()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if e.backlog {
            e.due = match (e.due, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        } else {
            // A short claim saw the tenant's queue as it is: what it says replaces the guess.
            e.due = next;
        }
        if e.due.is_none() && e.in_flight == 0 {
            self.tenants.remove(&tenant);
        }
    }

    /// Whether the tenant is known to have work or a claim in flight.
    #[must_use]
    pub fn contains(&self, tenant: TenantId) -> bool {
        self.tenants.contains_key(&tenant)
    }

    /// Claims in flight for the tenant.
    #[must_use]
    pub fn in_flight(&self, tenant: TenantId) -> usize {
        self.tenants.get(&tenant).map_or(0, |e| e.in_flight)
    }

    /// The earliest time after `now` that some tenant becomes due: what to sleep until. Tenants
    /// due already but not picked wait for a slot or a claim to come back, which wakes the
    /// worker by itself.
    #[must_use]
    pub fn next_due_after(&self, now: Instant) -> Option<Instant> {
        self.tenants
            .values()
            .filter(|e| e.pickable())
            .filter_map(|e| e.due)
            .filter(|d| *d > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn any(_: TenantId, _: usize) -> bool {
        true
    }

    #[test]
    fn a_tenant_with_one_job_goes_next_however_deep_the_other_queue() {
        let mut f = Fair::default();
        let now = Instant::now();
        let (a, b) = (TenantId::new(), TenantId::new());
        f.ready(a, 1, now);
        for _ in 0..1000 {
            assert_eq!(f.pick(now, any, |_| 8), Some(a));
            f.claimed(a, 8, 8, Some(now));
        }
        f.ready(b, 1, now);
        assert_eq!(f.pick(now, any, |_| 8), Some(b));
    }

    #[test]
    fn a_backlog_keeps_several_claims_in_flight_and_a_newcomer_still_goes_next() {
        let mut f = Fair::default();
        let now = Instant::now();
        let (a, b) = (TenantId::new(), TenantId::new());
        f.ready(a, 1, now);
        // No backlog known yet: one claim at a time.
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
        assert_eq!(f.pick(now, any, |_| 8), None);
        f.claimed(a, 8, 8, Some(now));
        // A full claim: more may go while one is in flight.
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
        assert_eq!(f.in_flight(a), 2);
        // B arrives while A has two claims in flight: B is next.
        f.ready(b, 1, now);
        assert_eq!(f.pick(now, any, |_| 8), Some(b));
        // A short claim ends A's backlog: no new claim until the one in flight returns.
        f.claimed(a, 8, 3, None);
        assert_eq!(f.pick(now, |t, _| t == a, |_| 8), None);
        f.claimed(a, 8, 0, None);
        assert_eq!(f.in_flight(a), 0);
        assert_eq!(f.pick(now, |t, _| t == a, |_| 8), None);
    }

    #[test]
    fn a_hint_during_a_claim_is_not_lost() {
        let mut f = Fair::default();
        let now = Instant::now();
        let a = TenantId::new();
        f.ready(a, 1, now);
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
        f.ready(a, 1, now);
        // The claim saw nothing (it ran before the hinted commit).
        f.claimed(a, 8, 0, None);
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
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
            let t = f.pick(now, any, |_| 1).expect("someone is due");
            *got.entry(t).or_insert(0) += 1;
            f.claimed(t, 1, 1, Some(now));
        }
        assert_eq!(got[&a], 100);
        assert_eq!(got[&b], 400);
    }

    #[test]
    fn an_ineligible_tenant_is_passed_over_not_charged() {
        let mut f = Fair::default();
        let now = Instant::now();
        let (a, b) = (TenantId::new(), TenantId::new());
        f.ready(a, 1, now);
        f.ready(b, 1, now);
        assert_eq!(f.pick(now, |t, _| t == b, |_| 8), Some(b));
        assert_eq!(f.pick(now, any, |_| 8), Some(a));
    }

    #[test]
    fn a_tenant_not_due_yet_is_not_picked() {
        let mut f = Fair::default();
        let now = Instant::now();
        let a = TenantId::new();
        f.ready(a, 1, now + Duration::from_secs(5));
        assert_eq!(f.pick(now, any, |_| 8), None);
        assert_eq!(f.next_due_after(now), Some(now + Duration::from_secs(5)));
        // Due already (waiting for a slot): not a time to sleep until.
        f.ready(a, 1, now);
        assert_eq!(f.next_due_after(now), None);
    }
}
