//! Counts heap allocations per request answered from the response cache: a hit builds its
//! keys in the connection's buffers, writes head and body into its output buffer, and must
//! allocate nothing. The backend's count proves the measured requests were hits. Measured on
//! a plain cached route and on one that also has a `compress` policy (the request's
//! negotiated coding is then part of the lookup, see `cache::key`).
//!
//! Same method as tests/allocations.rs, in its own test binary with one test, so that nothing
//! else runs while it counts (the counter is process-wide).

mod counting_alloc;
mod fixed_backend;

/// The backend's answer states no freshness: `default_ttl` makes it storable.
const CACHE: &str = "[caches.c]\nmax_bytes = \"1MiB\"\ndefault_ttl = \"1h\"\n";

#[test]
fn cache_hit_allocations_per_request() {
    let with_compress = format!("{CACHE}[policies.z]\nkind = \"compress\"\n");
    let cases = [
        ("cache hits", "upstream = \"b\"\ncache = \"c\"", CACHE),
        (
            "cache hits with compress",
            "upstream = \"b\"\ncache = \"c\"\npolicies = [\"z\"]",
            with_compress.as_str(),
        ),
    ];
    for (what, route, tables) in cases {
        for driver in ["io_uring", "legacy"] {
            let before = fixed_backend::served();
            let per_request = counting_alloc::per_request_through(driver, route, tables);
            let upstream = fixed_backend::served() - before;
            println!("{driver}, {what}: {per_request:.3} allocations per request");
            assert_eq!(
                upstream, 1,
                "{driver}: every request after the first is a hit"
            );
            assert!(
                per_request <= counting_alloc::BUDGET,
                "{driver}: {per_request} allocations per cache hit"
            );
        }
    }
}
