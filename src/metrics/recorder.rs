//! The per-worker recorder.
//!
//! No locks, no atomics: runs on the worker's hot path. It lives inside one worker thread
//! (`!Sync` by its `Cell`s), so every method takes `&self`. A route or upstream name is copied
//! into the map the first time it is seen; after that, recording a request allocates nothing
//! (one hash lookup per map, fixed-size HDR counts).

use std::cell::{Cell, RefCell};
use std::time::Duration;

use ahash::AHashMap;

use super::composite::CompositeStats;
use super::delta::{MetricsDelta, RouteDelta, RouteRequests, UpstreamDelta};
use super::histogram::LatencyHistogram;
use super::record::{
    ErrorCause, MirrorOutcome, PolicyOutcome, Refusal, RequestRecord, StatusClass, TlsFailure,
    TlsSide, TlsVersion,
};

/// Counters for one route since the last delta.
#[derive(Debug, Default)]
struct RouteStats {
    requests: RouteRequests,
    bytes_in: u64,
    bytes_out: u64,
    duration: LatencyHistogram,
    cache: [u64; super::CacheResult::ALL.len()],
}

impl RouteStats {
    fn record(&mut self, r: &RequestRecord<'_>) {
        self.requests[r.protocol.index()][StatusClass::of(r.status).index()] += 1;
        if let Some(result) = r.cache {
            self.cache[result.index()] += 1;
        }
        self.bytes_in = self.bytes_in.saturating_add(r.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(r.bytes_out);
        self.duration.record(r.duration);
    }

    fn is_idle(&self) -> bool {
        self.requests.iter().flatten().all(|&n| n == 0)
    }

    /// The interval's values; leaves a fresh histogram behind (the delta owns the old one).
    fn take(&mut self, name: &str) -> RouteDelta {
        let delta = RouteDelta {
            route: name.to_owned(),
            requests: self.requests,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            duration: std::mem::take(&mut self.duration),
            cache: std::mem::take(&mut self.cache),
        };
        self.requests = RouteRequests::default();
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

/// (composite, call) names; the composite's own entry has an empty call name.
type CompositeKey = (Box<str>, Box<str>);

/// The stats of `(composite, call)`, found without allocating (the names come from the
/// config, so the map stays small); the key is allocated once, on first use.
fn composite_stats<'m>(
    map: &'m mut AHashMap<CompositeKey, CompositeStats>,
    composite: &str,
    call: &str,
) -> Option<&'m mut CompositeStats> {
    let is = |(c, k): &CompositeKey| &**c == composite && &**k == call;
    if !map.keys().any(is) {
        map.insert(
            (Box::from(composite), Box::from(call)),
            CompositeStats::default(),
        );
    }
    map.iter_mut()
        .find(|(key, _)| is(key))
        .map(|(_, stats)| stats)
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
    refused: [Cell<u64>; Refusal::ALL.len()],
    policies: RefCell<AHashMap<Box<str>, [u64; PolicyOutcome::ALL.len()]>>,
    /// By [`TlsVersion::index`], then fresh (0) or resumed (1).
    tls_handshakes: [[Cell<u64>; 2]; TlsVersion::ALL.len()],
    /// By [`TlsSide::index`], then [`TlsFailure::index`].
    tls_failures: [[Cell<u64>; TlsFailure::ALL.len()]; TlsSide::ALL.len()],
    /// By (composite, call); the composite's own entry has an empty call name.
    composites: RefCell<AHashMap<CompositeKey, CompositeStats>>,
    /// By route name.
    tunnels: RefCell<AHashMap<Box<str>, super::TunnelStats>>,
    protocols: super::protocol::ProtocolRecorder,
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
            refused: Default::default(),
            policies: RefCell::new(AHashMap::new()),
            tls_handshakes: Default::default(),
            tls_failures: Default::default(),
            composites: RefCell::new(AHashMap::new()),
            tunnels: RefCell::new(AHashMap::new()),
            protocols: Default::default(),
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

    /// One request the gateway sent on its own behalf (`proxy::call`) to group `name`:
    /// counted and timed with the group's traffic, not under any route.
    pub fn record_upstream_call(&self, name: &str, status: u16, duration: Duration) {
        let record = RequestRecord {
            route: "",
            upstream: Some(name),
            status,
            duration,
            upstream_duration: Some(duration),
            bytes_in: 0,
            bytes_out: 0,
            protocol: super::Protocol::Http1,
            cache: None,
        };
        let mut upstreams = self.upstreams.borrow_mut();
        if let Some(stats) = upstreams.get_mut(name) {
            stats.record(&record);
        } else {
            let mut stats = UpstreamStats::default();
            stats.record(&record);
            upstreams.insert(name.into(), stats);
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

    /// A connection was closed at accept, unread.
    pub fn connection_refused(&self, why: Refusal) {
        let c = &self.refused[why.index()];
        c.set(c.get() + 1);
    }

    /// A TLS handshake with a client completed, with `version`, resuming a session or not.
    pub fn tls_handshake(&self, version: TlsVersion, resumed: bool) {
        let c = &self.tls_handshakes[version.index()][usize::from(resumed)];
        c.set(c.get() + 1);
    }

    /// A TLS handshake with a client or an upstream failed for `cause`.
    pub fn tls_failure(&self, side: TlsSide, cause: TlsFailure) {
        let c = &self.tls_failures[side.index()][cause.index()];
        c.set(c.get() + 1);
    }

    /// One decision of policy `name`. Allocates only the first time a name is seen.
    pub fn policy_decision(&self, name: &str, outcome: PolicyOutcome) {
        let mut policies = self.policies.borrow_mut();
        match policies.get_mut(name) {
            Some(counts) => counts[outcome.index()] += 1,
            None => {
                let mut counts = [0; PolicyOutcome::ALL.len()];
                counts[outcome.index()] = 1;
                policies.insert(name.into(), counts);
            }
        }
    }

    /// One composite request (`call` `None`) or one of its calls, with its outcome label,
    /// its latency if it ran, and (for the composite) its root-merge key collisions.
    pub fn record_composite(
        &self,
        composite: &str,
        call: Option<&str>,
        outcome: &'static str,
        took: Option<Duration>,
        collisions: u32,
    ) {
        let mut map = self.composites.borrow_mut();
        if let Some(stats) = composite_stats(&mut map, composite, call.unwrap_or_default()) {
            stats.record(outcome, took, collisions);
        }
    }

    /// The slowest required call of one composite request whose required calls all
    /// answered (see [`CompositeStats::slowest_call`]).
    pub fn record_composite_slowest_call(&self, composite: &str, took: Duration) {
        let mut map = self.composites.borrow_mut();
        if let Some(stats) = composite_stats(&mut map, composite, "") {
            stats.slowest_call.record(took);
        }
    }

    /// What the gateway added to one composite request whose required calls all answered
    /// (see [`CompositeStats::overhead`]).
    pub fn record_composite_overhead(&self, composite: &str, added: Duration) {
        let mut map = self.composites.borrow_mut();
        if let Some(stats) = composite_stats(&mut map, composite, "") {
            stats.overhead.record(added);
        }
    }

    /// A tunnel of `route` opened (its upstream switched protocols).
    pub fn tunnel_opened(&self, route: &str) {
        let mut map = self.tunnels.borrow_mut();
        match map.get_mut(route) {
            Some(s) => s.opened += 1,
            None => {
                let stats = super::TunnelStats {
                    opened: 1,
                    ..Default::default()
                };
                map.insert(Box::from(route), stats);
            }
        }
    }

    /// Bytes an open tunnel of `route` carried since the last report: `up` from the client,
    /// `down` to it.
    pub fn tunnel_bytes(&self, route: &str, up: u64, down: u64) {
        let mut map = self.tunnels.borrow_mut();
        if !map.contains_key(route) {
            map.insert(Box::from(route), super::TunnelStats::default());
        }
        if let Some(s) = map.get_mut(route) {
            s.bytes_up = s.bytes_up.saturating_add(up);
            s.bytes_down = s.bytes_down.saturating_add(down);
        }
    }

    /// A tunnel of `route` closed for `reason` after `lived`, having carried `up` bytes from
    /// the client and `down` bytes to it (since the last [`Self::tunnel_bytes`] report).
    pub fn tunnel_closed(
        &self,
        route: &str,
        reason: &'static str,
        lived: Duration,
        up: u64,
        down: u64,
    ) {
        let mut map = self.tunnels.borrow_mut();
        if !map.contains_key(route) {
            map.insert(Box::from(route), super::TunnelStats::default());
        }
        if let Some(s) = map.get_mut(route) {
            s.close(reason, lived, up, down);
        }
    }

    /// Counters by protocol (requests by client protocol, HTTP/2 streams, resets, GOAWAYs).
    pub fn protocols(&self) -> &super::protocol::ProtocolRecorder {
        &self.protocols
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
            refused: std::array::from_fn(|i| self.refused[i].replace(0)),
            groups: Vec::new(),
            mirror: [0; MirrorOutcome::ALL.len()],
            policies: self
                .policies
                .borrow_mut()
                .iter_mut()
                .filter(|(_, counts)| counts.iter().any(|&n| n > 0))
                .map(|(name, counts)| (name.to_string(), std::mem::take(counts)))
                .collect(),
            tls_handshakes: take_counts(&self.tls_handshakes),
            tls_failures: take_counts(&self.tls_failures),
            composites: self
                .composites
                .borrow_mut()
                .iter_mut()
                .filter(|(_, s)| !s.is_idle())
                .map(|((c, call), s)| ((c.to_string(), call.to_string()), std::mem::take(s)))
                .collect(),
            tunnels: self
                .tunnels
                .borrow_mut()
                .iter_mut()
                .filter(|(_, s)| !s.is_idle())
                .map(|(route, s)| (route.to_string(), std::mem::take(s)))
                .collect(),
            protocols: self.protocols.take(),
            caches: Vec::new(),
        }
    }
}

/// The counts of a table of counters, leaving zeros behind.
fn take_counts<const R: usize, const C: usize>(cells: &[[Cell<u64>; C]; R]) -> [[u64; C]; R] {
    std::array::from_fn(|r| std::array::from_fn(|c| cells[r][c].replace(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(
        route: &'static str,
        upstream: Option<&'static str>,
        status: u16,
    ) -> RequestRecord<'static> {
        RequestRecord {
            route,
            upstream,
            status,
            duration: Duration::from_millis(2),
            upstream_duration: upstream.map(|_| Duration::from_millis(1)),
            bytes_in: 100,
            bytes_out: 1000,
            protocol: crate::metrics::Protocol::Http1,
            cache: None,
        }
    }

    #[test]
    fn take_delta_resets_interval_state_and_gauges_persist() {
        let m = WorkerMetrics::new(3);
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.pool_hit();
        m.pool_miss();
        m.error(ErrorCause::UpstreamTimeout);
        m.record_request(&req("api", Some("backend"), 200));

        let first = m.take_delta();
        assert_eq!(first.worker, 3);
        assert_eq!(first.routes.len(), 1);
        assert_eq!(first.upstreams.len(), 1);
        assert_eq!(first.connections_open, 1);
        assert_eq!((first.pool_hits, first.pool_misses), (1, 1));
        assert_eq!(first.errors[ErrorCause::UpstreamTimeout.index()], 1);
        assert!(!first.is_empty());

        let second = m.take_delta();
        assert!(second.is_empty(), "{second:?}");
        assert!(second.routes.is_empty() && second.upstreams.is_empty());
        assert_eq!(second.connections_open, 1, "gauge persists across deltas");

        m.record_request(&req("api", None, 200));
        let third = m.take_delta();
        assert_eq!(
            third.routes[0].duration.count(),
            1,
            "histogram was reset, not kept"
        );
    }

    #[test]
    fn counts_requests_by_status_class() {
        let m = WorkerMetrics::new(0);
        for status in [101, 200, 204, 301, 404, 429, 500, 502, 503] {
            m.record_request(&req("api", None, status));
        }
        let d = m.take_delta();
        assert_eq!(d.routes[0].requests[0], [1, 2, 1, 2, 3]);
        assert_eq!(d.routes[0].requests[1], [0; 5]);
        assert_eq!(d.routes[0].bytes_in, 900);
        assert_eq!(d.routes[0].bytes_out, 9000);
        assert_eq!(d.routes[0].duration.count(), 9);
    }

    #[test]
    fn unmatched_requests_go_to_the_empty_route_name() {
        let m = WorkerMetrics::new(0);
        m.record_request(&req("", None, 404));
        let d = m.take_delta();
        assert_eq!(d.routes.len(), 1);
        assert_eq!(d.routes[0].route, "");
        assert_eq!(d.routes[0].requests[0][StatusClass::ClientError.index()], 1);
    }

    #[test]
    fn upstream_is_optional_and_counted_only_when_present() {
        let m = WorkerMetrics::new(0);
        m.record_request(&req("static", None, 200));
        m.record_request(&req("api", Some("backend"), 502));
        let mut no_timing = req("api", Some("backend"), 200);
        no_timing.upstream_duration = None;
        m.record_request(&no_timing);
        let d = m.take_delta();
        assert_eq!(d.routes.len(), 2);
        assert_eq!(d.upstreams.len(), 1);
        let u = &d.upstreams[0];
        assert_eq!(u.upstream, "backend");
        assert_eq!(u.requests, [0, 1, 0, 0, 1]);
        assert_eq!(
            u.duration.count(),
            1,
            "only requests with an upstream duration"
        );
    }

    #[test]
    fn tls_handshakes_and_failures_are_counted_per_interval() {
        let m = WorkerMetrics::new(0);
        m.tls_handshake(TlsVersion::Tls13, false);
        m.tls_handshake(TlsVersion::Tls13, true);
        m.tls_handshake(TlsVersion::Tls13, true);
        m.tls_handshake(TlsVersion::Tls12, false);
        m.tls_failure(TlsSide::Client, TlsFailure::Timeout);
        m.tls_failure(TlsSide::Upstream, TlsFailure::BadCertificate);
        let d = m.take_delta();
        assert!(!d.is_empty());
        assert_eq!(d.tls_handshakes[TlsVersion::Tls13.index()], [1, 2]);
        assert_eq!(d.tls_handshakes[TlsVersion::Tls12.index()], [1, 0]);
        let client = d.tls_failures[TlsSide::Client.index()];
        let upstream = d.tls_failures[TlsSide::Upstream.index()];
        assert_eq!(client[TlsFailure::Timeout.index()], 1);
        assert_eq!(upstream[TlsFailure::BadCertificate.index()], 1);
        assert_eq!(client.iter().sum::<u64>() + upstream.iter().sum::<u64>(), 2);
        assert!(m.take_delta().is_empty(), "counters reset with the delta");
    }

    #[test]
    fn connection_closed_never_underflows() {
        let m = WorkerMetrics::new(0);
        m.connection_closed();
        assert_eq!(m.connections_open(), 0);
    }
}
