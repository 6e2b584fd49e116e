//! Power of two choices over peak-EWMA latency: pick two distinct eligible targets at random
//! and keep the one with the lower cost, `(ewma + 1) * (in_flight + 1) / weight`. Cheap (two
//! looks, no scan of the group) and quick to steer away from a slow or overloaded target.

use super::{Load, Rng};

/// The worker's random source for this group.
#[derive(Debug, Clone)]
pub struct P2cEwma {
    rng: Rng,
}

/// Tries at a random eligible index before falling back to a scan.
const RANDOM_TRIES: usize = 8;

impl P2cEwma {
    /// The balancer of worker `worker`.
    pub fn new(worker: usize) -> Self {
        Self {
            rng: Rng::new(worker as u64 + 1),
        }
    }

    /// The cheaper of two random eligible indexes, or `None` if none is eligible.
    pub fn pick(
        &mut self,
        weights: &[u32],
        loads: &[Load],
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = weights.len().min(loads.len());
        let a = self.random_eligible(n, None, &eligible)?;
        let Some(b) = self.random_eligible(n, Some(a), &eligible) else {
            return Some(a);
        };
        let cost = |i: usize| {
            (loads[i].ewma_ns + 1.0) * f64::from(loads[i].in_flight + 1)
                / f64::from(weights[i].max(1))
        };
        Some(if cost(b) < cost(a) { b } else { a })
    }

    fn random_eligible(
        &mut self,
        n: usize,
        not: Option<usize>,
        eligible: &impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let ok = |i: usize| Some(i) != not && eligible(i);
        for _ in 0..RANDOM_TRIES {
            let i = self.rng.below(n);
            if ok(i) {
                return Some(i);
            }
        }
        let start = self.rng.below(n);
        (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tally;
    use super::*;

    fn with_latency(ms: &[u64]) -> Vec<Load> {
        ms.iter()
            .map(|&m| Load {
                in_flight: 0,
                ewma_ns: m as f64 * 1e6,
                stamp: None,
            })
            .collect()
    }

    #[test]
    fn equal_targets_share_evenly() {
        let loads = with_latency(&[5, 5, 5, 5]);
        let mut p = P2cEwma::new(0);
        let counts = tally(4, 10_000, || p.pick(&[1; 4], &loads, |_| true));
        for c in &counts {
            assert!((2200..=2800).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn avoids_the_slow_target() {
        // One target 10x slower: it only wins when both choices are... never, since the two
        // choices are distinct and the other is always faster.
        let loads = with_latency(&[50, 5, 5, 5]);
        let mut p = P2cEwma::new(1);
        let counts = tally(4, 10_000, || p.pick(&[1; 4], &loads, |_| true));
        assert_eq!(counts[0], 0, "{counts:?}");
        for c in &counts[1..] {
            assert!((2800..=3900).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn in_flight_requests_raise_the_cost() {
        // Simulated: every pick stays in flight for 4 picks on target 0 and 1 pick elsewhere.
        let hold = [4usize, 1, 1];
        let mut loads = with_latency(&[5, 5, 5]);
        let mut finishing: Vec<Vec<usize>> = vec![Vec::new(); 10_005];
        let mut p = P2cEwma::new(2);
        let mut counts = [0usize; 3];
        for step in 0..10_000 {
            for &i in &finishing[step] {
                loads[i].in_flight -= 1;
            }
            let i = p.pick(&[1; 3], &loads, |_| true).expect("target");
            counts[i] += 1;
            loads[i].in_flight += 1;
            finishing[step + hold[i]].push(i);
        }
        assert!(counts[0] * 2 < counts[1], "{counts:?}");
        assert!(counts[0] * 2 < counts[2], "{counts:?}");
    }

    #[test]
    fn single_eligible_target_is_chosen_and_none_means_none() {
        let loads = with_latency(&[1, 1, 1]);
        let mut p = P2cEwma::new(0);
        assert_eq!(p.pick(&[1; 3], &loads, |i| i == 2), Some(2));
        assert_eq!(p.pick(&[1; 3], &loads, |_| false), None);
    }
}
