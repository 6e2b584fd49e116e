//! The HTTP/1.1 codec: head parsing on httparse, the framing rules that keep a proxy safe,
//! chunked bodies, and head writing with proxy semantics.
//!
//! Nothing here does I/O: the proxy owns the sockets and hands byte slices in. Parsed heads
//! refer to the connection's read buffer through [`Span`]s, so parsing allocates nothing.
//!
//! CONTRACT (the proxy depends on these names and signatures):
//! - `Span`, `Version`, `Method`, `HeaderSpan`, `BodyFraming`, `ResponseFraming`
//! - `RequestHead`, `parse_request(buf, limits, headers) -> Result<Option<RequestHead>, HttpError>`
//! - `ResponseHead`, `parse_response(buf, request_method, max_head_bytes, max_headers, headers)`
//! - `ChunkedDecoder::new()`, `ChunkedDecoder::advance(&mut self, input, on_data)`
//! - `HttpError` (with `status()`), `reason_phrase(status)`
//! - `writer::{ForwardInfo, write_upstream_request, DownstreamInfo, write_downstream_response,
//!   write_error_response, write_static_response, write_continue}`
//!
//! Additions beyond the contract: `MAX_HEADERS_CAP`, `ChunkedFault`, `ResponseFault`,
//! `HttpError::{is_body_error, is_upstream}`, `ChunkedDecoder::{payload_bytes,
//! pending_chunk_bytes, is_done}`, `writer::{must_dechunk, write_chunk_size, CHUNK_DATA_END,
//! LAST_CHUNK}`, and `headers` (hop-by-hop names, `Connection` tokens, `Host` syntax).
//! `framing` (private) holds the Content-Length / Transfer-Encoding / Connection accumulators
//! that both parsers share.

pub mod chunked;
pub mod edits;
pub mod error;
mod framing;
pub mod headers;
pub mod ip_text;
pub mod problem;
pub mod request;
pub mod response;
pub mod underscore;
pub mod upgrade;
pub mod writer;

pub use chunked::{ChunkedDecoder, ChunkedProgress};
pub use edits::HeadEdits;
pub use error::{reason_phrase, ChunkedFault, HttpError, ResponseFault};
pub use request::{parse_request, HeadLimits, RequestHead, MAX_HEADERS_CAP};
pub use response::{parse_response, ResponseHead};
pub use underscore::UnderscorePolicy;

/// The span of `part`, a sub-slice of `buf` handed back by httparse.
///
/// Offsets are computed from the pointers; a slice outside `buf` (never produced by httparse)
/// yields an empty span instead of a panic later in [`Span::of`].
fn span_in(buf: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) if end as usize <= buf.len() => Span { start, end },
        _ => Span::default(),
    }
}

/// A byte range into the buffer a head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (empty if the span lies outside it).
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// HTTP protocol version of a message (only major version 1 is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// Request method, with the ones the proxy treats specially named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `TRACE`
    Trace,
    /// `CONNECT` (refused with 501: tunnels are not implemented).
    Connect,
    /// Any other token; the bytes are at [`RequestHead::method`].
    Other,
}

impl Method {
    /// Idempotent per RFC 9110 §9.2.2: safe to retry on a fresh connection.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

/// One header field, as spans into the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderSpan {
    /// Field name.
    pub name: Span,
    /// Field value, without surrounding whitespace.
    pub value: Span,
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, or Content-Length: 0).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}
