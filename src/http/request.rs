//! Request head parsing and the validation rules that make request smuggling impossible.
//!
//! httparse reads the syntax (it already refuses invalid field-name tokens, whitespace before
//! the colon, obs-fold and CTLs in values); this module adds everything else: limits, version
//! answers, `Host`, and the one framing decision in [`request_framing`]. A head that breaks a
//! rule is never forwarded. Nothing here allocates once the caller's `Vec` has capacity.

use std::mem::MaybeUninit;

use super::framing::{
    ConnectionOptions, ContentLength, ContentLengthFault, TransferCodings, TransferVerdict,
};
use super::headers::is_valid_authority;
use super::{span_in, BodyFraming, HeaderSpan, HttpError, Method, Span, Version};

/// The most header fields any head may carry: the size of the parser's stack array. The config
/// caps `max_headers` at this value; a larger limit is clamped to it.
pub const MAX_HEADERS_CAP: usize = 256;

/// Limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line plus headers including the final CRLF CRLF (431 beyond).
    pub max_head_bytes: usize,
    /// Header field count (431 beyond; at most [`MAX_HEADERS_CAP`]).
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
    /// `Expect: 100-continue` was sent (always false on HTTP/1.0, RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

/// Parses a request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and still within limits; the header fields
/// are written into `headers` (cleared first).
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<RequestHead>, HttpError> {
    headers.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let cap = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let parsed = req.parse_with_uninit_headers(buf, slots.get_mut(..cap).unwrap_or_default());
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf, limits),
        Err(httparse::Error::Version) => {
            return match higher_minor_version(buf) {
                Some((digit, true)) => parse_as_http11(buf, digit, limits, headers),
                Some((_, false)) => incomplete(buf, limits),
                None => version_error(buf, limits),
            };
        }
        Err(e) => return Err(syntax_error(e)),
    };
    if head_len > limits.max_head_bytes || u32::try_from(head_len).is_err() {
        return Err(HttpError::HeadTooLarge);
    }
    let head = buf.get(..head_len).unwrap_or_default();
    if has_bare_lf(head) {
        return Err(HttpError::BareLineFeed);
    }
    let method = req.method.unwrap_or_default().as_bytes();
    let path = req.path.unwrap_or_default().as_bytes();
    if path.len() > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong);
    }
    let method_kind = classify_method(method);
    if method_kind == Method::Connect {
        return Err(HttpError::ConnectNotSupported);
    }
    let version = if req.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    headers.extend(req.headers.iter().map(|h| HeaderSpan {
        name: span_in(buf, h.name.as_bytes()),
        value: span_in(buf, super::headers::trim_ows(h.value)),
    }));
    let fields = check_fields(buf, headers, version)?;
    Ok(Some(RequestHead {
        head_len,
        method: span_in(buf, method),
        method_kind,
        target: span_in(buf, path),
        version,
        host: fields.host,
        framing: request_framing(version, &fields.content_length, &fields.codings)?,
        keep_alive: fields.connection.persistent(version == Version::Http11),
        expect_continue: fields.expect_continue && version == Version::Http11,
    }))
}

/// What the field loop learned.
struct RequestFields {
    host: Option<Span>,
    content_length: ContentLength,
    codings: TransferCodings,
    connection: ConnectionOptions,
    expect_continue: bool,
}

