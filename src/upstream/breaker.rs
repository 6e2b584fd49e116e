//! A circuit breaker per upstream group and worker.
//!
//! Lifecycle: **closed** (requests pass; outcomes counted in a rolling window) → **open**
//! once the window holds at least `min_requests` outcomes and the error share reaches
//! `error_ratio` (requests are refused without touching the backend) → **half-open** after
//! `open_for` (up to `half_open_probes` requests pass as probes) → closed when every probe
//! succeeded, or open again at the first failed probe. Time comes from the caller (`now`),
//! so the transitions are tested exactly. No allocation after construction.
//!
//! Every admitted request ends in exactly one of [`Breaker::record`] (it has an outcome)
//! or [`Breaker::release`] (it was **cancelled**: its future was dropped by a deadline, a
//! failed sibling call, a client that went away, or shutdown). A cancelled request says
//! nothing about the upstream: it is neither a success nor a failure, and a cancelled probe
//! gives its probe slot back, so the next request is admitted as a probe in its place. A
//! half-open breaker therefore never runs out of probes to requests that never finished.
//! The callers hold their ticket in `upstream::Admitted`, which releases it on drop.
//!
//! Probes carry the half-open period (trial) they were admitted in: the outcome or release of
//! a probe from an earlier trial (it outlived a reopening) does not touch the current one.

use std::time::{Duration, Instant};

use super::window::Window;

/// `breaker = { ... }` of an upstream group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Error share (0..=1) over the window that opens the breaker.
    pub error_ratio: f64,
    /// Fewest outcomes in the window before the ratio is considered.
    pub min_requests: u32,
    /// Length of the rolling window.
    pub window: Duration,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Probes let through while half-open; all must succeed to close.
    pub half_open_probes: u32,
}

/// The breaker's state, as reported to the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests pass.
    Closed,
    /// Requests are refused until the instant.
    Open {
        /// When probing may start.
        until: Instant,
    },
    /// Probes pass; `admitted` so far, `succeeded` of them.
    HalfOpen {
        /// Probes let through.
        admitted: u32,
        /// Probes that succeeded.
        succeeded: u32,
    },
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half_open",
        }
    }
}

/// What an admitted request is: counted normally, or one of the half-open probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticket {
    /// Admitted while closed.
    Normal,
    /// Admitted as a half-open probe of the given trial (half-open period).
    Probe {
        /// Which half-open period admitted it.
        trial: u32,
    },
}

