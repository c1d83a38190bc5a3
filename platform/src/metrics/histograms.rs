//! The request histograms, counted into buckets by each worker thread and rendered here, beside
//! the exporter's text. The exporter keeps every raw sample of a histogram (lock-free blocks, an
//! epoch pin and a recency clock read per sample) until an upkeep folds them into bucket counts:
//! with three samples per request that was most of what metrics cost a request
//! (docs/benchmarks.md). Here a sample is a bucket index search and two adds on the thread's own
//! memory; every scrape and upkeep adds the threads' counts to the totals.
//!
//! A series that has not changed for the idle timeout is dropped at a scrape, as the exporter
//! drops its own; it comes back, counting from one, with its next sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One series' counts on one thread since they were last added to the totals.
pub struct Samples {
    family: &'static str,
    bounds: &'static [f64],
    /// The series' labels, rendered (`name="value",...`).
    labels: Box<str>,
    /// Per bucket (the last: above every bound), not cumulative.
    counts: Box<[u64]>,
    sum: f64,
}

impl Samples {
    pub fn new(family: &'static str, bounds: &'static [f64], labels: String) -> Self {
        Self {
            family,
            bounds,
            labels: labels.into(),
            counts: vec![0; bounds.len() + 1].into(),
            sum: 0.0,
        }
    }

    /// Counts one sample (a value equal to a bound counts in that bound's bucket: `le`).
    pub fn record(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.sum += v;
    }

    /// Adds the counts to `totals` and starts again from zero.
    pub fn flush(&mut self, totals: &mut Totals, now: Instant) {
        if self.counts.iter().all(|c| *c == 0) {
            return;
        }
        let series = totals
            .series
            .entry((self.family, self.labels.clone()))
            .or_insert_with(|| Cumulative {
                bounds: self.bounds,
                counts: vec![0; self.counts.len()],
                sum: 0.0,
                changed: now,
            });
        for (total, n) in series.counts.iter_mut().zip(self.counts.iter_mut()) {
            *total += std::mem::take(n);
        }
        series.sum += std::mem::take(&mut self.sum);
        series.changed = now;
    }
}

struct Cumulative {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    changed: Instant,
}

/// Every series' counts since it (re)appeared.
#[derive(Default)]
pub struct Totals {
    series: BTreeMap<(&'static str, Box<str>), Cumulative>,
}

impl Totals {
    /// Drops the series unchanged for `idle`, then appends the rest in the text format.
    pub fn render(&mut self, idle: Duration, now: Instant, out: &mut String) {
        self.series
            .retain(|_, s| now.saturating_duration_since(s.changed) < idle);
        let mut family = "";
        for ((name, labels), s) in &self.series {
            if *name != family {
                family = name;
                let _ = writeln!(out, "# TYPE {name} histogram");
            }
            let mut cumulative = 0;
            for (bound, n) in s.bounds.iter().zip(&s.counts) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let count: u64 = s.counts.iter().sum();
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", s.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// Labels in the text format, values escaped (`\`, `"`, line feed).
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.1, 1.0];

    fn render(t: &mut Totals, idle: Duration, now: Instant) -> String {
        let mut out = String::new();
        t.render(idle, now, &mut out);
        out
    }

    #[test]
    fn samples_from_threads_add_up_in_cumulative_buckets() {
        let now = Instant::now();
        let mut totals = Totals::default();
        let label = labels(&[("route", "/a\"b\\")]);
        let mut one = Samples::new("d_seconds", BOUNDS, label.clone());
        let mut two = Samples::new("d_seconds", BOUNDS, label);
        one.record(0.1);
        one.record(0.5);
        two.record(3.0);
        one.flush(&mut totals, now);
        two.flush(&mut totals, now);
        one.record(0.05);
        one.flush(&mut totals, now);
        let text = render(&mut totals, Duration::from_secs(60), now);
        let l = r#"route="/a\"b\\""#;
        for line in [
            "# TYPE d_seconds histogram".to_owned(),
            format!(r#"d_seconds_bucket{{{l},le="0.1"}} 2"#),
            format!(r#"d_seconds_bucket{{{l},le="1"}} 3"#),
            format!(r#"d_seconds_bucket{{{l},le="+Inf"}} 4"#),
            format!("d_seconds_sum{{{l}}} 3.65"),
            format!("d_seconds_count{{{l}}} 4"),
        ] {
            assert!(text.lines().any(|x| x == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn an_idle_series_is_dropped_and_comes_back_from_one() {
        let now = Instant::now();
        let mut totals = Totals::default();
        let mut s = Samples::new("d_seconds", BOUNDS, labels(&[("a", "b")]));
        s.record(0.2);
        s.record(0.2);
        s.flush(&mut totals, now);
        s.flush(&mut totals, now + Duration::from_secs(30));
        assert!(
            render(&mut totals, Duration::from_secs(60), now)
                .contains("d_seconds_count{a=\"b\"} 2")
        );
        let later = now + Duration::from_secs(61);
        assert!(
            !render(&mut totals, Duration::from_secs(60), later).contains("d_seconds"),
            "an empty flush is no change"
        );
        s.record(0.2);
        s.flush(&mut totals, later);
        assert!(
            render(&mut totals, Duration::from_secs(60), later)
                .contains("d_seconds_count{a=\"b\"} 1")
        );
    }
}
