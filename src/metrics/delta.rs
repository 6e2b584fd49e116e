//! One worker's interval: what it hands the control thread over the delta channel.
//!
//! Plain owned data (`Send`); built once per merge interval, off the per-request path.

use super::histogram::LatencyHistogram;
use super::record::{
    ErrorCause, MirrorOutcome, PolicyOutcome, Refusal, StatusClass, TlsFailure, TlsSide, TlsVersion,
};

/// A route's requests by client protocol ([`Protocol::index`]), then status class
/// ([`StatusClass::index`]).
///
/// [`Protocol::index`]: super::Protocol::index
pub type RouteRequests = [[u64; StatusClass::ALL.len()]; super::Protocol::ALL.len()];

/// One route's interval.
#[derive(Clone, Debug)]
pub struct RouteDelta {
    /// Route name (`""`: no route matched).
    pub route: String,
    /// Requests by client protocol and status class.
    pub requests: RouteRequests,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Whole-request durations.
    pub duration: LatencyHistogram,
    /// Requests by what the route's cache did, indexed by [`super::CacheResult::index`].
    pub cache: [u64; super::CacheResult::ALL.len()],
}

/// One cache's interval on one worker.
#[derive(Clone, Debug, Default)]
pub struct CacheDelta {
    /// The cache's name.
    pub name: String,
    /// Counters of the interval.
    pub counts: crate::cache::CacheCounts,
    /// Gauge: entries stored now.
    pub entries: u64,
    /// Gauge: bytes charged now.
    pub bytes: u64,
}

/// One upstream group's interval.
#[derive(Clone, Debug)]
pub struct UpstreamDelta {
    /// Upstream group name.
    pub upstream: String,
    /// Proxied requests by status class, indexed by [`StatusClass::index`].
    pub requests: [u64; StatusClass::ALL.len()],
    /// Upstream exchange durations (only requests that reported one).
    pub duration: LatencyHistogram,
}

/// The counters and histograms one worker gathered since its previous delta, and its gauges'
/// current values. Routes and upstreams without activity in the interval are left out.
#[derive(Clone, Debug)]
pub struct MetricsDelta {
    /// The worker's id.
    pub worker: usize,
    /// Routes with requests in the interval.
    pub routes: Vec<RouteDelta>,
    /// Upstreams with requests in the interval.
    pub upstreams: Vec<UpstreamDelta>,
    /// Gauge: connections open at the time of the delta.
    pub connections_open: u64,
    /// Keep-alive pool hits in the interval.
    pub pool_hits: u64,
    /// Keep-alive pool misses in the interval.
    pub pool_misses: u64,
    /// Errors in the interval, indexed by [`ErrorCause::index`].
    pub errors: [u64; ErrorCause::ALL.len()],
    /// Connections closed at accept in the interval, indexed by [`Refusal::index`].
    pub refused: [u64; Refusal::ALL.len()],
    /// The worker's upstream groups: breaker state, ejected targets, traffic counters.
    pub groups: Vec<crate::upstream::GroupReport>,
    /// Mirror outcomes in the interval, indexed by [`MirrorOutcome::index`].
    pub mirror: [u64; MirrorOutcome::ALL.len()],
    /// Policy decisions in the interval: policy name, counts by [`PolicyOutcome::index`].
    pub policies: Vec<(String, [u64; PolicyOutcome::ALL.len()])>,
    /// TLS handshakes completed on listeners in the interval, by [`TlsVersion::index`], then
    /// fresh (0) or resumed (1).
    pub tls_handshakes: TlsHandshakeCounts,
    /// TLS handshakes failed in the interval, by [`TlsSide::index`] and [`TlsFailure::index`].
    pub tls_failures: TlsFailureCounts,
    /// Composite requests and calls in the interval, by (composite, call).
    pub composites: super::composite::CompositeTable,
    /// Tunnels opened and closed in the interval, by route.
    pub tunnels: super::TunnelTable,
    /// Requests by client protocol and HTTP/2 counters (gauges as current values).
    pub protocols: super::ProtocolCounts,
    /// The worker's response caches.
    pub caches: Vec<CacheDelta>,
}

/// Completed handshakes by [`TlsVersion::index`], then fresh (0) or resumed (1).
pub type TlsHandshakeCounts = [[u64; 2]; TlsVersion::ALL.len()];
/// Failed handshakes by [`TlsSide::index`], then [`TlsFailure::index`].
pub type TlsFailureCounts = [[u64; TlsFailure::ALL.len()]; TlsSide::ALL.len()];

impl MetricsDelta {
    /// Whether the interval saw nothing (gauges aside).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.upstreams.is_empty()
            && self.pool_hits == 0
            && self.pool_misses == 0
            && self.errors.iter().all(|&e| e == 0)
            && self.refused.iter().all(|&e| e == 0)
            && self.mirror.iter().all(|&m| m == 0)
            && self.policies.is_empty()
            && self.tls_handshakes.iter().flatten().all(|&n| n == 0)
            && self.tls_failures.iter().flatten().all(|&n| n == 0)
            && self.composites.is_empty()
            && self.tunnels.is_empty()
            && self.protocols.is_quiet()
    }
}
