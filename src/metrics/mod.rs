//! Metrics: per-worker recording, merging on the control side, Prometheus text.
//!
//! Each worker owns a [`WorkerMetrics`] (no locks, no atomics: it runs on the worker's hot
//! path) and every merge interval hands [`WorkerMetrics::take_delta`] to the control thread over
//! a crossbeam channel ([`DeltaSender`]). The control thread feeds the deltas to an
//! [`Aggregator`], which keeps the running totals and renders them for `GET /metrics`.
//!
//! - `histogram.rs`: one HDR latency histogram (µs, 1 µs..60 s, 2 digits) with its exact sum.
//! - `record.rs`: what the proxy reports per request, error causes, status classes.
//! - `recorder.rs`: the worker-side recorder.
//! - `composite.rs`: per composite and per call outcomes and latency.
//! - `tunnel.rs`: per route tunnels opened, closed by reason, bytes each way, lifetimes.
//! - `delta.rs`: one worker's interval, the `Send` value that crosses threads.
//! - `aggregate.rs`: the merged totals.
//! - `protocol.rs`: requests by client protocol; HTTP/2 connections, streams, resets, GOAWAYs.
//! - `prometheus.rs`: text exposition format 0.0.4.

mod aggregate;
mod composite;
mod delta;
mod histogram;
mod prometheus;
mod protocol;
mod record;
mod recorder;
mod tunnel;

pub use aggregate::{
    Aggregator, CacheRedisHealth, ProcessInfo, RedisHealth, RouteTotals, TargetHealthInfo,
    UpstreamTotals, WorkerInfo,
};
pub use composite::{CompositeStats, CompositeTable};
pub use delta::{
    CacheDelta, MetricsDelta, RouteDelta, RouteRequests, TlsFailureCounts, TlsHandshakeCounts,
    UpstreamDelta,
};
pub use histogram::{LatencyHistogram, HIGHEST_MICROS, LOWEST_MICROS, SIGNIFICANT_DIGITS};
pub use protocol::{Protocol, ProtocolCounts};
pub use record::{
    CacheResult, ErrorCause, MirrorOutcome, PolicyOutcome, Refusal, RequestRecord, StatusClass,
    TlsFailure, TlsSide, TlsVersion,
};
pub use recorder::WorkerMetrics;
pub use tunnel::{TunnelStats, TunnelTable};

/// The worker's end of the delta channel.
pub type DeltaSender = crossbeam_channel::Sender<MetricsDelta>;
/// The control thread's end of the delta channel.
pub type DeltaReceiver = crossbeam_channel::Receiver<MetricsDelta>;

/// The channel the workers hand their deltas over. Unbounded: one delta per worker per
/// interval, and a worker must never block on the control thread.
pub fn delta_channel() -> (DeltaSender, DeltaReceiver) {
    crossbeam_channel::unbounded()
}
