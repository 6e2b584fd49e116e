//! The merged totals of every worker's deltas, on the control side.
//!
//! Runs off the hot path (once per merge interval and per scrape). Maps are ordered so that
//! `/metrics` lists routes, upstreams and workers in a stable order.

use std::collections::BTreeMap;

use super::delta::MetricsDelta;
use super::histogram::LatencyHistogram;
use super::record::{ErrorCause, StatusClass};
use super::DeltaReceiver;

/// Totals for one route since start.
#[derive(Clone, Debug, Default)]
pub struct RouteTotals {
    /// Requests by status class, indexed by [`StatusClass::index`].
    pub requests: [u64; StatusClass::ALL.len()],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Whole-request durations, merged over all workers.
    pub duration: LatencyHistogram,
}

/// Totals for one upstream group since start.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTotals {
    /// Proxied requests by status class, indexed by [`StatusClass::index`].
    pub requests: [u64; StatusClass::ALL.len()],
    /// Upstream exchange durations, merged over all workers.
    pub duration: LatencyHistogram,
}

/// Process-wide figures the aggregator does not see in deltas; the control thread fills them.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    /// The running workers.
    pub workers: Vec<WorkerInfo>,
    /// Successful config reloads since start.
    pub reloads: u64,
    /// Refused config reloads since start.
    pub failed_reloads: u64,
    /// Generation of the active config (1 for the config loaded at start).
    pub config_generation: u64,
    /// Process start time, seconds since the Unix epoch.
    pub start_time_unix: u64,
}

/// One running worker.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: usize,
    /// The I/O driver it runs (`io_uring` or `legacy`).
    pub driver: String,
}

/// Merges deltas from all workers into running totals (counters and histograms since start,
/// gauges as last reported).
#[derive(Clone, Debug, Default)]
pub struct Aggregator {
    pub(super) routes: BTreeMap<String, RouteTotals>,
    pub(super) upstreams: BTreeMap<String, UpstreamTotals>,
    pub(super) connections_open: BTreeMap<usize, u64>,
    pub(super) pool_hits: u64,
    pub(super) pool_misses: u64,
    pub(super) errors: [u64; ErrorCause::ALL.len()],
}

fn add_counts<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

impl Aggregator {
    /// An aggregator with nothing merged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one worker's interval to the totals.
    pub fn merge(&mut self, delta: MetricsDelta) {
        for r in delta.routes {
            let t = self.routes.entry(r.route).or_default();
            add_counts(&mut t.requests, &r.requests);
            t.bytes_in = t.bytes_in.saturating_add(r.bytes_in);
            t.bytes_out = t.bytes_out.saturating_add(r.bytes_out);
            t.duration.add(&r.duration);
        }
        for u in delta.upstreams {
            let t = self.upstreams.entry(u.upstream).or_default();
            add_counts(&mut t.requests, &u.requests);
            t.duration.add(&u.duration);
        }
        self.connections_open
            .insert(delta.worker, delta.connections_open);
        self.pool_hits = self.pool_hits.saturating_add(delta.pool_hits);
        self.pool_misses = self.pool_misses.saturating_add(delta.pool_misses);
        add_counts(&mut self.errors, &delta.errors);
    }

    /// Merges every delta waiting on the channel without blocking; returns how many.
    pub fn drain(&mut self, rx: &DeltaReceiver) -> usize {
        let mut n = 0;
        for delta in rx.try_iter() {
            self.merge(delta);
            n += 1;
        }
        n
    }

    /// Totals for one route, if it has seen requests.
    pub fn route(&self, name: &str) -> Option<&RouteTotals> {
        self.routes.get(name)
    }

    /// Totals for one upstream group, if it has seen requests.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamTotals> {
        self.upstreams.get(name)
    }

    /// Open connections last reported by `worker`.
    pub fn connections_open(&self, worker: usize) -> Option<u64> {
        self.connections_open.get(&worker).copied()
    }

    /// Errors of one cause since start.
    pub fn errors(&self, cause: ErrorCause) -> u64 {
        self.errors[cause.index()]
    }

    /// Pool hits and misses since start.
    pub fn pool(&self) -> (u64, u64) {
        (self.pool_hits, self.pool_misses)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self, process: &ProcessInfo) -> String {
        super::prometheus::render(self, process)
    }
}
