//! One test per writer rule.

use super::*;
use crate::http::{parse_request, parse_response, HeadLimits, Method};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8192,
    max_headers: 64,
    max_uri_bytes: 1024,
};

fn fwd() -> ForwardInfo<'static> {
    ForwardInfo {
        path_and_query: b"/up/path?q=1",
        host: b"backend:8080",
        client_ip: b"10.0.0.7",
        proto: "https",
        request_id: b"rid-1",
        request_id_from_client: false,
        traceparent: OUR_TRACEPARENT,
        forward_tracestate: false,
        identity_headers: &[],
        client_subject: None,
        policy_strip: &[],
        hidden_credential: None,
        policy_fields: b"",
        upgrade: None,
        edits: None,
    }
}

#[test]
fn upstream_request_drops_stripped_fields_and_adds_identity_fields() {
    let strip: [Box<str>; 1] = ["x-consumer".into()];
    let fwd = ForwardInfo {
        policy_strip: &strip,
        policy_fields: b"X-Consumer: alice\r\n",
        ..fwd()
    };
    let out = upstream_with(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Consumer: mallory\r\nx-consumer: eve\r\nX-Other: o\r\n\r\n",
        &fwd,
    );
    assert_eq!(out.to_ascii_lowercase().matches("x-consumer:").count(), 1);
    assert!(has_line(&out, "X-Consumer: alice"));
    assert!(has_line(&out, "X-Other: o"));
}

const OUR_TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";

fn upstream(raw: &[u8]) -> String {
    upstream_with(raw, &fwd())
}

fn upstream_with(raw: &[u8], fwd: &ForwardInfo<'_>) -> String {
    let mut headers = Vec::new();
    let head = parse_request(raw, &LIMITS, &mut headers).unwrap().unwrap();
    let mut out = Vec::new();
    write_upstream_request(&mut out, raw, &head, &headers, fwd);
    String::from_utf8(out).unwrap()
}

fn downstream(raw: &[u8], method: Method, client: Version, keep_alive: bool) -> String {
    let mut headers = Vec::new();
    let head = parse_response(raw, method, 8192, 64, &mut headers)
        .unwrap()
        .unwrap();
    let info = DownstreamInfo {
        client_version: client,
        keep_alive,
        request_id: b"rid-2",
        extra_headers: b"",
        edits: None,
        upgrade: None,
    };
    let mut out = Vec::new();
    write_downstream_response(&mut out, raw, &head, &headers, &info);
    String::from_utf8(out).unwrap()
}

fn has_line(head: &str, line: &str) -> bool {
    head.split("\r\n").any(|l| l.eq_ignore_ascii_case(line))
}

fn has_field(head: &str, name: &str) -> bool {
    head.split("\r\n").any(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
    })
}

#[test]
fn upstream_request_line_uses_forward_path_and_host() {
    let out = upstream(b"GET /orig HTTP/1.1\r\nHost: public.example\r\nAccept: */*\r\n\r\n");
    assert!(out.starts_with("GET /up/path?q=1 HTTP/1.1\r\nHost: backend:8080\r\n"));
    assert!(has_line(&out, "Accept: */*"));
    assert!(has_line(&out, "X-Forwarded-Host: public.example"));
    assert!(has_line(&out, "X-Forwarded-Proto: https"));
    assert!(has_line(&out, "X-Request-Id: rid-1"));
    assert!(out.ends_with("\r\n\r\n"));
    assert_eq!(out.matches("Host:").count(), 2);
}

#[test]
fn upstream_request_drops_hop_by_hop_fields() {
    let out = upstream(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\
Proxy-Connection: x\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n\
Proxy-Authorization: b\r\nProxy-Authenticate: c\r\nX-Keep: 1\r\n\r\n",
    );
    for name in [
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Authenticate",
    ] {
        assert!(!has_field(&out, name), "{name} in {out}");
    }
    assert!(has_line(&out, "X-Keep: 1"));
}

