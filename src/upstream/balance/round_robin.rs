//! Round robin: each eligible target in turn, one cursor per group per worker.
//!
//! Workers start at different offsets (their index) so that N workers do not hit the same
//! target in lockstep. Ineligible targets are skipped without losing the rotation.

/// A round-robin cursor.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    cursor: usize,
}

impl RoundRobin {
    /// The cursor of worker `worker`.
    pub fn new(worker: usize) -> Self {
        Self { cursor: worker }
    }

    /// The next eligible index in `0..n`, or `None` if none is.
    pub fn pick(&mut self, n: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let start = self.cursor;
        for k in 0..n {
            let i = start.wrapping_add(k) % n;
            if eligible(i) {
                self.cursor = i.wrapping_add(1);
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tally;
    use super::*;

    #[test]
    fn cycles_through_every_target_evenly() {
        let mut rr = RoundRobin::new(0);
        assert_eq!(
            tally(3, 10_000, || rr.pick(3, |_| true)),
            [3334, 3333, 3333]
        );
    }

    #[test]
    fn workers_start_at_different_offsets() {
        let first: Vec<usize> = (0..4)
            .map(|w| RoundRobin::new(w).pick(4, |_| true).expect("target"))
            .collect();
        assert_eq!(first, vec![0, 1, 2, 3]);
    }

    #[test]
    fn skips_ineligible_targets() {
        let mut rr = RoundRobin::new(0);
        assert_eq!(tally(3, 10_000, || rr.pick(3, |i| i != 1)), [5000, 0, 5000]);
    }

    #[test]
    fn empty_or_all_ineligible_has_no_target() {
        assert!(RoundRobin::new(0).pick(0, |_| true).is_none());
        assert!(RoundRobin::new(0).pick(3, |_| false).is_none());
    }
}
