//! Upstream response head parsing and response framing (RFC 9112 §6.3).
//!
//! Every error here is an upstream fault, [`HttpError::InvalidResponse`], which maps to 502:
//! the proxy never relays a response whose framing it cannot be sure of.

use std::mem::MaybeUninit;

use super::framing::{
    ConnectionOptions, ContentLength, ContentLengthFault, TransferCodings, TransferVerdict,
};
use super::headers::trim_ows;
use super::{
    span_in, HeaderSpan, HttpError, Method, ResponseFault, ResponseFraming, Span, Version,
    MAX_HEADERS_CAP,
};

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
///
/// `max_headers` is clamped to [`MAX_HEADERS_CAP`]. All errors are
/// [`HttpError::InvalidResponse`] (502).
pub fn parse_response(
    buf: &[u8],
    request_method: Method,
    max_head_bytes: usize,
    max_headers: usize,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<ResponseHead>, HttpError> {
    parse(buf, request_method, max_head_bytes, max_headers, headers)
        .map_err(HttpError::InvalidResponse)
}

/// [`parse_response`] with the fault not yet wrapped.
fn parse(
    buf: &[u8],
    request_method: Method,
    max_head_bytes: usize,
    max_headers: usize,
    headers: &mut Vec<HeaderSpan>,
) -> Result<Option<ResponseHead>, ResponseFault> {
    headers.clear();
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let cap = max_headers.min(MAX_HEADERS_CAP);
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        buf,
        slots.get_mut(..cap).unwrap_or_default(),
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_head_bytes => {
            return Err(ResponseFault::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseFault::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(ResponseFault::UnsupportedVersion),
        Err(_) => return Err(ResponseFault::Malformed),
    };
    if head_len > max_head_bytes || u32::try_from(head_len).is_err() {
        return Err(ResponseFault::HeadTooLarge);
    }
    let status = res.code.unwrap_or_default();
    if status < 100 {
        return Err(ResponseFault::InvalidStatus);
    }
    let version = if res.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    headers.extend(res.headers.iter().map(|h| HeaderSpan {
        name: span_in(buf, h.name.as_bytes()),
        value: span_in(buf, trim_ows(h.value)),
    }));
    let fields = gather_fields(buf, headers)?;
    let framing = response_framing(request_method, status, version, &fields)?;
    let keep_alive = framing != ResponseFraming::UntilClose
        && fields.connection.persistent(version == Version::Http11);
    Ok(Some(ResponseHead {
        head_len,
        status,
        reason: span_in(buf, res.reason.unwrap_or_default().as_bytes()),
        version,
        framing,
        keep_alive,
    }))
}

/// The fields that decide framing and reuse.
struct ResponseFields {
    content_length: ContentLength,
    codings: TransferCodings,
    connection: ConnectionOptions,
}

/// Folds `Content-Length`, `Transfer-Encoding` and `Connection` over all fields.
fn gather_fields(buf: &[u8], headers: &[HeaderSpan]) -> Result<ResponseFields, ResponseFault> {
    let mut f = ResponseFields {
        content_length: ContentLength::default(),
        codings: TransferCodings::default(),
        connection: ConnectionOptions::default(),
    };
    for h in headers {
        let (name, value) = (h.name.of(buf), h.value.of(buf));
        if name.eq_ignore_ascii_case(b"content-length") {
            f.content_length.add(value).map_err(|e| match e {
                ContentLengthFault::Malformed => ResponseFault::InvalidContentLength,
                ContentLengthFault::Conflicting => ResponseFault::ConflictingContentLength,
            })?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.codings.add(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            f.connection.add(value);
        }
    }
    Ok(f)
}

/// The framing decision for a response, every rejection in one place. The framing fields are
/// validated even when the status forbids a body, since the head is relayed either way.
fn response_framing(
    method: Method,
    status: u16,
    version: Version,
    f: &ResponseFields,
) -> Result<ResponseFraming, ResponseFault> {
    if f.codings.present() {
        if f.content_length.value().is_some() {
            return Err(ResponseFault::ContentLengthWithTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(ResponseFault::TransferEncodingOnHttp10);
        }
        if f.codings.verdict() != TransferVerdict::Chunked {
            // Other codings could only be relayed with their header; the gateway relays
            // exactly `chunked` and refuses the rest rather than corrupt the body.
            return Err(ResponseFault::UnsupportedTransferEncoding);
        }
    }
    if method == Method::Head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(ResponseFraming::None);
    }
    if f.codings.present() {
        return Ok(ResponseFraming::Chunked);
    }
    Ok(match f.content_length.value() {
        Some(0) => ResponseFraming::None,
        Some(n) => ResponseFraming::Length(n),
        None => ResponseFraming::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_for(method: Method, raw: &[u8]) -> Result<Option<ResponseHead>, HttpError> {
        parse_response(raw, method, 8192, 16, &mut Vec::new())
    }

    fn ok(method: Method, raw: &[u8]) -> ResponseHead {
        match parse_for(method, raw) {
            Ok(Some(h)) => h,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    fn fault(raw: &[u8]) -> ResponseFault {
        match parse_for(Method::Get, raw) {
            Err(HttpError::InvalidResponse(f)) => f,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn parses_status_reason_and_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let head = ok(Method::Get, raw);
        assert_eq!(head.status, 200);
        assert_eq!(head.reason.of(raw), b"OK");
        assert_eq!(head.head_len, raw.len() - 5);
        assert_eq!(head.framing, ResponseFraming::Length(5));
        assert!(head.keep_alive);
    }

    #[test]
    fn returns_none_while_incomplete() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse_for(Method::Get, &raw[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn head_request_has_no_body_even_with_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
        assert_eq!(ok(Method::Head, raw).framing, ResponseFraming::None);
    }

    #[test]
    fn informational_204_and_304_have_no_body() {
        for status in ["100 Continue", "204 No Content", "304 Not Modified"] {
            let raw = format!("HTTP/1.1 {status}\r\nContent-Length: 7\r\n\r\n");
            assert_eq!(
                ok(Method::Get, raw.as_bytes()).framing,
                ResponseFraming::None
            );
        }
    }

    #[test]
    fn chunked_response_is_chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(ok(Method::Get, raw).framing, ResponseFraming::Chunked);
    }

    #[test]
    fn no_length_reads_until_close_and_is_not_reusable() {
        let head = ok(Method::Get, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(head.framing, ResponseFraming::UntilClose);
        assert!(!head.keep_alive);
    }

    #[test]
    fn content_length_zero_is_no_body() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(ok(Method::Get, raw).framing, ResponseFraming::None);
    }

    #[test]
    fn rejects_conflicting_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(fault(raw), ResponseFault::ConflictingContentLength);
        let e = parse_for(Method::Get, raw).unwrap_err();
        assert_eq!(e.status(), 502);
    }

    #[test]
    fn rejects_malformed_content_length() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n";
        assert_eq!(fault(raw), ResponseFault::InvalidContentLength);
    }

    #[test]
    fn rejects_content_length_with_transfer_encoding() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(fault(raw), ResponseFault::ContentLengthWithTransferEncoding);
    }

    #[test]
    fn rejects_codings_other_than_chunked() {
        for te in ["gzip, chunked", "gzip", "chunked, gzip"] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert_eq!(
                fault(raw.as_bytes()),
                ResponseFault::UnsupportedTransferEncoding
            );
        }
    }

    #[test]
    fn rejects_transfer_encoding_on_http10() {
        let raw = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(fault(raw), ResponseFault::TransferEncodingOnHttp10);
    }

    #[test]
    fn rejects_other_versions_and_bad_status() {
        assert_eq!(
            fault(b"HTTP/2.0 200 OK\r\n\r\n"),
            ResponseFault::UnsupportedVersion
        );
        assert_eq!(
            fault(b"HTTP/1.1 099 X\r\n\r\n"),
            ResponseFault::InvalidStatus
        );
        assert_eq!(fault(b"HTTP/1.1 20 OK\r\n\r\n"), ResponseFault::Malformed);
    }

    #[test]
    fn rejects_obs_fold_and_ctls() {
        assert_eq!(
            fault(b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
            ResponseFault::Malformed
        );
        assert_eq!(
            fault(b"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n"),
            ResponseFault::Malformed
        );
    }

    #[test]
    fn rejects_oversized_and_overfull_heads() {
        let raw = b"HTTP/1.1 200 OK\r\nX: aaaaaaaaaaaaaaaaaaaaaaa";
        let e = parse_response(raw, Method::Get, 16, 16, &mut Vec::new());
        assert_eq!(
            e,
            Err(HttpError::InvalidResponse(ResponseFault::HeadTooLarge))
        );
        let raw = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
        let e = parse_response(raw, Method::Get, 8192, 1, &mut Vec::new());
        assert_eq!(
            e,
            Err(HttpError::InvalidResponse(ResponseFault::TooManyHeaders))
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(!ok(Method::Get, raw).keep_alive);
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(!ok(Method::Get, raw).keep_alive);
        let raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(ok(Method::Get, raw).keep_alive);
    }

    #[test]
    fn accepts_empty_reason() {
        let head = ok(Method::Get, b"HTTP/1.1 204\r\n\r\n");
        assert_eq!(head.status, 204);
        assert!(head.reason.is_empty());
    }
}