#[test]
fn upstream_request_drops_connection_named_fields() {
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Secret, close\r\nx-secret: 1\r\nX-Other: 2\r\n\r\n");
    assert!(!has_field(&out, "X-Secret"));
    assert!(has_line(&out, "X-Other: 2"));
}

#[test]
fn upstream_request_rewrites_content_length_and_drops_expect() {
    let out = upstream(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(has_line(&out, "Content-Length: 5"));
    assert!(!has_field(&out, "Expect"));
}

#[test]
fn upstream_request_writes_chunked_framing() {
    let out = upstream(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(has_line(&out, "Transfer-Encoding: chunked"));
    assert!(!has_field(&out, "Content-Length"));
}

#[test]
fn upstream_request_appends_to_x_forwarded_for() {
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\r\n");
    assert!(has_line(
        &out,
        "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.7"
    ));
    assert_eq!(out.matches("X-Forwarded-For").count(), 1);
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(has_line(&out, "X-Forwarded-For: 10.0.0.7"));
}

#[test]
fn upstream_request_replaces_forwarding_fields_from_the_client() {
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nX-Request-Id: spoof\r\n\r\n");
    assert!(!out.contains("ftp"));
    assert!(!out.contains("evil"));
    assert!(!out.contains("spoof"));
}

#[test]
fn upstream_request_appends_via_with_client_version() {
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 edge\r\n\r\n");
    assert!(has_line(&out, "Via: 1.1 edge, 1.1 ringgate"));
    let out = upstream(b"GET / HTTP/1.0\r\n\r\n");
    assert!(has_line(&out, "Via: 1.0 ringgate"));
    assert!(!has_field(&out, "X-Forwarded-Host"));
}

#[test]
fn downstream_response_is_always_http11() {
    let out = downstream(
        b"HTTP/1.0 200 Fine\r\nContent-Length: 2\r\n\r\n",
        Method::Get,
        Version::Http10,
        false,
    );
    assert!(out.starts_with("HTTP/1.1 200 Fine\r\n"));
    assert!(has_line(&out, "Via: 1.0 ringgate"));
}

#[test]
fn downstream_response_drops_hop_by_hop_and_connection_named_fields() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: t=5\r\nUpgrade: x\r\nX-Pub: 2\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(!has_field(&out, "X-Internal"));
    assert!(!has_field(&out, "Keep-Alive"));
    assert!(!has_field(&out, "Upgrade"));
    assert!(!has_field(&out, "Connection"));
    assert!(has_line(&out, "X-Pub: 2"));
}

#[test]
fn downstream_response_rewrites_length_framing() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert_eq!(out.matches("Content-Length: 12").count(), 1);
}

#[test]
fn downstream_head_response_passes_content_length_through() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        Method::Head,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "Content-Length: 1234"));
    let out = downstream(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "Content-Length: 99"));
}

#[test]
fn downstream_204_drops_content_length() {
    let out = downstream(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(!has_field(&out, "Content-Length"));
}

#[test]
fn downstream_chunked_is_relayed_to_http11_clients() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert_eq!(out.matches("Transfer-Encoding").count(), 1);
    assert!(has_line(&out, "Transfer-Encoding: chunked"));
    assert!(!has_field(&out, "Connection"));
}

#[test]
fn downstream_chunked_is_dechunked_for_http10_clients() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Get,
        Version::Http10,
        true,
    );
    assert!(!has_field(&out, "Transfer-Encoding"));
    assert!(!has_field(&out, "Content-Length"));
    assert!(has_line(&out, "Connection: close"));
}

#[test]
fn downstream_until_close_closes_the_client_connection() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "Connection: close"));
    assert!(!has_field(&out, "Content-Length"));
}

#[test]
fn downstream_connection_field_follows_client_version() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let out = downstream(raw, Method::Get, Version::Http10, true);
    assert!(has_line(&out, "Connection: keep-alive"));
    let out = downstream(raw, Method::Get, Version::Http11, false);
    assert!(has_line(&out, "Connection: close"));
}

