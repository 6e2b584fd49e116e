//! HTTP/2 defences that are about memory and fairness, with raw frames under both drivers:
//! PING, SETTINGS and WINDOW_UPDATE floods from a client that never reads, and a zero-window
//! slow reader of a large response. The gateway runs in this process, so this binary installs
//! an allocator that tracks the live heap bytes and their high-water mark: a test asserts that
//! the peak grew by a bounded amount while it flooded far more than that. Kernel socket
//! buffers are not heap: a gateway that stops reading holds the flood there, out of its own
//! memory. Meanwhile fresh connections to the same (single) worker must be answered quickly.
//!
//! The tests of this binary run one at a time (the heap is process-wide).
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::gateway::{Gateway, GatewayConfig};
use common::h2_raw::*;
use common::upstream::{Behavior, Upstream};

struct Tracking;

static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by as i64, Ordering::Relaxed) + by as i64;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: delegates to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        grew(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Serializes the tests of this binary (test-only: no worker ever touches it).
#[allow(clippy::disallowed_types)]
static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[allow(clippy::disallowed_types)]
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The live heap's high-water mark from now on.
struct Peak {
    baseline: i64,
}

impl Peak {
    fn start() -> Peak {
        let baseline = LIVE.load(Ordering::Relaxed);
        PEAK.store(baseline, Ordering::Relaxed);
        Peak { baseline }
    }

    /// How far the live heap rose above the baseline, in bytes.
    fn growth(&self) -> i64 {
        PEAK.load(Ordering::Relaxed) - self.baseline
    }
}

const MIB: i64 = 1024 * 1024;
/// What a flood sends at most: far more than the bound on the gateway's heap growth.
const FLOOD_BYTES: u64 = 64 * 1024 * 1024;
/// How far the heap may rise while a connection floods: a few connections' bounded
/// buffers (64 KiB each way, h2's own) and the probes, with room for allocator noise.
const HEAP_BOUND: i64 = 8 * MIB;
/// Longest a fresh connection may wait for its answer while another floods the worker. A
/// starved worker answers no probe until the flood ends; a busy test machine (debug build,
/// other tests flooding in parallel) measured up to 4.9 s with the worker serving: 10 s tells
/// the two apart.
const PROBE_BOUND: Duration = Duration::from_secs(10);
/// A write blocked this long means the gateway stopped reading the connection.
const STALL: Duration = Duration::from_secs(2);

/// How a flood went.
#[derive(Debug)]
struct Flooded {
    sent: u64,
    /// A write blocked for [`STALL`]: the gateway stopped reading.
    stalled: bool,
}

/// Writes `pattern` over and over (up to `limit` bytes) on its own thread, never reading.
/// The pattern is built before, so the flood itself allocates nothing.
fn flood(tcp: TcpStream, pattern: Vec<u8>, limit: u64) -> JoinHandle<Flooded> {
    std::thread::spawn(move || {
        let mut tcp = tcp;
        tcp.set_write_timeout(Some(STALL)).expect("write timeout");
        let (mut sent, mut at) = (0u64, 0usize);
        while sent < limit {
            match tcp.write(&pattern[at..]) {
                Ok(0) => break,
                Ok(n) => {
                    sent += n as u64;
                    at = (at + n) % pattern.len();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Flooded {
                        sent,
                        stalled: true,
                    };
                }
                Err(_) => break,
            }
        }
        Flooded {
            sent,
            stalled: false,
        }
    })
}

/// Probes the gateway with fresh connections until the flood ends; returns the flood's
/// outcome and the slowest probe.
fn probe_while(gw: &Gateway, flooding: JoinHandle<Flooded>) -> (Flooded, Duration) {
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while !flooding.is_finished() || probes == 0 {
        slowest = slowest.max(served_within(gw.addr()));
        probes += 1;
    }
    (flooding.join().expect("flood thread"), slowest)
}

/// `frame` repeated to about 256 KiB.
fn repeated(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * 1024 + frame.len());
    while out.len() < 256 * 1024 {
        out.extend_from_slice(frame);
    }
    out
}

fn gateway(driver: &str, upstream: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream("u", &[upstream.addr()])
        .route_all_to("u")
        .start()
}

/// A client that floods frames the gateway must answer (PING, SETTINGS) and never reads:
/// the answers back up, the gateway stops reading, its heap stays bounded, and other clients
/// of the worker are served meanwhile.
fn answered_flood_is_bounded(driver: &str, frame: Vec<u8>) {
    let _one_at_a_time = exclusive();
    let upstream = Upstream::echo("u");
    let gw = gateway(driver, &upstream);
    served_within(gw.addr());
    let mut raw = Raw::connect(gw.addr(), &[]);
    raw.until(|f| f.kind == SETTINGS && f.flags & 1 == 0)
        .expect("settings");
    let pattern = repeated(&frame);
    let peak = Peak::start();
    let flooding = flood(raw.tcp.try_clone().expect("clone"), pattern, FLOOD_BYTES);
    let (flooded, slowest) = probe_while(&gw, flooding);
    let growth = peak.growth();
    assert!(
        flooded.stalled,
        "the gateway read the whole flood: {flooded:?}"
    );
    assert!(
        growth < HEAP_BOUND,
        "heap grew {growth} bytes while {} flood bytes were sent",
        flooded.sent
    );
    assert!(slowest < PROBE_BOUND, "a probe waited {slowest:?}");
    drop(raw);
    served_within(gw.addr());
}

