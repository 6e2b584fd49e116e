//! GCRA, the generic cell rate algorithm: a token bucket kept as one number.
//!
//! A key's state is its theoretical arrival time (TAT): when the bucket would be full again
//! if nothing else arrived. A request at `now` is admitted if, after adding its cost
//! (`interval`) to `max(TAT, now)`, the debt ahead of `now` stays within `tolerance`
//! (`capacity × interval`); a refused request leaves the state unchanged. A TAT at or before
//! `now` means a full bucket: such state is the same as no state, which is what lets the key
//! table drop idle keys without changing any answer.
//!
//! Pure arithmetic on `u64` nanoseconds from a caller-chosen epoch: no clock, no allocation,
//! so time is injected in tests and the check costs a few instructions on the hot path.

/// One rate: an emission interval and a burst tolerance, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds one request costs (the period divided by the rate).
    interval: u64,
    /// Nanoseconds of debt allowed ahead of now (`capacity × interval`).
    tolerance: u64,
}

/// The outcome of one check, with what the response's rate-limit fields report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub admitted: bool,
    /// Requests that would be admitted right now, after this one.
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset: u64,
    /// Nanoseconds until a refused request could be admitted (0 when admitted).
    pub retry_after: u64,
}

impl Gcra {
    /// `capacity` requests at once (at least 1), refilled one per `interval` nanoseconds
    /// (at least 1).
    pub fn new(interval: u64, capacity: u64) -> Self {
        let interval = interval.max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(capacity.max(1)),
        }
    }

    /// Nanoseconds one request costs.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Requests admitted at once from a full bucket.
    pub fn capacity(&self) -> u64 {
        self.tolerance / self.interval
    }

    /// Checks one request at `now` against the state `tat`, updating it if admitted.
    pub fn check(&self, tat: &mut u64, now: u64) -> Decision {
        let start = (*tat).max(now);
        let next = start.saturating_add(self.interval);
        let debt = next - now;
        if debt > self.tolerance {
            let ahead = start - now;
            return Decision {
                admitted: false,
                remaining: 0,
                reset: ahead,
                retry_after: debt - self.tolerance,
            };
        }
        *tat = next;
        Decision {
            admitted: true,
            remaining: (self.tolerance - debt) / self.interval,
            reset: debt,
            retry_after: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 10 per second (100 ms each), bursts of 3.
    fn ten_per_second() -> Gcra {
        Gcra::new(100 * MS, 3)
    }

    #[test]
    fn admits_a_full_burst_then_refuses() {
        let g = ten_per_second();
        let mut tat = 0;
        let now = 1_000 * MS;
        let remaining: Vec<u64> = (0..3).map(|_| g.check(&mut tat, now).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = g.check(&mut tat, now);
        assert!(!refused.admitted);
        assert_eq!(refused.retry_after, 100 * MS);
        assert_eq!(refused.reset, 300 * MS);
    }

    #[test]
    fn a_refused_request_costs_nothing() {
        let g = Gcra::new(100 * MS, 1);
        let mut tat = 0;
        assert!(g.check(&mut tat, 0).admitted);
        let before = tat;
        assert!(!g.check(&mut tat, 50 * MS).admitted);
        assert_eq!(tat, before);
        assert!(g.check(&mut tat, 100 * MS).admitted);
    }

    #[test]
    fn refills_one_request_per_interval() {
        let g = ten_per_second();
        let mut tat = 0;
        for _ in 0..3 {
            assert!(g.check(&mut tat, 0).admitted);
        }
        assert!(!g.check(&mut tat, 99 * MS).admitted);
        assert!(g.check(&mut tat, 100 * MS).admitted);
        assert!(!g.check(&mut tat, 100 * MS).admitted);
    }

    #[test]
    fn holds_the_rate_over_a_long_run_of_steady_demand() {
        // 1,000 requests per second offered for 10 s against 10/s: 100 plus the burst.
        let g = ten_per_second();
        let mut tat = 0;
        let admitted = (0..10_000u64)
            .filter(|i| g.check(&mut tat, i * MS).admitted)
            .count();
        assert_eq!(admitted, 100 + 3 - 1);
    }

    #[test]
    fn an_old_state_is_a_full_bucket() {
        let g = ten_per_second();
        let mut tat = 5 * MS;
        let d = g.check(&mut tat, 10_000 * MS);
        assert!(d.admitted);
        assert_eq!(d.remaining, 2);
        assert_eq!(d.reset, 100 * MS);
    }

    #[test]
    fn capacity_and_interval_have_floors_of_one() {
        let g = Gcra::new(0, 0);
        assert_eq!(g.interval(), 1);
        assert_eq!(g.capacity(), 1);
    }
}
