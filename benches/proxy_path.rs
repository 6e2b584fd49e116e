//! Measures one proxied request end to end through a single worker (io_uring when available):
//! a keep-alive client on the bench thread sends a small GET, the gateway routes it and relays
//! it over a pooled connection to an in-process backend, and the response comes back. The
//! baseline is the same exchange with the backend directly (`direct`), so the difference is
//! what the gateway adds per request, loopback round trips included.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello world!\n";
const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: criterion\r\n\r\n";

/// A keep-alive backend answering every request head with RESPONSE.
fn start_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_backend(stream));
        }
    });
    addr
}

fn serve_backend(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 8192];
    let mut filled = 0;
    loop {
        let Ok(n) = stream.read(&mut buf[filled..]) else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            if stream.write_all(RESPONSE).is_err() {
                return;
            }
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
        }
    }
}

fn exchange(stream: &mut TcpStream, buf: &mut [u8]) {
    stream.write_all(REQUEST).expect("write");
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).expect("read");
        assert!(n > 0, "closed");
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            if filled >= end + 4 + 13 {
                return;
            }
        }
    }
}

fn proxy_path(c: &mut Criterion) {
    let backend = start_backend();
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
    group.bench_function("direct", |b| b.iter(|| exchange(&mut direct, &mut buf)));
    let mut proxied = TcpStream::connect(server.local_addrs()[0]).expect("connect gateway");
    proxied.set_nodelay(true).expect("nodelay");
    group.bench_function("through_ringgate", |b| {
        b.iter(|| exchange(&mut proxied, &mut buf))
    });
    group.finish();
    drop(proxied);
    let _ = server.shutdown();
}

criterion_group!(benches, proxy_path);
criterion_main!(benches);
