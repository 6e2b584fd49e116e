//! Counts heap allocations per request on the proxy path with an access log configured.
//!
//! Same method as tests/allocations.rs (a counting global allocator; the client and the
//! backend use only buffers allocated before the measured window), in its own test binary
//! with one test, so that nothing else runs while it counts. Every allocation in the process
//! counts, the access-log writer thread's included.

mod counting_alloc;
mod fixed_backend;

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
            let per_request = counting_alloc::per_proxied_request(driver, &extra);
            println!("{driver}, {format} access log: {per_request:.3} allocations per request");
            let written = std::fs::read_to_string(&path).expect("access log");
            assert_eq!(
                written.lines().count(),
                (counting_alloc::WARM_UP + counting_alloc::MEASURED) as usize,
                "every request was logged"
            );
            assert!(
                per_request <= counting_alloc::BUDGET,
                "{driver}/{format}: {per_request} allocations per request"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
