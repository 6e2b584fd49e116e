//! Measures the metrics hot path, `WorkerMetrics::record_request` on a known route and upstream
//! (two hash lookups, counters and two HDR records: the per-request cost, the "histogram record"
//! bench of issue 3), against the naive baseline of recording into a bare HDR histogram alone;
//! and the control side, `Aggregator::merge` of 2 workers' deltas over 20 routes plus `render`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringgate::metrics::{
    Aggregator, LatencyHistogram, MetricsDelta, ProcessInfo, Protocol, RequestRecord, WorkerInfo,
    WorkerMetrics,
};

fn request<'a>(route: &'a str, upstream: &'a str, i: u64) -> RequestRecord<'a> {
    RequestRecord {
        route,
        upstream: Some(upstream),
        status: if i % 50 == 0 { 503 } else { 200 },
        duration: Duration::from_micros(200 + i * 7919 % 20_000),
        upstream_duration: Some(Duration::from_micros(150 + i * 7919 % 19_000)),
        bytes_in: 300,
        bytes_out: 2_000,
        protocol: Protocol::Http1,
        cache: None,
    }
}

fn record(c: &mut Criterion) {
    let m = WorkerMetrics::new(0);
    let route = String::from("api-v1-users");
    let upstream = String::from("users-backend");
    m.record_request(&request(&route, &upstream, 0));
    let mut i = 0u64;
    c.bench_function("metrics/record_request_known_route", |b| {
        b.iter(|| {
            i += 1;
            m.record_request(black_box(&request(&route, &upstream, i)));
        })
    });
    let mut h = LatencyHistogram::new();
    c.bench_function("metrics/baseline_hdr_record_only", |b| {
        b.iter(|| {
            i += 1;
            h.record(black_box(Duration::from_micros(200 + i * 7919 % 20_000)));
        })
    });
}

/// One interval of `worker` over 20 routes (5 upstreams), 200 requests per route.
fn delta(worker: usize) -> MetricsDelta {
    let m = WorkerMetrics::new(worker);
    let routes: Vec<String> = (0..20).map(|k| format!("route-{k}")).collect();
    let upstreams: Vec<String> = (0..5).map(|k| format!("upstream-{k}")).collect();
    for i in 0..4_000u64 {
        let k = (i % 20) as usize;
        m.record_request(&request(&routes[k], &upstreams[k % 5], i));
    }
    m.connection_opened();
    m.take_delta()
}

fn merge_and_render(c: &mut Criterion) {
    let deltas = [delta(0), delta(1)];
    let process = ProcessInfo {
        workers: vec![
            WorkerInfo {
                id: 0,
                driver: "io_uring".into(),
            },
            WorkerInfo {
                id: 1,
                driver: "io_uring".into(),
            },
        ],
        reloads: 0,
        failed_reloads: 0,
        config_generation: 1,
        start_time_unix: 1_700_000_000,
        cache_redis: None,
        target_health: Vec::new(),
        redis: None,
    };
    let mut warm = Aggregator::new();
    for d in &deltas {
        warm.merge(d.clone());
    }
    c.bench_function("metrics/merge_2_workers_20_routes", |b| {
        b.iter_batched(
            || deltas.clone(),
            |ds| {
                for d in ds {
                    warm.merge(d);
                }
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function("metrics/render_20_routes", |b| {
        b.iter(|| black_box(warm.render(&process)))
    });
}

criterion_group!(benches, record, merge_and_render);
criterion_main!(benches);
