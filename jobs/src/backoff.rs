//! Retry delays: exponential in the attempt number, capped, with "equal jitter" (half the delay
//! fixed, half random), so a burst of failures does not come back as a burst.

use std::time::Duration;

use rand::Rng as _;

/// The delay before retry number `attempt` (1 after the first failure).
#[must_use]
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(cap);
    let half = full / 2;
    half + half.mul_f64(rand::thread_rng().r#gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_the_jitter_band_and_stops_at_the_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for attempt in 1..=10u32 {
            let full = (base * 2u32.pow(attempt - 1)).min(cap);
            for _ in 0..50 {
                let d = delay(base, cap, attempt);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} vs {full:?}"
                );
            }
        }
        // Jitter: not every delay is the same.
        let ds: std::collections::HashSet<_> = (0..20).map(|_| delay(base, cap, 5)).collect();
        assert!(ds.len() > 1);
    }
}
