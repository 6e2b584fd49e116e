//! Measures the rate-limit check of one request on a worker: hashing the key bytes, the
//! bounded-table lookup and the GCRA update (`WorkerLimits::check`), for a table holding 1
//! and 50,000 keys, and writing the response fields. The naive baseline is a
//! `HashMap<String, f64-token-bucket>` that allocates the key as a `String` per request and
//! refills with floating point (`naive_token_bucket`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::rate_limit::{Decision, KeySource, Rate, RateLimitPolicy, Scope, WorkerLimits};

fn policy() -> Arc<RateLimitPolicy> {
    let rate = Rate::parse("1000000000/s").expect("valid rate");
    Arc::new(RateLimitPolicy::new(
        "bench",
        KeySource::Ip,
        rate,
        1_000_000,
        Scope::Instance,
        65_536,
    ))
}

fn gcra_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_check");
    for keys in [1u32, 50_000] {
        let limits = WorkerLimits::new(0, 2);
        let p = policy();
        for k in 0..keys {
            limits.check(&p, &k.to_be_bytes());
        }
        let key = (keys / 2).to_be_bytes();
        group.bench_with_input(BenchmarkId::from_parameter(keys), &key, |b, key| {
            b.iter(|| black_box(limits.check(&p, black_box(key)).admitted))
        });
    }
    group.finish();
}

fn write_fields(c: &mut Criterion) {
    let p = policy();
    let decision = Decision {
        admitted: true,
        remaining: 41_999,
        reset: 1_500_000_000,
        retry_after: 0,
    };
    let mut out = Vec::with_capacity(256);
    c.bench_function("rate_limit_write_fields", |b| {
        b.iter(|| {
            out.clear();
            p.write_fields(black_box(&decision), &mut out);
            black_box(out.len())
        })
    });
}

struct NaiveBucket {
    tokens: f64,
    last: Instant,
}

fn naive_token_bucket(c: &mut Criterion) {
    let mut buckets: HashMap<String, NaiveBucket> = HashMap::new();
    let (rate, burst) = (1e9, 1e6);
    for k in 0..50_000u32 {
        buckets.insert(
            format!("10.0.{}.{}", k / 256, k % 256),
            NaiveBucket {
                tokens: burst,
                last: Instant::now(),
            },
        );
    }
    let ip = std::net::Ipv4Addr::new(10, 0, 97, 168);
    c.bench_function("naive_token_bucket/50000", |b| {
        b.iter(|| {
            let key = ip.to_string();
            let now = Instant::now();
            let bucket = buckets.entry(key).or_insert(NaiveBucket {
                tokens: burst,
                last: now,
            });
            let elapsed = now.duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
            bucket.last = now;
            let admitted = bucket.tokens >= 1.0;
            if admitted {
                bucket.tokens -= 1.0;
            }
            black_box(admitted)
        })
    });
}

criterion_group!(benches, gcra_check, write_fields, naive_token_bucket);
criterion_main!(benches);
