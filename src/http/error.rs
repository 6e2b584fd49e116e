//! Codec errors and the one table that maps them to status codes.
//!
//! Client-side faults (a bad request head, a bad chunked request body) map to 4xx/5xx codes the
//! gateway answers the client with. Upstream-side head faults are wrapped in
//! [`HttpError::InvalidResponse`] and map to 502. The chunked decoder cannot know which side it
//! reads, so [`HttpError::InvalidChunked`] maps to 400: the proxy answers 502 itself when the
//! body came from the upstream (see [`HttpError::is_body_error`]).

/// A reason to refuse a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// A generic malformed request (kept for callers that need a plain 400).
    #[error("bad request")]
    BadRequest,
    /// The request line or head is not valid HTTP/1.x syntax.
    #[error("malformed request head")]
    MalformedHead,
    /// A line in the head ends in a bare LF instead of CRLF.
    #[error("bare LF line ending in request head")]
    BareLineFeed,
    /// A field name is not a token, or whitespace precedes the colon, or a line is folded.
    #[error("invalid header field name")]
    InvalidHeaderName,
    /// A field name contains `_` and `underscores_in_headers = "refuse"`.
    #[error("underscore in header field name")]
    UnderscoreInHeaderName,
    /// A field value contains a control character.
    #[error("invalid header field value")]
    InvalidHeaderValue,
    /// An HTTP/1.1 request without `Host`.
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` field.
    #[error("multiple Host headers")]
    MultipleHost,
    /// `Host` is not a valid `host[:port]` authority.
    #[error("invalid Host header")]
    InvalidHost,
    /// `Content-Length` is not plain decimal digits or overflows u64.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several `Content-Length` fields disagree.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` were sent.
    #[error("Content-Length with Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` that does not end in exactly one `chunked` (or is empty): the body
    /// length cannot be determined (RFC 9112 §6.3).
    #[error("Transfer-Encoding does not end in a single chunked")]
    InvalidTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 message.
    #[error("Transfer-Encoding on HTTP/1.0")]
    TransferEncodingOnHttp10,
    /// A chunked body is malformed.
    #[error("invalid chunked body: {0}")]
    InvalidChunked(ChunkedFault),
    /// The body exceeds the configured limit (raised by the proxy).
    #[error("payload too large")]
    PayloadTooLarge,
    /// The request-target exceeds `max_uri_bytes`.
    #[error("request-target too long")]
    UriTooLong,
    /// `Expect` with something other than `100-continue`.
    #[error("unsupported expectation")]
    ExpectationFailed,
    /// The head exceeds `max_head_bytes`.
    #[error("request head too large")]
    HeadTooLarge,
    /// More header fields than `max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Transfer codings other than `chunked` (e.g. `gzip, chunked`).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
    /// `CONNECT` (tunnels are not implemented by this gateway).
    #[error("CONNECT not supported")]
    ConnectNotSupported,
    /// A well-formed HTTP version other than 1.0 and 1.1.
    #[error("HTTP version not supported")]
    VersionNotSupported,
    /// The upstream's response head is unusable.
    #[error("invalid upstream response: {0}")]
    InvalidResponse(ResponseFault),
}

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedFault {
    /// Chunk size missing, not hex, or followed by something other than `;` or CRLF.
    #[error("invalid chunk size")]
    InvalidSize,
    /// Chunk size with more than 16 hex digits.
    #[error("chunk size overflow")]
    SizeOverflow,
    /// Chunk extension with a control character.
    #[error("invalid chunk extension")]
    InvalidExtension,
    /// Chunk extensions longer than the per-line bound.
    #[error("chunk extension too long")]
    ExtensionTooLong,
    /// A line ends in something other than CRLF.
    #[error("invalid line ending")]
    InvalidLineEnding,
    /// Chunk data not followed by CRLF.
    #[error("missing CRLF after chunk data")]
    MissingDataCrlf,
    /// Invalid trailer field.
    #[error("invalid trailer field")]
    InvalidTrailer,
    /// Trailer section larger than its bound.
    #[error("trailer section too large")]
    TrailerTooLarge,
}

/// Why an upstream response head was rejected (all answered with 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseFault {
    /// Not valid HTTP/1.x response syntax (includes obs-fold and bad field names/values).
    #[error("malformed head")]
    Malformed,
    /// Not HTTP/1.0 or HTTP/1.1.
    #[error("unsupported version")]
    UnsupportedVersion,
    /// Status code outside 100..=999.
    #[error("invalid status code")]
    InvalidStatus,
    /// Head larger than the limit.
    #[error("head too large")]
    HeadTooLarge,
    /// More fields than the limit.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Malformed `Content-Length`.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several different `Content-Length` values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("Content-Length with Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// `Transfer-Encoding` other than exactly `chunked` (the gateway only relays chunked).
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` on an HTTP/1.0 response (faulty framing per RFC 9112 §6.1).
    #[error("Transfer-Encoding on HTTP/1.0")]
    TransferEncodingOnHttp10,
}

impl HttpError {
    /// The status code a client gets for this error: the one table of the codec.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            BadRequest
            | MalformedHead
            | BareLineFeed
            | InvalidHeaderName
            | UnderscoreInHeaderName
            | InvalidHeaderValue
            | MissingHost
            | MultipleHost
            | InvalidHost
            | InvalidContentLength
            | ConflictingContentLength
            | ContentLengthWithTransferEncoding
            | InvalidTransferEncoding
            | TransferEncodingOnHttp10
            | InvalidChunked(_) => 400,
            PayloadTooLarge => 413,
            UriTooLong => 414,
            ExpectationFailed => 417,
            HeadTooLarge | TooManyHeaders => 431,
            UnsupportedTransferCoding | ConnectNotSupported => 501,
            VersionNotSupported => 505,
            InvalidResponse(_) => 502,
        }
    }

    /// Whether this came from the chunked body decoder: when the body was the upstream's, the
    /// proxy answers 502 (or aborts the client connection if the head was already sent).
    pub fn is_body_error(&self) -> bool {
        matches!(self, HttpError::InvalidChunked(_))
    }

    /// Whether the fault lies with the upstream (its status is 502).
    pub fn is_upstream(&self) -> bool {
        matches!(self, HttpError::InvalidResponse(_))
    }
}

/// The standard reason phrase for a status code (RFC 9110 and common registrations).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_map_to_502() {
        let e = HttpError::InvalidResponse(ResponseFault::ConflictingContentLength);
        assert_eq!(e.status(), 502);
        assert!(e.is_upstream());
    }

    #[test]
    fn status_table_covers_each_class() {
        assert_eq!(HttpError::UriTooLong.status(), 414);
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
        assert_eq!(HttpError::ExpectationFailed.status(), 417);
        assert_eq!(HttpError::UnsupportedTransferCoding.status(), 501);
        assert_eq!(HttpError::VersionNotSupported.status(), 505);
        assert_eq!(HttpError::PayloadTooLarge.status(), 413);
        assert_eq!(
            HttpError::InvalidChunked(ChunkedFault::InvalidSize).status(),
            400
        );
    }

    #[test]
    fn reason_phrases_cover_common_codes() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(511), "Network Authentication Required");
        assert_eq!(reason_phrase(799), "Unknown");
    }
}
