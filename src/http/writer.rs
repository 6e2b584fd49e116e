//! Writing heads: the forwarded request, the response to the client, and the gateway's own
//! responses. Every writer appends to a reused `Vec<u8>`.
//!
//! Nothing here allocates beyond the growth of `out`: numbers are formatted on the stack, IPs
//! through `io::Write` on the `Vec`. The proxy semantics live here: hop-by-hop and
//! `Connection`-named fields are dropped, framing and forwarding fields are written by us.

use super::headers::{is_hop_by_hop, ConnectionTokens};
use super::{
    reason_phrase, BodyFraming, HeadEdits, HeaderSpan, RequestHead, ResponseFraming, ResponseHead,
    Version,
};
use crate::policy::Denial;

/// Our name in `Via`.
const VIA_NAME: &[u8] = b"ringgate";

/// Request fields the gateway re-writes itself, on top of the hop-by-hop ones.
const REWRITTEN_REQUEST_FIELDS: [&[u8]; 10] = [
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"via",
    b"x-request-id",
    b"traceparent",
    b"tracestate",
];

/// What the proxy decided about a request that is being forwarded.
#[derive(Debug, Clone, Copy)]
pub struct ForwardInfo<'a> {
    /// Path and query to send upstream (normalized, rewritten).
    pub path_and_query: &'a [u8],
    /// The `Host` value to send.
    pub host: &'a [u8],
    /// The client's address as text, appended to `X-Forwarded-For`.
    pub client_ip: &'a [u8],
    /// `http` or `https`.
    pub proto: &'a str,
    /// The request id: the client's `X-Request-Id` or a generated one.
    pub request_id: &'a [u8],
    /// Whether the client's `X-Request-Id` is being reused (then it is not added twice).
    pub request_id_from_client: bool,
    /// The W3C `traceparent` value to send (the gateway's span); empty sends none.
    pub traceparent: &'a [u8],
    /// Whether the client's `tracestate` fields go upstream (joined into one field).
    pub forward_tracestate: bool,
    /// Fields only the gateway writes (client certificate identity): client copies dropped.
    pub identity_headers: &'a [Box<str>],
    /// The verified client certificate's subject and the field that carries it.
    pub client_subject: Option<(&'a str, &'a str)>,
    /// Client header fields never forwarded because the route's policies set them (consumer
    /// and claim headers).
    pub policy_strip: &'a [Box<str>],
    /// The header field that carried the credential the route's policies accepted, when
    /// the accepting policy hides it from the upstream (`hide_credentials`).
    pub hidden_credential: Option<&'a str>,
    /// Header fields the route's policies add (`Name: value\r\n` each): who they
    /// authenticated.
    pub policy_fields: &'a [u8],
    /// The protocol the request upgrades to, when its route accepted the client's offer
    /// (`Connection: upgrade` and `Upgrade: {protocol}` are written; otherwise both stay
    /// dropped as hop-by-hop).
    pub upgrade: Option<&'a str>,
    /// Client fields a request stage removes and fields it adds (e.g. the cache's own
    /// validators when it revalidates a stored response); `None` on the plain path.
    pub edits: Option<&'a HeadEdits>,
}

/// Appends the upstream request head for `head` (parsed from `buf`).
///
/// The client's `X-Request-Id` fields are always dropped and `fwd.request_id` written once (if
/// non-empty), so the id appears exactly once whether or not it came from the client.
/// Likewise the client's `traceparent` is replaced by `fwd.traceparent`, and its `tracestate`
/// fields are dropped unless `fwd.forward_tracestate` (and no `Connection` option names it).
pub fn write_upstream_request(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    fwd: &ForwardInfo<'_>,
) {
    write_upstream_request_with(out, buf, head, headers, fwd, BodyOverride::default());
}

/// How the forwarded body differs from the client's, once a stage read it whole
/// (`proxy/request_body.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyOverride {
    /// The body goes with exactly this `Content-Length`, whatever the client's framing was.
    pub length: Option<u64>,
    /// The client's `Content-Encoding` was decoded: the field is not forwarded.
    pub drop_content_encoding: bool,
}

