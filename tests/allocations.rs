//! Counts heap allocations per request on the plain proxy path.
//!
//! A counting global allocator wraps the system allocator. During the measured window the
//! client and the backend use only buffers allocated before it, so every allocation counted
//! is the gateway's. The gateway runs one worker; the connection is warmed up first, so the
//! number is the steady state of a keep-alive connection.

mod counting_alloc;
mod fixed_backend;

#[test]
fn proxy_path_allocations_per_request_io_uring() {
    let per_request = counting_alloc::per_proxied_request("io_uring", "");
    println!("io_uring: {per_request:.2} allocations per proxied request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}

#[test]
fn proxy_path_allocations_per_request_legacy() {
    let per_request = counting_alloc::per_proxied_request("legacy", "");
    println!("legacy: {per_request:.2} allocations per proxied request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}

/// Every per-request piece of traffic management (a non-default balancer, passive health,
/// retry budget, breaker) on the hot path, still without allocating.
const TRAFFIC_KEYS: &str = r#"balance = "p2c_ewma"
passive = { consecutive_failures = 3 }
retry = { attempts = 2, on = ["connect_error", "503"] }
breaker = { min_requests = 10 }
timeouts = { total = "5s" }"#;

#[test]
fn traffic_management_allocations_per_request_io_uring() {
    let per_request = counting_alloc::per_proxied_request_with("io_uring", TRAFFIC_KEYS, "");
    println!("io_uring with traffic management: {per_request:.2} allocations per request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}

#[test]
fn traffic_management_allocations_per_request_legacy() {
    let per_request = counting_alloc::per_proxied_request_with("legacy", TRAFFIC_KEYS, "");
    println!("legacy with traffic management: {per_request:.2} allocations per request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}

/// A route with a rate limit keyed on the client address: the key exists after the warm-up,
/// so the check, the hash and the response fields allocate nothing.
const RATE_LIMITED: &str = r#"policies = ["limit"]
[policies.limit]
kind = "rate_limit"
rate = "1000000/s"
key = "ip"
scope = "instance"
"#;

#[test]
fn rate_limited_route_allocations_per_request_io_uring() {
    let per_request = counting_alloc::per_proxied_request("io_uring", RATE_LIMITED);
    println!("io_uring, rate limited: {per_request:.2} allocations per proxied request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}

#[test]
fn rate_limited_route_allocations_per_request_legacy() {
    let per_request = counting_alloc::per_proxied_request("legacy", RATE_LIMITED);
    println!("legacy, rate limited: {per_request:.2} allocations per proxied request");
    assert!(
        per_request <= counting_alloc::BUDGET,
        "{per_request} allocations per request"
    );
}
