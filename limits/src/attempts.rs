//! Limits on attempts whose outcome is unknown when they start (a credential, a password, a
//! second-factor code). Checking and counting are one step: an attempt takes its place in the
//! budget under the limiter's lock before any work is done, so concurrent attempts cannot all
//! pass before the first failure is counted. A success gives the place back, a failure keeps it,
//! and an attempt dropped without an outcome counts as a failure (a client that hangs up mid-way
//! gets no free guess).
//!
//! Two shapes:
//! - [`FailureBudget`]: a rate of failures (GCRA: a burst, then one more per interval), for
//!   failed authentication per address and per claimed tenant. Concurrent attempts with the same
//!   credential (same fingerprint) share one place: they cost one lookup, not many.
//! - [`Backoff`]: a few free failures, then each further attempt waits exponentially longer
//!   (capped), one at a time; for passwords and codes per account and per address.
//!
//! Memory is bounded (100,000 keys per limiter): entries whose state is back to "nothing
//! happened" are dropped by `purge` (and when the map is full); a [`Backoff`] that is still full
//! forgets keys not yet slowed down; a limiter still full after that refuses new keys (fails
//! closed) rather than letting them through unlimited.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const CAPACITY: usize = 100_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A refused attempt: how long to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

// ---------------------------------------------------------------------------------------------
// A rate of failures.

#[derive(Debug)]
struct Flight {
    holders: u32,
    refunded: bool,
}

#[derive(Debug)]
struct BudgetState {
    /// GCRA theoretical arrival time.
    tat: Instant,
    in_flight: HashMap<u64, Flight>,
}

struct BudgetInner<K> {
    interval: Duration,
    tolerance: Duration,
    burst: u32,
    map: Mutex<HashMap<K, BudgetState>>,
}

/// A budget of `burst` failures per key, refilled one per `interval`.
pub struct FailureBudget<K> {
    inner: Arc<BudgetInner<K>>,
}

