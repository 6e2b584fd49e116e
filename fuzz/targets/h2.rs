//! The gateway's own HTTP/2 code around the h2 crate's codec (`src/http2/head.rs`,
//! `src/http2/grpc.rs`): an h2 request's head rewritten as the HTTP/1.1 head the pipeline
//! parses, trailers read back, `grpc-timeout`.
//!
//! Input: `METHOD URI` on the first line, then `name: value` lines (any field the `http`
//! crate admits, as the h2 codec would hand them over); the first byte's low bit: the
//! request's `HEADERS` ended the stream. No panic. The written HTTP/1.1 head is exactly one
//! head (nothing after it could pass for a second request), and when the pipeline's parser
//! takes it, it has the h2 request's method and path, its `Host` is the authority, and its
//! framing is the one `write_request_head` announced.

use ringgate::http::{parse_request, BodyFraming, HeadLimits};
use ringgate::http2::grpc;
use ringgate::http2::head::{self, Arrival, BodyFraming as H2Framing};

const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 65536,
    max_headers: 128,
    max_uri_bytes: 16384,
};

pub fn run(data: &[u8]) {
    let _ = head::parse_trailers(data);
    // What of the body had arrived with the head: none, all of it, or more to come.
    let arrival = match data.first().map(|b| b & 3) {
        Some(1) => Arrival::NoBody,
        Some(2) => Arrival::Whole(data.len() as u64),
        _ => Arrival::Streaming,
    };
    let mut lines = data.split(|&b| b == b'\n');
    let Some(first) = lines.next() else {
        return;
    };
    let Some(space) = first.iter().position(|&b| b == b' ') else {
        return;
    };
    let (method, uri) = (&first[..space], &first[space + 1..]);
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..]
            .strip_prefix(b" ")
            .unwrap_or(&line[colon + 1..]);
        let _ = grpc::parse_timeout(value);
        let _ = grpc::is_grpc(value);
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let mut out = Vec::new();
    let Ok(framing) = head::write_request_head(&parts, arrival, &mut out) else {
        return;
    };
    let mut headers = Vec::new();
    let parsed = parse_request(&out, &LIMITS, &mut headers);
    let Ok(parsed) = parsed else {
        // Refused (a 400): safe, if stricter than HTTP/2.
        return;
    };
    let Some(h1) = parsed else {
        panic!(
            "a written head is incomplete: {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    assert_eq!(
        h1.head_len,
        out.len(),
        "bytes after the written head: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(h1.method.of(&out), parts.method.as_str().as_bytes());
    if let Some(pq) = parts.uri.path_and_query() {
        assert_eq!(h1.target.of(&out), pq.as_str().as_bytes());
    }
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| parts.headers.get("host").map(|h| h.as_bytes().to_vec()));
    let host = h1.host.map(|h| h.of(&out).to_vec());
    // The parser trims the value's surrounding white space.
    assert_eq!(
        host.as_deref(),
        authority.as_deref().map(<[u8]>::trim_ascii)
    );
    match (framing, h1.framing) {
        (H2Framing::None, BodyFraming::None | BodyFraming::Length(_)) => {}
        (H2Framing::Length, BodyFraming::Length(_)) => {}
        // `content-length: 0` (the client's, or a whole body of 0 bytes): no body to the
        // parser either, and the h2 codec refuses DATA beyond a declared length.
        (H2Framing::Length, BodyFraming::None) => {}
        (H2Framing::Chunked, BodyFraming::Chunked) => {}
        (announced, parsed) => panic!(
            "announced {announced:?}, parsed {parsed:?}: {:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}
