//! Measures one proxied request end to end through a single worker (io_uring when available):
//! a keep-alive client on the bench thread sends a small GET, the gateway routes it and relays
//! it over a pooled connection to an in-process backend, and the response comes back. The
//! baseline is the same exchange with the backend directly (`direct`), so the difference is
//! what the gateway adds per request, loopback round trips included.

use std::net::TcpStream;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "../tests/fixed_backend/mod.rs"]
mod fixed_backend;

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: criterion\r\n\r\n";

fn proxy_path(c: &mut Criterion) {
    let backend = fixed_backend::start();
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
[[upstreams]]
name = "b"
targets = [ {{ addr = "{backend}" }} ]
[[routes]]
name = "all"
upstream = "b"
"#
    );
    let snapshot = ringgate::config::load_str(&config, "bench").expect("config");
    let server = ringgate::server::Server::start(Arc::new(snapshot)).expect("start");
    let mut buf = vec![0u8; 8192];

    let mut group = c.benchmark_group("small_get_round_trip");
    let mut direct = TcpStream::connect(backend).expect("connect backend");
    direct.set_nodelay(true).expect("nodelay");
    group.bench_function("direct", |b| {
        b.iter(|| fixed_backend::exchange(&mut direct, REQUEST, &mut buf))
    });
    let mut proxied = TcpStream::connect(server.local_addrs()[0]).expect("connect gateway");
    proxied.set_nodelay(true).expect("nodelay");
    group.bench_function("through_ringgate", |b| {
        b.iter(|| fixed_backend::exchange(&mut proxied, REQUEST, &mut buf))
    });
    group.finish();
    drop(proxied);
    let _ = server.shutdown();
}

criterion_group!(benches, proxy_path);
criterion_main!(benches);