/// Applies the per-field rules (`Host`, `Expect`, `Content-Length` syntax) and gathers what
/// framing and keep-alive depend on.
fn check_fields(
    buf: &[u8],
    headers: &[HeaderSpan],
    version: Version,
) -> Result<RequestFields, HttpError> {
    let mut f = RequestFields {
        host: None,
        content_length: ContentLength::default(),
        codings: TransferCodings::default(),
        connection: ConnectionOptions::default(),
        expect_continue: false,
    };
    for h in headers {
        let (name, value) = (h.name.of(buf), h.value.of(buf));
        if name.eq_ignore_ascii_case(b"content-length") {
            f.content_length.add(value).map_err(|e| match e {
                ContentLengthFault::Malformed => HttpError::InvalidContentLength,
                ContentLengthFault::Conflicting => HttpError::ConflictingContentLength,
            })?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.codings.add(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            f.connection.add(value);
        } else if name.eq_ignore_ascii_case(b"host") {
            if f.host.is_some() {
                return Err(HttpError::MultipleHost);
            }
            if !is_valid_authority(value) {
                return Err(HttpError::InvalidHost);
            }
            f.host = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            f.expect_continue = true;
        }
    }
    if version == Version::Http11 && f.host.is_none() {
        return Err(HttpError::MissingHost);
    }
    Ok(f)
}

/// The framing decision for a request (RFC 9112 §6.3), every rejection in one place.
fn request_framing(
    version: Version,
    content_length: &ContentLength,
    codings: &TransferCodings,
) -> Result<BodyFraming, HttpError> {
    if !codings.present() {
        return Ok(match content_length.value() {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        });
    }
    if content_length.value().is_some() {
        return Err(HttpError::ContentLengthWithTransferEncoding);
    }
    if version == Version::Http10 {
        return Err(HttpError::TransferEncodingOnHttp10);
    }
    match codings.verdict() {
        TransferVerdict::Chunked => Ok(BodyFraming::Chunked),
        TransferVerdict::CodingsThenChunked => Err(HttpError::UnsupportedTransferCoding),
        TransferVerdict::Invalid | TransferVerdict::Absent => {
            Err(HttpError::InvalidTransferEncoding)
        }
    }
}

/// Methods are case-sensitive tokens (RFC 9110 §9.1).
fn classify_method(m: &[u8]) -> Method {
    Method::from_token(m)
}

impl Method {
    /// The method a request-line token names (case-sensitive, RFC 9110 §9.1); any other
    /// token is [`Method::Other`].
    pub fn from_token(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// An incomplete head: wait for more unless a limit is already exceeded.
fn incomplete(buf: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, HttpError> {
    if partial_target_len(buf) > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong);
    }
    if buf.len() >= limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(None)
}

/// Length of the request-target seen so far: lets a long target get 414 before the request
/// line (or the head) completes.
fn partial_target_len(buf: &[u8]) -> usize {
    let line = trim_leading_newlines(buf);
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return 0;
    };
    let target = line.get(sp + 1..).unwrap_or_default();
    target
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(target.len())
}

/// The offset of the minor digit of a request line's `HTTP/1.2` to `HTTP/1.9`: versions a
/// recipient processes as the highest minor version it implements (RFC 9110 §2.5), where
/// httparse knows only `HTTP/1.0` and `HTTP/1.1`; with whether the request line is complete.
/// `None` for anything else.
fn higher_minor_version(buf: &[u8]) -> Option<(usize, bool)> {
    let start = buf.len() - trim_leading_newlines(buf).len();
    let rest = buf.get(start..)?;
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(lf) => (rest.get(..lf)?, true),
        None => (rest, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token_start = line.iter().rposition(|&b| b == b' ')? + 1;
    match line.get(token_start..)? {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => {
            Some((start + token_start + 7, complete))
        }
        _ => None,
    }
}

/// Parses a head whose request line says `HTTP/1.2` to `HTTP/1.9` as HTTP/1.1. The head is
/// copied with the minor digit replaced (this path is rare, so the copy's allocation does not
/// matter); the copy has the same length, so its spans are the original's.
fn parse_as_http11(
    buf: &[u8],
    digit: usize,
    limits: &HeadLimits,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<RequestHead>, HttpError> {
    let mut copy = buf
        .get(..buf.len().min(limits.max_head_bytes.max(digit + 1)))
        .unwrap_or_default()
        .to_vec();
    match copy.get_mut(digit) {
        Some(minor) => *minor = b'1',
        None => return Err(HttpError::MalformedHead),
    }
    match parse_request(&copy, limits, headers)? {
        Some(head) => Ok(Some(head)),
        // The copy was cut at the head limit: the head is only complete if it fits.
        None => incomplete(buf, limits),
    }
}

/// httparse only knows HTTP/1.x: tell a well-formed other version (505) from garbage (400),
/// waiting for the rest of the request line when what is there could still be `HTTP/d.d`.
fn version_error(buf: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, HttpError> {
    let line = trim_leading_newlines(buf);
    let (line, complete) = match line.iter().position(|&b| b == b'\n') {
        Some(lf) => (line.get(..lf).unwrap_or_default(), true),
        None => (line, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    const PATTERN: &[u8] = b"HTTP/d.d";
    let matches = token.len() <= PATTERN.len()
        && token.iter().zip(PATTERN).all(|(&b, &p)| match p {
            b'd' => b.is_ascii_digit(),
            _ => b == p,
        });
    match (matches, complete, token.len() == PATTERN.len()) {
        (true, _, true) => Err(HttpError::VersionNotSupported),
        (true, false, false) => incomplete(buf, limits),
        _ => Err(HttpError::MalformedHead),
    }
}

/// Leading empty lines before the request line, which httparse skips too (RFC 9112 §2.2).
fn trim_leading_newlines(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    buf.get(start..).unwrap_or_default()
}

/// Maps an httparse syntax error to its reason.
fn syntax_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::HeaderName => HttpError::InvalidHeaderName,
        httparse::Error::HeaderValue => HttpError::InvalidHeaderValue,
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::Version => HttpError::VersionNotSupported,
        _ => HttpError::MalformedHead,
    }
}

/// Whether a line ends in LF without CR. httparse tolerates bare LF; we refuse it so that no
/// two parsers on the path can disagree about where a line ends. Written as a branch-free fold
/// so that it vectorizes: it runs over every head.
fn has_bare_lf(head: &[u8]) -> bool {
    let first = head.first() == Some(&b'\n');
    let rest = head.get(1..).unwrap_or_default();
    first
        | rest.iter().zip(head).fold(false, |bad, (&b, &prev)| {
            bad | ((b == b'\n') & (prev != b'\r'))
        })
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
