//! One test per request rule, named after the rule.

use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 16,
    max_uri_bytes: 64,
};

fn parse_with(raw: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, HttpError> {
    let mut headers = Vec::new();
    parse_request(raw, limits, &mut headers)
}

fn parse(raw: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    parse_with(raw, &LIMITS)
}

fn ok(raw: &[u8]) -> RequestHead {
    match parse(raw) {
        Ok(Some(head)) => head,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

fn err(raw: &[u8]) -> HttpError {
    match parse(raw) {
        Err(e) => e,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn parses_simple_get_with_spans() {
    let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-A:  v  \r\n\r\nrest";
    let mut headers = Vec::new();
    let head = parse_request(raw, &LIMITS, &mut headers).unwrap().unwrap();
    assert_eq!(head.head_len, raw.len() - 4);
    assert_eq!(head.method.of(raw), b"GET");
    assert_eq!(head.method_kind, Method::Get);
    assert_eq!(head.target.of(raw), b"/a?b=1");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.host.unwrap().of(raw), b"example.com");
    assert_eq!(head.framing, BodyFraming::None);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert_eq!(headers.len(), 2);
    assert_eq!(headers[1].name.of(raw), b"X-A");
    assert_eq!(headers[1].value.of(raw), b"v");
}

#[test]
fn reuses_the_header_vec() {
    let mut headers = Vec::with_capacity(8);
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    parse_request(raw, &LIMITS, &mut headers).unwrap();
    parse_request(raw, &LIMITS, &mut headers).unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers.capacity(), 8);
}

#[test]
fn returns_none_while_incomplete() {
    let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
    for cut in 0..raw.len() {
        assert_eq!(parse(&raw[..cut]), Ok(None), "cut at {cut}");
    }
}

#[test]
fn rejects_incomplete_head_at_max_head_bytes() {
    let limits = HeadLimits {
        max_head_bytes: 32,
        ..LIMITS
    };
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: aaaaaaaa";
    assert_eq!(parse_with(raw, &limits), Err(HttpError::HeadTooLarge));
}

#[test]
fn rejects_complete_head_over_max_head_bytes() {
    let limits = HeadLimits {
        max_head_bytes: 20,
        ..LIMITS
    };
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(parse_with(raw, &limits), Err(HttpError::HeadTooLarge));
}

#[test]
fn rejects_long_uri_with_414() {
    let raw = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(64));
    assert_eq!(err(raw.as_bytes()), HttpError::UriTooLong);
}

#[test]
fn rejects_long_uri_before_the_line_completes() {
    let raw = format!("GET /{}", "a".repeat(64));
    assert_eq!(err(raw.as_bytes()), HttpError::UriTooLong);
}

#[test]
fn rejects_more_than_max_headers() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..16 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    assert_eq!(err(raw.as_bytes()), HttpError::TooManyHeaders);
}

#[test]
fn accepts_exactly_max_headers() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..15 {
        raw.push_str(&format!("X-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    ok(raw.as_bytes());
}

#[test]
fn rejects_content_length_with_transfer_encoding() {
    let raw =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(raw), HttpError::ContentLengthWithTransferEncoding);
}

#[test]
fn rejects_differing_content_lengths() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(err(raw), HttpError::ConflictingContentLength);
}

#[test]
fn accepts_identical_content_lengths() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(ok(raw).framing, BodyFraming::Length(3));
}

#[test]
fn rejects_content_length_comma_list() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n";
    assert_eq!(err(raw), HttpError::InvalidContentLength);
}

#[test]
fn rejects_content_length_that_is_not_plain_digits() {
    for v in ["+3", "-3", "3 3", "0x3", "3a", "", "18446744073709551616"] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), HttpError::InvalidContentLength, "{v}");
    }
}

#[test]
fn content_length_zero_means_no_body() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(ok(raw).framing, BodyFraming::None);
}

#[test]
fn rejects_whitespace_between_field_name_and_colon() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n";
    assert_eq!(err(raw), HttpError::InvalidHeaderName);
}

#[test]
fn rejects_obs_fold() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n";
    assert_eq!(err(raw), HttpError::InvalidHeaderName);
}

#[test]
fn rejects_control_characters_in_field_values() {
    for ctl in [0u8, 1, 0x0b, 0x1f, 0x7f] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b".to_vec();
        raw.push(ctl);
        raw.extend_from_slice(b"c\r\n\r\n");
        assert_eq!(err(&raw), HttpError::InvalidHeaderValue, "{ctl:#x}");
    }
}

#[test]
fn rejects_bare_cr_in_field_value() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n";
    assert_eq!(err(raw), HttpError::InvalidHeaderValue);
}

#[test]
fn accepts_htab_in_field_values() {
    ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\tc\r\n\r\n");
}

#[test]
fn rejects_bare_lf_line_endings() {
    assert_eq!(
        err(b"GET / HTTP/1.1\nHost: a\r\n\r\n"),
        HttpError::BareLineFeed
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
        HttpError::BareLineFeed
    );
}

#[test]
fn rejects_invalid_field_name_tokens() {
    for name in ["X(A)", "X\"A", "X/A", "", "X A"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), HttpError::InvalidHeaderName, "{name}");
    }
}

#[test]
fn rejects_http11_without_host() {
    assert_eq!(err(b"GET / HTTP/1.1\r\n\r\n"), HttpError::MissingHost);
}