/// One worker's breaker for one group.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    outcomes: Window,
    /// Half-open periods entered so far (tags probes).
    trial: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy, now: Instant) -> Self {
        Self {
            policy,
            state: BreakerState::Closed,
            outcomes: Window::new(policy.window, now),
            trial: 0,
        }
    }

    /// The current state (an expired open state reads as open until the next `admit`).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// The policy the breaker runs with.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// The state as of `now`: an open breaker whose `open_for` passed reads as half-open.
    pub fn state_at(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => BreakerState::HalfOpen {
                admitted: 0,
                succeeded: 0,
            },
            state => state,
        }
    }

    /// Gives back the ticket of a request that was cancelled, or ended without saying
    /// anything about the upstream (the client went away): no outcome is counted, and a
    /// probe of the current trial frees its slot for another probe.
    pub fn release(&mut self, ticket: Ticket) {
        if let (BreakerState::HalfOpen { admitted, .. }, Ticket::Probe { trial }) =
            (&mut self.state, ticket)
        {
            if trial == self.trial {
                *admitted = admitted.saturating_sub(1);
            }
        }
    }

    /// Lets a request through, or says how long until it may try again.
    pub fn admit(&mut self, now: Instant) -> Result<Ticket, Duration> {
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return Err(until - now);
            }
            self.state = BreakerState::HalfOpen {
                admitted: 0,
                succeeded: 0,
            };
            self.trial = self.trial.wrapping_add(1);
        }
        match &mut self.state {
            BreakerState::Closed => Ok(Ticket::Normal),
            BreakerState::HalfOpen { admitted, .. } if *admitted < self.policy.half_open_probes => {
                *admitted += 1;
                Ok(Ticket::Probe { trial: self.trial })
            }
            // Every probe is out: wait for their outcomes.
            _ => Err(Duration::from_secs(1)),
        }
    }

    /// Records the outcome of a request admitted with `ticket`.
    pub fn record(&mut self, ticket: Ticket, success: bool, now: Instant) {
        match (&mut self.state, ticket) {
            (BreakerState::Closed, Ticket::Normal) => {
                self.outcomes.add(now, 1, u64::from(!success));
                let (total, errors) = self.outcomes.totals(now);
                if total >= u64::from(self.policy.min_requests)
                    && errors as f64 >= self.policy.error_ratio * total as f64
                {
                    self.open(now);
                }
            }
            (BreakerState::HalfOpen { succeeded, .. }, Ticket::Probe { trial })
                if trial == self.trial =>
            {
                if !success {
                    self.open(now);
                    return;
                }
                *succeeded += 1;
                if *succeeded >= self.policy.half_open_probes {
                    self.state = BreakerState::Closed;
                    self.outcomes.clear();
                }
            }
            // Outcomes of requests admitted in an earlier state say nothing about this one.
            _ => {}
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open {
            until: now + self.policy.open_for,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            error_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn stays_closed_below_min_requests_even_if_all_fail() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        for _ in 0..3 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_at_the_error_ratio_and_refuses_until_open_for_passed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        for ok in [true, true, false] {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, ok, t0);
        }
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "1 of 3 is below both limits"
        );
        let ticket = b.admit(t0).expect("closed");
        b.record(ticket, false, t0);
        assert_eq!(b.state(), BreakerState::Open { until: secs(t0, 5) });
        assert_eq!(b.admit(secs(t0, 2)), Err(Duration::from_secs(3)));
        assert!(matches!(b.admit(secs(t0, 5)), Ok(Ticket::Probe { .. })));
        assert_eq!(b.state().name(), "half_open");
    }

    #[test]
    fn half_open_closes_after_every_probe_succeeded() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        for _ in 0..4 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        let t = secs(t0, 5);
        let p1 = b.admit(t).expect("probe 1");
        let p2 = b.admit(t).expect("probe 2");
        assert_eq!(b.admit(t), Err(Duration::from_secs(1)), "only two probes");
        b.record(p1, true, t);
        assert_eq!(b.state().name(), "half_open");
        b.record(p2, true, t);
        assert_eq!(b.state(), BreakerState::Closed);
        // The old failures were forgotten: one failure does not reopen it.
        let ticket = b.admit(t).expect("closed");
        b.record(ticket, false, t);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_for_another_open_for() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        for _ in 0..4 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        let t = secs(t0, 6);
        let probe = b.admit(t).expect("probe");
        b.record(probe, false, t);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: secs(t0, 11)
            }
        );
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        for _ in 0..3 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        let later = secs(t0, 20);
        let ticket = b.admit(later).expect("closed");
        b.record(ticket, false, later);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn late_outcomes_of_normal_requests_do_not_close_a_half_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(policy(), t0);
        let straggler = b.admit(t0).expect("closed");
        for _ in 0..4 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        let t = secs(t0, 5);
        let _probe = b.admit(t).expect("probe");
        b.record(straggler, true, t);
        b.record(straggler, true, t);
        assert_eq!(b.state().name(), "half_open");
    }

    fn opened(t0: Instant) -> Breaker {
        let mut b = Breaker::new(policy(), t0);
        for _ in 0..4 {
            let ticket = b.admit(t0).expect("closed");
            b.record(ticket, false, t0);
        }
        b
    }

    #[test]
    fn cancelled_probes_give_their_slots_back_and_count_for_nothing() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t = secs(t0, 5);
        // Every probe slot taken, then every probe cancelled (its future dropped).
        let p1 = b.admit(t).expect("probe 1");
        let p2 = b.admit(t).expect("probe 2");
        assert!(b.admit(t).is_err(), "both slots out");
        b.release(p1);
        b.release(p2);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                admitted: 0,
                succeeded: 0
            },
            "a cancelled probe is neither a success nor a failure"
        );
        // The slots are back: two new probes pass, and their successes close the breaker.
        let p3 = b.admit(t).expect("slot freed by a cancelled probe");
        let p4 = b.admit(t).expect("slot freed by a cancelled probe");
        b.record(p3, true, t);
        b.record(p4, true, t);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_probe_from_an_earlier_trial_does_not_touch_the_current_one() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t = secs(t0, 5);
        let failed = b.admit(t).expect("probe");
        let straggler = b.admit(t).expect("probe");
        b.record(failed, false, t);
        assert_eq!(b.state().name(), "open");
        let later = secs(t0, 10);
        let current = b.admit(later).expect("probe of the next trial");
        // The straggler of the first trial ends now: cancelled, then (worse) a success.
        b.release(straggler);
        b.record(straggler, true, later);
        assert_eq!(
            b.state(),
            BreakerState::HalfOpen {
                admitted: 1,
                succeeded: 0
            }
        );
        b.record(current, true, later);
        assert_eq!(b.state().name(), "half_open", "one of two probes so far");
    }
}
