//! `WorkerMetrics::record_request` allocates nothing once a route and upstream have been seen.
//!
//! A counting global allocator wraps the system allocator; the test runs on one thread and
//! counts only the allocations made by that thread between two marks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use ringgate::metrics::{ErrorCause, Protocol, RequestRecord, WorkerMetrics};

struct Counting;

thread_local! {
    // Const-initialized and without a destructor: touching it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // try_with: the allocator may run while thread-locals are being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: delegates to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn request<'a>(route: &'a str, upstream: Option<&'a str>, i: u64) -> RequestRecord<'a> {
    RequestRecord {
        route,
        upstream,
        status: [200, 301, 404, 503][(i % 4) as usize],
        duration: Duration::from_micros(1 + i * 7919 % 5_000_000),
        upstream_duration: upstream.map(|_| Duration::from_micros(1 + i * 104_729 % 90_000_000)),
        bytes_in: i,
        bytes_out: 2 * i,
        protocol: if i % 2 == 0 {
            Protocol::Http1
        } else {
            Protocol::H2
        },
        cache: None,
    }
}

#[test]
fn record_request_allocates_nothing_after_the_first_request_for_a_route() {
    let m = WorkerMetrics::new(0);
    // Names built at run time, as the proxy borrows them from the config snapshot.
    let api = String::from("api");
    let backend = String::from("backend");
    let unmatched = String::new();
    m.record_request(&request(&api, Some(&backend), 0));
    m.record_request(&request(&unmatched, None, 0));

    let before = allocations();
    for i in 1..10_000 {
        m.record_request(&request(&api, Some(&backend), i));
        m.record_request(&request(&unmatched, None, i));
        m.connection_opened();
        m.pool_hit();
        m.pool_miss();
        m.error(ErrorCause::UpstreamTimeout);
        m.connection_closed();
    }
    let after = allocations();
    assert_eq!(after - before, 0, "allocations on the recording path");

    // The counting works: a new route name is copied once, and take_delta allocates.
    m.record_request(&request("new-route", None, 1));
    assert!(allocations() > after);
    let delta = m.take_delta();
    assert_eq!(
        delta.routes.iter().map(|r| r.duration.count()).sum::<u64>(),
        20_001
    );
}