#[test]
fn downstream_adds_request_id_only_when_missing() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "X-Request-Id: rid-2"));
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nX-Request-Id: up\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "X-Request-Id: up"));
    assert_eq!(out.matches("X-Request-Id").count(), 1);
}

#[test]
fn downstream_appends_via() {
    let out = downstream(
        b"HTTP/1.1 200 OK\r\nVia: 1.1 app\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(has_line(&out, "Via: 1.1 app, 1.1 ringgate"));
}

#[test]
fn downstream_empty_reason_gets_the_standard_phrase() {
    let out = downstream(
        b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
        Version::Http11,
        true,
    );
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"));
}

#[test]
fn error_response_is_complete_plain_text() {
    let mut out = Vec::new();
    write_error_response(&mut out, 431, "head too large", false, b"r1", b"");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 15\r\nConnection: close\r\nX-Request-Id: r1\r\n\r\nhead too large\n"
    );
    let mut out = Vec::new();
    write_error_response(&mut out, 404, "no route", true, b"", b"");
    let text = String::from_utf8(out).unwrap();
    assert!(!has_field(&text, "Connection") && !has_field(&text, "X-Request-Id"));
}

#[test]
fn static_response_writes_length_body_and_fields() {
    let mut out = Vec::new();
    let fields = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Content-Length".to_string(), "999".to_string()),
        ("X-Bad".to_string(), "a\r\nInjected: 1".to_string()),
    ];
    write_static_response(
        &mut out,
        200,
        &fields,
        b"{}",
        false,
        Version::Http11,
        true,
        b"r",
        b"",
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Request-Id: r\r\n\r\n{}"
    );
}

