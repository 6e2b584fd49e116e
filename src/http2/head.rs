//! Heads between HTTP/2 and the pipeline's HTTP/1.1 message form.
//!
//! The stages above the codecs read one representation: a request head parsed by the
//! HTTP/1.1 codec (`http::parse_request`) into spans over a buffer. An h2 stream's decoded
//! header block is written into that buffer as a request head (pseudo-headers become the
//! request line and `Host`, split `cookie` fields are joined, the body is framed by its
//! `content-length` or chunked), so the same parser, the same smuggling rules and every stage
//! after them apply unchanged. The other direction turns a response head the pipeline wrote
//! into an h2 `HEADERS` frame, and the head the pipeline sends upstream into an h2 request.
//!
//! RFC 9113 §8.2.2: connection-specific fields (`connection`, `keep-alive`,
//! `proxy-connection`, `transfer-encoding`, `upgrade`) never cross into HTTP/2, and `te` only
//! as `te: trailers`.

use std::io::Write as _;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::writer::write_chunk_size;
use crate::http::{parse_request, HeadLimits, HeaderSpan, RequestHead, ResponseHead};

/// Fields that are specific to one HTTP/1.1 connection and must not appear in HTTP/2.
const CONNECTION_SPECIFIC: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
    b"te",
];

/// Whether `name` may not be carried in an HTTP/2 header block.
pub fn is_connection_specific(name: &[u8]) -> bool {
    CONNECTION_SPECIFIC
        .iter()
        .any(|c| name.eq_ignore_ascii_case(c))
}

/// Why an h2 request cannot be given to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Neither `:authority` nor `Host`.
    #[error("request has neither :authority nor host")]
    MissingAuthority,
    /// A connection-specific field (RFC 9113 §8.2.2).
    #[error("connection-specific header field in an HTTP/2 request")]
    ConnectionSpecific,
}

/// How the request body arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `END_STREAM` was on the `HEADERS`: no body.
    None,
    /// `content-length` said how much.
    Length,
    /// Unknown length: the body is given to the pipeline chunked.
    Chunked,
}

/// What of an h2 request's body had arrived when its head is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// `END_STREAM` was on the `HEADERS`: no body.
    NoBody,
    /// The whole body (this many bytes, without trailers) had arrived.
    Whole(u64),
    /// More of the body is to come.
    Streaming,
}

