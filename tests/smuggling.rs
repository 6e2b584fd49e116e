//! Malformed and ambiguous requests, sent as raw bytes: each gets its exact status, the
//! connection is closed, and the upstream never sees the request.
mod common;

use common::client::{self, Raw};
use common::gateway::{Gateway, GatewayConfig};
use common::upstream::{Echoed, Upstream};

/// A gateway with small, known limits in front of an echoing upstream.
fn gateway(driver: &str, up: &Upstream) -> Gateway {
    GatewayConfig::new(driver)
        .limit("max_head_bytes", "4096")
        .limit("max_headers", "20")
        .limit("max_uri_bytes", "1024")
        .limit("max_body_bytes", r#""1KiB""#)
        .upstream("echo", &[up.addr()])
        .route_all_to("echo")
        .start()
}

/// Sends `request` as the first bytes on a fresh connection and asserts the status, that the
/// connection closes, and that the upstream received nothing.
fn rejects(driver: &str, request: &[u8], status: u16) {
    let up = Upstream::echo("echo");
    let gw = gateway(driver, &up);
    let mut raw = Raw::connect(gw.addr());
    raw.send(request);
    let r = raw.read_response();
    assert_eq!(
        r.status,
        status,
        "request {:?} answered {} {}",
        String::from_utf8_lossy(request),
        r.status,
        r.text()
    );
    raw.expect_closed();
    assert_eq!(up.requests(), 0, "the upstream saw the rejected request");
    assert!(up.recorded().is_empty());
}

/// Like [`rejects`] for body-framing errors the gateway can only find after it started
/// streaming: the upstream must never receive a complete request.
fn rejects_body(driver: &str, request: &[u8], status: u16) {
    let up = Upstream::echo("echo");
    let gw = gateway(driver, &up);
    let mut raw = Raw::connect(gw.addr());
    raw.send(request);
    let r = raw.read_response();
    assert_eq!(
        r.status,
        status,
        "request {:?} answered {} {}",
        String::from_utf8_lossy(request),
        r.status,
        r.text()
    );
    raw.expect_closed();
    // A streaming gateway may have forwarded the head already; what must never happen is a
    // complete (and therefore answerable) request upstream.
    assert!(
        up.recorded().is_empty(),
        "the upstream received a complete request: {:?}",
        up.recorded()
    );
}

driver_tests! {
    fn content_length_with_transfer_encoding_is_400(driver: &str) {
        rejects(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            400,
        );
    }

    fn transfer_encoding_before_content_length_is_400(driver: &str) {
        rejects(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
            400,
        );
    }

    fn differing_content_lengths_are_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400);
    }

    fn differing_content_lengths_in_one_field_are_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!", 400);
    }

    fn non_numeric_content_length_is_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", 400);
    }

    fn signed_content_length_is_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400);
    }

    fn negative_content_length_is_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    }

    fn whitespace_before_colon_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo : bar\r\n\r\n", 400);
    }

    fn whitespace_before_colon_in_transfer_encoding_is_400(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400);
    }

    fn obs_fold_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: one\r\n two\r\n\r\n", 400);
    }

    fn nul_in_header_value_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\0b\r\n\r\n", 400);
    }

    fn control_character_in_header_value_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\x01b\r\n\r\n", 400);
    }

    fn bare_cr_in_header_value_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\rX-Bar: b\r\n\r\n", 400);
    }

    fn missing_host_on_http11_is_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nX-Foo: bar\r\n\r\n", 400);
    }

    fn two_host_headers_are_400(driver: &str) {
        rejects(driver, b"GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n", 400);
    }

    fn invalid_chunk_size_is_400(driver: &str) {
        rejects_body(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            400,
        );
    }

    fn overflowing_chunk_size_is_400(driver: &str) {
        rejects_body(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
            400,
        );
    }

    fn chunk_without_crlf_after_data_is_400(driver: &str) {
        rejects_body(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            400,
        );
    }

    fn chunk_line_with_bare_lf_is_400(driver: &str) {
        rejects_body(
            driver,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            400,
        );
    }

    fn unsupported_transfer_coding_is_501(driver: &str) {
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
    }

    fn http2_request_line_is_505(driver: &str) {
        rejects(driver, b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    }

    fn oversized_head_is_431(driver: &str) {
        // max_head_bytes = 4096; a 5000-byte header value (few headers, short URI).
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        req.extend_from_slice(&[b'a'; 5000]);
        req.extend_from_slice(b"\r\n\r\n");
        rejects(driver, &req, 431);
    }

    fn too_many_headers_is_431(driver: &str) {
        // max_headers = 20; 30 short headers (far below max_head_bytes).
        let mut req = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..30 {
            req.push_str(&format!("X-H{i}: v\r\n"));
        }
        req.push_str("\r\n");
        rejects(driver, req.as_bytes(), 431);
    }

    fn too_long_uri_is_414(driver: &str) {
        // max_uri_bytes = 1024, max_head_bytes = 4096.
        let req = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "u".repeat(2000));
        rejects(driver, req.as_bytes(), 414);
    }

    fn body_over_limit_by_content_length_is_413(driver: &str) {
        // max_body_bytes = 1KiB; the body is announced, not sent.
        rejects(driver, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n", 413);
    }

    fn chunked_body_over_limit_is_413(driver: &str) {
        // max_body_bytes = 1KiB; one declared chunk of 2000 bytes passes it.
        let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n".to_vec();
        req.extend_from_slice(&[b'x'; 2000]);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        rejects_body(driver, &req, 413);
    }

    fn valid_request_then_smuggling_attempt_on_same_connection(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let mut raw = Raw::connect(gw.addr());
        raw.send(
            "GET /first HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        let r = raw.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(Echoed::parse(&r.text()).target, "/first");
        let r = raw.read_response();
        assert_eq!(r.status, 400);
        raw.expect_closed();
        assert_eq!(up.requests(), 1, "only /first may reach the upstream: {:?}", up.recorded());
    }

    fn rejected_request_does_not_affect_other_connections(driver: &str) {
        let up = Upstream::echo("echo");
        let gw = gateway(driver, &up);
        let mut bad = Raw::connect(gw.addr());
        bad.send(b"GET / HTTP/1.1\r\nX-Foo: no host\r\n\r\n");
        assert_eq!(bad.read_response().status, 400);
        let r = client::get(&gw.url("/fine"));
        assert_eq!(r.status, 200);
        assert_eq!(up.requests(), 1);
    }
}
