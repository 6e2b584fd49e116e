//! Passive health (outlier ejection), per worker and target.
//!
//! `consecutive_failures` failures in a row (connect errors, timeouts, resets, 5xx) eject the
//! target for `base_ejection * 2^(ejections so far)`, at most `max_ejection`; a success
//! resets both the failure run and the ejection count. The group decides whether another
//! ejection is allowed (`max_ejected_percent`). Time comes from the caller.

use std::time::{Duration, Instant};

/// `passive = { ... }` of an upstream group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    /// Failures in a row that eject a target.
    pub consecutive_failures: u32,
    /// First ejection's length; doubles per ejection while the target keeps failing.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Largest share of a group's targets ejected at once, in percent (at least one target).
    pub max_ejected_percent: u32,
}

impl PassivePolicy {
    /// How many of `n` targets may be ejected at once.
    pub fn max_ejected(&self, n: usize) -> usize {
        if self.max_ejected_percent == 0 {
            return 0;
        }
        (n * self.max_ejected_percent as usize / 100).max(1)
    }
}

/// One worker's view of one target's recent failures.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassiveState {
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

impl PassiveState {
    /// Whether the target is ejected at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends, if the target is ejected.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|&until| now < until)
    }

    /// Records a success: the failure run and the ejection count start over.
    pub fn success(&mut self) {
        self.failures = 0;
        self.ejections = 0;
    }

    /// Records a failure; ejects the target when the run is long enough and `may_eject`.
    /// Returns whether it was ejected now.
    pub fn failure(&mut self, policy: &PassivePolicy, now: Instant, may_eject: bool) -> bool {
        if self.is_ejected(now) {
            return false;
        }
        self.failures += 1;
        if self.failures < policy.consecutive_failures || !may_eject {
            return false;
        }
        let factor = 1u32 << self.ejections.min(16);
        let length = policy
            .base_ejection
            .saturating_mul(factor)
            .min(policy.max_ejection);
        self.ejected_until = Some(now + length);
        self.ejections += 1;
        self.failures = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PassivePolicy {
        PassivePolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_for_a_growing_time() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = PassiveState::default();
        assert!(!s.failure(&p, t0, true));
        assert!(!s.failure(&p, t0, true));
        assert!(s.failure(&p, t0, true));
        assert_eq!(s.ejected_until(t0), Some(t0 + Duration::from_secs(1)));
        // Back after 1 s, fails on: 2 s, then 4 s, then capped at 5 s.
        let mut t = t0 + Duration::from_secs(1);
        for expected in [2, 4, 5, 5] {
            assert!(!s.is_ejected(t));
            for _ in 0..3 {
                s.failure(&p, t, true);
            }
            assert_eq!(s.ejected_until(t), Some(t + Duration::from_secs(expected)));
            t += Duration::from_secs(expected);
        }
    }

    #[test]
    fn a_success_resets_the_run_and_the_backoff() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = PassiveState::default();
        for _ in 0..3 {
            s.failure(&p, t0, true);
        }
        let t = t0 + Duration::from_secs(1);
        s.success();
        s.failure(&p, t, true);
        s.failure(&p, t, true);
        s.success();
        s.failure(&p, t, true);
        assert!(!s.is_ejected(t));
        s.failure(&p, t, true);
        assert!(s.failure(&p, t, true));
        assert_eq!(s.ejected_until(t), Some(t + Duration::from_secs(1)));
    }

    #[test]
    fn no_ejection_when_the_group_is_at_its_cap() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = PassiveState::default();
        for _ in 0..5 {
            assert!(!s.failure(&p, t0, false));
        }
        assert!(!s.is_ejected(t0));
        assert!(s.failure(&p, t0, true), "ejected once allowed");
    }

    #[test]
    fn cap_allows_at_least_one_target() {
        let p = policy();
        assert_eq!(p.max_ejected(1), 1);
        assert_eq!(p.max_ejected(3), 1);
        assert_eq!(p.max_ejected(10), 5);
        let none = PassivePolicy {
            max_ejected_percent: 0,
            ..p
        };
        assert_eq!(none.max_ejected(10), 0);
    }
}