/// Writes the HTTP/1.1 request head for an h2 request into `out`. Returns how its body is
/// framed: a body that had arrived whole is framed by its length even when the client sent
/// no `content-length` (HTTP/2 does not need one), so that it is in hand for the stages that
/// need a known length (retries, validation, composition).
pub fn write_request_head(
    parts: &http::request::Parts,
    arrival: Arrival,
    out: &mut Vec<u8>,
) -> Result<BodyFraming, HeadError> {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) => out.extend_from_slice(pq.as_str().as_bytes()),
        None => match parts.uri.authority() {
            // CONNECT carries only an authority (the codec answers it 501).
            Some(authority) => out.extend_from_slice(authority.as_str().as_bytes()),
            None => out.push(b'/'),
        },
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let host = authority.or_else(|| parts.headers.get("host").map(HeaderValue::as_bytes));
    let Some(host) = host else {
        return Err(HeadError::MissingAuthority);
    };
    field(out, b"host", host);
    let mut has_length = false;
    let mut cookies = 0;
    for (name, value) in &parts.headers {
        let name_bytes = name.as_str().as_bytes();
        if name == http::header::HOST {
            continue;
        }
        if name == http::header::TE {
            // `te: trailers` is the only value HTTP/2 allows; it is hop-by-hop either way.
            if value.as_bytes().eq_ignore_ascii_case(b"trailers") {
                continue;
            }
            return Err(HeadError::ConnectionSpecific);
        }
        if is_connection_specific(name_bytes) {
            return Err(HeadError::ConnectionSpecific);
        }
        if name == http::header::COOKIE {
            cookies += 1;
            continue;
        }
        has_length |= name == http::header::CONTENT_LENGTH;
        field(out, name_bytes, value.as_bytes());
    }
    if cookies > 0 {
        // RFC 9113 §8.2.3: split cookie fields are joined with "; " for HTTP/1.1.
        out.extend_from_slice(b"cookie: ");
        for (i, value) in parts
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let framing = match arrival {
        Arrival::NoBody => BodyFraming::None,
        _ if has_length => BodyFraming::Length,
        Arrival::Whole(n) => {
            // Writing into a Vec cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
            BodyFraming::Length
        }
        Arrival::Streaming => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            BodyFraming::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    Ok(framing)
}

/// The h2 response for a response head the pipeline wrote (`data[..head.head_len]`).
pub fn response_from_head(
    data: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
) -> http::Response<()> {
    let mut response = http::Response::new(());
    *response.status_mut() =
        http::StatusCode::from_u16(head.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let shared = Bytes::copy_from_slice(&data[..head.head_len.min(data.len())]);
    copy_fields(&shared, headers, response.headers_mut());
    response
}

/// Copies HTTP/1.1 fields into an h2 header map, leaving out connection-specific ones and
/// any that are not valid HTTP/2 field names or values. The values share `data` (one copy
/// of the head for all of them, not one allocation per field).
pub fn copy_fields(data: &Bytes, headers: &[HeaderSpan], map: &mut HeaderMap) {
    map.reserve(headers.len());
    for h in headers {
        let name = h.name.of(data);
        if is_connection_specific(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (field_name(name), field_value(name, h, data)) {
            map.append(name, value);
        }
    }
}

/// Field names the gateway writes on every request or response that `http` does not know:
/// taken from here they cost no allocation (`HeaderName::from_bytes` copies such a name).
static KNOWN_NAMES: [HeaderName; 9] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("grpc-status"),
    HeaderName::from_static("grpc-message"),
    HeaderName::from_static("grpc-timeout"),
];

/// The first letters of [`KNOWN_NAMES`]: other names skip the search of that table.
const KNOWN_INITIALS: [u8; 3] = [b'x', b't', b'g'];

/// The h2 field name for `name` (validated and lowercased by `http`).
fn field_name(name: &[u8]) -> Result<HeaderName, http::header::InvalidHeaderName> {
    let initial = name.first().map(u8::to_ascii_lowercase);
    let known = if initial.is_some_and(|i| KNOWN_INITIALS.contains(&i)) {
        KNOWN_NAMES
            .iter()
            .find(|known| name.eq_ignore_ascii_case(known.as_str().as_bytes()))
    } else {
        None
    };
    match known {
        Some(known) => Ok(known.clone()),
        None => HeaderName::from_bytes(name),
    }
}

/// Fields whose value is new on every request (the gateway writes them per exchange).
const UNIQUE_PER_REQUEST: [&[u8]; 2] = [b"x-request-id", b"traceparent"];

/// The h2 value of field `name`: marked never-indexed when it is unique per request, so
/// HPACK neither inserts it into the dynamic table (evicting entries that would be reused)
/// nor walks that table's chain of earlier values of the field on every request.
fn field_value(
    name: &[u8],
    h: &HeaderSpan,
    data: &Bytes,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut value = HeaderValue::from_maybe_shared(data.slice_ref(h.value.of(data)))?;
    if UNIQUE_PER_REQUEST
        .iter()
        .any(|unique| name.eq_ignore_ascii_case(unique))
    {
        value.set_sensitive(true);
    }
    Ok(value)
}

/// Fields that may not be sent as trailers (RFC 9110 §6.5.1).
const NOT_TRAILERS: [&[u8]; 5] = [
    b"content-length",
    b"content-type",
    b"host",
    b"authorization",
    b"set-cookie",
];

/// Parses an HTTP/1.1 trailer section (`name: value` lines with CRLF, as the chunked decoder
/// validated them) into an h2 header map.
pub fn parse_trailers(section: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    if section.is_empty() {
        return map;
    }
    let shared = Bytes::copy_from_slice(section);
    for line in shared.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if is_connection_specific(name) || NOT_TRAILERS.iter().any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            field_name(name),
            HeaderValue::from_maybe_shared(shared.slice_ref(value)),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &value[start..end.max(start)]
}

/// Appends `trailers` as the end of a chunked body: the last chunk, the fields, the empty
/// line.
pub fn write_last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk of a chunked body (never empty: a zero size would end the body).
pub fn write_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(out, data.len() as u64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Limits for re-parsing the request head the pipeline wrote for an h2 upstream: the
/// pipeline already held the client's head to the configured limits.
const UPSTREAM_HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 1024 * 1024,
    max_headers: crate::http::MAX_HEADERS_CAP,
    max_uri_bytes: 1024 * 1024,
};

/// A request head the pipeline wrote for an upstream, parsed.
#[derive(Debug)]
pub struct UpstreamHead {
    /// The h2 request (pseudo-headers from the request line and `Host`).
    pub request: http::Request<()>,
    /// The parsed head (framing, method).
    pub head: RequestHead,
}

/// Parses the HTTP/1.1 request head at the start of `data` (written by the pipeline) into an
/// h2 request for `scheme`. `Ok(None)`: incomplete. `te: trailers` is always sent: the
/// gateway passes trailers on.
pub fn upstream_request(
    data: &[u8],
    scheme: &http::uri::Scheme,
    spans: &mut Vec<HeaderSpan>,
) -> Result<Option<UpstreamHead>, crate::http::HttpError> {
    let Some(head) = parse_request(data, &UPSTREAM_HEAD_LIMITS, spans)? else {
        return Ok(None);
    };
    // One copy of the head that the URI parts and every field value share.
    let shared = Bytes::copy_from_slice(&data[..head.head_len.min(data.len())]);
    let part = |span: Option<crate::http::Span>| match span {
        Some(span) => shared.slice_ref(span.of(&shared)),
        None => Bytes::new(),
    };
    let malformed = |_| crate::http::HttpError::MalformedHead;
    let authority = http::uri::Authority::from_maybe_shared(part(head.host)).map_err(malformed)?;
    let path =
        http::uri::PathAndQuery::from_maybe_shared(part(Some(head.target))).map_err(malformed)?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    let uri = http::Uri::from_parts(parts).map_err(|_| crate::http::HttpError::MalformedHead)?;
    let method = http::Method::from_bytes(head.method.of(data))
        .map_err(|_| crate::http::HttpError::MalformedHead)?;
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_2;
    let map = request.headers_mut();
    map.reserve(spans.len() + 1);
    for h in spans.iter() {
        let name = h.name.of(&shared);
        if name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        if is_connection_specific(name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (field_name(name), field_value(name, h, &shared)) {
            map.append(name, value);
        }
    }
    map.insert(http::header::TE, HeaderValue::from_static("trailers"));
    Ok(Some(UpstreamHead { request, head }))
}

/// Writes the HTTP/1.1 response head for an h2 upstream response: `ended` when its `HEADERS`
/// ended the stream (then the body is empty); otherwise the body follows chunked unless the
/// upstream gave a `content-length`. Returns whether the body is written chunked.
pub fn write_response_head(
    response: &http::response::Parts,
    ended: bool,
    out: &mut Vec<u8>,
) -> bool {
    let status = response.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in &response.headers {
        if is_connection_specific(name.as_str().as_bytes()) {
            continue;
        }
        has_length |= name == http::header::CONTENT_LENGTH;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let bodiless = status.is_informational() || status.as_u16() == 204 || status.as_u16() == 304;
    let chunked = !ended && !has_length && !bodiless;
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else if ended && !has_length && !bodiless {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

/// `{name}: {value}\r\n`
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A copy of `data` as `Bytes` (the h2 crate takes owned frames).
pub fn owned(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn pseudo_headers_become_the_request_line_and_host() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://api.test:8443/a/b?c=d")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-one", "1")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        let framing = write_request_head(&parts(req), Arrival::Streaming, &mut out).unwrap();
        assert_eq!(framing, BodyFraming::Chunked);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a/b?c=d HTTP/1.1\r\nhost: api.test:8443\r\nx-one: 1\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn authority_wins_over_a_host_field_and_lengths_are_kept() {
        let req = http::Request::builder()
            .method("PUT")
            .uri("http://a.test/x")
            .header("host", "b.test")
            .header("content-length", "3")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        let framing = write_request_head(&parts(req), Arrival::Streaming, &mut out).unwrap();
        assert_eq!(framing, BodyFraming::Length);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("host: a.test\r\n"));
        assert!(!text.contains("b.test"));
    }

    #[test]
    fn a_body_that_arrived_whole_gets_its_length() {
        let req = http::Request::builder()
            .method("POST")
            .uri("http://a.test/x")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        let framing = write_request_head(&parts(req), Arrival::Whole(42), &mut out).unwrap();
        assert_eq!(framing, BodyFraming::Length);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("content-length: 42\r\n\r\n"), "{text}");
        assert!(!text.contains("chunked"));
    }

    #[test]
    fn connection_specific_fields_are_refused() {
        for (name, value) in [("connection", "close"), ("te", "gzip"), ("upgrade", "h2c")] {
            let req = http::Request::builder()
                .uri("http://a.test/")
                .header(name, value)
                .body(())
                .unwrap();
            let mut out = Vec::new();
            assert_eq!(
                write_request_head(&parts(req), Arrival::NoBody, &mut out),
                Err(HeadError::ConnectionSpecific),
                "{name}"
            );
        }
    }

    #[test]
    fn known_names_are_found_by_their_initials_in_any_case() {
        for known in &KNOWN_NAMES {
            let initial = known.as_str().as_bytes()[0];
            assert!(KNOWN_INITIALS.contains(&initial), "{known}");
            let upper = known.as_str().to_ascii_uppercase();
            assert_eq!(field_name(upper.as_bytes()).unwrap(), *known);
        }
        assert_eq!(
            field_name(b"Content-Type").unwrap(),
            http::header::CONTENT_TYPE
        );
        assert_eq!(field_name(b"X-Custom").unwrap().as_str(), "x-custom");
    }

    #[test]
    fn trailers_parse_and_skip_forbidden_fields() {
        let map = parse_trailers(b"grpc-status: 0\r\ngrpc-message:  ok \r\ncontent-length: 5\r\n");
        assert_eq!(map.get("grpc-status").unwrap(), "0");
        assert_eq!(map.get("grpc-message").unwrap(), "ok");
        assert!(map.get("content-length").is_none());
    }

    #[test]
    fn upstream_requests_carry_te_trailers_and_no_hop_by_hop_fields() {
        let data = b"POST /svc/M HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\ncontent-type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut spans = Vec::new();
        let head = upstream_request(data, &http::uri::Scheme::HTTP, &mut spans)
            .unwrap()
            .unwrap();
        let req = head.request;
        assert_eq!(req.uri().to_string(), "http://up.test/svc/M");
        assert_eq!(req.headers().get("te").unwrap(), "trailers");
        assert!(req.headers().get("connection").is_none());
        assert!(req.headers().get("transfer-encoding").is_none());
        assert_eq!(
            req.headers().get("content-type").unwrap(),
            "application/grpc"
        );
    }

    #[test]
    fn a_response_ended_by_its_headers_gets_a_zero_length() {
        let (parts, ()) = http::Response::builder()
            .status(200)
            .header("grpc-status", "14")
            .body(())
            .unwrap()
            .into_parts();
        let mut out = Vec::new();
        assert!(!write_response_head(&parts, true, &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ngrpc-status: 14\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