#[test]
fn accepts_http10_without_host() {
    let head = ok(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(head.version, Version::Http10);
    assert_eq!(head.host, None);
}

#[test]
fn rejects_multiple_host_headers() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
    assert_eq!(err(raw), HttpError::MultipleHost);
}

#[test]
fn rejects_invalid_host_authority() {
    for host in ["a b", "a/b", "user@a", "", "a,b", "a:port"] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), HttpError::InvalidHost, "{host}");
    }
}

#[test]
fn accepts_chunked_transfer_encoding_case_insensitively() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  ChunKed \r\n\r\n";
    assert_eq!(ok(raw).framing, BodyFraming::Chunked);
}

#[test]
fn rejects_codings_before_chunked_with_501() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    let e = err(raw);
    assert_eq!(e, HttpError::UnsupportedTransferCoding);
    assert_eq!(e.status(), 501);
}

#[test]
fn combines_multiple_transfer_encoding_lines() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(raw), HttpError::UnsupportedTransferCoding);
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(err(raw), HttpError::InvalidTransferEncoding);
}

#[test]
fn rejects_transfer_encoding_not_ending_in_chunked() {
    for te in [
        "gzip",
        "chunked, gzip",
        "identity",
        "",
        "chunked, chunked",
        "chunked;x=1",
    ] {
        let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n");
        assert_eq!(
            err(raw.as_bytes()),
            HttpError::InvalidTransferEncoding,
            "{te}"
        );
    }
}

#[test]
fn rejects_transfer_encoding_on_http10() {
    let raw = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(raw), HttpError::TransferEncodingOnHttp10);
}

#[test]
fn rejects_other_http_versions_with_505() {
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/2.1"] {
        let raw = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), HttpError::VersionNotSupported, "{v}");
    }
}

#[test]
fn waits_for_a_partial_foreign_version() {
    assert_eq!(parse(b"GET / HTTP/2"), Ok(None));
    assert_eq!(parse(b"GET / HTTP/2."), Ok(None));
}

#[test]
fn rejects_garbage_versions_with_400() {
    for v in ["HTP/1.1", "HTTP/1", "http/1.1", "HTTP/12.0", "HTTP/1.1x"] {
        let raw = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(err(raw.as_bytes()), HttpError::MalformedHead, "{v}");
    }
}

#[test]
fn rejects_connect_with_501() {
    let e = err(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n");
    assert_eq!(e, HttpError::ConnectNotSupported);
    assert_eq!(e.status(), 501);
}

#[test]
fn classifies_methods_and_allows_unknown_tokens() {
    assert_eq!(
        ok(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").method_kind,
        Method::Head
    );
    assert_eq!(
        ok(b"PATCH / HTTP/1.1\r\nHost: a\r\n\r\n").method_kind,
        Method::Patch
    );
    let raw = b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = ok(raw);
    assert_eq!(head.method_kind, Method::Other);
    assert_eq!(head.method.of(raw), b"PURGE");
    assert_eq!(
        ok(b"get / HTTP/1.1\r\nHost: a\r\n\r\n").method_kind,
        Method::Other
    );
}

#[test]
fn keep_alive_defaults_per_version() {
    assert!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").keep_alive);
    assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
}

#[test]
fn connection_close_ends_http11_keep_alive() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n";
    assert!(!ok(raw).keep_alive);
}

#[test]
fn connection_keep_alive_keeps_http10_open() {
    let raw = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert!(ok(raw).keep_alive);
}

#[test]
fn expect_100_continue_is_flagged() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n";
    assert!(ok(raw).expect_continue);
}

#[test]
fn expect_100_continue_is_ignored_on_http10() {
    let raw = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    assert!(!ok(raw).expect_continue);
}

#[test]
fn rejects_other_expectations_with_417() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n";
    assert_eq!(err(raw), HttpError::ExpectationFailed);
}

#[test]
fn skips_leading_empty_lines() {
    let raw = b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = ok(raw);
    assert_eq!(head.method.of(raw), b"GET");
    assert_eq!(head.head_len, raw.len());
}

#[test]
fn stops_at_the_head_of_pipelined_requests() {
    let first = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    let mut raw = first.to_vec();
    raw.extend_from_slice(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(ok(&raw).head_len, first.len());
}

#[test]
fn higher_minor_versions_of_http1_are_processed_as_http11() {
    // RFC 9110 §2.5: a higher minor version of a known major version.
    for minor in 2..=9 {
        let raw = format!("POST /a HTTP/1.{minor}\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
        let mut headers = Vec::new();
        let head = parse_request(raw.as_bytes(), &LIMITS, &mut headers)
            .unwrap_or_else(|e| panic!("HTTP/1.{minor}: {e:?}"))
            .expect("complete");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.framing, BodyFraming::Length(2));
        assert_eq!(head.target.of(raw.as_bytes()), b"/a");
        assert_eq!(head.host.map(|h| h.of(raw.as_bytes())), Some(&b"h"[..]));
        assert!(head.keep_alive);
        assert_eq!(head.head_len, raw.len() - 2);
    }
    // The HTTP/1.1 rules hold: Host is required.
    assert_eq!(err(b"GET / HTTP/1.5\r\n\r\n"), HttpError::MissingHost);
    // An incomplete request line waits; two-digit minors are no version.
    assert_eq!(parse(b"GET / HTTP/1.2"), Ok(None));
    assert_eq!(parse(b"GET / HTTP/1.2\r\nHost: h\r\n"), Ok(None));
    assert!(parse(b"GET / HTTP/1.10\r\nHost: h\r\n\r\n").is_err());
}
