//! The merged totals of every worker's deltas, on the control side.
//!
//! Runs off the hot path (once per merge interval and per scrape). Maps are ordered so that
//! `/metrics` lists routes, upstreams and workers in a stable order.

use std::collections::BTreeMap;

use super::delta::{MetricsDelta, RouteRequests, TlsFailureCounts, TlsHandshakeCounts};
use super::histogram::LatencyHistogram;
use super::record::{
    ErrorCause, MirrorOutcome, PolicyOutcome, Refusal, StatusClass, TlsFailure, TlsSide, TlsVersion,
};
use super::DeltaReceiver;
use crate::upstream::{GroupCounters, GroupReport};

/// Totals for one route since start.
#[derive(Clone, Debug, Default)]
pub struct RouteTotals {
    /// Requests by client protocol, then status class (see [`RouteRequests`]).
    pub requests: RouteRequests,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Whole-request durations, merged over all workers.
    pub duration: LatencyHistogram,
    /// Requests by what the route's cache did, indexed by [`super::CacheResult::index`].
    pub cache: [u64; super::CacheResult::ALL.len()],
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
    /// Active health of every target in force.
    pub target_health: Vec<TargetHealthInfo>,
    /// Redis health of cluster-scoped rate limits, if any is in force.
    pub redis: Option<RedisHealth>,
    /// Cache purges shared through Redis, if `[redis]` and caches are configured.
    pub cache_redis: Option<CacheRedisHealth>,
}

/// Cache purges shared through Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheRedisHealth {
    /// Whether the subscription and the last publish worked.
    pub up: bool,
    /// Failed connections and commands since start.
    pub errors: u64,
    /// Purges that could not be published: the other instances missed them.
    pub unpublished: u64,
    /// Purges received from other instances.
    pub received: u64,
}

/// Redis health of cluster-scoped rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisHealth {
    /// Whether the last exchange succeeded (else limits fell back to the instance).
    pub up: bool,
    /// Failed connections and exchanges since start.
    pub errors: u64,
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
    pub(super) refused: [u64; Refusal::ALL.len()],
    /// Traffic-management counters per upstream group, summed over workers.
    pub(super) traffic: BTreeMap<String, GroupCounters>,
    /// The latest group state each worker reported, by (group, worker).
    pub(super) group_state: BTreeMap<(String, usize), GroupReport>,
    pub(super) mirror: [u64; MirrorOutcome::ALL.len()],
    pub(super) policies: BTreeMap<String, [u64; PolicyOutcome::ALL.len()]>,
    pub(super) tls_handshakes: TlsHandshakeCounts,
    pub(super) tls_failures: TlsFailureCounts,
    pub(super) composites: super::composite::CompositeTable,
    pub(super) tunnels: super::TunnelTable,
    pub(super) protocols: super::ProtocolCounts,
    /// The HTTP/2 gauges (connections, streams) each worker reported last.
    pub(super) h2_gauges: BTreeMap<usize, (u64, u64)>,
    /// Response cache counters, summed over workers, by cache name.
    pub(super) caches: BTreeMap<String, crate::cache::CacheCounts>,
    /// Response cache gauges (entries, bytes) each worker reported last, by (cache, worker).
    pub(super) cache_gauges: BTreeMap<(String, usize), (u64, u64)>,
}

/// One active-health cell as the control side reads it.
#[derive(Clone, Debug)]
pub struct TargetHealthInfo {
    /// Upstream group.
    pub upstream: String,
    /// Target address.
    pub target: String,
    /// Whether active checks consider it healthy.
    pub healthy: bool,
}

fn add_counts<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

