//! A global allocator that counts allocations (and reallocations) process-wide, and the
//! measurement the allocation tests share: a gateway with one worker in front of the
//! allocation-free backend, a warmed-up keep-alive client, and the allocations counted over
//! the measured requests. Including this module installs the allocator for the whole test
//! binary; the including crate must also declare `mod fixed_backend;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::fixed_backend;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and reallocations made by the process so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Most allocations per proxied request a steady keep-alive connection may cost.
// Each including test binary uses some of the entry points.
#[allow(dead_code)]
pub const BUDGET: f64 = 0.1;
/// Requests sent before counting starts (pools, buffers and names warm up).
pub const WARM_UP: u64 = 200;
/// Requests counted.
pub const MEASURED: u64 = 2000;

/// Serializes measurements (test-only: no worker ever touches it).
#[allow(clippy::disallowed_types)]
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

const REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: alloc-test\r\n\r\n";

/// Allocations per proxied request through a one-worker gateway on `driver`, with `extra`
/// appended to its config (e.g. an `[access_log]` table).
// Each including test binary uses some of the entry points.
#[allow(dead_code)]
pub fn per_proxied_request(driver: &str, extra: &str) -> f64 {
    measure(driver, "", "upstream = \"b\"", extra, REQUEST)
}

/// [`per_proxied_request`] with `group_keys` added to upstream group `b` (balancing, retries,
/// breaker: the traffic-management state on the hot path).
#[allow(dead_code)]
pub fn per_proxied_request_with(driver: &str, group_keys: &str, extra: &str) -> f64 {
    measure(driver, group_keys, "upstream = \"b\"", extra, REQUEST)
}

/// Allocations per request through a route `all` whose keys are `route` (it may send to
/// upstream groups `b` and `b2`, both the fixed backend), with `extra` appended to the config.
#[allow(dead_code)]
pub fn per_request_through(driver: &str, route: &str, extra: &str) -> f64 {
    measure(driver, "", route, extra, REQUEST)
}

/// [`per_proxied_request`] sending `request` (a complete head) each time (e.g. with
/// credentials for the route's policies).
#[allow(dead_code)]
pub fn per_proxied_request_sending(driver: &str, extra: &str, request: &[u8]) -> f64 {
    measure(driver, "", "upstream = \"b\"", extra, request)
}

/// One measurement of `request`: group `b` gets `group_keys`, route `all` gets `route`.
fn measure(driver: &str, group_keys: &str, route: &str, extra: &str, request: &[u8]) -> f64 {
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
{group_keys}
[[upstreams]]
name = "b2"
targets = [ {{ addr = "{upstream_addr}" }} ]
[[routes]]
name = "all"
{route}
{extra}
"#
    );
    per_request_of(&config, request)
}

/// Allocations per `request` (a complete head, answered `200` with a `Content-Length`)
/// through a gateway started from `config`, on a warmed-up keep-alive connection.
pub fn per_request_of(config: &str, request: &[u8]) -> f64 {
    // The count is process-wide: one measurement at a time, or a test starting its gateway
    // (config parsing, threads) would be counted in another's window.
    let _one_at_a_time = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let snapshot = ringgate::config::load_str(config, "alloc-test").expect("config");
    let server = ringgate::server::Server::start(Arc::new(snapshot)).expect("start");
    let mut client = TcpStream::connect(server.local_addrs()[0]).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 8192];
    for _ in 0..WARM_UP {
        fixed_backend::exchange(&mut client, request, &mut buf);
    }
    let before = allocations();
    for _ in 0..MEASURED {
        fixed_backend::exchange(&mut client, request, &mut buf);
    }
    let after = allocations();
    drop(client);
    server.shutdown().expect("shutdown");
    (after - before) as f64 / MEASURED as f64
}
