//! One latency histogram: HDR counts in microseconds plus the exact sum.
//!
//! No locks, no atomics: runs on the worker's hot path. `record` never allocates (the HDR
//! histogram has fixed bounds and does not auto-resize).

use std::time::Duration;

use hdrhistogram::Histogram;

/// Lowest trackable value: 1 µs. Shorter durations are recorded as 1 µs.
pub const LOWEST_MICROS: u64 = 1;
/// Highest trackable value: 60 s. Longer durations are clamped to it.
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Two significant digits: about 1 % error, and about 20 KiB of counts per histogram
/// (one per route and upstream per worker, so memory matters more than the third digit).
pub const SIGNIFICANT_DIGITS: u8 = 2;

/// A latency histogram with fixed bounds ([`LOWEST_MICROS`]..[`HIGHEST_MICROS`]) and the exact
/// sum of the recorded durations (HDR data gives the Prometheus `_sum` only approximately).
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    sum_micros: u64,
}

impl LatencyHistogram {
    /// An empty histogram. Allocates the counts array once.
    pub fn new() -> Self {
        // The bounds are constants that satisfy HDR's rules (low >= 1, high >= 2 * low,
        // digits <= 5), so construction cannot fail; the fallback is never taken.
        let hist = Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Self {
            hist,
            sum_micros: 0,
        }
    }

    /// Records one duration, clamped to the trackable range. Never allocates.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(LOWEST_MICROS, HIGHEST_MICROS);
        self.hist.saturating_record(micros);
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Adds every sample of `other` to `self` (HDR merge: exact, same bounds on both sides).
    pub fn add(&mut self, other: &LatencyHistogram) {
        if self.hist.add(&other.hist).is_err() {
            // Only reachable if the bounds ever differ: re-record value by value, clamped.
            for v in other.hist.iter_recorded() {
                self.hist
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// Number of recorded samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// Sum of the recorded (clamped) durations, in microseconds.
    pub fn sum_micros(&self) -> u64 {
        self.sum_micros
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds, as HDR reports it (the highest
    /// value equivalent to the sample at that rank).
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    /// Cumulative counts for the upper bounds `le_micros` (ascending): element i is the number
    /// of samples whose HDR bucket starts at or below `le_micros[i]`. Samples above the last
    /// bound are only in [`count`](Self::count) (the `+Inf` bucket). A sample within HDR's
    /// resolution (about 1 %) of a bound may be counted on either side of it.
    pub fn cumulative_buckets(&self, le_micros: &[u64]) -> Vec<u64> {
        let mut counts = vec![0u64; le_micros.len()];
        for v in self.hist.iter_recorded() {
            let low = self.hist.lowest_equivalent(v.value_iterated_to());
            if let Some(i) = le_micros.iter().position(|&le| low <= le) {
                counts[i] += v.count_at_value();
            }
        }
        let mut running = 0u64;
        for c in &mut counts {
            running += *c;
            *c = running;
        }
        counts
    }

    /// Forgets every sample, keeping the allocation.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_micros = 0;
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_below_one_microsecond_and_above_sixty_seconds() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(10));
        h.record(Duration::from_secs(3600));
        assert_eq!(h.count(), 2);
        assert_eq!(h.sum_micros(), 1 + HIGHEST_MICROS);
        assert!(h.value_at_quantile(1.0) >= HIGHEST_MICROS);
        assert_eq!(h.value_at_quantile(0.0), 1);
    }

    #[test]
    fn cumulative_buckets_count_exact_bounds_as_le() {
        let mut h = LatencyHistogram::new();
        for micros in [500, 1000, 1004, 7000, 20_000_000] {
            h.record(Duration::from_micros(micros));
        }
        let b = h.cumulative_buckets(&[500, 1000, 10_000, 10_000_000]);
        assert_eq!(b, vec![1, 2, 4, 4]);
        assert_eq!(h.count(), 5);
    }

    #[test]
    fn reset_forgets_samples_and_sum() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_millis(3));
        h.reset();
        assert!(h.is_empty());
        assert_eq!(h.sum_micros(), 0);
    }
}
