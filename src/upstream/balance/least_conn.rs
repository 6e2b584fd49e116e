//! Least connections: the eligible target with the fewest of this worker's requests in
//! flight, relative to its weight. Ties rotate (a cursor) so an idle group is still spread.

use super::Load;

/// Tie-breaking cursor.
#[derive(Debug, Clone)]
pub struct LeastConn {
    cursor: usize,
}

impl LeastConn {
    /// The balancer of worker `worker`.
    pub fn new(worker: usize) -> Self {
        Self { cursor: worker }
    }

    /// The eligible index with the lowest `(in_flight + 1) / weight`, or `None`.
    pub fn pick(
        &mut self,
        weights: &[u32],
        loads: &[Load],
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = weights.len().min(loads.len());
        let start = if n == 0 { 0 } else { self.cursor % n };
        // (index, in_flight + 1, weight): compared by cross-multiplication, no division.
        let mut best: Option<(usize, u64, u64)> = None;
        for i in (start..n).chain(0..start) {
            if !eligible(i) {
                continue;
            }
            let load = u64::from(loads[i].in_flight) + 1;
            let weight = u64::from(weights[i].max(1));
            if best.is_none_or(|(_, bl, bw)| load * bw < bl * weight) {
                best = Some((i, load, weight));
            }
        }
        let (i, _, _) = best?;
        self.cursor = i + 1;
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tally;
    use super::*;

    #[test]
    fn idle_targets_share_evenly() {
        let loads = [Load::default(); 4];
        let mut lc = LeastConn::new(0);
        assert_eq!(
            tally(4, 10_000, || lc.pick(&[1; 4], &loads, |_| true)),
            [2500; 4]
        );
    }

    #[test]
    fn follows_simulated_in_flight_requests() {
        // A simulated worker: three requests arrive per step; target 0 holds each for 6 steps,
        // targets 1 and 2 for 2. Equal in-flight counts mean target 0 gets a third of the
        // requests each fast target gets (Little's law), about 1,430 of 10,000.
        let hold = [6usize, 2, 2];
        let mut loads = [Load::default(); 3];
        let mut finishing: Vec<Vec<usize>> = vec![Vec::new(); 3_400];
        let mut lc = LeastConn::new(0);
        let mut counts = [0usize; 3];
        for step in 0..3_334 {
            for &i in &finishing[step] {
                loads[i].in_flight -= 1;
            }
            for _ in 0..3 {
                let i = lc.pick(&[1; 3], &loads, |_| true).expect("target");
                counts[i] += 1;
                loads[i].in_flight += 1;
                finishing[step + hold[i]].push(i);
            }
        }
        let ratio = counts[1] as f64 / counts[0] as f64;
        assert!((2.3..=3.7).contains(&ratio), "{counts:?}");
        assert!(
            (counts[1] as i64 - counts[2] as i64).abs() < 200,
            "{counts:?}"
        );
    }

    #[test]
    fn prefers_the_least_loaded_eligible_target() {
        let mut loads = [Load::default(); 3];
        loads[0].in_flight = 0;
        loads[1].in_flight = 5;
        loads[2].in_flight = 1;
        let mut lc = LeastConn::new(0);
        assert_eq!(lc.pick(&[1; 3], &loads, |i| i != 0), Some(2));
        assert_eq!(lc.pick(&[1; 3], &loads, |_| false), None);
    }
}
