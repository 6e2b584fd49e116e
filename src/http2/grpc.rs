//! gRPC over HTTP/2: what the gateway itself answers a gRPC request with, and the
//! `grpc-timeout` a client sets (PROTOCOL-HTTP2.md in grpc/grpc).
//!
//! A gRPC client reads the call's outcome from `grpc-status`, not from the HTTP status, so
//! an error the gateway produces (no route, a policy refusal, a rate limit, no healthy
//! target, a timeout) is answered "trailers-only": HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message`, and no body.

use std::time::Duration;

/// Whether a `content-type` value is gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(content_type: &[u8]) -> bool {
    let prefix = b"application/grpc";
    content_type.len() >= prefix.len()
        && content_type[..prefix.len()].eq_ignore_ascii_case(prefix)
        && matches!(
            content_type.get(prefix.len()),
            None | Some(b'+') | Some(b';')
        )
}

/// gRPC status codes the gateway answers with (grpc/grpc doc/statuscodes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// 2
    Unknown = 2,
    /// 4: the call's deadline passed.
    DeadlineExceeded = 4,
    /// 7: a policy refused the caller.
    PermissionDenied = 7,
    /// 8: a rate limit or a size limit.
    ResourceExhausted = 8,
    /// 12: no route for the method.
    Unimplemented = 12,
    /// 13: the request was malformed.
    Internal = 13,
    /// 14: no healthy target, breaker open, upstream failed.
    Unavailable = 14,
    /// 16: missing or bad credentials.
    Unauthenticated = 16,
}

/// The gRPC code for an answer the gateway would give with HTTP `status`.
pub fn code_for_status(status: u16) -> Code {
    match status {
        400 | 431 | 414 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 | 405 | 501 => Code::Unimplemented,
        408 | 504 => Code::DeadlineExceeded,
        413 | 429 => Code::ResourceExhausted,
        502 | 503 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Appends a trailers-only gRPC answer (as the HTTP/1.1 message the pipeline writes; the h2
/// stream sends it as one `HEADERS` frame with `END_STREAM`). `extra_headers` are complete
/// header lines the gateway adds (rate-limit fields, `Retry-After`).
/// `content_type` is `application/grpc`, or a gRPC-Web type for a gRPC-Web request (whose
/// trailers-only answer is the same head).
pub fn write_status_response(
    out: &mut Vec<u8>,
    code: Code,
    message: &str,
    content_type: &str,
    (request_id, extra_headers): (&[u8], &[u8]),
) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ngrpc-status: ");
    out.extend_from_slice((code as u8).to_string().as_bytes());
    out.extend_from_slice(b"\r\ngrpc-message: ");
    percent_encode(message, out);
    out.extend_from_slice(b"\r\ncontent-length: 0\r\n");
    if !request_id.is_empty() {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(request_id);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra_headers);
    out.extend_from_slice(b"\r\n");
}

/// `grpc-message` is percent-encoded outside printable ASCII, and `%` itself.
fn percent_encode(message: &str, out: &mut Vec<u8>) {
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

/// Parses `grpc-timeout`: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_recognized() {
        assert!(is_grpc(b"application/grpc"));
        assert!(is_grpc(b"application/grpc+proto"));
        assert!(is_grpc(b"Application/GRPC;charset=x"));
        assert!(!is_grpc(b"application/grpc-web"));
        assert!(!is_grpc(b"application/json"));
    }

    #[test]
    fn timeouts_parse_with_every_unit() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout(b"9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout(b"123456789S"), None);
        assert_eq!(parse_timeout(b"S"), None);
        assert_eq!(parse_timeout(b"10x"), None);
    }

    #[test]
    fn statuses_map_to_grpc_codes() {
        assert_eq!(code_for_status(401), Code::Unauthenticated);
        assert_eq!(code_for_status(403), Code::PermissionDenied);
        assert_eq!(code_for_status(429), Code::ResourceExhausted);
        assert_eq!(code_for_status(503), Code::Unavailable);
        assert_eq!(code_for_status(504), Code::DeadlineExceeded);
        assert_eq!(code_for_status(404), Code::Unimplemented);
    }

    #[test]
    fn status_answers_are_trailers_only() {
        let mut out = Vec::new();
        write_status_response(
            &mut out,
            Code::Unavailable,
            "no 100%",
            "application/grpc",
            (b"id1", b""),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: 14\r\ngrpc-message: no 100%25\r\ncontent-length: 0\r\nx-request-id: id1\r\n\r\n"
        );
    }
}
