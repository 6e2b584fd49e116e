//! Measures `parse_request` (httparse plus ringgate's framing and smuggling rules) on a
//! typical 10-header API GET and a 30-header browser-like GET, against the naive baseline of
//! httparse alone with no validation; and `write_upstream_request` into a reused buffer.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringgate::http::writer::{write_upstream_request, ForwardInfo};
use ringgate::http::{parse_request, HeadLimits};

const API_GET: &[u8] = b"GET /api/v1/users/42?fields=name,email HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl\r\n\
X-Request-Id: 3f2a9c1e-7b4d-4e8a-9f01-2c3d4e5f6a7b\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
Cache-Control: no-cache\r\n\
Connection: keep-alive\r\n\
Content-Length: 0\r\n\r\n";

fn browser_get() -> Vec<u8> {
    let mut raw = b"GET /static/app/main.3f2a9c1e.js?v=20240101 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/products/widgets?page=2\r\n\
Cookie: session=4b1d2c3e4f5a6b7c8d9e0f; theme=dark; consent=yes; _ga=GA1.2.123456789.1700000000\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Ch-Ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\"\r\n\
Sec-Ch-Ua-Mobile: ?0\r\n\
Sec-Ch-Ua-Platform: \"Linux\"\r\n\
Cache-Control: max-age=0\r\n\
Pragma: no-cache\r\n\
If-None-Match: \"5f2a-18c3d4e5f6a\"\r\n\
If-Modified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n\
DNT: 1\r\n\
Priority: u=1\r\n"
        .to_vec();
    for i in 0..8 {
        raw.extend_from_slice(format!("X-Custom-{i}: value-{i}-abcdefghijklmnop\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 16 * 1024,
    max_headers: 100,
    max_uri_bytes: 8 * 1024,
};

fn bench_parse(c: &mut Criterion) {
    let browser = browser_get();
    let mut group = c.benchmark_group("parse_request");
    for (name, raw) in [
        ("api_10_headers", API_GET),
        ("browser_30_headers", &browser[..]),
    ] {
        let mut headers = Vec::with_capacity(128);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_request(black_box(raw), &LIMITS, &mut headers))
        });
        group.bench_function(format!("{name}_httparse_only"), |b| {
            b.iter(|| {
                let mut slots = [httparse::EMPTY_HEADER; 100];
                let mut req = httparse::Request::new(&mut slots);
                req.parse(black_box(raw)).map(|s| s.is_complete())
            })
        });
    }
    group.finish();
}

fn bench_write(c: &mut Criterion) {
    let browser = browser_get();
    let mut headers = Vec::with_capacity(128);
    let head = match parse_request(&browser, &LIMITS, &mut headers) {
        Ok(Some(head)) => head,
        other => panic!("bench input must parse: {other:?}"),
    };
    let fwd = ForwardInfo {
        path_and_query: b"/static/app/main.3f2a9c1e.js?v=20240101",
        host: b"backend.internal:8080",
        client_ip: b"198.51.100.23",
        proto: "https",
        request_id: b"3f2a9c1e-7b4d-4e8a-9f01-2c3d4e5f6a7b",
        request_id_from_client: false,
        traceparent: b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        forward_tracestate: false,
        identity_headers: &[],
        client_subject: None,
        policy_strip: &[],
        hidden_credential: None,
        policy_fields: b"",
        upgrade: None,
        edits: None,
    };
    let mut out = Vec::with_capacity(4096);
    c.bench_function("write_upstream_request/browser_30_headers", |b| {
        b.iter(|| {
            out.clear();
            write_upstream_request(&mut out, black_box(&browser), &head, &headers, &fwd);
            out.len()
        })
    });
}

criterion_group!(benches, bench_parse, bench_write);
criterion_main!(benches);