impl RouteTotals {
    /// Requests of status class `class` over every protocol.
    pub fn requests_of(&self, class: StatusClass) -> u64 {
        self.requests
            .iter()
            .map(|by_class| by_class[class.index()])
            .sum()
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
            for (into, from) in t.requests.iter_mut().zip(&r.requests) {
                add_counts(into, from);
            }
            t.bytes_in = t.bytes_in.saturating_add(r.bytes_in);
            t.bytes_out = t.bytes_out.saturating_add(r.bytes_out);
            t.duration.add(&r.duration);
            add_counts(&mut t.cache, &r.cache);
        }
        for c in delta.caches {
            self.caches
                .entry(c.name.clone())
                .or_default()
                .add(&c.counts);
            self.cache_gauges
                .insert((c.name, delta.worker), (c.entries, c.bytes));
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
        add_counts(&mut self.refused, &delta.refused);
        add_counts(&mut self.mirror, &delta.mirror);
        for g in delta.groups {
            let t = self.traffic.entry(g.name.clone()).or_default();
            let c = &g.counters;
            t.retries += c.retries;
            t.budget_exhausted += c.budget_exhausted;
            t.breaker_rejected += c.breaker_rejected;
            t.breaker_opened += c.breaker_opened;
            t.ejections += c.ejections;
            t.no_healthy_target += c.no_healthy_target;
            self.group_state.insert((g.name.clone(), delta.worker), g);
        }
        for (name, counts) in delta.policies {
            add_counts(self.policies.entry(name).or_default(), &counts);
        }
        for (key, stats) in delta.composites {
            self.composites.entry(key).or_default().add(&stats);
        }
        for (route, stats) in delta.tunnels {
            self.tunnels.entry(route).or_default().add(&stats);
        }
        for (into, from) in self.tls_handshakes.iter_mut().zip(&delta.tls_handshakes) {
            add_counts(into, from);
        }
        for (into, from) in self.tls_failures.iter_mut().zip(&delta.tls_failures) {
            add_counts(into, from);
        }
        self.protocols.add(&delta.protocols);
        let p = &delta.protocols;
        self.h2_gauges
            .insert(delta.worker, (p.h2_connections_open, p.h2_streams_open));
    }

    /// Requests answered over `protocol` since start (all routes).
    pub fn requests_by_protocol(&self, protocol: super::Protocol) -> u64 {
        self.routes
            .values()
            .map(|t| t.requests[protocol.index()].iter().sum::<u64>())
            .sum()
    }

    /// TLS handshakes completed on listeners with `version`, resumed or not, since start.
    pub fn tls_handshakes(&self, version: TlsVersion, resumed: bool) -> u64 {
        self.tls_handshakes[version.index()][usize::from(resumed)]
    }

    /// TLS handshakes with `side` that failed for `cause` since start.
    pub fn tls_failures(&self, side: TlsSide, cause: TlsFailure) -> u64 {
        self.tls_failures[side.index()][cause.index()]
    }

    /// What composite `composite` (`call` `None`) or one of its calls did since start.
    pub fn composite(&self, composite: &str, call: Option<&str>) -> Option<&super::CompositeStats> {
        self.composites
            .get(&(composite.to_string(), call.unwrap_or_default().to_string()))
    }

    /// What route `route`'s tunnels did since start.
    pub fn tunnels(&self, route: &str) -> Option<&super::TunnelStats> {
        self.tunnels.get(route)
    }

    /// Decisions of policy `name` with `outcome` since start.
    pub fn policy_decisions(&self, name: &str, outcome: PolicyOutcome) -> u64 {
        self.policies
            .get(name)
            .map_or(0, |counts| counts[outcome.index()])
    }

    /// Traffic-management counters of one group since start.
    pub fn traffic(&self, name: &str) -> Option<&GroupCounters> {
        self.traffic.get(name)
    }

    /// The latest state of group `name` as each worker reported it, by worker.
    pub fn group_states(&self, name: &str) -> Vec<(usize, &GroupReport)> {
        self.group_state
            .iter()
            .filter(|((g, _), _)| g == name)
            .map(|((_, w), r)| (*w, r))
            .collect()
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

    /// Connections refused at accept for `why` since start.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why.index()]
    }

