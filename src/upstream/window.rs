//! A rolling window of two counters in fixed buckets: no allocation after construction, no
//! clock reads of its own (the caller passes `now`, so tests drive time exactly).

use std::time::{Duration, Instant};

/// Buckets per window: the window slides in steps of a tenth of its length.
const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    a: u64,
    b: u64,
}

/// Two counts (`a`, `b`) over the last `window`.
#[derive(Debug, Clone)]
pub struct Window {
    origin: Instant,
    step: Duration,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// An empty window of length `window` starting at `origin`.
    pub fn new(window: Duration, origin: Instant) -> Self {
        Self {
            origin,
            step: (window / BUCKETS as u32).max(Duration::from_millis(1)),
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        // Epoch 0 is "never written": real epochs start at 1.
        (since.as_nanos() / self.step.as_nanos()) as u64 + 1
    }

    /// Adds to the counts at `now`.
    pub fn add(&mut self, now: Instant, a: u64, b: u64) {
        let epoch = self.epoch(now);
        let bucket = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket { epoch, a: 0, b: 0 };
        }
        bucket.a += a;
        bucket.b += b;
    }

    /// The counts of the last window at `now`.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        self.buckets
            .iter()
            .filter(|b| b.epoch != 0 && b.epoch + (BUCKETS as u64) > epoch && b.epoch <= epoch)
            .fold((0, 0), |(a, b), k| (a + k.a, b + k.b))
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_after_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        w.add(t0, 5, 1);
        w.add(t0 + Duration::from_secs(5), 3, 2);
        assert_eq!(w.totals(t0 + Duration::from_secs(9)), (8, 3));
        assert_eq!(w.totals(t0 + Duration::from_secs(11)), (3, 2));
        assert_eq!(w.totals(t0 + Duration::from_secs(16)), (0, 0));
        w.add(t0 + Duration::from_secs(30), 1, 0);
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (1, 0));
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (0, 0));
    }
}
