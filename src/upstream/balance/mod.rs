//! Target selection: one balancer per upstream group per worker.
//!
//! Each algorithm lives in its own file behind [`Balancer`], an enum (static dispatch, no
//! boxing). A balancer only chooses an index: which targets are eligible (healthy, not
//! ejected, not already tried by this request) is decided by the caller's `eligible`
//! predicate, and the per-target load figures ([`Load`]) are kept by the worker's group
//! state. Nothing here locks, touches an atomic or allocates per pick.

mod consistent_hash;
mod least_conn;
mod p2c_ewma;
mod round_robin;
mod weighted;

use std::time::{Duration, Instant};

pub use consistent_hash::{cookie_value, key_hash, HashRing};
pub use least_conn::LeastConn;
pub use p2c_ewma::P2cEwma;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

/// `balance = "..."`: the algorithm of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Each eligible target in turn.
    RoundRobin,
    /// Smooth weighted round robin (nginx's algorithm): proportional to `weight`, interleaved.
    Weighted,
    /// The eligible target with the fewest of this worker's requests in flight (per weight).
    LeastConn,
    /// Power of two random choices, keeping the one with the lower EWMA latency x in-flight.
    P2cEwma,
    /// A hash ring over the targets, keyed by a property of the request.
    ConsistentHash(HashKey),
}

impl Balance {
    /// The name used in the config file.
    pub fn name(&self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::Weighted => "weighted",
            Balance::LeastConn => "least_conn",
            Balance::P2cEwma => "p2c_ewma",
            Balance::ConsistentHash(_) => "consistent_hash",
        }
    }
}

/// `hash_key = "..."`: what a consistent-hash group hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP address.
    Ip,
    /// The value of this request header (name kept as configured; matched case-insensitively).
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The request path (before any rewrite).
    Path,
}

/// What one worker knows about the load on one target.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// This worker's requests to the target that have not finished.
    pub in_flight: u32,
    /// Peak-EWMA of observed latency, in nanoseconds (0: nothing observed yet).
    pub ewma_ns: f64,
    /// When `ewma_ns` was last updated.
    pub stamp: Option<Instant>,
}

/// How fast old latency observations fade (the EWMA's time constant).
const EWMA_DECAY: Duration = Duration::from_secs(10);

impl Load {
    /// Folds in one observed latency: a slower observation is taken at once (peak), a faster
    /// one is blended in by how much time passed since the previous one.
    pub fn observe(&mut self, latency: Duration, now: Instant) {
        let rtt = latency.as_nanos() as f64;
        let elapsed = self
            .stamp
            .map_or(EWMA_DECAY, |t| now.saturating_duration_since(t));
        self.stamp = Some(now);
        if rtt > self.ewma_ns {
            self.ewma_ns = rtt;
            return;
        }
        let w = (-elapsed.as_secs_f64() / EWMA_DECAY.as_secs_f64()).exp();
        self.ewma_ns = self.ewma_ns * w + rtt * (1.0 - w);
    }
}

/// The inputs of one pick besides the eligibility predicate.
#[derive(Debug, Clone, Copy)]
pub struct PickInput<'a> {
    /// Weights, one per target.
    pub weights: &'a [u32],
    /// Loads, one per target.
    pub loads: &'a [Load],
    /// The request's key hash (consistent hashing only; `None`: no key, round robin).
    pub hash: Option<u64>,
    /// The group's ring (consistent hashing only).
    pub ring: Option<&'a HashRing>,
}

/// One worker's balancer for one group.
#[derive(Debug, Clone)]
pub enum Balancer {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`SmoothWeighted`].
    Weighted(SmoothWeighted),
    /// See [`LeastConn`].
    LeastConn(LeastConn),
    /// See [`P2cEwma`].
    P2cEwma(P2cEwma),
    /// Ring lookup; requests without a key fall back to this round robin.
    ConsistentHash(RoundRobin),
}

impl Balancer {
    /// The balancer of `balance` for worker `worker` over targets of these weights.
    pub fn new(balance: &Balance, weights: &[u32], worker: usize) -> Self {
        match balance {
            Balance::RoundRobin => Balancer::RoundRobin(RoundRobin::new(worker)),
            Balance::Weighted => Balancer::Weighted(SmoothWeighted::new(weights, worker)),
            Balance::LeastConn => Balancer::LeastConn(LeastConn::new(worker)),
            Balance::P2cEwma => Balancer::P2cEwma(P2cEwma::new(worker)),
            Balance::ConsistentHash(_) => Balancer::ConsistentHash(RoundRobin::new(worker)),
        }
    }

    /// The index of the chosen target, or `None` if no target is eligible.
    pub fn pick(
        &mut self,
        input: &PickInput<'_>,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = input.weights.len();
        match self {
            Balancer::RoundRobin(rr) => rr.pick(n, eligible),
            Balancer::Weighted(w) => w.pick(input.weights, eligible),
            Balancer::LeastConn(lc) => lc.pick(input.weights, input.loads, eligible),
            Balancer::P2cEwma(p) => p.pick(input.weights, input.loads, eligible),
            Balancer::ConsistentHash(fallback) => match (input.hash, input.ring) {
                (Some(hash), Some(ring)) => ring.lookup(hash, eligible),
                _ => fallback.pick(n, eligible),
            },
        }
    }
}

/// A small xorshift generator: per worker, no shared state, good enough to spread choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (never zero inside).
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    /// Counts how often each index was picked over `rounds` picks.
    pub fn tally(n: usize, rounds: usize, mut pick: impl FnMut() -> Option<usize>) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..rounds {
            counts[pick().expect("a target")] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_takes_slow_samples_at_once_and_forgets_them_slowly() {
        let t0 = Instant::now();
        let mut load = Load::default();
        load.observe(Duration::from_millis(10), t0);
        assert_eq!(load.ewma_ns, 10e6);
        load.observe(Duration::from_millis(1), t0 + EWMA_DECAY);
        // One time constant later the old value keeps e^-1 of its weight.
        let expected = 10e6 * (-1f64).exp() + 1e6 * (1.0 - (-1f64).exp());
        assert!((load.ewma_ns - expected).abs() < 1.0, "{}", load.ewma_ns);
        load.observe(Duration::from_millis(50), t0 + EWMA_DECAY);
        assert_eq!(load.ewma_ns, 50e6);
    }

    #[test]
    fn rng_stays_below_its_bound() {
        let mut rng = Rng::new(0);
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
