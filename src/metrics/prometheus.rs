//! Prometheus text exposition format 0.0.4 for the merged totals.
//!
//! Runs on the control side per scrape, off the hot path. Every family gets one `# HELP` and
//! one `# TYPE` line, even before it has samples; label values are escaped.

use std::collections::BTreeMap;
use std::fmt::{self, Display, Write};

use super::aggregate::{Aggregator, ProcessInfo};
use super::composite::CompositeStats;
use super::histogram::LatencyHistogram;
use super::protocol::Protocol;
use super::record::{
    ErrorCause, MirrorOutcome, PolicyOutcome, Refusal, StatusClass, TlsFailure, TlsSide, TlsVersion,
};

/// Histogram bucket upper bounds: microseconds for the HDR lookup, and the `le` label.
const BUCKETS: [(u64, &str); 14] = [
    (500, "0.0005"),
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

/// Quantiles reported as gauges, exact from the merged HDR data.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];

/// TLS handshakes completed on listeners and handshakes failed on either side.
fn write_tls(w: &mut Writer, agg: &Aggregator) -> fmt::Result {
    w.family(
        "ringgate_tls_handshakes_total",
        "TLS handshakes completed on client listeners, by protocol version and resumption.",
        "counter",
    )?;
    for version in TlsVersion::ALL {
        for (resumed, label) in [(false, "false"), (true, "true")] {
            let labels = [("version", version.label()), ("resumed", label)];
            let n = agg.tls_handshakes[version.index()][usize::from(resumed)];
            w.sample("ringgate_tls_handshakes_total", &labels, n)?;
        }
    }
    w.family(
        "ringgate_tls_handshake_failures_total",
        "TLS handshakes failed, with clients on listeners or with upstream targets, by cause.",
        "counter",
    )?;
    for side in TlsSide::ALL {
        for cause in TlsFailure::ALL {
            let labels = [("side", side.label()), ("cause", cause.label())];
            let n = agg.tls_failures[side.index()][cause.index()];
            w.sample("ringgate_tls_handshake_failures_total", &labels, n)?;
        }
    }
    Ok(())
}

/// Renders everything the aggregator holds plus the process figures.
pub(super) fn render(agg: &Aggregator, process: &ProcessInfo) -> String {
    let mut w = Writer {
        out: String::with_capacity(4096 + 2048 * (agg.routes.len() + agg.upstreams.len())),
    };
    // Writing to a String cannot fail; the fmt::Result only threads `?` through.
    let _ = write_all(&mut w, agg, process);
    w.out
}

fn write_all(w: &mut Writer, agg: &Aggregator, process: &ProcessInfo) -> fmt::Result {
    w.family(
        "ringgate_requests_total",
        "Requests by route, status class and client protocol.",
        "counter",
    )?;
    for (route, t) in &agg.routes {
        for protocol in Protocol::ALL {
            for class in StatusClass::ALL {
                let labels = [
                    ("route", route.as_str()),
                    ("status_class", class.label()),
                    ("protocol", protocol.label()),
                ];
                w.sample(
                    "ringgate_requests_total",
                    &labels,
                    t.requests[protocol.index()][class.index()],
                )?;
            }
        }
    }
    w.family(
        "ringgate_request_duration_seconds",
        "Request duration, head read to last byte written, by route.",
        "histogram",
    )?;
    for (route, t) in &agg.routes {
        w.histogram(
            "ringgate_request_duration_seconds",
            "route",
            route,
            &t.duration,
        )?;
    }
    w.family(
        "ringgate_request_duration_quantile_seconds",
        "Request duration quantiles since start, exact from the merged HDR histogram, by route.",
        "gauge",
    )?;
    for (route, t) in &agg.routes {
        w.quantiles(
            "ringgate_request_duration_quantile_seconds",
            "route",
            route,
            &t.duration,
        )?;
    }
    w.family(
        "ringgate_bytes_received_total",
        "Bytes read from clients, by route.",
        "counter",
    )?;
    for (route, t) in &agg.routes {
        w.sample(
            "ringgate_bytes_received_total",
            &[("route", route)],
            t.bytes_in,
        )?;
    }
    w.family(
        "ringgate_bytes_sent_total",
        "Bytes written to clients, by route.",
        "counter",
    )?;
    for (route, t) in &agg.routes {
        w.sample(
            "ringgate_bytes_sent_total",
            &[("route", route)],
            t.bytes_out,
        )?;
    }

    w.family(
        "ringgate_upstream_requests_total",
        "Proxied requests by upstream group and status class.",
        "counter",
    )?;
    for (up, t) in &agg.upstreams {
        for class in StatusClass::ALL {
            let labels = [("upstream", up.as_str()), ("status_class", class.label())];
            w.sample(
                "ringgate_upstream_requests_total",
                &labels,
                t.requests[class.index()],
            )?;
        }
    }
    w.family(
        "ringgate_upstream_duration_seconds",
        "Upstream exchange duration, connect or send to last byte, by upstream group.",
        "histogram",
    )?;
    for (up, t) in &agg.upstreams {
        w.histogram(
            "ringgate_upstream_duration_seconds",
            "upstream",
            up,
            &t.duration,
        )?;
    }
    w.family(
        "ringgate_upstream_duration_quantile_seconds",
        "Upstream duration quantiles since start, exact from the merged HDR histogram.",
        "gauge",
    )?;
    for (up, t) in &agg.upstreams {
        w.quantiles(
            "ringgate_upstream_duration_quantile_seconds",
            "upstream",
            up,
            &t.duration,
        )?;
    }

    w.family(
        "ringgate_connections_open",
        "Client connections open, by worker.",
        "gauge",
    )?;
    let mut workers: Vec<(usize, u64)> = agg
        .connections_open
        .iter()
        .map(|(&id, &n)| (id, n))
        .collect();
    for info in &process.workers {
        if !agg.connections_open.contains_key(&info.id) {
            workers.push((info.id, 0));
        }
    }
    workers.sort_unstable();
    for (id, n) in workers {
        w.sample(
            "ringgate_connections_open",
            &[("worker", &id.to_string())],
            n,
        )?;
    }
    w.family(
        "ringgate_pool_hits_total",
        "Upstream connections reused from the pool.",
        "counter",
    )?;
    w.sample("ringgate_pool_hits_total", &[], agg.pool_hits)?;
    w.family(
        "ringgate_pool_misses_total",
        "Upstream connections opened anew.",
        "counter",
    )?;
    w.sample("ringgate_pool_misses_total", &[], agg.pool_misses)?;
    w.family("ringgate_errors_total", "Failures by cause.", "counter")?;
    for cause in ErrorCause::ALL {
        let n = agg.errors[cause.index()];
        w.sample("ringgate_errors_total", &[("cause", cause.label())], n)?;
    }
    w.family(
        "ringgate_connections_refused_total",
        "Client connections closed at accept, unread, by the cap they hit.",
        "counter",
    )?;
    for why in Refusal::ALL {
        let n = agg.refused[why.index()];
        w.sample(
            "ringgate_connections_refused_total",
            &[("reason", why.label())],
            n,
        )?;
    }
    write_tls(w, agg)?;
    let gauges = agg
        .h2_gauges
        .values()
        .fold((0, 0), |(c, s), &(wc, ws)| (c + wc, s + ws));
    let by_protocol = Protocol::ALL.map(|p| agg.requests_by_protocol(p));
    super::protocol::write(w, &agg.protocols, by_protocol, gauges)?;
    w.family(
        "ringgate_mirror_requests_total",
        "Requests sampled for mirroring, by outcome.",
        "counter",
    )?;
    for outcome in MirrorOutcome::ALL {
        let n = agg.mirror[outcome.index()];
        let labels = [("outcome", outcome.label())];
        w.sample("ringgate_mirror_requests_total", &labels, n)?;
    }
    w.family(
        "ringgate_policy_decisions_total",
        "Decisions of each route policy by outcome.",
        "counter",
    )?;
    for (name, counts) in &agg.policies {
        for outcome in PolicyOutcome::ALL {
            let labels = [("policy", name.as_str()), ("outcome", outcome.label())];
            let n = counts[outcome.index()];
            w.sample("ringgate_policy_decisions_total", &labels, n)?;
        }
    }
    composites(w, agg)?;
    super::tunnel::write(w, &agg.tunnels)?;

    w.family(
        "ringgate_worker_info",
        "Worker threads and the I/O driver each runs.",
        "gauge",
    )?;
    for info in &process.workers {
        let id = info.id.to_string();
        let labels = [("worker", id.as_str()), ("driver", info.driver.as_str())];
        w.sample("ringgate_worker_info", &labels, 1)?;
    }
    w.family(
        "ringgate_config_reloads_total",
        "Successful config reloads.",
        "counter",
    )?;
    w.sample("ringgate_config_reloads_total", &[], process.reloads)?;
    w.family(
        "ringgate_config_reload_failures_total",
        "Config reloads refused (the running config kept serving).",
        "counter",
    )?;
    w.sample(
        "ringgate_config_reload_failures_total",
        &[],
        process.failed_reloads,
    )?;
    w.family(
        "ringgate_config_generation",
        "Generation of the active config.",
        "gauge",
    )?;
    w.sample("ringgate_config_generation", &[], process.config_generation)?;
    write_traffic(w, agg, process)?;
    w.family(
        "ringgate_process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        "gauge",
    )?;
    w.sample(
        "ringgate_process_start_time_seconds",
        &[],
        process.start_time_unix,
    )?;
    write_caches(w, agg, process)?;
    if let Some(redis) = process.redis {
        w.family(
            "ringgate_rate_limit_redis_up",
            "1 while Redis answers; 0 while cluster-scoped rate limits fall back to instance limits.",
            "gauge",
        )?;
        w.sample("ringgate_rate_limit_redis_up", &[], u64::from(redis.up))?;
        w.family(
            "ringgate_rate_limit_redis_errors_total",
            "Failed Redis connections and exchanges of cluster-scoped rate limits.",
            "counter",
        )?;
        w.sample("ringgate_rate_limit_redis_errors_total", &[], redis.errors)?;
    }
    Ok(())
}

/// Response cache families: per route results, per cache counters and gauges, and the purges
/// shared through Redis.
fn write_caches(w: &mut Writer, agg: &Aggregator, process: &ProcessInfo) -> fmt::Result {
    use crate::metrics::CacheResult;
    let cached_routes: Vec<_> = agg
        .routes
        .iter()
        .filter(|(_, t)| t.cache.iter().any(|&n| n > 0))
        .collect();
    if !cached_routes.is_empty() {
        w.family(
            "ringgate_route_cache_requests_total",
            "Requests of routes with a cache, by what the cache did (hit, stale, revalidated, miss, bypass).",
            "counter",
        )?;
        for (route, t) in cached_routes {
            for result in CacheResult::ALL {
                let labels = [("route", route.as_str()), ("result", result.label())];
                w.sample(
                    "ringgate_route_cache_requests_total",
                    &labels,
                    t.cache[result.index()],
                )?;
            }
        }
    }
    type Get = fn(&crate::cache::CacheCounts) -> u64;
    let counters: [(&str, &str, Get); 8] = [
        (
            "ringgate_cache_hits_total",
            "Requests answered fresh from the cache, or after a 304.",
            |c| c.hits,
        ),
        (
            "ringgate_cache_misses_total",
            "Requests that found nothing usable stored.",
            |c| c.misses,
        ),
        (
            "ringgate_cache_stale_total",
            "Requests answered stale (max-stale, stale-while-revalidate, stale-if-error).",
            |c| c.stale,
        ),
        (
            "ringgate_cache_revalidations_total",
            "Conditional requests sent to revalidate stored responses.",
            |c| c.revalidations,
        ),
        (
            "ringgate_cache_coalesced_total",
            "Requests that waited for another request's miss of the same key.",
            |c| c.coalesced,
        ),
        ("ringgate_cache_stores_total", "Responses stored.", |c| {
            c.stores
        }),
        (
            "ringgate_cache_evictions_total",
            "Entries evicted to stay within max_bytes.",
            |c| c.evictions,
        ),
        (
            "ringgate_cache_purged_total",
            "Entries removed by invalidation or purge.",
            |c| c.purged,
        ),
    ];
    if !agg.caches.is_empty() {
        for (name, help, get) in counters {
            w.family(name, help, "counter")?;
            for (cache, counts) in &agg.caches {
                w.sample(name, &[("cache", cache.as_str())], get(counts))?;
            }
        }
        let mut gauges: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for ((cache, _), (entries, bytes)) in &agg.cache_gauges {
            let g = gauges.entry(cache.as_str()).or_default();
            g.0 += entries;
            g.1 += bytes;
        }
        w.family(
            "ringgate_cache_entries",
            "Entries stored, over every worker.",
            "gauge",
        )?;
        for (cache, (entries, _)) in &gauges {
            w.sample("ringgate_cache_entries", &[("cache", cache)], *entries)?;
        }
        w.family(
            "ringgate_cache_bytes",
            "Bytes charged (heads, bodies, keys, index), over every worker.",
            "gauge",
        )?;
        for (cache, (_, bytes)) in &gauges {
            w.sample("ringgate_cache_bytes", &[("cache", cache)], *bytes)?;
        }
    }
    if let Some(redis) = process.cache_redis {
        let families: [(&str, &str, &str, u64); 4] = [
            (
                "ringgate_cache_purge_redis_up",
                "1 while purges are exchanged with the other instances through Redis.",
                "gauge",
                u64::from(redis.up),
            ),
            (
                "ringgate_cache_purge_redis_errors_total",
                "Failed Redis connections and commands of cache purges.",
                "counter",
                redis.errors,
            ),
            (
                "ringgate_cache_purge_unpublished_total",
                "Purges made here that Redis could not take: the other instances missed them.",
                "counter",
                redis.unpublished,
            ),
            (
                "ringgate_cache_purge_received_total",
                "Purges received from other instances and applied.",
                "counter",
                redis.received,
            ),
        ];
        for (name, help, kind, value) in families {
            w.family(name, help, kind)?;
            w.sample(name, &[], value)?;
        }
    }
    Ok(())
}

/// Traffic-management families: retries, budget, breaker, ejections, target health.
fn write_traffic(w: &mut Writer, agg: &Aggregator, process: &ProcessInfo) -> fmt::Result {
    type Get = fn(&crate::upstream::GroupCounters) -> u64;
    let counters: [(&str, &str, Get); 6] = [
        (
            "ringgate_upstream_retries_total",
            "Retries sent, by upstream group.",
            |c| c.retries,
        ),
        (
            "ringgate_upstream_retry_budget_exhausted_total",
            "Retries not sent because the retry budget was spent.",
            |c| c.budget_exhausted,
        ),
        (
            "ringgate_upstream_breaker_rejected_total",
            "Requests answered 503 by an open circuit breaker.",
            |c| c.breaker_rejected,
        ),
        (
            "ringgate_upstream_breaker_opened_total",
            "Circuit breaker transitions to open (per worker breaker).",
            |c| c.breaker_opened,
        ),
        (
            "ringgate_upstream_ejections_total",
            "Targets ejected by passive health checks.",
            |c| c.ejections,
        ),
        (
            "ringgate_upstream_no_healthy_target_total",
            "Requests answered 503 because no target was available.",
            |c| c.no_healthy_target,
        ),
    ];
    for (name, help, get) in counters {
        w.family(name, help, "counter")?;
        for (upstream, c) in &agg.traffic {
            w.sample(name, &[("upstream", upstream.as_str())], get(c))?;
        }
    }
    w.family(
        "ringgate_upstream_breaker_open_workers",
        "Workers whose circuit breaker for the group is open or half-open.",
        "gauge",
    )?;
    let mut open: BTreeMap<&str, u64> = BTreeMap::new();
    for ((group, _), report) in &agg.group_state {
        *open.entry(group.as_str()).or_default() +=
            u64::from(report.breaker != "closed" && report.breaker != "none");
    }
    for (group, n) in open {
        w.sample(
            "ringgate_upstream_breaker_open_workers",
            &[("upstream", group)],
            n,
        )?;
    }
    w.family(
        "ringgate_upstream_target_healthy",
        "1 if active health checks consider the target healthy, else 0.",
        "gauge",
    )?;
    for t in &process.target_health {
        let labels = [
            ("upstream", t.upstream.as_str()),
            ("target", t.target.as_str()),
        ];
        w.sample(
            "ringgate_upstream_target_healthy",
            &labels,
            u8::from(t.healthy),
        )?;
    }
    Ok(())
}

pub(super) struct Writer {
    out: String,
}

impl Writer {
    pub(super) fn family(&mut self, name: &str, help: &str, kind: &str) -> fmt::Result {
        writeln!(self.out, "# HELP {name} {help}")?;
        writeln!(self.out, "# TYPE {name} {kind}")
    }

    pub(super) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl Display,
    ) -> fmt::Result {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        writeln!(self.out, " {value}")
    }

    /// `_bucket` lines (cumulative, ending with `+Inf` = `_count`), `_sum` and `_count`.
    fn histogram(
        &mut self,
        name: &str,
        key: &str,
        value: &str,
        h: &LatencyHistogram,
    ) -> fmt::Result {
        self.histogram_labeled(name, &[(key, value)], h)
    }

    /// [`Writer::histogram`] with any labels.
    fn histogram_labeled(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &LatencyHistogram,
    ) -> fmt::Result {
        let bucket = format!("{name}_bucket");
        let bounds = BUCKETS.map(|(micros, _)| micros);
        let counts = h.cumulative_buckets(&bounds);
        let with_le = |le: &'static str| {
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("le", le));
            l
        };
        for ((_, le), n) in BUCKETS.iter().zip(counts) {
            self.sample(&bucket, &with_le(le), n)?;
        }
        self.sample(&bucket, &with_le("+Inf"), h.count())?;
        self.sample(
            &format!("{name}_sum"),
            labels,
            micros_to_seconds(h.sum_micros()),
        )?;
        self.sample(&format!("{name}_count"), labels, h.count())
    }

    /// One gauge per quantile; nothing for an empty histogram (there is no quantile to report).
    fn quantiles(
        &mut self,
        name: &str,
        key: &str,
        value: &str,
        h: &LatencyHistogram,
    ) -> fmt::Result {
        if h.is_empty() {
            return Ok(());
        }
        for (q, label) in QUANTILES {
            let secs = micros_to_seconds(h.value_at_quantile(q));
            self.sample(name, &[(key, value), ("quantile", label)], secs)?;
        }
        Ok(())
    }
}

