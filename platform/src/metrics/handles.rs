//! The per-request series, recorded by each worker thread into buffers of its own and added in
//! batches, at every scrape (before the render) and every upkeep: counters to the exporter's,
//! histograms to the totals rendered beside the exporter's text ([`super::histograms`]).
//!
//! A request touches no memory another thread writes: no lock both worker threads take, no
//! shared reference count, no shared atomic counter or histogram bucket. (Each of those is a
//! cache line the two worker threads hand back and forth at every request, which costs more
//! than the instructions around it and which an instruction count does not show.) The thread's
//! own buffers sit behind a mutex only its thread takes, except while a scrape or the upkeep
//! flushes them.
//!
//! A thread keeps the counter handles it registered (no label vector, no registry look-up by a
//! freshly built key per request) until the next render: the exporter drops a series that has
//! not changed for its idle timeout, and only while it renders, so a handle kept across that
//! would record into a series no longer exported. Every render ends an epoch; a thread whose
//! buffers belong to an earlier epoch adds what they hold and empties them before it records
//! again, and the next request registers again, which puts a dropped series back.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use metrics::Counter;
use thread_local::ThreadLocal;

use super::FastMap as HashMap;
pub use super::histograms::Samples;
use super::histograms::Totals;
use tenancy::ids::TenantId;

/// The maps keyed by text (route templates, plans, servers): looked up by a borrowed key once,
/// inserting an owned one only when missing (`entry_ref`), not a look-up and then another.
type TextMap<V> = hashbrown::HashMap<Box<str>, V, foldhash::fast::RandomState>;

/// A counter and the increments this thread has not added to it yet.
pub struct Tally {
    counter: Counter,
    n: u64,
}

impl Tally {
    pub fn new(counter: Counter) -> Self {
        Self { counter, n: 0 }
    }

    pub fn add(&mut self, n: u64) {
        self.n += n;
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.counter.increment(self.n);
            self.n = 0;
        }
    }
}

/// A tenant's series (the `other` bucket's too).
pub struct TenantSeries {
    pub requests: Tally,
    pub duration: Samples,
    /// Registered at the tenant's first error only (no series of zeros for every tenant).
    pub errors: Option<Tally>,
}

/// A plan and placement's series.
pub struct PlanSeries {
    /// By status class (`1xx` to `5xx`), each registered at its first request.
    pub requests: [Option<Tally>; CLASSES],
    pub duration: Samples,
}

/// The handles one thread has registered in the current epoch.
#[derive(Default)]
pub struct Series {
    /// Route template → status class (index) × method (index).
    http: TextMap<[[Option<Samples>; METHODS]; CLASSES]>,
    /// Whether a tenant has a series of its own (the top-N's answer, asked once per epoch).
    admitted: HashMap<TenantId, bool>,
    /// `None`: the `other` bucket.
    tenants: HashMap<Option<TenantId>, TenantSeries>,
    /// Plan → placement (shared, dedicated).
    plans: TextMap<[Option<PlanSeries>; 2]>,
    rate_limits: HashMap<(&'static str, bool), Tally>,
    /// Database server → its checkout-wait histogram.
    checkouts: TextMap<Samples>,
}

/// Methods with a label of their own, plus `_OTHER`.
pub const METHODS: usize = 8;
/// Status classes.
pub const CLASSES: usize = 5;

impl Series {
    fn flush(&mut self, totals: &mut Totals, now: Instant) {
        for row in self.http.values_mut().flatten() {
            for s in row.iter_mut().flatten() {
                s.flush(totals, now);
            }
        }
        for t in self.tenants.values_mut() {
            t.requests.flush();
            t.duration.flush(totals, now);
            t.errors.iter_mut().for_each(Tally::flush);
        }
        for p in self.plans.values_mut().flatten().flatten() {
            p.requests.iter_mut().flatten().for_each(Tally::flush);
            p.duration.flush(totals, now);
        }
        self.rate_limits.values_mut().for_each(Tally::flush);
        for s in self.checkouts.values_mut() {
            s.flush(totals, now);
        }
    }

