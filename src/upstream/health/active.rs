//! Active health: the policy, and the per-target cell the health thread writes and the
//! workers read (one relaxed atomic load per candidate target: cheap, no lock).
//!
//! A target starts healthy. `unhealthy_after` failed probes in a row mark it unhealthy;
//! `healthy_after` good probes in a row mark it healthy again. Cells are shared by every
//! snapshot that has the same group and target, so the state survives reloads and DNS
//! refreshes for targets that stay.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// Accepted health-check statuses, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub low: u16,
    /// Highest accepted status.
    pub high: u16,
}

impl StatusRange {
    /// Whether `status` is accepted.
    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

/// `health = { ... }` of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with `GET`.
    pub path: String,
    /// Statuses that count as healthy.
    pub expected_status: StatusRange,
    /// Time between two probes of a target.
    pub interval: Duration,
    /// Time a probe may take (connect, write, read of the status line).
    pub timeout: Duration,
    /// Failed probes in a row that mark a target unhealthy.
    pub unhealthy_after: u32,
    /// Good probes in a row that mark it healthy again.
    pub healthy_after: u32,
}

/// One target's active-health state. Written only by the health thread.
#[derive(Debug)]
pub struct TargetHealth {
    healthy: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    probes: AtomicU32,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            probes: AtomicU32::new(0),
        }
    }
}

impl TargetHealth {
    /// Whether the target takes traffic as far as active checks know.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Probes run so far.
    pub fn probes(&self) -> u32 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Records one probe's outcome; returns the new health if it changed.
    pub fn record(&self, ok: bool, check: &HealthCheck) -> Option<bool> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let healthy = self.is_healthy();
        let (run, other, threshold) = if ok {
            (&self.successes, &self.failures, check.healthy_after)
        } else {
            (&self.failures, &self.successes, check.unhealthy_after)
        };
        other.store(0, Ordering::Relaxed);
        let count = run.fetch_add(1, Ordering::Relaxed) + 1;
        if healthy != ok && count >= threshold {
            self.healthy.store(ok, Ordering::Relaxed);
            return Some(ok);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            expected_status: StatusRange {
                low: 200,
                high: 299,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 3,
            healthy_after: 2,
        }
    }

    #[test]
    fn goes_down_after_unhealthy_after_failures_and_up_after_healthy_after() {
        let c = check();
        let h = TargetHealth::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(false, &c), Some(false));
        assert!(!h.is_healthy());
        assert_eq!(h.record(false, &c), None);
        assert_eq!(h.record(true, &c), None);
        assert_eq!(h.record(true, &c), Some(true));
        assert!(h.is_healthy());
        assert_eq!(h.probes(), 6);
    }

    #[test]
    fn an_interrupted_run_starts_over() {
        let c = check();
        let h = TargetHealth::default();
        h.record(false, &c);
        h.record(false, &c);
        h.record(true, &c);
        h.record(false, &c);
        h.record(false, &c);
        assert!(h.is_healthy());
        h.record(false, &c);
        assert!(!h.is_healthy());
    }

    #[test]
    fn status_range_is_inclusive() {
        let r = StatusRange {
            low: 200,
            high: 204,
        };
        assert!(r.contains(200) && r.contains(204));
        assert!(!r.contains(205) && !r.contains(199));
    }
}