/// A large response held at a zero window, then opened one byte at a time, on the stream
/// and on the connection, by a client that never reads (`limit` bytes of WINDOW_UPDATE
/// frames), while probes must be answered within [`PROBE_BOUND`]; then increments past
/// 2^31-1 on fresh connections.
fn window_update_flood(driver: &str, limit: u64) {
    let _one_at_a_time = exclusive();
    let upstream = Upstream::start(
        "u",
        Behavior::Fixed {
            len: 64 * 1024 * 1024,
            chunked: false,
        },
    );
    let gw = gateway(driver, &upstream);
    served_within(gw.addr());
    let mut raw = Raw::connect(gw.addr(), &[(4, 0)]);
    raw.request(1, "/big");
    let head = raw
        .until(|f| f.kind == HEADERS && f.stream == 1)
        .expect("head");
    assert!(head.payload.contains(&0x88), "{head:?}");
    let mut pattern = frame(WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes());
    pattern.extend(frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
    let pattern = repeated(&pattern);
    let peak = Peak::start();
    let flooding = flood(raw.tcp.try_clone().expect("clone"), pattern, limit);
    let (flooded, slowest) = probe_while(&gw, flooding);
    let growth = peak.growth();
    assert!(
        growth < HEAP_BOUND,
        "heap grew {growth} bytes while {} flood bytes were sent",
        flooded.sent
    );
    assert!(slowest < PROBE_BOUND, "a probe waited {slowest:?}");
    drop(raw);
    // An increment past 2^31-1 is a flow-control error: on the connection, GOAWAY ...
    let mut raw = Raw::connect(gw.addr(), &[]);
    raw.send(&frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()));
    let goaway = raw.goaway().expect("GOAWAY");
    assert_eq!(goaway.error_code(), FLOW_CONTROL_ERROR, "{goaway:?}");
    // ... on a stream, RST_STREAM (the stream's window starts at 65,535).
    let mut raw = Raw::connect(gw.addr(), &[]);
    raw.request(1, "/big");
    raw.send(&frame(WINDOW_UPDATE, 0, 1, &0x7fff_ffffu32.to_be_bytes()));
    let reset = raw
        .until(|f| f.kind == RST_STREAM || f.kind == GOAWAY)
        .expect("an error");
    assert_eq!(
        (reset.kind, reset.error_code()),
        (RST_STREAM, FLOW_CONTROL_ERROR),
        "{reset:?}"
    );
    served_within(gw.addr());
}

/// How much a WINDOW_UPDATE flood sends in the tests run by default. The memory at stake is
/// the 64 MiB response it opens the window of, not the flood's own bytes, which the gateway
/// reads and drops.
const WU_FLOOD_BYTES: u64 = 16 * 1024 * 1024;

/// A longer WINDOW_UPDATE flood on the legacy driver, where every read of the flooded socket
/// completes at once: the connection must still yield the worker to the probes
/// (`server/fairness.rs`; it starved them before).
#[test]
fn a_window_update_flood_does_not_delay_other_connections_on_legacy() {
    window_update_flood("legacy", FLOOD_BYTES);
}

driver_tests! {
    fn a_ping_flood_never_read_holds_bounded_memory(driver: &str) {
        answered_flood_is_bounded(driver, frame(PING, 0, 0, &[7; 8]));
    }

    fn a_settings_flood_never_read_holds_bounded_memory(driver: &str) {
        // SETTINGS_MAX_CONCURRENT_STREAMS = 100: each frame must be applied and acknowledged.
        answered_flood_is_bounded(driver, frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
    }

    fn a_window_update_flood_holds_bounded_memory_and_overflow_is_an_error(driver: &str) {
        window_update_flood(driver, WU_FLOOD_BYTES);
    }

    fn a_zero_window_reader_of_a_large_response_holds_bounded_memory(driver: &str) {
        let _one_at_a_time = exclusive();
        let len = 64 * 1024 * 1024;
        let upstream = Upstream::start("u", Behavior::Fixed { len, chunked: false });
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .timeout("body_idle", "1s")
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        served_within(gw.addr());
        let peak = Peak::start();
        // SETTINGS_INITIAL_WINDOW_SIZE = 0: not a byte of the 64 MiB body may go out.
        let mut raw = Raw::connect(gw.addr(), &[(4, 0)]);
        raw.request(1, "/big");
        let head = raw.until(|f| f.kind == HEADERS && f.stream == 1).expect("head");
        assert!(head.payload.contains(&0x88), "{head:?}");
        // Meanwhile the worker serves others.
        let slowest = (0..5).map(|_| served_within(gw.addr())).max().unwrap_or_default();
        let reset = raw.until(|f| f.kind == RST_STREAM && f.stream == 1).expect("reset at body_idle");
        assert_ne!(reset.error_code(), 0);
        let growth = peak.growth();
        assert!(growth < HEAP_BOUND, "heap grew {growth} bytes for a {len}-byte response held at a zero window");
        assert!(slowest < PROBE_BOUND, "a probe waited {slowest:?}");
        upstream.wait_for_closed_connections(1);
    }
}