/// [`write_upstream_request`] for a body a stage read whole (and perhaps changed): its
/// framing and coding fields come from `body`.
pub fn write_upstream_request_with(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &RequestHead,
    headers: &[HeaderSpan],
    fwd: &ForwardInfo<'_>,
    body: BodyOverride,
) {
    out.extend_from_slice(head.method.of(buf));
    out.push(b' ');
    out.extend_from_slice(fwd.path_and_query);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field(out, b"Host", fwd.host);
    let options = ConnectionTokens::gather(buf, headers);
    for h in headers {
        let name = h.name.of(buf);
        let rewritten = REWRITTEN_REQUEST_FIELDS
            .iter()
            .any(|r| name.eq_ignore_ascii_case(r))
            || fwd
                .identity_headers
                .iter()
                .chain(fwd.policy_strip)
                .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
            || fwd
                .hidden_credential
                .is_some_and(|h| name.eq_ignore_ascii_case(h.as_bytes()))
            || (body.drop_content_encoding && name.eq_ignore_ascii_case(b"content-encoding"));
        let removed = fwd.edits.is_some_and(|e| e.removes(name));
        if !rewritten && !removed && forwardable(&options, name) {
            field(out, name, h.value.of(buf));
        }
    }
    out.extend_from_slice(fwd.policy_fields);
    if let Some(protocol) = fwd.upgrade {
        field(out, b"Connection", b"upgrade");
        field(out, b"Upgrade", protocol.as_bytes());
    }
    if let Some(edits) = fwd.edits {
        out.extend_from_slice(edits.added());
    }
    match (body.length, head.framing) {
        (Some(n), _) | (None, BodyFraming::Length(n)) => number_field(out, b"Content-Length", n),
        (None, BodyFraming::Chunked) => field(out, b"Transfer-Encoding", b"chunked"),
        (None, BodyFraming::None) => {}
    }
    joined_field(out, buf, headers, b"X-Forwarded-For", |out| {
        out.extend_from_slice(fwd.client_ip);
    });
    field(out, b"X-Forwarded-Proto", fwd.proto.as_bytes());
    if let Some((name, subject)) = fwd.client_subject {
        field(out, name.as_bytes(), subject.as_bytes());
    }
    if let Some(host) = head.host {
        field(out, b"X-Forwarded-Host", host.of(buf));
    }
    joined_field(out, buf, headers, b"Via", |out| {
        via_entry(out, head.version)
    });
    if !fwd.request_id.is_empty() {
        field(out, b"X-Request-Id", fwd.request_id);
    }
    if !fwd.traceparent.is_empty() {
        field(out, b"traceparent", fwd.traceparent);
        if fwd.forward_tracestate && forwardable(&options, b"tracestate") {
            tracestate_field(out, buf, headers);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `tracestate: {values}`: the client's non-empty `tracestate` values joined with `, `, in
/// order (RFC 9110 §5.3 allows combining the fields; W3C Trace Context says the same).
fn tracestate_field(out: &mut Vec<u8>, buf: &[u8], headers: &[HeaderSpan]) {
    let mut values = headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"tracestate"))
        .map(|h| h.value.of(buf))
        .filter(|v| !v.is_empty());
    let Some(first) = values.next() else { return };
    out.extend_from_slice(b"tracestate: ");
    out.extend_from_slice(first);
    for value in values {
        out.extend_from_slice(b", ");
        out.extend_from_slice(value);
    }
    out.extend_from_slice(b"\r\n");
}

/// What the proxy decided about the response going back to the client.
#[derive(Debug, Clone, Copy)]
pub struct DownstreamInfo<'a> {
    /// The client's protocol version.
    pub client_version: Version,
    /// Whether the client connection stays open after this response.
    pub keep_alive: bool,
    /// The request id to echo if the upstream did not send one.
    pub request_id: &'a [u8],
    /// Complete header lines the gateway adds (each ending in CRLF), e.g. rate-limit fields.
    pub extra_headers: &'a [u8],
    /// Fields the response stages remove from the upstream's head and add to it (part of
    /// the representation, unlike `extra_headers`); `None` on the plain path.
    pub edits: Option<&'a HeadEdits>,
    /// On a `101` the gateway relays: the protocol switched to (`Connection: upgrade` and
    /// `Upgrade: {protocol}` are written; the upstream's own are hop-by-hop).
    pub upgrade: Option<&'a str>,
}

/// Whether the proxy must de-chunk this response for the client: HTTP/1.0 clients do not know
/// chunked, so the body is sent raw and the connection closed to end it.
/// [`write_downstream_response`] writes the head accordingly (no framing field, `close`).
pub fn must_dechunk(head: &ResponseHead, client_version: Version) -> bool {
    head.framing == ResponseFraming::Chunked && client_version == Version::Http10
}

