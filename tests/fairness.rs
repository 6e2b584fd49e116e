//! Fairness between the connections of one worker, under both drivers: a client that keeps
//! its HTTP/1.1 connection busy without ever making the gateway wait (endless pipelining of
//! requests the gateway answers itself, a WebSocket tunnel flooded into an upstream that
//! reads at line rate) must not delay fresh connections to the same worker. On the legacy
//! driver every such read and write completes at once; without a budget the connection's
//! task would loop and the worker would answer nobody else (`server/fairness.rs`).
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::gateway::GatewayConfig;
use common::{wait_until, IO_TIMEOUT};

/// Longest a fresh connection may wait for its answer while another keeps the worker busy.
const PROBE_BOUND: Duration = Duration::from_secs(3);
/// Fresh connections probed while the flood runs.
const PROBES: usize = 5;

/// Routes: `/ws` upgrades to group `ws`; every other path is answered 404 by the gateway.
fn routes() -> &'static str {
    "[[routes]]\nname = \"ws\"\nmatch = { path_prefix = \"/ws\" }\nupstream = \"ws\"\n\
     upgrade = [\"websocket\"]\n"
}

/// Sends one request on a fresh connection and returns how long its status line took.
fn probe(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    tcp.write_all(b"GET /nowhere HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .expect("probe request");
    let mut status = [0u8; 12];
    tcp.read_exact(&mut status).expect("probe answer");
    assert_eq!(
        &status[..9],
        b"HTTP/1.1 ",
        "{:?}",
        String::from_utf8_lossy(&status)
    );
    started.elapsed()
}

/// The slowest of [`PROBES`] probes.
fn slowest_probe(addr: SocketAddr) -> Duration {
    (0..PROBES).map(|_| probe(addr)).max().unwrap_or_default()
}

/// Writes `pattern` over and over on its own thread until `stop`.
fn flood(mut tcp: TcpStream, pattern: Vec<u8>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if tcp.write_all(&pattern).is_err() {
                return;
            }
        }
    })
}

/// Reads and drops everything on its own thread, counting the bytes.
fn drain(mut tcp: TcpStream, count: Arc<AtomicU64>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = tcp.read(&mut buf) {
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    })
}

/// `unit` repeated to about 64 KiB.
fn repeated(unit: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024 + unit.len());
    while out.len() < 64 * 1024 {
        out.extend_from_slice(unit);
    }
    out
}

/// An upstream that answers the first request head with 101 and then reads and drops
/// everything at line rate; counts the bytes it dropped.
fn sink_upstream(count: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tcp.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                               Connection: Upgrade\r\n\r\n";
                if tcp.write_all(switch).is_ok() {
                    let _ = drain(tcp, count).join();
                }
            });
        }
    });
    addr
}

/// A masked binary client frame of 125 bytes.
fn client_frame() -> Vec<u8> {
    let key = [7u8, 1, 9, 3];
    let mut out = vec![0x82, 0x80 | 125];
    out.extend_from_slice(&key);
    out.extend((0..125).map(|i| (i as u8) ^ key[i % 4]));
    out
}

driver_tests! {
    fn endless_pipelining_does_not_delay_other_connections(driver: &str) {
        let sunk = Arc::new(AtomicU64::new(0));
        let gw = GatewayConfig::new(driver)
            .upstream("ws", &[sink_upstream(Arc::clone(&sunk))])
            .routes(routes())
            .start();
        probe(gw.addr());
        let tcp = TcpStream::connect(gw.addr()).expect("connect");
        let answered = Arc::new(AtomicU64::new(0));
        let reader = drain(tcp.try_clone().expect("clone"), Arc::clone(&answered));
        let stop = Arc::new(AtomicBool::new(false));
        let request = b"GET /nowhere HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let writer = flood(tcp.try_clone().expect("clone"), repeated(request), Arc::clone(&stop));
        wait_until("pipelined answers", IO_TIMEOUT, || answered.load(Ordering::Relaxed) > 0);
        let slowest = slowest_probe(gw.addr());
        let during = answered.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        let _ = (writer.join(), reader.join());
        assert!(slowest < PROBE_BOUND, "a probe waited {slowest:?} ({during} answer bytes)");
    }

    fn a_tunnel_flood_does_not_delay_other_connections(driver: &str) {
        let sunk = Arc::new(AtomicU64::new(0));
        let gw = GatewayConfig::new(driver)
            .upstream("ws", &[sink_upstream(Arc::clone(&sunk))])
            .routes(routes())
            .start();
        probe(gw.addr());
        let mut tcp = TcpStream::connect(gw.addr()).expect("connect");
        tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        tcp.write_all(
            b"GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("handshake");
        let mut status = [0u8; 12];
        tcp.read_exact(&mut status).expect("101");
        assert_eq!(&status, b"HTTP/1.1 101");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = flood(tcp.try_clone().expect("clone"), repeated(&client_frame()), Arc::clone(&stop));
        wait_until("tunnelled bytes", IO_TIMEOUT, || sunk.load(Ordering::Relaxed) > 0);
        let slowest = slowest_probe(gw.addr());
        let during = sunk.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let _ = tcp.shutdown(std::net::Shutdown::Both);
        let _ = writer.join();
        assert!(slowest < PROBE_BOUND, "a probe waited {slowest:?} ({during} bytes tunnelled)");
    }
}
