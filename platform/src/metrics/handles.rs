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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use metrics::{Counter, Histogram};
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

    /// The duration histogram of a route, method and status class.
    pub fn http(
        &self,
        route: &str,
        method: usize,
        class: usize,
        make: impl FnOnce() -> Histogram,
    ) -> Histogram {
        if let Some(h) = self.read(|m| m.http.get(route)?[class][method].clone()) {
            return h;
        }
        let ticket = self.ticket();
        let h = make();
        self.keep(ticket, |m| {
            m.http.entry(route.into()).or_default()[class][method] = Some(h.clone());
        });
        h
    }

    /// A tenant's series (`None`: `other`); `error`: the errors counter is needed.
    pub fn tenant(
        &self,
        tenant: Option<TenantId>,
        error: bool,
        make: impl FnOnce(Option<&TenantSeries>) -> TenantSeries,
    ) -> TenantSeries {
        let known = self.read(|m| m.tenants.get(&tenant).cloned());
        if let Some(s) = &known
            && (!error || s.errors.is_some())
        {
            return s.clone();
        }
        let ticket = self.ticket();
        let s = make(known.as_ref());
        self.keep(ticket, |m| {
            m.tenants.insert(tenant, s.clone());
        });
        s
    }

    /// A plan and placement's series; `class`: the status class whose counter is needed.
    pub fn plan(
        &self,
        plan: &str,
        placement: usize,
        class: usize,
        make: impl FnOnce(Option<&PlanSeries>) -> PlanSeries,
    ) -> PlanSeries {
        let known = self.read(|m| m.plans.get(plan)?[placement].clone());
        if let Some(s) = &known
            && s.requests[class].is_some()
        {
            return s.clone();
        }
        let ticket = self.ticket();
        let s = make(known.as_ref());
        self.keep(ticket, |m| {
            m.plans.entry(plan.into()).or_default()[placement] = Some(s.clone());
        });
        s
    }

    /// The rate-limit decision counter of a scope and outcome.
    pub fn rate_limit(
        &self,
        scope: &'static str,
        allowed: bool,
        make: impl FnOnce() -> Counter,
    ) -> Counter {
        if let Some(c) = self.read(|m| m.rate_limits.get(&(scope, allowed)).cloned()) {
            return c;
        }
        let ticket = self.ticket();
        let c = make();
        self.keep(ticket, |m| {
            m.rate_limits.insert((scope, allowed), c.clone());
        });
        c
    }
}
