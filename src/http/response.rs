//! Upstream response head parsing and response framing.

use super::{HeaderSpan, HttpError, Method, ResponseFraming, Span, Version};

/// A parsed upstream response head. Header fields are in the caller's `Vec<HeaderSpan>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, including the terminating empty line.
    pub head_len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: Span,
    /// Protocol version.
    pub version: Version,
    /// Body framing (depends on the request method and the status).
    pub framing: ResponseFraming,
    /// Whether the upstream connection may be reused after this response.
    pub keep_alive: bool,
}

/// Parses a response head from the start of `buf`; `Ok(None)` while incomplete.
pub fn parse_response(
    _buf: &[u8],
    _request_method: Method,
    _max_head_bytes: usize,
    _max_headers: usize,
    _headers: &mut Vec<HeaderSpan>,
) -> Result<Option<ResponseHead>, HttpError> {
    todo!("http helper")
}