/// One per-composite latency: its family name stem, the help of its histogram and of its
/// quantiles, and which histogram of the stats it is.
type CompositeTiming = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CompositeStats) -> &LatencyHistogram,
);

/// The histogram family `STEM_seconds` and the quantile family `STEM_quantile_seconds` of
/// one per-composite latency, a sample set per composite.
fn composite_timing(
    w: &mut Writer,
    agg: &Aggregator,
    (stem, help, quantile_help, histogram): CompositeTiming,
) -> fmt::Result {
    let composites = || {
        agg.composites
            .iter()
            .filter(|((_, call), _)| call.is_empty())
    };
    let name = format!("{stem}_seconds");
    w.family(&name, help, "histogram")?;
    for ((composite, _), stats) in composites() {
        w.histogram_labeled(
            &name,
            &[("composite", composite.as_str())],
            histogram(stats),
        )?;
    }
    let name = format!("{stem}_quantile_seconds");
    w.family(&name, quantile_help, "gauge")?;
    for ((composite, _), stats) in composites() {
        w.quantiles(&name, "composite", composite, histogram(stats))?;
    }
    Ok(())
}

/// Composite requests and calls: outcomes, latency, root-merge key collisions.
fn composites(w: &mut Writer, agg: &Aggregator) -> fmt::Result {
    let composites = || {
        agg.composites
            .iter()
            .filter(|((_, call), _)| call.is_empty())
    };
    let calls = || {
        agg.composites
            .iter()
            .filter(|((_, call), _)| !call.is_empty())
    };
    w.family(
        "ringgate_composite_requests_total",
        "Composite requests by outcome (complete, partial, failed).",
        "counter",
    )?;
    for ((composite, _), stats) in composites() {
        for (outcome, n) in &stats.outcomes {
            let labels = [("composite", composite.as_str()), ("outcome", *outcome)];
            w.sample("ringgate_composite_requests_total", &labels, *n)?;
        }
    }
    let timings: [CompositeTiming; 3] = [
        (
            "ringgate_composite_duration",
            "Composite request duration, from its first call to its assembled answer.",
            "Composite request duration quantiles since start, exact from the merged HDR histogram.",
            |stats| &stats.latency,
        ),
        (
            "ringgate_composite_slowest_call",
            "Per composite request whose required calls all answered, the slowest of them.",
            "Quantiles since start of the slowest required call per composite request.",
            |stats| &stats.slowest_call,
        ),
        (
            "ringgate_composite_overhead",
            "Per composite request whose required calls all answered, head parsed to answer written less the slowest required call.",
            "Quantiles since start of what the gateway added to the slowest required call per composite request.",
            |stats| &stats.overhead,
        ),
    ];
    for timing in timings {
        composite_timing(w, agg, timing)?;
    }
    w.family(
        "ringgate_composite_key_collisions_total",
        "Keys of a composite's output written by more than one call (the later call in config order wins).",
        "counter",
    )?;
    for ((composite, _), stats) in composites() {
        let labels = [("composite", composite.as_str())];
        w.sample(
            "ringgate_composite_key_collisions_total",
            &labels,
            stats.collisions,
        )?;
    }
    w.family(
        "ringgate_composite_calls_total",
        "Calls of composites by outcome (ok, or why the call failed).",
        "counter",
    )?;
    for ((composite, call), stats) in calls() {
        for (outcome, n) in &stats.outcomes {
            let labels = [
                ("composite", composite.as_str()),
                ("call", call.as_str()),
                ("outcome", *outcome),
            ];
            w.sample("ringgate_composite_calls_total", &labels, *n)?;
        }
    }
    w.family(
        "ringgate_composite_call_duration_seconds",
        "Duration of composite calls that were sent, fan-out included.",
        "histogram",
    )?;
    for ((composite, call), stats) in calls() {
        let labels = [("composite", composite.as_str()), ("call", call.as_str())];
        w.histogram_labeled(
            "ringgate_composite_call_duration_seconds",
            &labels,
            &stats.latency,
        )?;
    }
    Ok(())
}

fn micros_to_seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Escapes a label value per the exposition format: backslash, double quote, newline.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[path = "prometheus_tests.rs"]
mod tests;
