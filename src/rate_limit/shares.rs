//! Splitting one rate among several takers by their demand: the arithmetic behind
//! `scope = "instance"` (workers share a process-wide rate) and `scope = "cluster"`
//! (instances share a cluster-wide rate through Redis).
//!
//! Max-min fairness ("water filling"): every taker asks for its recent demand plus headroom
//! (never less than a small floor, so a taker that sees a first request is not starved until
//! the next re-balance); claims below the fair level are met in full and the rest is split
//! evenly among the takers that want more. Shares always add up to the whole rate, so the
//! sum of what the takers admit stays at the configured rate however the traffic is spread,
//! including when all of it lands on one taker.
//!
//! [`Balancer`] keeps the per-key demand of each worker (an EWMA of arrivals per second fed
//! by the workers' periodic reports) and computes the shares. It runs on the rate-limit
//! coordinator thread, never on a worker; time is passed in, so it is tested with a
//! simulated clock.

use std::collections::HashMap;

/// A taker's claim is its demand times this (room for demand to grow between re-balances).
const HEADROOM: f64 = 1.25;
/// The smallest claim, as a fraction of the whole divided among the takers.
const FLOOR: f64 = 0.02;
/// Weight of the newest interval in the demand average.
const EWMA_NEW: f64 = 0.5;
/// A key whose demand stayed below this (requests per second) everywhere is idle.
const IDLE_DEMAND: f64 = 0.01;
/// Re-balances a key stays tracked while idle.
const FORGET_AFTER: u32 = 50;

/// Splits `total` among takers by their `demands` (same unit as `total`); writes each
/// taker's share into `out` (same length). The shares add up to `total`.
pub fn split(total: f64, demands: &[f64], out: &mut [f64]) {
    let n = demands.len().min(out.len());
    if n == 0 {
        return;
    }
    let floor = total * FLOOR / n as f64;
    let claim = |i: usize| (demands[i] * HEADROOM).max(floor);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| claim(a).total_cmp(&claim(b)));
    let mut left = total;
    for (k, &i) in order.iter().enumerate() {
        let level = left / (n - k) as f64;
        out[i] = claim(i).min(level);
        left -= out[i];
    }
    // Demand below the whole: the rest is spread evenly, so shares add up to `total`.
    for share in out.iter_mut().take(n) {
        *share += left / n as f64;
    }
}

/// One key's demand per worker and the fractions last computed.
#[derive(Debug, Clone)]
struct KeyDemand {
    /// Arrivals per second, averaged, by worker.
    rate: Vec<f64>,
    /// Arrivals reported since the last re-balance, by worker.
    pending: Vec<u64>,
    idle_for: u32,
}

/// Per-key demand of every worker for one policy, and the shares it implies.
#[derive(Debug)]
pub struct Balancer {
    workers: usize,
    keys: HashMap<u64, KeyDemand>,
    scratch: Vec<f64>,
}

