//! Counts heap allocations per request through a route that chooses its upstream group per
//! request: version rules that do not match, then a sticky split whose key the request lacks
//! (so the worker's weighted sequence decides), and a mirror that samples but does not take
//! these requests. Choosing the group and deciding not to mirror must allocate nothing.
//!
//! Same method as tests/allocations.rs, in its own test binary with one test, so that nothing
//! else runs while it counts (the counter is process-wide).

mod counting_alloc;
mod fixed_backend;

/// The route's keys: groups `b` and `b2` are both the allocation-free backend. A mirror at
/// 0.0001 percent samples every request and takes one in a million: none of these.
const ROUTE: &str = r#"split = [ { upstream = "b", weight = 95 }, { upstream = "b2", weight = 5 } ]
sticky = "cookie:session"
versions = [ { header = "x-api-version", value = "2", upstream = "b2" }, { cookie = "canary", value = "1", upstream = "b2" } ]
mirror = { upstream = "b2", percent = 0.0001 }"#;

#[test]
fn split_route_allocations_per_request() {
    for driver in ["io_uring", "legacy"] {
        let per_request = counting_alloc::per_request_through(driver, ROUTE, "");
        println!("{driver}, split route: {per_request:.3} allocations per proxied request");
        assert!(
            per_request <= counting_alloc::BUDGET,
            "{driver}: {per_request} allocations per request"
        );
    }
}
