//! RFC 9457 problem details: the `application/problem+json` bodies of the gateway's own 4xx
//! and 5xx answers (`errors = "problem"`, and always for `validate` rejections).
//!
//! Each cause has a stable `type` URI, [`TYPE_BASE`] followed by the cause's name (e.g.
//! `https://ringgate.dev/problems/rate-limited`): clients branch on `type`, never on `detail`.
//! The URIs identify; they are not meant to be fetched (RFC 9457 §3.1.1 lets a type URI be a
//! plain identifier).
//!
//! Writing appends to a reused buffer and allocates nothing beyond its growth: strings are
//! escaped byte by byte, numbers formatted on the stack.

/// What every problem `type` starts with.
pub const TYPE_BASE: &str = "https://ringgate.dev/problems/";
/// The media type of a problem body.
pub const CONTENT_TYPE: &[u8] = b"application/problem+json";

/// One way a request failed its contract (a `validate` policy), listed in the problem's
/// `errors` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which part of the request: `body`, `query`, `header` or `path`.
    pub location: &'static str,
    /// JSON pointer (RFC 6901) to the offending value within that part: into the body
    /// document, or into the object of query parameters, headers or path parameters
    /// (e.g. `/limit`); empty for the part as a whole.
    pub pointer: String,
    /// What is wrong.
    pub detail: String,
}

/// A problem to write.
#[derive(Debug, Clone, Copy)]
pub struct Problem<'a> {
    /// The HTTP status (also the `status` member).
    pub status: u16,
    /// The cause's name: the last segment of `type` (kebab-case, stable).
    pub cause: &'a str,
    /// `title`: a short summary of the cause (the status's reason phrase).
    pub title: &'a str,
    /// `detail`: what happened to this request; never a secret.
    pub detail: &'a str,
    /// The request id, as the `request_id` extension member (omitted when empty).
    pub request_id: &'a [u8],
    /// The `errors` extension member (omitted when empty).
    pub violations: &'a [Violation],
}

/// Appends the problem's JSON document to `out`.
pub fn write_body(out: &mut Vec<u8>, problem: &Problem<'_>) {
    out.extend_from_slice(b"{\"type\":\"");
    escape_into(out, TYPE_BASE.as_bytes());
    escape_into(out, problem.cause.as_bytes());
    out.extend_from_slice(b"\",\"title\":\"");
    escape_into(out, problem.title.as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    push_u16(out, problem.status);
    out.extend_from_slice(b",\"detail\":\"");
    escape_into(out, problem.detail.as_bytes());
    out.push(b'"');
    if !problem.request_id.is_empty() {
        out.extend_from_slice(b",\"request_id\":\"");
        escape_into(out, problem.request_id);
        out.push(b'"');
    }
    if !problem.violations.is_empty() {
        out.extend_from_slice(b",\"errors\":[");
        for (i, v) in problem.violations.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"in\":\"");
            escape_into(out, v.location.as_bytes());
            out.extend_from_slice(b"\",\"pointer\":\"");
            escape_into(out, v.pointer.as_bytes());
            out.extend_from_slice(b"\",\"detail\":\"");
            escape_into(out, v.detail.as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.push(b']');
    }
    out.extend_from_slice(b"}\n");
}

/// Appends `bytes` as the inside of a JSON string: quotes, backslashes and control bytes
/// escaped; bytes that are not UTF-8 (they come from a request) replaced by U+FFFD.
fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0..=0x1f | 0x7f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

fn push_u16(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
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
mod tests {
    use super::*;

    fn render(problem: &Problem<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        write_body(&mut out, problem);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn writes_the_rfc_9457_members_and_extensions() {
        let violations = [Violation {
            location: "body",
            pointer: "/items/0/email".into(),
            detail: "\"x\" is not a \"email\"".into(),
        }];
        let doc = render(&Problem {
            status: 422,
            cause: "request-invalid",
            title: "Unprocessable Content",
            detail: "the request does not match its contract",
            request_id: b"abc",
            violations: &violations,
        });
        assert_eq!(doc["type"], "https://ringgate.dev/problems/request-invalid");
        assert_eq!(doc["status"], 422);
        assert_eq!(doc["title"], "Unprocessable Content");
        assert_eq!(doc["request_id"], "abc");
        assert_eq!(doc["errors"][0]["pointer"], "/items/0/email");
        assert_eq!(doc["errors"][0]["in"], "body");
        assert_eq!(doc["errors"][0]["detail"], "\"x\" is not a \"email\"");
    }

    #[test]
    fn escapes_control_bytes_and_replaces_invalid_utf8() {
        let violations = [Violation {
            location: "query",
            pointer: "/a\u{1}b".into(),
            detail: String::from_utf8_lossy(b"tab\there\r\n").into_owned(),
        }];
        let mut out = Vec::new();
        write_body(
            &mut out,
            &Problem {
                status: 400,
                cause: "x",
                title: "Bad Request",
                detail: "d",
                request_id: b"r\xffs",
                violations: &violations,
            },
        );
        let doc: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(doc["errors"][0]["pointer"], "/a\u{1}b");
        assert_eq!(doc["errors"][0]["detail"], "tab\there\r\n");
        assert_eq!(doc["request_id"], "r\u{fffd}s");
        assert!(!out.iter().any(|&b| b < 0x20 && b != b'\n'));
    }

    #[test]
    fn omits_empty_extensions() {
        let doc = render(&Problem {
            status: 503,
            cause: "no-healthy-upstream",
            title: "Service Unavailable",
            detail: "d",
            request_id: b"",
            violations: &[],
        });
        let members: Vec<&String> = doc.as_object().expect("object").keys().collect();
        assert_eq!(members, ["detail", "status", "title", "type"]);
    }
}