#[test]
fn static_response_head_only_omits_the_body() {
    let mut out = Vec::new();
    write_static_response(
        &mut out,
        200,
        &[],
        b"hello",
        true,
        Version::Http10,
        true,
        b"",
        b"",
    );
    let text = String::from_utf8(out).unwrap();
    assert!(has_line(&text, "Content-Length: 5"));
    assert!(has_line(&text, "Connection: keep-alive"));
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn static_response_204_has_no_length_or_body() {
    let mut out = Vec::new();
    write_static_response(
        &mut out,
        204,
        &[],
        b"x",
        false,
        Version::Http11,
        false,
        b"",
        b"",
    );
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
}

#[test]
fn continue_is_a_bare_interim_response() {
    let mut out = Vec::new();
    write_continue(&mut out);
    assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
}

#[test]
fn chunk_size_lines_are_lowercase_hex() {
    let mut out = Vec::new();
    write_chunk_size(&mut out, 0);
    write_chunk_size(&mut out, 255);
    write_chunk_size(&mut out, u64::MAX);
    assert_eq!(out, b"0\r\nff\r\nffffffffffffffff\r\n");
}

#[test]
fn numbers_format_without_allocating_strings() {
    let mut out = Vec::new();
    push_decimal(&mut out, 0);
    out.push(b' ');
    push_decimal(&mut out, u64::MAX);
    assert_eq!(out, b"0 18446744073709551615");
}

#[test]
fn upstream_request_replaces_client_traceparent() {
    let out = upstream(
        b"GET / HTTP/1.1\r\nHost: a\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\r\n\
tracestate: congo=t61rcWkgMzE\r\n\r\n",
    );
    assert_eq!(out.to_ascii_lowercase().matches("traceparent:").count(), 1);
    assert!(has_line(
        &out,
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
    ));
    assert!(
        !has_field(&out, "tracestate"),
        "tracestate not chosen: dropped"
    );
}

#[test]
fn upstream_request_adds_traceparent_when_absent() {
    let out = upstream(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(has_line(
        &out,
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
    ));
    let none = upstream_with(
        b"GET / HTTP/1.1\r\nHost: a\r\ntraceparent: x\r\n\r\n",
        &ForwardInfo {
            traceparent: b"",
            ..fwd()
        },
    );
    assert!(!has_field(&none, "traceparent"));
}

#[test]
fn upstream_request_joins_forwarded_tracestate() {
    let fwd = ForwardInfo {
        forward_tracestate: true,
        ..fwd()
    };
    let out = upstream_with(
        b"GET / HTTP/1.1\r\nHost: a\r\ntracestate: a=1\r\nX-Mid: m\r\nTraceState: b=2\r\n\r\n",
        &fwd,
    );
    assert_eq!(out.to_ascii_lowercase().matches("tracestate:").count(), 1);
    assert!(has_line(&out, "tracestate: a=1, b=2"));
    assert!(has_line(&out, "X-Mid: m"));
    let none = upstream_with(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &fwd);
    assert!(!has_field(&none, "tracestate"));
    let hop = upstream_with(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: tracestate\r\ntracestate: a=1\r\n\r\n",
        &fwd,
    );
    assert!(
        !has_field(&hop, "tracestate"),
        "named by Connection: hop-by-hop"
    );
}

#[test]
fn upstream_request_drops_a_hidden_credential_only() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\nauthorization: Basic YTpi\r\nX-Api-Key: k\r\n\r\n";
    let hidden = upstream_with(
        raw,
        &ForwardInfo {
            hidden_credential: Some("Authorization"),
            ..fwd()
        },
    );
    assert!(!has_field(&hidden, "authorization"), "{hidden}");
    assert!(has_line(&hidden, "X-Api-Key: k"));
    let kept = upstream_with(raw, &fwd());
    assert!(has_line(&kept, "authorization: Basic YTpi"));
}

#[test]
fn upstream_request_strips_client_identity_and_adds_the_verified_one() {
    let names: Vec<Box<str>> = vec!["X-Client-Cert-Subject".into(), "X-Peer".into()];
    let raw =
        b"GET / HTTP/1.1\r\nHost: a\r\nx-client-cert-subject: forged\r\nX-PEER: forged\r\n\r\n";
    let stripped = upstream_with(
        raw,
        &ForwardInfo {
            identity_headers: &names,
            ..fwd()
        },
    );
    assert!(!stripped.contains("forged"), "{stripped}");
    let verified = upstream_with(
        raw,
        &ForwardInfo {
            identity_headers: &names,
            client_subject: Some(("X-Peer", "CN=client")),
            ..fwd()
        },
    );
    assert!(!verified.contains("forged"), "{verified}");
    assert!(has_line(&verified, "X-Peer: CN=client"));
    assert!(has_line(&verified, "X-Forwarded-Proto: https"));
}

#[test]
fn gateway_header_lines_end_every_kind_of_head() {
    let extra = b"RateLimit: \"p\";r=1;t=1\r\n";
    let mut out = Vec::new();
    write_error_response(&mut out, 429, "too many requests", true, b"", extra);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("RateLimit: \"p\";r=1;t=1\r\n\r\ntoo many"),
        "{text}"
    );
    let mut out = Vec::new();
    write_static_response(
        &mut out,
        200,
        &[],
        b"ok",
        false,
        Version::Http11,
        true,
        b"",
        extra,
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("RateLimit: \"p\";r=1;t=1\r\n\r\nok"),
        "{text}"
    );
}

#[test]
fn upstream_request_drops_upgrade_fields_unless_the_upgrade_was_accepted() {
    let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
                Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                Sec-WebSocket-Version: 13\r\n\r\n";
    let plain = upstream_with(raw, &fwd());
    assert!(!has_field(&plain, "upgrade"), "{plain}");
    assert!(!has_field(&plain, "connection"), "{plain}");
    assert!(has_line(&plain, "Sec-WebSocket-Version: 13"));
    let upgraded = upstream_with(
        raw,
        &ForwardInfo {
            upgrade: Some("websocket"),
            ..fwd()
        },
    );
    assert_eq!(upgraded.matches("Upgrade: ").count(), 1, "{upgraded}");
    assert!(has_line(&upgraded, "Upgrade: websocket"));
    assert!(has_line(&upgraded, "Connection: upgrade"));
    assert!(has_line(
        &upgraded,
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    ));
}
