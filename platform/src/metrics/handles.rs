//! The per-request series' handles, kept between requests so a request records into handles it
//! already holds: no label vector, no label strings, no registry look-up by a freshly built key
//! (what each request did before: seven keys, a dozen allocations).
//!
//! The exporter drops a series that has not changed for its idle timeout, and only while it
//! renders (a scrape); a handle kept across that would record into a series no longer exported.
//! So every render ends an epoch and empties the handles: a handle is kept only if no render
//! began between the moment it was looked up and the moment it is stored (the epoch is read
//! before the look-up and checked under the write lock). A request after a scrape registers
//! again, which puts the series back if it had been dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use metrics::{Counter, Histogram};

use super::FastMap as HashMap;
use tenancy::ids::TenantId;

/// The handles of one tenant's series (`None`: the `other` bucket).
#[derive(Clone)]
pub struct TenantSeries {
    pub requests: Counter,
    pub duration: Histogram,
    /// Registered at the tenant's first error only (no series of zeros for every tenant).
    pub errors: Option<Counter>,
}

/// The handles of one plan and placement's series.
#[derive(Clone)]
pub struct PlanSeries {
    /// By status class (`1xx` to `5xx`).
    pub requests: [Option<Counter>; 5],
    pub duration: Histogram,
}

#[derive(Default)]
struct Maps {
    /// Route template → method (index) × status class (index).
    http: HashMap<Box<str>, [[Option<Histogram>; METHODS]; CLASSES]>,
    tenants: HashMap<Option<TenantId>, TenantSeries>,
    /// Plan → placement (shared, dedicated).
    plans: HashMap<Box<str>, [Option<PlanSeries>; 2]>,
    rate_limits: HashMap<(&'static str, bool), Counter>,
    /// Database server → its checkout-wait histogram.
    checkouts: HashMap<Box<str>, Histogram>,
}

/// Methods with a label of their own, plus `_OTHER`.
pub const METHODS: usize = 8;
/// Status classes.
pub const CLASSES: usize = 5;

/// The kept handles and the render epoch they belong to.
#[derive(Default)]
pub struct Handles {
    epoch: AtomicU64,
    maps: RwLock<Maps>,
}

/// A looked-up handle's ticket: the epoch read before the look-up.
#[derive(Clone, Copy)]
pub struct Ticket(u64);

impl Handles {
    /// Ends the epoch: called once the exporter may have dropped idle series.
    pub fn renew(&self) {
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        *maps = Maps::default();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The ticket to take before registering a handle that is to be kept.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::Acquire))
    }

    fn read<T>(&self, f: impl FnOnce(&Maps) -> Option<T>) -> Option<T> {
        f(&self.maps.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn keep(&self, ticket: Ticket, f: impl FnOnce(&mut Maps)) {
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        // Under the lock `renew` takes: no render can begin between this check and the store.
        if self.epoch.load(Ordering::Acquire) == ticket.0 {
            f(&mut maps);
        }
    }

    /// The kept value `get` finds, else `make`'s, kept by `put` unless a render began meanwhile.
    fn memo<V: Clone>(
        &self,
        get: impl FnOnce(&Maps) -> Option<V>,
        make: impl FnOnce() -> V,
        put: impl FnOnce(&mut Maps, V),
    ) -> V {
        if let Some(v) = self.read(get) {
            return v;
        }
        let ticket = self.ticket();
        let v = make();
        self.keep(ticket, |m| put(m, v.clone()));
        v
    }

    /// The duration histogram of a route, method and status class.
    pub fn http(
        &self,
        route: &str,
        method: usize,
        class: usize,
        make: impl FnOnce() -> Histogram,
    ) -> Histogram {
        self.memo(
            |m| m.http.get(route)?[class][method].clone(),
            make,
            |m, h| m.http.entry(route.into()).or_default()[class][method] = Some(h),
        )
    }

    /// A tenant's series (`None`: `other`); `error`: the errors counter is needed. `make` gets
    /// what is kept already (to extend it).
    pub fn tenant(
        &self,
        tenant: Option<TenantId>,
        error: bool,
        make: impl FnOnce(Option<&TenantSeries>) -> TenantSeries,
    ) -> TenantSeries {
        let kept = |m: &Maps| m.tenants.get(&tenant).cloned();
        self.memo(
            |m| kept(m).filter(|s| !error || s.errors.is_some()),
            || make(self.read(kept).as_ref()),
            |m, s| {
                m.tenants.insert(tenant, s);
            },
        )
    }

    /// A plan and placement's series; `class`: the status class whose counter is needed. `make`
    /// gets what is kept already (to extend it).
    pub fn plan(
        &self,
        plan: &str,
        placement: usize,
        class: usize,
        make: impl FnOnce(Option<&PlanSeries>) -> PlanSeries,
    ) -> PlanSeries {
        let kept = |m: &Maps| m.plans.get(plan)?[placement].clone();
        self.memo(
            |m| kept(m).filter(|s| s.requests[class].is_some()),
            || make(self.read(kept).as_ref()),
            |m, s| m.plans.entry(plan.into()).or_default()[placement] = Some(s),
        )
    }

    /// The rate-limit decision counter of a scope and outcome.
    pub fn rate_limit(
        &self,
        scope: &'static str,
        allowed: bool,
        make: impl FnOnce() -> Counter,
    ) -> Counter {
        self.memo(
            |m| m.rate_limits.get(&(scope, allowed)).cloned(),
            make,
            |m, c| {
                m.rate_limits.insert((scope, allowed), c);
            },
        )
    }

    /// The checkout-wait histogram of a database server.
    pub fn checkout(&self, server: &str, make: impl FnOnce() -> Histogram) -> Histogram {
        self.memo(
            |m| m.checkouts.get(server).cloned(),
            make,
            |m, h| {
                m.checkouts.insert(server.into(), h);
            },
        )
    }
}
