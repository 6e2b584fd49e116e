//! Request and response head parsing and the framing decision.
//!
//! No panic on any input. An accepted request head: its spans lie inside the head; its
//! framing is the one its `Content-Length` / `Transfer-Encoding` fields call for (RFC 9112
//! §6.3, checked against a direct reading of the fields here); an HTTP/1.1 head has exactly
//! one `Host`; and the head the gateway writes upstream for it parses again, as HTTP/1.1, with
//! the same method and framing.

use ringgate::http::writer::{write_upstream_request, ForwardInfo};
use ringgate::http::{
    parse_request, parse_response, BodyFraming, HeadLimits, HeaderSpan, Method, RequestHead,
    Version,
};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
    max_uri_bytes: 2048,
};

const METHODS: [Method; 4] = [Method::Get, Method::Head, Method::Post, Method::Connect];

pub fn run(data: &[u8]) {
    let mut headers = Vec::new();
    if let Ok(Some(head)) = parse_request(data, &LIMITS, &mut headers) {
        check_request(data, &head, &headers);
        check_forwarded(data, &head, &headers);
    }
    let method = METHODS[data.first().map_or(0, |b| usize::from(*b) % METHODS.len())];
    if let Ok(Some(response)) = parse_response(data, method, 8192, 64, &mut headers) {
        assert!(response.head_len <= data.len());
        for h in &headers {
            assert!(h.value.end as usize <= response.head_len);
        }
    }
}

/// The accepted head against the fields it carries.
fn check_request(data: &[u8], head: &RequestHead, headers: &[HeaderSpan]) {
    assert!(head.head_len <= data.len() && head.head_len <= LIMITS.max_head_bytes);
    assert!(headers.len() <= LIMITS.max_headers);
    let named = |name: &str| {
        headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.of(data))
            .collect::<Vec<_>>()
    };
    for h in headers {
        assert!((h.value.end as usize) <= head.head_len);
        assert!(!h.name.is_empty());
    }
    let te = named("transfer-encoding");
    let cl = named("content-length");
    let expected = if !te.is_empty() {
        // Only `chunked` alone is accepted, never beside Content-Length, never on HTTP/1.0.
        assert!(
            cl.is_empty(),
            "Transfer-Encoding and Content-Length accepted together"
        );
        assert_eq!(
            head.version,
            Version::Http11,
            "Transfer-Encoding on HTTP/1.0"
        );
        let joined: Vec<u8> = te.join(&b","[..]);
        let codings: Vec<&[u8]> = joined
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(
            codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"),
            "accepted Transfer-Encoding {:?}",
            String::from_utf8_lossy(&joined)
        );
        BodyFraming::Chunked
    } else if let Some(first) = cl.first() {
        assert!(cl.iter().all(|v| v == first || parse(v) == parse(first)));
        match parse(first) {
            Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
            None => panic!(
                "accepted Content-Length {:?}",
                String::from_utf8_lossy(first)
            ),
        }
    } else {
        BodyFraming::None
    };
    assert_eq!(head.framing, expected);
    let hosts = named("host");
    assert!(hosts.len() <= 1, "several Host fields accepted");
    if head.version == Version::Http11 {
        assert!(head.host.is_some() && hosts.len() == 1);
    }
}

/// Plain decimal digits, as RFC 9110 §8.6 writes `1*DIGIT`.
fn parse(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// What goes upstream must itself be a valid head that frames the body the same way.
fn check_forwarded(data: &[u8], head: &RequestHead, headers: &[HeaderSpan]) {
    let fwd = ForwardInfo {
        path_and_query: head.target.of(data),
        host: b"upstream",
        client_ip: b"127.0.0.1",
        proto: "http",
        request_id: b"fuzz",
        request_id_from_client: false,
        traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        forward_tracestate: true,
        identity_headers: &[],
        client_subject: None,
        policy_strip: &[],
        hidden_credential: None,
        policy_fields: b"",
        edits: None,
        upgrade: None,
    };
    let mut out = Vec::new();
    write_upstream_request(&mut out, data, head, headers, &fwd);
    let mut again = Vec::new();
    let big = HeadLimits {
        max_head_bytes: 1 << 20,
        max_headers: 256,
        max_uri_bytes: 1 << 20,
    };
    match parse_request(&out, &big, &mut again) {
        Ok(Some(h2)) => {
            assert_eq!(h2.framing, head.framing);
            assert_eq!(h2.method.of(&out), head.method.of(data));
            assert_eq!(h2.version, Version::Http11);
            assert_eq!(h2.head_len, out.len());
        }
        other => panic!(
            "forwarded head refused ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}
