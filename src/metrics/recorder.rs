//! The per-worker recorder.
//!
//! No locks, no atomics: runs on the worker's hot path. It lives inside one worker thread
//! (`!Sync` by its `Cell`s), so every method takes `&self`. A route or upstream name is copied
//! into the map the first time it is seen; after that, recording a request allocates nothing
//! (one hash lookup per map, fixed-size HDR counts).

use std::cell::{Cell, RefCell};

use ahash::AHashMap;

use super::delta::{MetricsDelta, RouteDelta, UpstreamDelta};
use super::histogram::LatencyHistogram;
use super::record::{ErrorCause, RequestRecord, StatusClass};

/// Counters for one route since the last delta.
#[derive(Debug, Default)]
struct RouteStats {
    requests: [u64; StatusClass::ALL.len()],
    bytes_in: u64,
    bytes_out: u64,
    duration: LatencyHistogram,
}

impl RouteStats {
    fn record(&mut self, r: &RequestRecord<'_>) {
        self.requests[StatusClass::of(r.status).index()] += 1;
        self.bytes_in = self.bytes_in.saturating_add(r.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(r.bytes_out);
        self.duration.record(r.duration);
    }

    fn is_idle(&self) -> bool {
        self.requests.iter().all(|&n| n == 0)
    }

    /// The interval's values; leaves a fresh histogram behind (the delta owns the old one).
    fn take(&mut self, name: &str) -> RouteDelta {
        let delta = RouteDelta {
            route: name.to_owned(),
            requests: self.requests,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration: std::mem::take(&mut self.duration),
        };
        self.requests = [0; StatusClass::ALL.len()];
        self.bytes_in = 0;
        self.bytes_out = 0;
        delta
    }
}

/// Counters for one upstream group since the last delta.
#[derive(Debug, Default)]
struct UpstreamStats {
    requests: [u64; StatusClass::ALL.len()],
    duration: LatencyHistogram,
}

impl UpstreamStats {
    fn record(&mut self, r: &RequestRecord<'_>) {
        self.requests[StatusClass::of(r.status).index()] += 1;
        if let Some(d) = r.upstream_duration {
            self.duration.record(d);
        }
    }

    fn is_idle(&self) -> bool {
        self.requests.iter().all(|&n| n == 0)
    }

    fn take(&mut self, name: &str) -> UpstreamDelta {
        let delta = UpstreamDelta {
            upstream: name.to_owned(),
            requests: self.requests,
            duration: std::mem::take(&mut self.duration),
        };
        self.requests = [0; StatusClass::ALL.len()];
        delta
    }
}

/// Per-worker recorder: counters, gauges and HDR histograms per route and upstream.
///
/// Names are kept for the worker's life, so a route removed by a reload keeps its (idle)
/// entry; names come from the config, so the maps stay small.
#[derive(Debug)]
pub struct WorkerMetrics {
    worker: usize,
    routes: RefCell<AHashMap<Box<str>, RouteStats>>,
    upstreams: RefCell<AHashMap<Box<str>, UpstreamStats>>,
    connections_open: Cell<u64>,
    pool_hits: Cell<u64>,
    pool_misses: Cell<u64>,
    errors: [Cell<u64>; ErrorCause::ALL.len()],
}

impl WorkerMetrics {
    /// A recorder for worker `worker`, with nothing recorded.
    pub fn new(worker: usize) -> Self {
        Self {
            worker,
            routes: RefCell::new(AHashMap::new()),
            upstreams: RefCell::new(AHashMap::new()),
            connections_open: Cell::new(0),
            pool_hits: Cell::new(0),
            pool_misses: Cell::new(0),
            errors: Default::default(),
        }
    }

    /// The worker's id.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// One finished request. Allocates only the first time a route or upstream name is seen.
    pub fn record_request(&self, r: &RequestRecord<'_>) {
        {
            let mut routes = self.routes.borrow_mut();
            if let Some(stats) = routes.get_mut(r.route) {
                stats.record(r);
            } else {
                let mut stats = RouteStats::default();
                stats.record(r);
                routes.insert(r.route.into(), stats);
            }
        }
        if let Some(name) = r.upstream {
            let mut upstreams = self.upstreams.borrow_mut();
            if let Some(stats) = upstreams.get_mut(name) {
                stats.record(r);
            } else {
                let mut stats = UpstreamStats::default();
                stats.record(r);
                upstreams.insert(name.into(), stats);
            }
        }
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.set(self.connections_open.get() + 1);
    }

    /// A client connection was closed.
    pub fn connection_closed(&self) {
        self.connections_open
            .set(self.connections_open.get().saturating_sub(1));
    }

    /// An upstream connection was reused from the keep-alive pool.
    pub fn pool_hit(&self) {
        self.pool_hits.set(self.pool_hits.get() + 1);
    }

    /// No pooled upstream connection was available: a new one was opened.
    pub fn pool_miss(&self) {
        self.pool_misses.set(self.pool_misses.get() + 1);
    }

    /// One failure of the given cause.
    pub fn error(&self, cause: ErrorCause) {
        let c = &self.errors[cause.index()];
        c.set(c.get() + 1);
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.get()
    }

    /// The interval's delta (histograms and counters since the last call), resetting them;
    /// gauges (open connections) are reported as current values. Runs once per merge
    /// interval: it allocates the delta and one fresh histogram per active route/upstream.
    pub fn take_delta(&self) -> MetricsDelta {
        let routes = self
            .routes
            .borrow_mut()
            .iter_mut()
            .filter(|(_, s)| !s.is_idle())
            .map(|(name, s)| s.take(name))
            .collect();
        let upstreams = self
            .upstreams
            .borrow_mut()
            .iter_mut()
            .filter(|(_, s)| !s.is_idle())
            .map(|(name, s)| s.take(name))
            .collect();
        MetricsDelta {
            worker: self.worker,
            routes,
            upstreams,
            connections_open: self.connections_open.get(),
            pool_hits: self.pool_hits.replace(0),
            pool_misses: self.pool_misses.replace(0),
            errors: std::array::from_fn(|i| self.errors[i].replace(0)),
        }
    }
}