    /// The duration histogram of a route, method and status class.
    pub fn http(
        &mut self,
        route: &str,
        method: usize,
        class: usize,
        make: impl FnOnce() -> Samples,
    ) -> &mut Samples {
        self.http.entry_ref(route).or_default()[class][method].get_or_insert_with(make)
    }

    /// Whether `tenant` has a series of its own, `ask`ed once per thread and epoch (the top-N
    /// changes only when a scrape ranks it, and every scrape ends the epoch).
    pub fn admitted(&mut self, tenant: TenantId, ask: impl FnOnce() -> bool) -> bool {
        *self.admitted.entry(tenant).or_insert_with(ask)
    }

    /// A tenant's series (`None`: `other`).
    pub fn tenant(
        &mut self,
        tenant: Option<TenantId>,
        make: impl FnOnce() -> (Counter, Samples),
    ) -> &mut TenantSeries {
        self.tenants.entry(tenant).or_insert_with(|| {
            let (requests, duration) = make();
            TenantSeries {
                requests: Tally::new(requests),
                duration,
                errors: None,
            }
        })
    }

    /// A plan and placement's series.
    pub fn plan(
        &mut self,
        plan: &str,
        placement: usize,
        make: impl FnOnce() -> Samples,
    ) -> &mut PlanSeries {
        self.plans.entry_ref(plan).or_default()[placement].get_or_insert_with(|| PlanSeries {
            requests: Default::default(),
            duration: make(),
        })
    }

    /// The rate-limit decision counter of a scope and outcome.
    pub fn rate_limit(
        &mut self,
        scope: &'static str,
        allowed: bool,
        make: impl FnOnce() -> Counter,
    ) -> &mut Tally {
        self.rate_limits
            .entry((scope, allowed))
            .or_insert_with(|| Tally::new(make()))
    }

    /// The checkout-wait histogram of a database server.
    pub fn checkout(&mut self, server: &str, make: impl FnOnce() -> Samples) -> &mut Samples {
        self.checkouts.entry_ref(server).or_insert_with(make)
    }
}

/// One thread's buffers.
#[derive(Default)]
pub struct Local {
    epoch: u64,
    pub series: Series,
    /// Requests per tenant not yet handed to the top-N ranking.
    counts: HashMap<TenantId, u64>,
}

impl Local {
    /// Counts a request of `tenant` for the top-N ranking.
    pub fn count(&mut self, tenant: TenantId) {
        *self.counts.entry(tenant).or_insert(0) += 1;
    }

    /// Adds every buffered increment to the exporter's series and every sample to `totals`.
    fn flush(&mut self, totals: &mut Totals, now: Instant) {
        self.series.flush(totals, now);
    }
}

/// One thread's part.
#[derive(Default)]
struct Thread {
    /// Requests this thread began minus those it ended (a request may end on another thread:
    /// only the sum over threads means anything). Outside the mutex: one uncontended atomic
    /// add on the thread's own cache line.
    in_flight: AtomicI64,
    local: Mutex<Local>,
}

/// Every thread's buffers and the render epoch.
#[derive(Default)]
pub struct Handles {
    epoch: AtomicU64,
    threads: ThreadLocal<Thread>,
    /// The histograms' totals (taken after a thread's own lock, never before).
    totals: Mutex<Totals>,
}

/// What a flush of every thread gathered besides the series.
#[derive(Default)]
pub struct Gathered {
    /// Requests per tenant since the previous flush.
    pub counts: HashMap<TenantId, u64>,
    /// Requests in flight now.
    pub in_flight: i64,
}

impl Handles {
    /// This thread's buffers, emptied first if they belong to an earlier epoch.
    pub fn local(&self) -> MutexGuard<'_, Local> {
        let mut local = lock(&self.threads.get_or_default().local);
        let epoch = self.epoch.load(Ordering::Acquire);
        if local.epoch != epoch {
            local.flush(&mut lock(&self.totals), Instant::now());
            local.series = Series::default();
            local.epoch = epoch;
        }
        local
    }

