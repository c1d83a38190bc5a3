//! Queue depth and age per kind, across every database: gathered by the worker's sweep (one
//! query per database per sweep, the same visit that finds lost work), read by the metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

/// The jobs of one kind in one state, summed over every tenant this instance's sweep saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Depth {
    pub jobs: u64,
    /// How long the oldest due job of these has waited (pending and retrying: since it was due;
    /// running: since it was due before its claim), in seconds; `None` when none is due.
    pub oldest_due_seconds: Option<f64>,
}

/// The last complete sweep's depths by (kind, state), and when it was taken.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub depths: BTreeMap<(String, String), Depth>,
    pub taken_at: Option<OffsetDateTime>,
}

/// Shared between the worker (writer) and the metrics (reader).
#[derive(Clone, Debug, Default)]
pub struct QueueStats(Arc<RwLock<Snapshot>>);

impl QueueStats {
    /// The last complete sweep's depths.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, s: Snapshot) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }
}

/// A sweep's running tally.
#[derive(Debug, Default)]
pub(crate) struct Tally(BTreeMap<(String, String), Depth>);

impl Tally {
    pub(crate) fn add(
        &mut self,
        kind: String,
        state: String,
        jobs: i64,
        oldest: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        let d = self.0.entry((kind, state)).or_default();
        d.jobs += u64::try_from(jobs).unwrap_or(0);
        if let Some(at) = oldest {
            let age = (now - at).as_seconds_f64().max(0.0);
            d.oldest_due_seconds = Some(d.oldest_due_seconds.map_or(age, |a| a.max(age)));
        }
    }

    pub(crate) fn finish(self, now: OffsetDateTime) -> Snapshot {
        Snapshot {
            depths: self.0,
            taken_at: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_sum_over_databases_and_keep_the_oldest_age() {
        let now = OffsetDateTime::now_utc();
        let mut t = Tally::default();
        let k = || "email.invitation".to_owned();
        t.add(
            k(),
            "pending".into(),
            3,
            Some(now - time::Duration::seconds(10)),
            now,
        );
        t.add(
            k(),
            "pending".into(),
            2,
            Some(now - time::Duration::seconds(40)),
            now,
        );
        t.add(k(), "pending".into(), 1, None, now);
        t.add(k(), "dead".into(), 4, None, now);
        let s = t.finish(now);
        let p = s.depths[&(k(), "pending".to_owned())];
        assert_eq!(p.jobs, 6);
        assert!((p.oldest_due_seconds.expect("age") - 40.0).abs() < 0.001);
        assert_eq!(s.depths[&(k(), "dead".to_owned())].oldest_due_seconds, None);
    }
}
