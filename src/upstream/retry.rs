//! Retries: which failures are retried (`on`), the pause between attempts (exponential
//! backoff with jitter), and the per-worker retry budget that keeps retries from multiplying
//! an outage: over the last `budget_window`, retries may be at most `budget_percent` of the
//! requests (or `min_retries_per_sec` per second, whichever is more).
//!
//! Whether a request may be retried at all (its body still in hand, an idempotent method or
//! a route that opted in) is the proxy's decision; this module only keeps the rules and the
//! counts. No allocation after construction.

use std::time::{Duration, Instant};

use super::balance::Rng;
use super::window::Window;

/// A failure class a retry can be configured `on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection could not be opened (refused, unreachable, connect timeout).
    ConnectError,
    /// No response head within `timeouts.first_byte`.
    Timeout,
    /// The upstream closed or reset the connection before a response head.
    Reset,
    /// The upstream answered with this status.
    Status(u16),
}

/// `retry = { ... }` of an upstream group.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (1: no retries).
    pub attempts: u32,
    /// Retry on connect errors.
    pub on_connect_error: bool,
    /// Retry when no response head arrived in time.
    pub on_timeout: bool,
    /// Retry when the connection closed before a response head.
    pub on_reset: bool,
    /// Retry on these response statuses.
    pub on_status: Vec<u16>,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Retries allowed, in percent of requests over the budget window.
    pub budget_percent: u32,
    /// The budget's window.
    pub budget_window: Duration,
    /// Retries per second always allowed, whatever the percentage gives.
    pub min_retries_per_sec: u32,
}

impl Default for RetryPolicy {
    /// No retries (the proxy still replays a request once on a fresh connection when a
    /// pooled one turns out to be closed).
    fn default() -> Self {
        Self {
            attempts: 1,
            on_connect_error: false,
            on_timeout: false,
            on_reset: false,
            on_status: Vec::new(),
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            budget_percent: 20,
            budget_window: Duration::from_secs(10),
            min_retries_per_sec: 10,
        }
    }
}

impl RetryPolicy {
    /// Whether this failure is configured to be retried.
    pub fn retries_on(&self, failure: Failure) -> bool {
        match failure {
            Failure::ConnectError => self.on_connect_error,
            Failure::Timeout => self.on_timeout,
            Failure::Reset => self.on_reset,
            Failure::Status(s) => self.on_status.contains(&s),
        }
    }

    /// Whether any response status is retried (the proxy then reads heads before answering).
    pub fn retries_statuses(&self) -> bool {
        self.attempts > 1 && !self.on_status.is_empty()
    }

    /// The pause before retry number `retry` (1-based): `backoff * 2^(retry-1)`, at most
    /// `max_backoff`, with "equal jitter" (a random point in its upper half).
    pub fn backoff(&self, retry: u32, rng: &mut Rng) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ns = half.as_nanos() as u64;
        let jitter = if jitter_ns == 0 {
            0
        } else {
            rng.next_u64() % (jitter_ns + 1)
        };
        half + Duration::from_nanos(jitter)
    }
}

/// One worker's retry budget for one group: requests and retries in a rolling window.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    percent: u32,
    floor: u64,
    counts: Window,
}

impl RetryBudget {
    /// An empty budget for `policy`.
    pub fn new(policy: &RetryPolicy, now: Instant) -> Self {
        let floor = (f64::from(policy.min_retries_per_sec) * policy.budget_window.as_secs_f64())
            .round() as u64;
        Self {
            percent: policy.budget_percent,
            floor,
            counts: Window::new(policy.budget_window, now),
        }
    }

    /// Counts one request (its first attempt).
    pub fn request(&mut self, now: Instant) {
        self.counts.add(now, 1, 0);
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        let (requests, retries) = self.counts.totals(now);
        let allowed = (requests * u64::from(self.percent) / 100).max(self.floor);
        if retries < allowed {
            self.counts.add(now, 0, 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: u32, floor: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            on_connect_error: true,
            on_status: vec![503],
            budget_percent: percent,
            min_retries_per_sec: floor,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn budget_caps_retries_at_the_percentage_of_requests() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(&policy(20, 0), t0);
        let mut retries = 0;
        for _ in 0..1000 {
            budget.request(t0);
            // Every request wants two retries (a total outage).
            for _ in 0..2 {
                if budget.try_retry(t0) {
                    retries += 1;
                }
            }
        }
        assert_eq!(retries, 200);
    }

    #[test]
    fn the_floor_allows_retries_at_low_traffic() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(&policy(20, 1), t0);
        budget.request(t0);
        // 1/s over the 10 s window: ten retries although 20% of one request is zero.
        assert_eq!((0..20).filter(|_| budget.try_retry(t0)).count(), 10);
    }

    #[test]
    fn budget_refills_as_the_window_slides() {
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(&policy(50, 0), t0);
        budget.request(t0);
        budget.request(t0);
        assert!(budget.try_retry(t0));
        assert!(!budget.try_retry(t0));
        let later = t0 + Duration::from_secs(11);
        budget.request(later);
        budget.request(later);
        assert!(budget.try_retry(later));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        let mut rng = Rng::new(7);
        for _ in 0..100 {
            let b1 = p.backoff(1, &mut rng);
            assert!(b1 >= Duration::from_millis(10) && b1 <= Duration::from_millis(20));
            let b2 = p.backoff(2, &mut rng);
            assert!(b2 >= Duration::from_millis(20) && b2 <= Duration::from_millis(40));
            let b9 = p.backoff(9, &mut rng);
            assert!(b9 >= Duration::from_millis(50) && b9 <= Duration::from_millis(100));
        }
    }

    #[test]
    fn retries_only_the_configured_failures() {
        let p = policy(20, 0);
        assert!(p.retries_on(Failure::ConnectError));
        assert!(p.retries_on(Failure::Status(503)));
        assert!(!p.retries_on(Failure::Status(500)));
        assert!(!p.retries_on(Failure::Timeout));
        assert!(!p.retries_on(Failure::Reset));
    }
}