    /// Adds every thread's buffers to the exporter's series; the tenants' request counts and
    /// the requests in flight.
    pub fn flush(&self) -> Gathered {
        let mut all = Gathered::default();
        let now = Instant::now();
        for thread in &self.threads {
            all.in_flight += thread.in_flight.load(Ordering::Relaxed);
            let mut local = lock(&thread.local);
            local.flush(&mut lock(&self.totals), now);
            for (tenant, n) in local.counts.drain() {
                *all.counts.entry(tenant).or_insert(0) += n;
            }
        }
        all
    }

    /// A request began on this thread.
    pub fn began(&self) {
        self.threads
            .get_or_default()
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended on this thread (it may have begun on another).
    pub fn ended(&self) {
        self.threads
            .get_or_default()
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Appends the histograms in the text format, after dropping those idle for `idle`.
    pub fn render_histograms(&self, idle: Duration, out: &mut String) {
        lock(&self.totals).render(idle, Instant::now(), out);
    }

    /// Ends the epoch: called once the exporter may have dropped idle series.
    pub fn renew(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use metrics::{Key, Recorder as _};
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

    use super::*;

    fn recorder() -> PrometheusRecorder {
        PrometheusBuilder::new().build_recorder()
    }

    fn value(r: &PrometheusRecorder, series: &str) -> Option<f64> {
        r.handle()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    fn counter(r: &PrometheusRecorder) -> Counter {
        r.register_counter(&Key::from_name("requests_total"), &super::super::META)
    }

    fn histogram() -> Samples {
        Samples::new(
            "seconds",
            &[1.0],
            super::super::histograms::labels(&[("db", "x")]),
        )
    }

    fn histograms(h: &Handles) -> String {
        let mut out = String::new();
        h.render_histograms(Duration::from_secs(60), &mut out);
        out
    }

    /// Record on this thread's buffers, as `Metrics::finish` does.
    fn record(h: &Handles, r: &PrometheusRecorder, tenant: TenantId) {
        let mut local = h.local();
        local.count(tenant);
        local.series.rate_limit("ip", true, || counter(r)).add(1);
        local.series.checkout("db", histogram).record(0.5);
    }

    #[test]
    fn what_threads_buffer_reaches_the_exporter_at_a_flush_summed() {
        let (h, r) = (Handles::default(), recorder());
        let tenant = TenantId::from_uuid(uuid::Uuid::now_v7());
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..10 {
                        record(&h, &r, tenant);
                    }
                });
            }
        });
        record(&h, &r, tenant);
        assert_eq!(
            value(&r, "requests_total"),
            Some(0.0),
            "buffered, not added"
        );
        assert_eq!(histograms(&h), "", "no sample added yet");
        let gathered = h.flush();
        assert_eq!(value(&r, "requests_total"), Some(21.0));
        assert!(
            histograms(&h).contains("seconds_count{db=\"x\"} 21\n"),
            "{}",
            histograms(&h)
        );
        assert_eq!(gathered.counts.get(&tenant), Some(&21));
        assert!(h.flush().counts.is_empty(), "counts are handed over once");
        assert_eq!(
            value(&r, "requests_total"),
            Some(21.0),
            "and increments once"
        );
    }

    #[test]
    fn a_new_epoch_adds_the_buffers_and_registers_again() {
        let (h, r) = (Handles::default(), recorder());
        let tenant = TenantId::from_uuid(uuid::Uuid::now_v7());
        record(&h, &r, tenant);
        h.renew();
        let mut registered = false;
        let mut local = h.local();
        assert_eq!(
            value(&r, "requests_total"),
            Some(1.0),
            "the earlier epoch's buffer was added"
        );
        assert!(histograms(&h).contains("seconds_count{db=\"x\"} 1\n"));
        local.series.rate_limit("ip", true, || {
            registered = true;
            counter(&r)
        });
        assert!(registered, "a handle of the earlier epoch was kept");
    }

    #[test]
    fn requests_in_flight_are_summed_over_threads() {
        let h = Handles::default();
        h.began();
        h.began();
        std::thread::scope(|s| {
            s.spawn(|| h.ended());
        });
        assert_eq!(h.flush().in_flight, 1);
    }
}