/// Appends the response head for the client, from the upstream's `head` (parsed from `buf`).
///
/// The connection is closed after the response (and `Connection: close` sent) when
/// `info.keep_alive` is false, when the body runs until the upstream closes, or when
/// [`must_dechunk`] holds. For bodiless responses to HEAD and 304 the upstream's
/// `Content-Length` is relayed unchanged; it is dropped for 1xx and 204, which must not carry it.
pub fn write_downstream_response(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
    info: &DownstreamInfo<'_>,
) {
    let reason = head.reason.of(buf);
    let reason = if reason.is_empty() {
        reason_phrase(head.status).as_bytes()
    } else {
        reason
    };
    status_line(out, head.status, reason);
    let options = ConnectionTokens::gather(buf, headers);
    let mut has_request_id = false;
    let mut relayed_length = false;
    let bodiless_status = (100..200).contains(&head.status) || head.status == 204;
    for h in headers {
        let (name, value) = (h.name.of(buf), h.value.of(buf));
        if info.edits.is_some_and(|e| {
            e.removes(name) || (e.merges_vary() && name.eq_ignore_ascii_case(b"vary"))
        }) {
            // A response stage owns this field (a merged `Vary` is written below).
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Only a bodiless response keeps the upstream's value (one copy: all are equal).
            if head.framing == ResponseFraming::None && !bodiless_status && !relayed_length {
                field(out, name, value);
                relayed_length = true;
            }
        } else if name.eq_ignore_ascii_case(b"via") {
            // Merged into one field below.
        } else if forwardable(&options, name) {
            has_request_id |= name.eq_ignore_ascii_case(b"x-request-id");
            field(out, name, value);
        }
    }
    if let Some(edits) = info.edits {
        out.extend_from_slice(edits.added());
        if edits.merges_vary() {
            edits.write_vary(out, buf, headers);
        }
    }
    let dechunk = must_dechunk(head, info.client_version);
    match head.framing {
        ResponseFraming::Length(n) => number_field(out, b"Content-Length", n),
        ResponseFraming::Chunked if !dechunk => field(out, b"Transfer-Encoding", b"chunked"),
        _ => {}
    }
    let keep_alive = info.keep_alive && head.framing != ResponseFraming::UntilClose && !dechunk;
    if !(100..200).contains(&head.status) {
        connection_field(out, info.client_version, keep_alive);
    }
    if let Some(protocol) = info.upgrade {
        field(out, b"Connection", b"upgrade");
        field(out, b"Upgrade", protocol.as_bytes());
    }
    joined_field(out, buf, headers, b"Via", |out| {
        via_entry(out, head.version)
    });
    if !has_request_id && !info.request_id.is_empty() {
        field(out, b"X-Request-Id", info.request_id);
    }
    out.extend_from_slice(info.extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends the header field lines a cache stores for a response (`head`, parsed from `buf`)
/// as the client gets it: the relayed end-to-end fields after the stages' `edits`, without
/// framing (`Content-Length`, `Transfer-Encoding`), connection fields, `Age` (recomputed for
/// every hit), `X-Request-Id` and `Set-Cookie` (per request), `Via` joined with the gateway's
/// entry. Each line ends in CRLF; no empty line.
pub fn write_stored_fields(
    out: &mut Vec<u8>,
    buf: &[u8],
    head: &ResponseHead,
    headers: &[HeaderSpan],
    edits: Option<&HeadEdits>,
) {
    const PER_REQUEST: &[&[u8]] = &[
        b"content-length",
        b"transfer-encoding",
        b"age",
        b"x-request-id",
        b"set-cookie",
        b"via",
    ];
    let options = ConnectionTokens::gather(buf, headers);
    for h in headers {
        let (name, value) = (h.name.of(buf), h.value.of(buf));
        let dropped = edits.is_some_and(|e| {
            e.removes(name) || (e.merges_vary() && name.eq_ignore_ascii_case(b"vary"))
        }) || PER_REQUEST.iter().any(|p| name.eq_ignore_ascii_case(p))
            || !forwardable(&options, name);
        if !dropped {
            field(out, name, value);
        }
    }
    if let Some(edits) = edits {
        out.extend_from_slice(edits.added());
        if edits.merges_vary() {
            edits.write_vary(out, buf, headers);
        }
    }
    joined_field(out, buf, headers, b"Via", |out| {
        via_entry(out, head.version)
    });
}

/// What [`write_cached_head`] writes besides the stored fields.
#[derive(Debug)]
pub struct CachedHead<'a> {
    /// Status code.
    pub status: u16,
    /// Stored field lines (from [`write_stored_fields`]).
    pub fields: &'a [u8],
    /// `Age`, seconds.
    pub age: u64,
    /// The `Cache-Status` value.
    pub cache_status: &'a [u8],
    /// The body's length, for `Content-Length` (`None` for 304, 204).
    pub content_length: Option<u64>,
    /// The client's protocol version.
    pub client_version: Version,
    /// Whether the connection stays open.
    pub keep_alive: bool,
    /// The request's id.
    pub request_id: &'a [u8],
    /// Complete header lines the gateway adds (each ending in CRLF).
    pub extra_headers: &'a [u8],
}

/// Appends the head of a response served from the cache: status line, stored fields, `Age`,
/// `Cache-Status`, framing, connection field, request id, extra lines, empty line.
pub fn write_cached_head(out: &mut Vec<u8>, head: &CachedHead<'_>) {
    status_line(out, head.status, reason_phrase(head.status).as_bytes());
    out.extend_from_slice(head.fields);
    number_field(out, b"Age", head.age);
    field(out, b"Cache-Status", head.cache_status);
    if let Some(n) = head.content_length {
        number_field(out, b"Content-Length", n);
    }
    connection_field(out, head.client_version, head.keep_alive);
    if !head.request_id.is_empty() {
        field(out, b"X-Request-Id", head.request_id);
    }
    out.extend_from_slice(head.extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete error response with a short plain-text body; `extra_headers` are
/// complete header lines (each ending in CRLF) the gateway adds.
pub fn write_error_response(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    keep_alive: bool,
    request_id: &[u8],
    extra_headers: &[u8],
) {
    write_error_response_retry_after(
        out,
        status,
        message,
        keep_alive,
        request_id,
        None,
        extra_headers,
    );
}

/// [`write_error_response`] with a `Retry-After: SECONDS` field when `retry_after` is set
/// (503 answers of an open breaker or a group without a healthy target).
pub fn write_error_response_retry_after(
    out: &mut Vec<u8>,
    status: u16,
    message: &str,
    keep_alive: bool,
    request_id: &[u8],
    retry_after: Option<u64>,
    extra_headers: &[u8],
) {
    status_line(out, status, reason_phrase(status).as_bytes());
    field(out, b"Content-Type", b"text/plain; charset=utf-8");
    number_field(out, b"Content-Length", message.len() as u64 + 1);
    if let Some(seconds) = retry_after {
        number_field(out, b"Retry-After", seconds);
    }
    if !keep_alive {
        field(out, b"Connection", b"close");
    }
    if !request_id.is_empty() {
        field(out, b"X-Request-Id", request_id);
    }
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
}

/// Appends the answer to a request a policy refused: the status, the `WWW-Authenticate`
/// challenge of a 401, the `extra_headers` lines (e.g. rate-limit fields and `Retry-After`)
/// and a short plain-text body.
pub fn write_denial_response(
    out: &mut Vec<u8>,
    denial: &Denial,
    keep_alive: bool,
    request_id: &[u8],
    extra_headers: &[u8],
) {
    status_line(out, denial.status, reason_phrase(denial.status).as_bytes());
    denial.challenge.write_field(out);
    field(out, b"Content-Type", b"text/plain; charset=utf-8");
    number_field(out, b"Content-Length", denial.message.len() as u64 + 1);
    if !keep_alive {
        field(out, b"Connection", b"close");
    }
    if !request_id.is_empty() {
        field(out, b"X-Request-Id", request_id);
    }
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(denial.message.as_bytes());
    out.push(b'\n');
}

/// A gateway answer whose body is already rendered (e.g. an RFC 9457 problem document).
#[derive(Debug, Clone, Copy)]
pub struct RenderedAnswer<'a> {
    /// Status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'a [u8],
    /// The body.
    pub body: &'a [u8],
    /// The `WWW-Authenticate` challenge of a 401 (`Challenge::None` for none).
    pub challenge: &'a crate::policy::Challenge,
    /// Seconds for `Retry-After`, if any.
    pub retry_after: Option<u64>,
    /// Whether the connection stays open.
    pub keep_alive: bool,
    /// The request id echoed in `X-Request-Id` (none when empty).
    pub request_id: &'a [u8],
    /// Complete header lines the gateway adds (each ending in CRLF).
    pub extra_headers: &'a [u8],
}

/// Appends a complete gateway answer with a rendered body.
pub fn write_rendered_answer(out: &mut Vec<u8>, answer: &RenderedAnswer<'_>) {
    status_line(out, answer.status, reason_phrase(answer.status).as_bytes());
    answer.challenge.write_field(out);
    field(out, b"Content-Type", answer.content_type);
    number_field(out, b"Content-Length", answer.body.len() as u64);
    if let Some(seconds) = answer.retry_after {
        number_field(out, b"Retry-After", seconds);
    }
    if !answer.keep_alive {
        field(out, b"Connection", b"close");
    }
    if !answer.request_id.is_empty() {
        field(out, b"X-Request-Id", answer.request_id);
    }
    out.extend_from_slice(answer.extra_headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(answer.body);
}

/// Appends a complete response served by the gateway itself (a `respond` route).
///
/// Configured fields named `Content-Length`, `Transfer-Encoding` or `Connection` are ignored
/// (the gateway owns framing), as is any field containing CR, LF or NUL (response splitting).
/// `extra_headers` are complete header lines (each ending in CRLF) the gateway adds.
#[allow(clippy::too_many_arguments)]
pub fn write_static_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
    client_version: Version,
    keep_alive: bool,
    request_id: &[u8],
    extra_headers: &[u8],
) {
    status_line(out, status, reason_phrase(status).as_bytes());
    for (name, value) in headers {
        let (name, value) = (name.as_bytes(), value.as_bytes());
        let owned = [&b"content-length"[..], b"transfer-encoding", b"connection"]
            .iter()
            .any(|o| name.eq_ignore_ascii_case(o));
        let unsafe_bytes = name
            .iter()
            .chain(value)
            .any(|&b| matches!(b, b'\r' | b'\n' | 0));
        if !owned && !unsafe_bytes {
            field(out, name, value);
        }
    }
    let body_allowed = !((100..200).contains(&status) || status == 204 || status == 304);
    if body_allowed {
        number_field(out, b"Content-Length", body.len() as u64);
    }
    connection_field(out, client_version, keep_alive);
    if !request_id.is_empty() {
        field(out, b"X-Request-Id", request_id);
    }
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
    if body_allowed && !head_only {
        out.extend_from_slice(body);
    }
}

/// Appends the head of a response the gateway generates whose body the caller appends
/// (`content_length` bytes): status line, `fields` in order (values the caller checked), the
/// `Content-Length`, the connection field, the request id and `extra_headers` lines.
#[allow(clippy::too_many_arguments)]
pub fn write_generated_head(
    out: &mut Vec<u8>,
    status: u16,
    fields: &[(&[u8], &[u8])],
    content_length: u64,
    client_version: Version,
    keep_alive: bool,
    request_id: &[u8],
    extra_headers: &[u8],
) {
    status_line(out, status, reason_phrase(status).as_bytes());
    for (name, value) in fields {
        field(out, name, value);
    }
    number_field(out, b"Content-Length", content_length);
    connection_field(out, client_version, keep_alive);
    if !request_id.is_empty() {
        field(out, b"X-Request-Id", request_id);
    }
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends `HTTP/1.1 100 Continue`.
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Appends a chunk-size line (`{hex}\r\n`) for re-chunking a body.
pub fn write_chunk_size(out: &mut Vec<u8>, size: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The CRLF that ends chunk data.
pub const CHUNK_DATA_END: &[u8] = b"\r\n";
/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether a field may pass this hop: not hop-by-hop and not named by `Connection`.
fn forwardable(options: &ConnectionTokens<'_>, name: &[u8]) -> bool {
    !is_hop_by_hop(name) && !options.names(name)
}

/// `HTTP/1.1 {status} {reason}\r\n`: we always speak 1.1 (RFC 9110 §2.5, even to 1.0 clients).
fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// `Connection: close` when closing; `keep-alive` when a 1.0 client would otherwise close.
fn connection_field(out: &mut Vec<u8>, client_version: Version, keep_alive: bool) {
    if !keep_alive {
        field(out, b"Connection", b"close");
    } else if client_version == Version::Http10 {
        field(out, b"Connection", b"keep-alive");
    }
}

/// `{protocol-version} ringgate`, the received protocol being the sender's version.
fn via_entry(out: &mut Vec<u8>, version: Version) {
    out.extend_from_slice(match version {
        Version::Http10 => b"1.0 ",
        Version::Http11 => b"1.1 ",
    });
    out.extend_from_slice(VIA_NAME);
}

/// One field: the existing values of `name` joined with `, `, then our entry.
fn joined_field(
    out: &mut Vec<u8>,
    buf: &[u8],
    headers: &[HeaderSpan],
    name: &[u8],
    ours: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    for h in headers
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(name))
    {
        let value = h.value.of(buf);
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    ours(out);
    out.extend_from_slice(b"\r\n");
}

/// `{name}: {value}\r\n`
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `{name}: {n}\r\n`
fn number_field(out: &mut Vec<u8>, name: &[u8], n: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, formatted on the stack (no allocation).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