impl Balancer {
    /// A balancer for `workers` workers (at least 1).
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        Balancer {
            workers,
            keys: HashMap::new(),
            scratch: vec![0.0; workers],
        }
    }

    /// Workers sharing the rate.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Keys tracked.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// `arrivals` requests of key `hash` reached `worker` since its last report.
    pub fn record(&mut self, worker: usize, hash: u64, arrivals: u32) {
        if worker >= self.workers {
            return;
        }
        let workers = self.workers;
        let key = self.keys.entry(hash).or_insert_with(|| KeyDemand {
            rate: vec![0.0; workers],
            pending: vec![0; workers],
            idle_for: 0,
        });
        key.pending[worker] += u64::from(arrivals);
    }

    /// Folds the reports of the last `elapsed_secs` into the averages; forgets keys that
    /// stayed idle for long.
    pub fn fold(&mut self, elapsed_secs: f64) {
        let elapsed = elapsed_secs.max(1e-3);
        self.keys.retain(|_, key| {
            for (rate, pending) in key.rate.iter_mut().zip(key.pending.iter_mut()) {
                let now = *pending as f64 / elapsed;
                *rate = EWMA_NEW * now + (1.0 - EWMA_NEW) * *rate;
                *pending = 0;
            }
            if key.rate.iter().all(|&r| r < IDLE_DEMAND) {
                key.idle_for += 1;
                return key.idle_for < FORGET_AFTER;
            }
            key.idle_for = 0;
            true
        });
    }

    /// Every active key with its demand (arrivals per second, summed over the workers).
    pub fn demands(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.keys
            .iter()
            .filter(|(_, k)| k.idle_for == 0)
            .map(|(&hash, k)| (hash, k.rate.iter().sum()))
    }

    /// For every active key, splits `capacity(hash)` requests per second among the workers
    /// by their demand and hands `publish` each worker's share as a fraction of `rate` (the
    /// policy's configured rate per second).
    pub fn publish(
        &mut self,
        rate: f64,
        capacity: impl Fn(u64) -> f64,
        mut publish: impl FnMut(u64, &[f64]),
    ) {
        let rate = rate.max(f64::MIN_POSITIVE);
        for (&hash, key) in self.keys.iter().filter(|(_, k)| k.idle_for == 0) {
            split(capacity(hash), &key.rate, &mut self.scratch);
            for share in self.scratch.iter_mut() {
                *share /= rate;
            }
            publish(hash, &self.scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::gcra::Gcra;
    use crate::rate_limit::table::KeyTable;

    fn sum(v: &[f64]) -> f64 {
        v.iter().sum()
    }

    #[test]
    fn shares_add_up_to_the_whole() {
        for demands in [
            vec![0.0, 0.0],
            vec![1000.0, 0.0],
            vec![30.0, 500.0, 7.0],
            vec![0.1, 0.1, 0.1, 0.1],
        ] {
            let mut out = vec![0.0; demands.len()];
            split(100.0, &demands, &mut out);
            assert!((sum(&out) - 100.0).abs() < 1e-9, "{demands:?} -> {out:?}");
        }
    }

    #[test]
    fn a_small_demand_is_met_and_the_rest_goes_to_the_busy_taker() {
        let mut out = [0.0; 2];
        split(100.0, &[10.0, 1000.0], &mut out);
        assert!((out[0] - 12.5).abs() < 1e-9, "{out:?}");
        assert!((out[1] - 87.5).abs() < 1e-9, "{out:?}");
    }

    #[test]
    fn an_idle_taker_keeps_only_the_floor() {
        let mut out = [0.0; 2];
        split(100.0, &[0.0, 1000.0], &mut out);
        assert!((out[0] - 1.0).abs() < 1e-9, "{out:?}");
        assert!((out[1] - 99.0).abs() < 1e-9, "{out:?}");
    }

    #[test]
    fn equal_demands_split_evenly() {
        let mut out = [0.0; 4];
        split(100.0, &[500.0; 4], &mut out);
        assert!(out.iter().all(|&s| (s - 25.0).abs() < 1e-9), "{out:?}");
    }

    #[test]
    fn forgets_keys_that_stay_idle() {
        let mut b = Balancer::new(2);
        b.record(0, 7, 10);
        // The average decays below the idle level first, then the key is kept FORGET_AFTER more.
        for _ in 0..FORGET_AFTER + 20 {
            b.fold(0.1);
        }
        assert_eq!(b.keys(), 0);
    }

    /// Simulates `workers` workers, each with its own table, against a `rate` per second
    /// shared instance-wide (burst 10), for `seconds`, with `offered(worker)` requests per
    /// millisecond arriving at each worker; the balancer re-balances every 100 ms as the
    /// coordinator does. Returns the admitted requests per second.
    fn simulate(workers: usize, rate: f64, seconds: u64, offered: impl Fn(usize) -> u64) -> f64 {
        const MS: u64 = 1_000_000;
        let interval = (1e9 / rate) as u64;
        let burst = 10.0;
        let gcra_for = |fraction: f64| {
            Gcra::new(
                (interval as f64 / fraction) as u64,
                (burst * fraction).round() as u64,
            )
        };
        let mut tables: Vec<KeyTable> = (0..workers).map(|_| KeyTable::new(16)).collect();
        let mut balancer = Balancer::new(workers);
        let default = gcra_for(1.0 / workers as f64);
        let mut admitted = 0u64;
        for ms in 0..seconds * 1000 {
            let now = ms * MS;
            for (w, table) in tables.iter_mut().enumerate() {
                for _ in 0..offered(w) {
                    if table.check(42, now, default).admitted {
                        admitted += 1;
                    }
                }
            }
            if ms % 100 == 99 {
                for (w, table) in tables.iter_mut().enumerate() {
                    table.take_arrivals(|hash, n| balancer.record(w, hash, n));
                }
                balancer.fold(0.1);
                balancer.publish(
                    rate,
                    |_| rate,
                    |hash, fractions| {
                        for (table, &f) in tables.iter_mut().zip(fractions) {
                            table.set_rate(hash, gcra_for(f), now);
                        }
                    },
                );
            }
        }
        admitted as f64 / seconds as f64
    }

    #[test]
    fn simulated_instance_limit_holds_with_traffic_on_every_worker() {
        let admitted = simulate(2, 1000.0, 10, |_| 2);
        println!("admitted {admitted:.1} per second");
        assert!((admitted - 1000.0).abs() < 50.0, "{admitted} per second");
    }

    #[test]
    fn simulated_instance_limit_holds_with_all_traffic_on_one_worker() {
        let admitted = simulate(4, 1000.0, 10, |w| if w == 0 { 3 } else { 0 });
        println!("admitted {admitted:.1} per second");
        assert!((admitted - 1000.0).abs() < 50.0, "{admitted} per second");
    }

    #[test]
    fn simulated_instance_limit_holds_with_uneven_traffic() {
        let admitted = simulate(2, 1000.0, 10, |w| if w == 0 { 5 } else { 1 });
        println!("admitted {admitted:.1} per second");
        assert!((admitted - 1000.0).abs() < 50.0, "{admitted} per second");
    }
}
