//! Measures the per-request upstream bookkeeping of a worker: every balancer's pick over 3
//! and 100 targets (baseline: plain round robin), a breaker's admit + record, and a pool
//! check-in + check-out cycle on real idle sockets (which includes the one `MSG_PEEK`
//! liveness syscall). The naive baseline for the pool is opening a fresh
//! connection per request, measured alongside (`connect_fresh`).

use std::hint::black_box;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::config::{PoolSettings, Target};
use ringgate::upstream::balance::{HashRing, Load, PickInput};
use ringgate::upstream::{connect, Balance, Balancer, Breaker, BreakerPolicy, HashKey, Pool};

fn targets(n: u16) -> Vec<Target> {
    (0..n)
        .map(|i| Target {
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000 + i)),
            weight: 1 + u32::from(i % 3),
        })
        .collect()
}

/// Every balancer's pick over 3 and 100 targets (all eligible), plus a consistent-hash
/// lookup; the naive baseline is the plain round-robin cursor.
fn balancers(c: &mut Criterion) {
    let mut group = c.benchmark_group("balancer_pick");
    for n in [3u16, 100] {
        let t = targets(n);
        let weights: Vec<u32> = t.iter().map(|t| t.weight).collect();
        let loads = vec![Load::default(); t.len()];
        let ring = HashRing::build(t.iter().map(|t| (t.addr, t.weight)));
        for balance in [
            Balance::RoundRobin,
            Balance::Weighted,
            Balance::LeastConn,
            Balance::P2cEwma,
            Balance::ConsistentHash(HashKey::Ip),
        ] {
            let mut balancer = Balancer::new(&balance, &weights, 0);
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::new(balance.name(), n), &n, |b, _| {
                b.iter(|| {
                    key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let input = PickInput {
                        weights: &weights,
                        loads: &loads,
                        hash: Some(key),
                        ring: Some(&ring),
                    };
                    black_box(balancer.pick(&input, |_| true))
                })
            });
        }
    }
    group.finish();
}

/// A breaker's admit + record (closed), the per-request cost of `breaker = {...}`.
fn breaker(c: &mut Criterion) {
    let policy = BreakerPolicy {
        error_ratio: 0.5,
        min_requests: 20,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(10),
        half_open_probes: 1,
    };
    let now = Instant::now();
    let mut b = Breaker::new(policy, now);
    c.bench_function("breaker_admit_record", |bench| {
        bench.iter(|| {
            if let Ok(ticket) = b.admit(now) {
                b.record(ticket, true, now);
            }
        })
    });
}

fn pool(c: &mut Criterion) {
    // A listener whose accepted sockets stay open and idle, like a keep-alive upstream.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let settings = PoolSettings {
        max_idle_per_target: 64,
        idle_timeout: Duration::from_secs(60),
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = Pool::new();
        let conn = connect(addr, Duration::from_secs(1), None)
            .await
            .expect("connect");
        pool.checkin(conn, &settings);
        c.bench_function("pool_checkout_checkin", |b| {
            b.iter(|| {
                let conn = pool.checkout(addr).expect("pooled connection");
                pool.checkin(black_box(conn), &settings);
            })
        });
    });
}

criterion_group!(benches, balancers, breaker, pool);
criterion_main!(benches);
