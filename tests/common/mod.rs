//! The integration-test harness: real upstream HTTP servers, an in-process ringgate started on
//! ephemeral ports, and clients (ureq for normal traffic, raw sockets for everything a client
//! library would refuse to send).
//!
//! Nothing here sleeps to synchronize: tests wait on sockets (with read timeouts, so a bug fails
//! a test instead of hanging it) and on the upstream's own counters and gates.
#![allow(dead_code)]
// The harness runs on plain std threads, not on workers: the project-wide ban on locks (which
// protects the workers' hot path) does not apply to test upstreams and log collectors.
#![allow(clippy::disallowed_types)]

pub mod authz_server;
pub mod body;
pub mod client;
pub mod gateway;
pub mod h2;
pub mod h2_raw;
pub mod h2_scripted;
pub mod process;
pub mod redis;
pub mod tls;
pub mod upstream;
pub mod worker_probe;

/// How long any blocking read in a test may wait before the test fails.
pub const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Polls `condition` until it holds; panics with `what` after `limit`. For state that has no
/// event to wait on (a health thread's verdict), with a short pause between looks.
pub fn wait_until(what: &str, limit: std::time::Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::yield_now();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Raises this process's soft descriptor limit to `wanted` or the hard limit, whichever is
/// lower, and fails the test if that is below `needed`.
pub fn raise_fd_limit(wanted: u64, needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; setrlimit reads it.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    assert!(ok, "getrlimit failed");
    if limit.rlim_cur < wanted as libc::rlim_t {
        limit.rlim_cur = limit.rlim_max.min(wanted as libc::rlim_t);
        // SAFETY: as above.
        let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0;
        assert!(ok, "setrlimit failed");
    }
    assert!(
        limit.rlim_cur >= needed as libc::rlim_t,
        "the descriptor limit {} is below the {needed} this test needs",
        limit.rlim_cur
    );
}

/// Expands each test into one `#[test]` per driver (`name::io_uring` and `name::legacy`),
/// passing `"io_uring"` or `"legacy"` as the test's `driver` argument.
///
/// ```ignore
/// driver_tests! {
///     fn keep_alive_reuses_upstream_connection(driver: &str) { /* ... */ }
/// }
/// ```
#[macro_export]
macro_rules! driver_tests {
    ($( $(#[$meta:meta])* fn $name:ident($driver:ident: &str) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn run($driver: &str) $body

                $(#[$meta])*
                #[test]
                fn io_uring() {
                    run("io_uring")
                }

                $(#[$meta])*
                #[test]
                fn legacy() {
                    run("legacy")
                }
            }
        )*
    };
}
