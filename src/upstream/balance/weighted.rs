//! Smooth weighted round robin (the algorithm nginx uses): over any run of `sum(weights)`
//! picks each target is chosen exactly `weight` times, interleaved rather than in bursts.
//!
//! Each pick adds every eligible target's weight to its running score, takes the highest,
//! and subtracts the total from the winner. Workers start at different points of the cycle
//! (`worker` warm-up picks) so that N workers do not send their bursts in lockstep.

/// Running scores, one per target.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl SmoothWeighted {
    /// Scores for targets of `weights`, advanced by `worker` picks.
    pub fn new(weights: &[u32], worker: usize) -> Self {
        let mut w = Self {
            current: vec![0; weights.len()],
        };
        let total: usize = weights.iter().map(|&x| x as usize).sum();
        for _ in 0..worker % total.max(1) {
            w.pick(weights, |_| true);
        }
        w
    }

    /// The next eligible index, or `None` if none is.
    pub fn pick(&mut self, weights: &[u32], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.current.len() != weights.len() {
            self.current = vec![0; weights.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            self.current[i] += i64::from(w);
            total += i64::from(w);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tally;
    use super::*;

    #[test]
    fn picks_in_proportion_to_weight() {
        let weights = [5, 1, 1];
        let mut w = SmoothWeighted::new(&weights, 0);
        let counts = tally(3, 10_000, || w.pick(&weights, |_| true));
        // Exact per cycle of 7 picks; 10,000 is 1428 cycles plus 4 picks.
        let expected = [10_000.0 * 5.0 / 7.0, 10_000.0 / 7.0, 10_000.0 / 7.0];
        for (got, want) in counts.iter().zip(expected) {
            assert!((*got as f64 - want).abs() <= 5.0, "{counts:?}");
        }
    }

    #[test]
    fn interleaves_instead_of_bursting() {
        let weights = [5, 1, 1];
        let mut w = SmoothWeighted::new(&weights, 0);
        let seq: Vec<usize> = (0..7).filter_map(|_| w.pick(&weights, |_| true)).collect();
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn workers_start_at_different_points() {
        let weights = [1, 1, 1];
        let first: Vec<usize> = (0..3)
            .filter_map(|worker| SmoothWeighted::new(&weights, worker).pick(&weights, |_| true))
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
    }

    #[test]
    fn redistributes_over_eligible_targets() {
        let weights = [2, 1, 1];
        let mut w = SmoothWeighted::new(&weights, 0);
        let counts = tally(3, 10_000, || w.pick(&weights, |i| i != 0));
        assert_eq!(counts, [0, 5000, 5000]);
        assert!(w.pick(&weights, |_| false).is_none());
    }
}