impl<K> Clone for FailureBudget<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: Clone + Eq + Hash> FailureBudget<K> {
    #[must_use]
    pub fn new(burst: u32, interval: Duration) -> Self {
        let burst = burst.max(1);
        Self {
            inner: Arc::new(BudgetInner {
                interval,
                tolerance: interval * (burst - 1),
                burst,
                map: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The burst (failures allowed from a full budget).
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.inner.burst
    }

    /// Takes a place for one attempt of `key` with the credential `fingerprint`, or refuses.
    pub fn begin(&self, key: K, fingerprint: u64) -> Result<BudgetAttempt<K>, Refused> {
        let now = Instant::now();
        let mut map = lock(&self.inner.map);
        if !map.contains_key(&key) && map.len() >= CAPACITY {
            purge_budget(&mut map, now);
            if map.len() >= CAPACITY {
                return Err(Refused {
                    retry_after: self.inner.interval.max(Duration::from_secs(1)),
                });
            }
        }
        let state = map.entry(key.clone()).or_insert_with(|| BudgetState {
            tat: now,
            in_flight: HashMap::new(),
        });
        if let Some(f) = state.in_flight.get_mut(&fingerprint) {
            f.holders += 1;
        } else {
            let tat = state.tat.max(now);
            if tat.duration_since(now) > self.inner.tolerance {
                return Err(Refused {
                    retry_after: tat.duration_since(now) - self.inner.tolerance,
                });
            }
            state.tat = tat + self.inner.interval;
            state.in_flight.insert(
                fingerprint,
                Flight {
                    holders: 1,
                    refunded: false,
                },
            );
        }
        Ok(BudgetAttempt {
            budget: self.clone(),
            key: Some((key, fingerprint)),
        })
    }

    fn finish(&self, key: &K, fingerprint: u64, success: bool) {
        let mut map = lock(&self.inner.map);
        let Some(state) = map.get_mut(key) else {
            return;
        };
        let Some(f) = state.in_flight.get_mut(&fingerprint) else {
            return;
        };
        if success && !f.refunded {
            f.refunded = true;
            state.tat = state
                .tat
                .checked_sub(self.inner.interval)
                .unwrap_or(state.tat);
        }
        f.holders -= 1;
        if f.holders == 0 {
            state.in_flight.remove(&fingerprint);
        }
    }

    /// Drops keys whose budget is full again and that have nothing in flight.
    pub fn purge(&self) {
        let mut map = lock(&self.inner.map);
        purge_budget(&mut map, Instant::now());
        map.shrink_to_fit();
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.inner.map).len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn purge_budget<K>(map: &mut HashMap<K, BudgetState>, now: Instant) {
    map.retain(|_, s| s.tat > now || !s.in_flight.is_empty());
}

/// One attempt's place in a [`FailureBudget`]: [`Self::succeeded`] gives it back; dropped, it
/// stays counted as a failure.
pub struct BudgetAttempt<K: Clone + Eq + Hash> {
    budget: FailureBudget<K>,
    key: Option<(K, u64)>,
}

impl<K: Clone + Eq + Hash> BudgetAttempt<K> {
    /// The attempt succeeded: its place goes back to the budget.
    pub fn succeeded(mut self) {
        if let Some((k, fp)) = self.key.take() {
            self.budget.finish(&k, fp, true);
        }
    }
}

impl<K: Clone + Eq + Hash> Drop for BudgetAttempt<K> {
    fn drop(&mut self) {
        if let Some((k, fp)) = self.key.take() {
            self.budget.finish(&k, fp, false);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exponential backoff after a few free failures.

#[derive(Clone, Copy, Debug)]
struct BackoffState {
    failures: u32,
    in_flight: u32,
    last: Instant,
}

struct BackoffInner<K> {
    free: u32,
    max_wait: Duration,
    forget_after: Duration,
    map: Mutex<HashMap<K, BackoffState>>,
}

/// `free` failures per key, then one attempt at a time, each after a wait that doubles with
/// every further failure (1 s, 2 s, 4 s, … up to `max_wait`). A key quiet for `forget_after`
/// starts over.
pub struct Backoff<K> {
    inner: Arc<BackoffInner<K>>,
}

impl<K> Clone for Backoff<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted against the key.
    Failed,
    /// Not counted; earlier failures stay.
    Passed,
    /// Not counted, and earlier failures are forgotten (a successful login clears its account).
    Cleared,
}

impl<K: Clone + Eq + Hash> Backoff<K> {
    #[must_use]
    pub fn new(free: u32, max_wait: Duration, forget_after: Duration) -> Self {
        Self {
            inner: Arc::new(BackoffInner {
                free,
                max_wait,
                forget_after,
                map: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn wait(&self, failures: u32) -> Duration {
        if failures < self.inner.free {
            return Duration::ZERO;
        }
        let exp = (failures - self.inner.free).min(20);
        Duration::from_secs(1u64 << exp).min(self.inner.max_wait)
    }

    /// Takes a place for one attempt of `key`, or refuses with the time to wait.
    pub fn begin(&self, key: K) -> Result<BackoffAttempt<K>, Refused> {
        let now = Instant::now();
        let mut map = lock(&self.inner.map);
        if !map.contains_key(&key) && map.len() >= CAPACITY {
            self.purge_locked(&mut map, now);
            if map.len() >= CAPACITY {
                // Keys not yet slowed down lose little by being forgotten (a spray over many
                // accounts leaves mostly those); only keys that are being slowed down stay.
                let free = self.inner.free;
                map.retain(|_, s| s.in_flight > 0 || s.failures >= free);
            }
            if map.len() >= CAPACITY {
                return Err(Refused {
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        let fresh = BackoffState {
            failures: 0,
            in_flight: 0,
            last: now,
        };
        let state = map.entry(key.clone()).or_insert(fresh);
        if state.in_flight == 0 && now.duration_since(state.last) > self.inner.forget_after {
            *state = fresh;
        }
        let allowed = if state.failures + state.in_flight < self.inner.free {
            true
        } else if state.failures >= self.inner.free && state.in_flight == 0 {
            now.duration_since(state.last) >= self.wait(state.failures)
        } else {
            false
        };
        if !allowed {
            let waited = now.duration_since(state.last);
            let retry_after = self
                .wait(state.failures)
                .saturating_sub(waited)
                .max(Duration::from_secs(1));
            return Err(Refused { retry_after });
        }
        state.in_flight += 1;
        Ok(BackoffAttempt {
            backoff: self.clone(),
            key: Some(key),
        })
    }

    fn finish(&self, key: &K, outcome: Outcome) {
        let mut map = lock(&self.inner.map);
        let Some(state) = map.get_mut(key) else {
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {
                state.failures = state.failures.saturating_add(1);
                state.last = Instant::now();
            }
            Outcome::Passed => {}
            Outcome::Cleared => state.failures = 0,
        }
        if state.failures == 0 && state.in_flight == 0 {
            map.remove(key);
        }
    }

    fn purge_locked(&self, map: &mut HashMap<K, BackoffState>, now: Instant) {
        map.retain(|_, s| s.in_flight > 0 || now.duration_since(s.last) <= self.inner.forget_after);
    }

    /// Drops keys quiet for longer than `forget_after`.
    pub fn purge(&self) {
        let mut map = lock(&self.inner.map);
        self.purge_locked(&mut map, Instant::now());
        map.shrink_to_fit();
    }
}

/// One attempt's place in a [`Backoff`]; dropped without [`Self::finish`], it counts as failed.
pub struct BackoffAttempt<K: Clone + Eq + Hash> {
    backoff: Backoff<K>,
    key: Option<K>,
}

impl<K: Clone + Eq + Hash> BackoffAttempt<K> {
    /// Ends the attempt.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(k) = self.key.take() {
            self.backoff.finish(&k, outcome);
        }
    }
}

impl<K: Clone + Eq + Hash> Drop for BackoffAttempt<K> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.backoff.finish(&k, Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_counts_concurrent_attempts_before_their_outcome() {
        let b = FailureBudget::new(3, Duration::from_secs(60));
        // Three different credentials in flight at once take the whole budget ...
        let held: Vec<_> = (0..3).map(|fp| b.begin("ip", fp).expect("place")).collect();
        assert!(b.begin("ip", 99).is_err());
        // ... but the same credential again shares its place.
        let again = b.begin("ip", 0).expect("shared place");
        // Successes give the places back; a failure (drop) keeps its place.
        let mut held = held.into_iter();
        held.next().expect("0").succeeded();
        again.succeeded();
        held.next().expect("1").succeeded();
        drop(held);
        assert!(b.begin("ip", 7).map(BudgetAttempt::succeeded).is_ok());
        let a = b.begin("ip", 8).expect("place");
        let c = b.begin("ip", 9).expect("place");
        drop((a, c));
        let refused = b.begin("ip", 10).err().expect("refused");
        assert!(refused.retry_after > Duration::from_secs(1));
        // Another key has its own budget.
        assert!(b.begin("other", 1).is_ok());
    }

    #[test]
    fn a_backoff_lets_only_the_free_attempts_run_at_once_then_one_at_a_time() {
        let b = Backoff::new(2, Duration::from_secs(900), Duration::from_secs(3600));
        let a1 = b.begin("acct").expect("1");
        let a2 = b.begin("acct").expect("2");
        assert!(
            b.begin("acct").is_err(),
            "two in flight take both free places"
        );
        a1.finish(Outcome::Failed);
        a2.finish(Outcome::Passed);
        let a3 = b.begin("acct").expect("one free failure left");
        a3.finish(Outcome::Failed);
        // Two failures: the next attempt must wait.
        let wait = b.begin("acct").err().expect("backoff").retry_after;
        assert!(wait >= Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // A success clears: its earlier failures are forgotten.
        let b = Backoff::new(2, Duration::from_secs(900), Duration::from_secs(3600));
        b.begin("x").expect("1").finish(Outcome::Failed);
        b.begin("x").expect("2").finish(Outcome::Cleared);
        b.begin("x").expect("3").finish(Outcome::Failed);
        b.begin("x").expect("4").finish(Outcome::Failed);
        assert!(b.begin("x").is_err());
        // Dropping an attempt counts as a failure.
        drop(b.begin("y").expect("1"));
        drop(b.begin("y").expect("2"));
        assert!(b.begin("y").is_err());
    }
}
