//! Request and response bodies through the proxy: Content-Length and chunked, both ways, large
//! enough that buffering them whole would show, checked end to end by checksum; and
//! `Expect: 100-continue`.
mod common;

use std::io::Write;
use std::net::TcpStream;

use common::body;
use common::client::{self, Raw};
use common::gateway::GatewayConfig;
use common::process::Ringgate;
use common::upstream::{Behavior, Echoed, Upstream};

const MIB: u64 = 1024 * 1024;

fn config(driver: &str, up: &Upstream) -> GatewayConfig {
    GatewayConfig::new(driver)
        .limit("max_body_bytes", r#""4GiB""#)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
}

/// Streams a `len`-byte pattern body with Content-Length on `stream`.
fn upload_content_length(stream: &mut TcpStream, path: &str, len: u64) {
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: example.com\r\nContent-Length: {len}\r\n\r\n"
    )
    .expect("send head");
    body::write_pattern(stream, len).expect("send body");
}

/// Streams a `len`-byte pattern body chunked on `stream` (chunks of uneven sizes).
fn upload_chunked(stream: &mut TcpStream, path: &str, len: u64) {
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("send head");
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stream);
    body::for_each_pattern_chunk(len, |chunk| {
        // Split further so chunk sizes vary (1 byte up to ~64 KiB).
        let (a, b) = chunk.split_at(chunk.len().min(1 + chunk.len() / 3));
        for piece in [a, b] {
            if !piece.is_empty() {
                write!(out, "{:x}\r\n", piece.len())?;
                out.write_all(piece)?;
                out.write_all(b"\r\n")?;
            }
        }
        Ok(())
    })
    .expect("send body");
    out.write_all(b"0\r\n\r\n").expect("send last chunk");
    out.flush().expect("flush");
}

fn assert_echoed_upload(raw: &mut Raw, len: u64) {
    let r = raw.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let e = Echoed::parse(&r.text());
    assert_eq!(e.body_len, len);
    assert_eq!(
        e.body_sum,
        body::pattern_sum(len).hex(),
        "upload corrupted on the way"
    );
}