    /// Mirror outcomes of one kind since start.
    pub fn mirror(&self, outcome: MirrorOutcome) -> u64 {
        self.mirror[outcome.index()]
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

#[cfg(test)]
mod tests {
    use super::super::{delta_channel, RequestRecord, WorkerMetrics};
    use super::*;
    use std::time::Duration;

    /// Deterministic, spread over five decades (10 µs .. ~1 s), heavy-tailed like latency.
    fn samples(n: usize) -> Vec<Duration> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let decade = (x % 5) as u32;
                let mantissa = 10 + (x >> 8) % 90;
                Duration::from_micros(mantissa * 10u64.pow(decade + 1) / 10)
            })
            .collect()
    }

    fn record(m: &WorkerMetrics, d: Duration) {
        m.record_request(&RequestRecord {
            route: "api",
            upstream: Some("backend"),
            status: 200,
            duration: d,
            upstream_duration: Some(d / 2),
            bytes_in: 1,
            bytes_out: 2,
            protocol: crate::metrics::Protocol::Http1,
            cache: None,
        });
    }

    #[test]
    fn merged_percentiles_equal_a_single_histogram_fed_the_same_samples() {
        let workers: Vec<WorkerMetrics> = (0..3).map(WorkerMetrics::new).collect();
        let mut single = LatencyHistogram::new();
        let mut single_upstream = LatencyHistogram::new();
        for (i, d) in samples(30_001).into_iter().enumerate() {
            // Uneven split: worker 0 gets half, the others a quarter each.
            let w = match i % 4 {
                0 | 1 => 0,
                2 => 1,
                _ => 2,
            };
            record(&workers[w], d);
            single.record(d);
            single_upstream.record(d / 2);
        }
        let mut agg = Aggregator::new();
        for w in &workers {
            agg.merge(w.take_delta());
        }
        let merged = &agg.route("api").expect("route").duration;
        let merged_up = &agg.upstream("backend").expect("upstream").duration;
        assert_eq!(merged.count(), single.count());
        assert_eq!(merged.count(), 30_001);
        assert_eq!(merged.sum_micros(), single.sum_micros());
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(
                merged.value_at_quantile(q),
                single.value_at_quantile(q),
                "q={q}"
            );
            assert_eq!(
                merged_up.value_at_quantile(q),
                single_upstream.value_at_quantile(q),
                "upstream q={q}"
            );
        }
    }

    #[test]
    fn merging_over_intervals_accumulates_counters_and_keeps_last_gauge() {
        let m = WorkerMetrics::new(1);
        let mut agg = Aggregator::new();
        m.connection_opened();
        record(&m, Duration::from_millis(1));
        m.error(ErrorCause::NoRoute);
        agg.merge(m.take_delta());
        m.connection_closed();
        record(&m, Duration::from_millis(1));
        m.pool_hit();
        agg.merge(m.take_delta());
        let r = agg.route("api").expect("route");
        assert_eq!(r.requests_of(StatusClass::Success), 2);
        assert_eq!(agg.requests_by_protocol(crate::metrics::Protocol::Http1), 2);
        assert_eq!(r.duration.count(), 2);
        assert_eq!((r.bytes_in, r.bytes_out), (2, 4));
        assert_eq!(agg.connections_open(1), Some(0));
        assert_eq!(agg.errors(ErrorCause::NoRoute), 1);
        assert_eq!(agg.pool(), (1, 0));
    }

    #[test]
    fn deltas_cross_threads_over_the_channel() {
        let (tx, rx) = delta_channel();
        let handles: Vec<_> = (0..2)
            .map(|id| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let m = WorkerMetrics::new(id);
                    record(&m, Duration::from_micros(250));
                    tx.send(m.take_delta()).expect("send");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("join");
        }
        let mut agg = Aggregator::new();
        assert_eq!(agg.drain(&rx), 2);
        assert_eq!(agg.route("api").expect("route").duration.count(), 2);
    }
}
