//! Request head parsing and the validation rules that make request smuggling impossible.

use super::{BodyFraming, HeaderSpan, HttpError, Method, Span, Version};

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line plus headers including the final CRLF CRLF (431 beyond).
    pub max_head_bytes: usize,
    /// Header field count (431 beyond).
    pub max_headers: usize,
    /// Request-target length (414 beyond).
    pub max_uri_bytes: usize,
}

/// A parsed, validated request head. Header fields are in the caller's `Vec<HeaderSpan>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including the terminating empty line.
    pub head_len: usize,
    /// The method token.
    pub method: Span,
    /// The method, classified.
    pub method_kind: Method,
    /// The request-target as sent (origin-form or absolute-form).
    pub target: Span,
    /// Protocol version.
    pub version: Version,
    /// The single `Host` header's value (required on HTTP/1.1).
    pub host: Option<Span>,
    /// Body framing, decided by the rules in this module.
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and still within limits; the header fields
/// are written into `headers` (cleared first).
pub fn parse_request(
    _buf: &[u8],
    _limits: &HeadLimits,
    _headers: &mut Vec<HeaderSpan>,
) -> Result<Option<RequestHead>, HttpError> {
    todo!("http helper")
}
