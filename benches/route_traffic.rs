//! Measures what route-level traffic management adds per request.
//!
//! - `group_choice`: the hot-path pieces alone: a split's next pick, a sticky pick (hash of
//!   a 24-byte key), and version rules that do not match (against a baseline that does
//!   nothing but return a fixed group, `single`).
//! - `small_get_round_trip`: one proxied request end to end through a single worker, as in
//!   `proxy_path.rs`, on a plain route (the baseline), a split route with version rules, and
//!   routes that mirror 10 % and 100 % of requests to a second backend. The mirror rows show
//!   what the copy and the shadow task cost the client's round trip on the same worker.

use std::net::TcpStream;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringgate::config::UpstreamId;
use ringgate::traffic::{cookie_value, versions, Selector, Split, VersionRule};

#[path = "../tests/fixed_backend/mod.rs"]
mod fixed_backend;

fn group_choice(c: &mut Criterion) {
    let split = Split::new(&[(UpstreamId(0), 95), (UpstreamId(1), 5)], None, 0).expect("split");
    let rules = [
        VersionRule {
            selector: Selector::Header("x-api-version".into()),
            value: Some(b"2"[..].into()),
            upstream: UpstreamId(1),
        },
        VersionRule {
            selector: Selector::Cookie("canary".into()),
            value: Some(b"1"[..].into()),
            upstream: UpstreamId(1),
        },
    ];
    let cookie: &[u8] = b"session=0123456789abcdef; theme=dark";
    let header = |name: &str| (name == "cookie").then_some(cookie);
    let cookies = |name: &str| cookie_value(cookie, name);
    let mut group = c.benchmark_group("group_choice");
    group.bench_function("single", |b| b.iter(|| black_box(UpstreamId(0))));
    let mut n = 0u64;
    group.bench_function("split_next", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            split.pick_nth(black_box(n))
        })
    });
    group.bench_function("split_sticky_key", |b| {
        b.iter(|| split.pick_for_key(black_box(b"session-0123456789abcdef")))
    });
    group.bench_function("versions_miss", |b| {
        b.iter(|| versions::select(black_box(&rules), &header, &cookies))
    });
    group.finish();
}

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: criterion\r\n\r\n";

fn round_trip(c: &mut Criterion) {
    let backend = fixed_backend::start();
    let shadow = fixed_backend::start();
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
[[upstreams]]
name = "b"
targets = [ {{ addr = "{backend}" }} ]
[[upstreams]]
name = "b2"
targets = [ {{ addr = "{backend}" }} ]
[[upstreams]]
name = "shadow"
targets = [ {{ addr = "{shadow}" }} ]
[[routes]]
name = "plain"
match = {{ path_prefix = "/plain" }}
upstream = "b"
[[routes]]
name = "split"
match = {{ path_prefix = "/split" }}
split = [ {{ upstream = "b", weight = 95 }}, {{ upstream = "b2", weight = 5 }} ]
versions = [ {{ header = "x-api-version", value = "2", upstream = "b2" }} ]
[[routes]]
name = "mirror10"
match = {{ path_prefix = "/mirror10" }}
upstream = "b"
mirror = {{ upstream = "shadow", percent = 10 }}
[[routes]]
name = "mirror100"
match = {{ path_prefix = "/mirror100" }}
upstream = "b"
mirror = {{ upstream = "shadow", percent = 100 }}
"#
    );
    let snapshot = ringgate::config::load_str(&config, "bench").expect("config");
    let server = ringgate::server::Server::start(Arc::new(snapshot)).expect("start");
    let mut buf = vec![0u8; 8192];
    let mut client = TcpStream::connect(server.local_addrs()[0]).expect("connect gateway");
    client.set_nodelay(true).expect("nodelay");
    let mut group = c.benchmark_group("small_get_round_trip");
    for path in ["plain", "split", "mirror10", "mirror100"] {
        let request = String::from_utf8_lossy(REQUEST).replace("/bench", &format!("/{path}"));
        group.bench_function(path, |b| {
            b.iter(|| fixed_backend::exchange(&mut client, request.as_bytes(), &mut buf))
        });
    }
    group.finish();
    drop(client);
    let _ = server.shutdown();
}

criterion_group!(benches, group_choice, round_trip);
criterion_main!(benches);
