//! HTTP/2 defences with raw frames, under both drivers: rapid reset (CVE-2023-44487),
//! CONTINUATION floods, HPACK bombs, PING and SETTINGS floods, zero-window stalls, the
//! stream cap, and malformed frames answered with the right connection or stream error. The
//! heap bounds under floods and slow readers are measured in `tests/http2_memory.rs`.
mod common;

use std::time::{Duration, Instant};

use common::gateway::{Gateway, GatewayConfig};
use common::h2_raw::*;
use common::upstream::{Behavior, Gate, Upstream};

fn gateway(driver: &str, upstream: &Upstream, http2: &str) -> Gateway {
    let mut config = GatewayConfig::new(driver)
        .server("h2c", "true")
        .upstream("u", &[upstream.addr()])
        .route_all_to("u");
    if !http2.is_empty() {
        config = config.server("http2", http2);
    }
    config.start()
}

/// A fresh client still gets answers: the defence cost the attacker only its connection.
fn still_serves(gw: &Gateway) {
    common::h2_raw::served_within(gw.addr());
}

driver_tests! {
    fn rapid_reset_is_counted_and_closed_with_enhance_your_calm(driver: &str) {
        let gate = Gate::new();
        let upstream = Upstream::start("u", Behavior::Gate(gate.clone()));
        let gw = gateway(driver, &upstream, "{ max_resets_per_second = 50 }");
        let mut raw = Raw::connect(gw.addr(), &[]);
        let mut sent = 0;
        for i in 0..2000u32 {
            let id = 2 * i + 1;
            let mut burst = frame(HEADERS, END_HEADERS | END_STREAM, id, &get_block("/r"));
            burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            if !raw.try_send(&burst) {
                break;
            }
            sent += 1;
        }
        let goaway = raw.goaway().expect("GOAWAY");
        assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM, "{goaway:?}");
        assert!(raw.next().is_none(), "the connection closes after the GOAWAY");
        gate.open();
        // Far fewer exchanges than streams opened reached the upstream.
        assert!(upstream.requests() < 300, "{} of {sent} reached the upstream", upstream.requests());
        still_serves(&gw);
    }

    fn a_continuation_flood_ends_the_connection(driver: &str) {
        let upstream = Upstream::echo("u");
        let gw = gateway(driver, &upstream, "");
        let mut raw = Raw::connect(gw.addr(), &[]);
        raw.send(&frame(HEADERS, 0, 1, &get_block("/flood")));
        let field = literal("x-flood", &"a".repeat(100));
        let mut written = 0;
        for _ in 0..20_000 {
            if !raw.try_send(&frame(CONTINUATION, 0, 1, &field)) {
                break;
            }
            written += 1;
        }
        // The header block is over max_header_list_size long before: no answer, no upstream
        // request, the connection ends (GOAWAY or close).
        let answered = raw.until(|f| f.kind == HEADERS);
        assert!(answered.is_none(), "a flooded header block was answered: {answered:?}");
        assert_eq!(upstream.requests(), 0);
        assert!(written > 0);
        still_serves(&gw);
    }

    fn an_hpack_bomb_is_refused_before_the_pipeline(driver: &str) {
        let upstream = Upstream::echo("u");
        let gw = gateway(driver, &upstream, "{ max_header_list_size = \"8KiB\" }");
        let mut raw = Raw::connect(gw.addr(), &[]);
        // One 4000-byte field into the dynamic table, then 2000 one-byte references to it:
        // a 6 KiB frame that decodes to 8 MB.
        let mut block = get_block("/bomb");
        block.push(0x40); // literal with incremental indexing, new name
        block.push(6);
        block.extend_from_slice(b"x-bomb");
        let value = "b".repeat(4000);
        block.extend_from_slice(&hpack_len(value.len()));
        block.extend_from_slice(value.as_bytes());
        block.extend(vec![0xbeu8; 2000]); // indexed: first dynamic entry
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let answer = raw.until(|f| f.stream == 1 || f.kind == GOAWAY);
        match answer {
            // 431 from h2 (":status" literal), or a reset / GOAWAY.
            Some(f) if f.kind == HEADERS => {
                assert!(f.payload.windows(3).any(|w| w == b"431"), "{f:?}");
            }
            Some(f) => assert!(f.kind == RST_STREAM || f.kind == GOAWAY, "{f:?}"),
            None => {}
        }
        assert_eq!(upstream.requests(), 0, "the bomb never reached the upstream");
        still_serves(&gw);
    }

    fn streams_over_the_cap_are_refused(driver: &str) {
        let gate = Gate::new();
        let upstream = Upstream::start("u", Behavior::Gate(gate.clone()));
        let gw = gateway(driver, &upstream, "{ max_concurrent_streams = 4 }");
        let mut raw = Raw::connect(gw.addr(), &[]);
        // Wait for the gateway's SETTINGS before opening streams, so the cap is in force.
        raw.until(|f| f.kind == SETTINGS && f.flags & 1 == 0).expect("settings");
        for i in 0..6u32 {
            raw.request(2 * i + 1, "/held");
        }
        let refused = raw.until(|f| f.kind == RST_STREAM).expect("a refused stream");
        assert_eq!(refused.error_code(), REFUSED_STREAM, "{refused:?}");
        assert!(refused.stream >= 9, "one of the streams past the cap: {refused:?}");
        gate.open();
        let answered = raw.until(|f| f.kind == HEADERS).expect("held streams are answered");
        assert!(answered.stream <= 7);
    }

    fn a_client_gone_while_its_connection_closes_does_not_stall_shutdown(driver: &str) {
        let gate = Gate::new();
        let upstream = Upstream::start("u", Behavior::Gate(gate.clone()));
        let gw = gateway(driver, &upstream, "");
        let mut raw = Raw::connect(gw.addr(), &[]);
        raw.until(|f| f.kind == SETTINGS && f.flags & 1 == 0).expect("settings");
        // A held stream keeps the connection open into the drain.
        raw.request(1, "/held");
        upstream.wait_for_requests(1);
        // Shorter than the 5 s grace period: only a connection that ends when its client
        // goes away lets the shutdown finish in time.
        let shutdown = std::thread::spawn(move || gw.shutdown_within(Duration::from_secs(3)));
        // The GOAWAY shows the connection is closing; then the client goes away.
        raw.goaway().expect("GOAWAY when the drain starts");
        // Reset, not a clean close: the gateway's next read fails.
        socket2::SockRef::from(&raw.tcp)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(raw);
        let result = shutdown.join();
        gate.open();
        assert!(result.is_ok(), "shutdown stalled after the client left");
    }

    fn malformed_frames_get_the_right_errors(driver: &str) {
        let upstream = Upstream::echo("u");
        let gw = gateway(driver, &upstream, "");
        // DATA on stream 0: connection error PROTOCOL_ERROR.
        let mut raw = Raw::connect(gw.addr(), &[]);
        raw.send(&frame(DATA, 0, 0, b"x"));
        assert_eq!(raw.goaway().expect("GOAWAY").error_code(), PROTOCOL_ERROR);
        // A frame over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR.
        let mut raw = Raw::connect(gw.addr(), &[]);
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &vec![0u8; 20_000]));
        assert_eq!(raw.goaway().expect("GOAWAY").error_code(), FRAME_SIZE_ERROR);
        // WINDOW_UPDATE of 0 on the connection: PROTOCOL_ERROR.
        let mut raw = Raw::connect(gw.addr(), &[]);
        raw.send(&frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()));
        assert_eq!(raw.goaway().expect("GOAWAY").error_code(), PROTOCOL_ERROR);
        // An upper-case field name makes the request malformed: h2 answers PROTOCOL_ERROR
        // (as a connection error, which RFC 9113 §5.4 allows for any stream error).
        let mut raw = Raw::connect(gw.addr(), &[]);
        let mut block = get_block("/bad");
        block.extend(literal("X-Upper", "1"));
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let error = raw.until(|f| f.stream == 1 || f.kind == GOAWAY).expect("an answer");
        assert!(matches!(error.kind, RST_STREAM | GOAWAY), "{error:?}");
        assert_eq!(error.error_code(), PROTOCOL_ERROR, "{error:?}");
        // A connection-specific field (RFC 9113 §8.2.2) is a stream error only: the
        // connection goes on serving.
        let mut raw = Raw::connect(gw.addr(), &[]);
        let mut block = get_block("/bad");
        block.extend(literal("connection", "close"));
        raw.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let reset = raw.until(|f| f.stream == 1 || f.kind == GOAWAY).expect("an answer");
        assert_eq!((reset.kind, reset.error_code()), (RST_STREAM, PROTOCOL_ERROR), "{reset:?}");
        raw.request(3, "/good");
        let ok = raw.until(|f| f.kind == HEADERS && f.stream == 3).expect("stream 3 served");
        assert!(ok.payload.contains(&0x88));
        assert_eq!(upstream.requests(), 1, "only the good request went upstream");
    }

    fn ping_and_settings_floods_do_not_stop_the_worker(driver: &str) {
        let upstream = Upstream::echo("u");
        let gw = gateway(driver, &upstream, "");
        let mut flood = Raw::connect(gw.addr(), &[]);
        // Never read: the gateway's answers back up; it must stop reading this connection
        // (bounded buffers), not queue answers without end.
        let mut frames = Vec::new();
        for i in 0..2000u64 {
            frames.extend(frame(PING, 0, 0, &i.to_be_bytes()));
            frames.extend(frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]));
        }
        flood.tcp.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let started = Instant::now();
        for _ in 0..100 {
            if !flood.try_send(&frames) || started.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        // Meanwhile another client on the same worker is served.
        still_serves(&gw);
        drop(flood);
        still_serves(&gw);
    }

    fn a_zero_window_reader_is_cut_off_with_bounded_memory(driver: &str) {
        let upstream = Upstream::start("u", Behavior::Fixed { len: 64 * 1024 * 1024, chunked: false });
        let gw = GatewayConfig::new(driver)
            .server("h2c", "true")
            .timeout("body_idle", "500ms")
            .upstream("u", &[upstream.addr()])
            .route_all_to("u")
            .start();
        // SETTINGS_INITIAL_WINDOW_SIZE = 0: the client never lets a byte of body out.
        let mut raw = Raw::connect(gw.addr(), &[(4, 0)]);
        raw.request(1, "/big");
        let started = Instant::now();
        let headers = raw.until(|f| f.kind == HEADERS && f.stream == 1).expect("head");
        assert!(headers.payload.contains(&0x88));
        let reset = raw.until(|f| f.kind == RST_STREAM && f.stream == 1).expect("reset");
        let waited = started.elapsed();
        // body_idle (500 ms) plus generous room for a loaded machine.
        assert!(waited < Duration::from_secs(8), "{waited:?}");
        assert_ne!(reset.error_code(), 0);
        // The gateway stopped reading the upstream (the response did not pile up in memory)
        // and closed it.
        upstream.wait_for_closed_connections(1);
    }
}
