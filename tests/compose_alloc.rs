//! Counts heap allocations per composite request: a 3-call composite (two parts spliced,
//! one shaped, like the load test's s11/s12) through a one-worker gateway on a warmed-up
//! keep-alive connection, in front of a backend that allocates nothing per request. The
//! count is pinned just above what it is now so that it cannot grow back unnoticed; lower
//! [`BUDGET`] when it drops.

mod counting_alloc;
mod fixed_backend;

/// Most allocations one composite may cost (measured: 41.00 with either driver; 45.00
/// before the answer head's field lists and the forwarded-for address stopped allocating).
const BUDGET: f64 = 41.5;

/// The JSON part every call answers (about 300 bytes; the shaped call keeps two fields).
const PART: &str = r#"{"id": 7, "name": "Ada", "items": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": 1}], "email": "ada@example.com", "note": "a \"quoted\" word", "tags": ["x", "y", "z"], "score": 12.5, "active": true, "parent": null}"#;

const REQUEST: &[u8] = b"GET /compose HTTP/1.1\r\nHost: bench\r\n\r\n";

/// A backend answering every request head with [`PART`], allocating nothing per request.
fn json_backend() -> std::net::SocketAddr {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PART}",
        PART.len()
    );
    fixed_backend::start_with(Box::leak(response.into_bytes().into_boxed_slice()))
}

/// Allocations per composite through a one-worker gateway on `driver`.
fn per_composite(driver: &str) -> f64 {
    let backend = json_backend();
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
workers = 1
pin_workers = false
driver = "{driver}"
[[upstreams]]
name = "b"
targets = [ {{ addr = "{backend}" }} ]
[[routes]]
name = "compose"
match = {{ path = "/compose" }}
compose = "three"
[composites.three]
[[composites.three.calls]]
name = "a"
upstream = "b"
path = "/json/a"
required = true
[[composites.three.calls]]
name = "b"
upstream = "b"
path = "/json/b"
required = true
[[composites.three.calls]]
name = "c"
upstream = "b"
path = "/json/c"
required = true
allow = ["id", "name", "items"]
rename = {{ name = "title" }}
"#
    );
    counting_alloc::per_request_of(&config, REQUEST)
}

/// Both drivers in one test: the counter is process-wide, so measurements must not overlap.
#[test]
fn composite_allocations_per_request_both_drivers() {
    for driver in ["io_uring", "legacy"] {
        let per_request = per_composite(driver);
        println!("{driver}: {per_request:.2} allocations per 3-call composite");
        assert!(
            per_request <= BUDGET,
            "{driver}: {per_request} allocations per composite (budget {BUDGET})"
        );
    }
}
