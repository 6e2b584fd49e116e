//! Counts heap allocations per request on the proxy path with an access log configured.
//!
//! Same method as tests/allocations.rs (a counting global allocator; the client and the
//! backend use only buffers allocated before the measured window), in its own test binary
//! with one test, so that nothing else runs while it counts. Every allocation in the process
//! counts, the access-log writer thread's included.

use std::net::TcpStream;
use std::sync::Arc;

mod counting_alloc;
mod fixed_backend;

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: alloc-test\r\n\r\n";

fn count_per_request(driver: &str, extra: &str) -> f64 {
    let upstream_addr = fixed_backend::start();
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
driver = "{driver}"
[[upstreams]]
name = "b"
targets = [ {{ addr = "{upstream_addr}" }} ]
[[routes]]
name = "all"
upstream = "b"
{extra}
"#
    );
    let snapshot = ringgate::config::load_str(&config, "alloc-test").expect("config");
    let server = ringgate::server::Server::start(Arc::new(snapshot)).expect("start");
    let addr = server.local_addrs()[0];
    let mut client = TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 8192];
    for _ in 0..200 {
        fixed_backend::exchange(&mut client, REQUEST, &mut buf);
    }
    const MEASURED: u64 = 2000;
    let before = counting_alloc::allocations();
    for _ in 0..MEASURED {
        fixed_backend::exchange(&mut client, REQUEST, &mut buf);
    }
    let after = counting_alloc::allocations();
    drop(client);
    server.shutdown().expect("shutdown");
    (after - before) as f64 / MEASURED as f64
}

/// Same budget as the plain proxy path.
const BUDGET: f64 = 0.1;

/// Requests per run: 200 warm-up plus 2000 measured.
const TOTAL: usize = 2200;

#[test]
fn access_log_allocations_per_request() {
    let dir = std::env::temp_dir().join(format!("ringgate-alloc-accesslog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for driver in ["io_uring", "legacy"] {
        for format in ["json", "combined"] {
            let path = dir.join(format!("{driver}-{format}.log"));
            let extra = format!(
                "[access_log]\nformat = \"{format}\"\npath = \"{}\"\n",
                path.display()
            );
            let per_request = count_per_request(driver, &extra);
            println!("{driver}, {format} access log: {per_request:.3} allocations per request");
            let written = std::fs::read_to_string(&path).expect("access log");
            assert_eq!(written.lines().count(), TOTAL, "every request was logged");
            assert!(
                per_request <= BUDGET,
                "{driver}/{format}: {per_request} allocations per request"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