driver_tests! {
    fn content_length_upload_64mib(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        let mut stream = raw.stream().try_clone().expect("clone");
        upload_content_length(&mut stream, "/up", 64 * MIB);
        assert_echoed_upload(&mut raw, 64 * MIB);
        let e = Echoed::parse(&client::get(&gw.url("/after")).text());
        assert_eq!(e.target, "/after");
    }

    fn chunked_upload_64mib(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        let mut stream = raw.stream().try_clone().expect("clone");
        upload_chunked(&mut stream, "/up", 64 * MIB);
        assert_echoed_upload(&mut raw, 64 * MIB);
        // The connection is still in sync after a chunked body.
        raw.send(client::get_req("/next"));
        assert_eq!(Echoed::parse(&raw.read_response().text()).target, "/next");
    }

    fn content_length_download_128mib(driver: &str) {
        let up = Upstream::start("echo", Behavior::Fixed { len: 128 * MIB, chunked: false });
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/down"));
        let (r, sum) = raw.read_response_summed("GET");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("134217728"));
        assert_eq!(sum, body::pattern_sum(128 * MIB), "download corrupted on the way");
    }

    fn chunked_download_64mib(driver: &str) {
        let up = Upstream::start("echo", Behavior::Fixed { len: 64 * MIB, chunked: true });
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send(client::get_req("/down"));
        let (r, sum) = raw.read_response_summed("GET");
        assert_eq!(r.status, 200);
        assert_eq!(sum, body::pattern_sum(64 * MIB), "download corrupted on the way");
        raw.send(client::get_req("/down"));
        let (_, sum) = raw.read_response_summed("GET");
        assert_eq!(sum, body::pattern_sum(64 * MIB), "second download on the same connection");
    }

    fn small_chunked_bodies_both_ways(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n");
        let r = raw.read_response();
        let e = Echoed::parse(&r.text());
        assert_eq!(e.body_len, 5);
        assert_eq!(e.body_sum, body::sum_of(b"abcde").hex());
        up.set_behavior(Behavior::Fixed { len: 10, chunked: true });
        raw.send(client::get_req("/d"));
        assert_eq!(raw.read_response().body, body::pattern(10));
        up.set_behavior(Behavior::Fixed { len: 0, chunked: true });
        raw.send(client::get_req("/empty"));
        let r = raw.read_response();
        assert_eq!((r.status, r.body.len()), (200, 0));
    }

    fn empty_and_zero_length_bodies(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("POST /z HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(Echoed::parse(&raw.read_response().text()).body_len, 0);
        raw.send("PUT /z HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(Echoed::parse(&raw.read_response().text()).body_len, 0);
        assert_eq!(up.requests(), 2);
    }

    fn expect_100_continue_gets_interim_response_then_forwards(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
        // The body is withheld until the gateway says 100 Continue.
        let interim = raw.read_head_only();
        assert_eq!(interim.status, 100, "expected 100 Continue first, got {interim:?}");
        raw.send(body::pattern(5000));
        let r = raw.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        let e = Echoed::parse(&r.text());
        assert_eq!(e.body_len, 5000);
        assert_eq!(e.body_sum, body::pattern_sum(5000).hex());
        // And the connection is in sync for the next request.
        raw.send(client::get_req("/after"));
        assert_eq!(Echoed::parse(&raw.read_response().text()).target, "/after");
    }

    fn expect_100_continue_over_limit_is_413_without_100(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).limit("max_body_bytes", r#""1KiB""#).start();
        let mut raw = Raw::connect(gw.addr());
        raw.send("POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n");
        let r = raw.read_head_only();
        assert_eq!(r.status, 413, "a body over the limit must be refused before 100 Continue");
        assert_eq!(up.requests(), 0);
    }

    fn stalled_request_body_is_cut_after_body_idle(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = config(driver, &up).timeout("body_idle", "300ms").start();
        let mut raw = Raw::connect(gw.addr());
        let start = std::time::Instant::now();
        raw.send("POST /stall HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n0123456789");
        // The gateway may answer 408 (or 400) before closing; either way the connection ends.
        match raw.try_read_response_to("POST") {
            Ok(Some(r)) => {
                assert!(r.status == 408 || r.status == 400, "stalled body answered {}", r.status);
                raw.read_until_closed();
            }
            Ok(None) => {}
            Err(e) => panic!("stalled request body not cut: {e}"),
        }
        let waited = start.elapsed();
        assert!(waited >= std::time::Duration::from_millis(250), "cut after only {waited:?}");
        assert!(up.recorded().is_empty(), "the upstream received a complete request");
    }

    fn large_transfers_through_binary_stay_in_bounded_memory(driver: &str) {
        large_transfers_in_bounded_memory(driver, 256 * MIB);
    }

    #[ignore = "1 GiB each way; run with --ignored"]
    fn one_gib_each_way_through_binary_in_bounded_memory(driver: &str) {
        large_transfers_in_bounded_memory(driver, 1024 * MIB);
    }
}

/// Pushes `len` bytes up (Content-Length and chunked) and down through the binary, then checks
/// its peak resident memory stayed far below `len`.
fn large_transfers_in_bounded_memory(driver: &str, len: u64) {
    let up = Upstream::echo("echo");
    let text = config(driver, &up).render();
    let gw = Ringgate::spawn(&text, &[]);
    let baseline = gw.proc_status("VmHWM");

    let mut raw = Raw::connect(gw.addr());
    let mut stream = raw.stream().try_clone().expect("clone");
    upload_content_length(&mut stream, "/up", len);
    assert_echoed_upload(&mut raw, len);
    upload_chunked(&mut stream, "/up", len);
    assert_echoed_upload(&mut raw, len);

    up.set_behavior(Behavior::Fixed {
        len,
        chunked: false,
    });
    raw.send(client::get_req("/down"));
    let (r, sum) = raw.read_response_summed("GET");
    assert_eq!(r.status, 200);
    assert_eq!(sum, body::pattern_sum(len));

    let peak = gw.proc_status("VmHWM");
    let limit_kib = baseline + 64 * 1024;
    assert!(
        peak < limit_kib,
        "peak RSS {peak} KiB after moving {} MiB (baseline {baseline} KiB): bodies are being buffered",
        len / MIB
    );
}
