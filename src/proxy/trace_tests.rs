//! Parsing and generation of W3C trace context values.

use super::*;

const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn is_lower_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn valid_traceparent_parses() {
    let p = parse_traceparent(VALID).expect("valid");
    assert_eq!(p.version, 0);
    assert_eq!(&p.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(&p.parent_id, b"00f067aa0ba902b7");
    assert_eq!(p.flags, 1);
    let unsampled = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert_eq!(unsampled.map(|p| p.flags), Some(0));
    // Surrounding whitespace is not part of the value.
    assert!(
        parse_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ").is_some()
    );
}

#[test]
fn upper_case_hex_is_refused() {
    for value in [
        &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        b"0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(
            parse_traceparent(value),
            None,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn all_zero_ids_are_refused() {
    assert_eq!(
        parse_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None
    );
    assert_eq!(
        parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        None
    );
}

#[test]
fn version_ff_is_refused() {
    assert_eq!(
        parse_traceparent(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        None
    );
}

#[test]
fn wrong_lengths_and_separators_are_refused() {
    for value in [
        &b""[..],
        b"00",
        // Trace id one digit short, one digit long.
        b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e47360-00f067aa0ba902b7-01",
        // Parent id one digit short, one digit long.
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b70-01",
        // Flags one digit, three digits.
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010",
        // Version 00 allows nothing after the flags.
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        // Wrong separators, non-hex digits.
        b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        b"0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(
            parse_traceparent(value),
            None,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn future_version_reads_the_first_four_fields() {
    let p = parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-ever")
        .expect("future version with more fields");
    assert_eq!(p.version, 0xcc);
    assert_eq!(&p.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(p.flags, 0x09);
    assert!(
        parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some()
    );
    // The extra fields must still be separated by a dash.
    assert_eq!(
        parse_traceparent(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x"),
        None
    );
    // Only the sampled bit of a future version's flags is kept.
    let ids = TraceIds::new(0);
    let ctx = TraceContext::for_request(
        Some(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x"),
        1,
        &ids,
    );
    assert!(ctx.from_client());
    assert_eq!(ctx.flags(), 0x01);
}

#[test]
fn generated_ids_are_hex_non_zero_and_unique() {
    let ids = TraceIds::new(3);
    let (span_a, trace_a) = ids.next();
    let (span_b, trace_b) = ids.next();
    for id in [&span_a[..], &trace_a, &span_b, &trace_b] {
        assert!(is_lower_hex(id), "{}", String::from_utf8_lossy(id));
        assert!(id.iter().any(|&b| b != b'0'));
    }
    assert_eq!((span_a.len(), trace_a.len()), (16, 32));
    assert_ne!(span_a, span_b);
    assert_ne!(trace_a, trace_b);
    // Two workers (or processes) do not produce the same sequence.
    assert_ne!(TraceIds::new(3).next().1, TraceIds::new(4).next().1);
}

#[test]
fn new_trace_is_sampled_and_well_formed() {
    let ids = TraceIds::new(0);
    for client in [None, Some(&b"garbage"[..]), Some(&VALID[..10])] {
        let ctx = TraceContext::for_request(client, usize::from(client.is_some()), &ids);
        assert!(!ctx.from_client());
        assert_eq!(ctx.flags(), 0x01);
        let value = ctx.traceparent();
        let parsed = parse_traceparent(&value).expect("our own traceparent parses");
        assert_eq!(parsed.version, 0);
        assert_eq!(&parsed.trace_id, ctx.trace_id());
        assert_eq!(&parsed.parent_id, ctx.span_id());
        assert_eq!(parsed.flags, 0x01);
    }
}

#[test]
fn client_trace_continues_with_a_new_span() {
    let ids = TraceIds::new(0);
    let ctx = TraceContext::for_request(Some(VALID), 1, &ids);
    assert!(ctx.from_client());
    assert_eq!(ctx.trace_id(), b"4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(ctx.span_id(), b"00f067aa0ba902b7");
    let value = ctx.traceparent();
    assert!(value.starts_with(b"00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    assert!(value.ends_with(b"-01"));
    // Version-00 flags travel unchanged.
    let ctx = TraceContext::for_request(
        Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"),
        1,
        &ids,
    );
    assert!(ctx.traceparent().ends_with(b"-03"));
}

#[test]
fn several_traceparent_fields_start_a_new_trace() {
    let ids = TraceIds::new(0);
    let ctx = TraceContext::for_request(Some(VALID), 2, &ids);
    assert!(!ctx.from_client());
    assert_ne!(ctx.trace_id(), b"4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn tracestate_must_be_short_printable_ascii() {
    use crate::http::{parse_request, HeadLimits};
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_uri_bytes: 1024,
    };
    let accepted = |raw: &[u8]| {
        let mut headers = Vec::new();
        match parse_request(raw, &limits, &mut headers) {
            Ok(Some(_)) => tracestate_acceptable(raw, &headers),
            other => panic!("test input must parse: {other:?}"),
        }
    };
    assert!(accepted(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: congo=t61rcWkgMzE\r\n\r\n"
    ));
    assert!(accepted(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: a=1\r\nTraceState: b=2\r\n\r\n"
    ));
    assert!(!accepted(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!accepted(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: \r\n\r\n"
    ));
    assert!(!accepted(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: a=\xc3\xa9\r\n\r\n"
    ));
    assert!(!accepted(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: a=1\tb\r\n\r\n"
    ));
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: a\r\ntracestate: a={}\r\n\r\n",
        "x".repeat(510)
    );
    assert!(accepted(fits.as_bytes()));
    let long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\ntracestate: a={}\r\n\r\n",
        "x".repeat(511)
    );
    assert!(!accepted(long.as_bytes()));
    // The limit applies to the fields joined with ", ".
    let split = format!(
        "GET / HTTP/1.1\r\nHost: a\r\ntracestate: a={}\r\ntracestate: b=1\r\n\r\n",
        "x".repeat(506)
    );
    assert!(!accepted(split.as_bytes()));
}
