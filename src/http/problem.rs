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

/// The causes' names: the last segment of each `type` the gateway writes. Clients branch on
/// these, so they are part of the API: `tests::the_causes_are_pinned` lists them literally,
/// and `docs/contracts.md` documents each.
pub mod cause {
    /// The request is not valid HTTP (400).
    pub const MALFORMED_REQUEST: &str = "malformed-request";
    /// The request target cannot be routed or normalized (400).
    pub const INVALID_TARGET: &str = "invalid-target";
    /// The client stopped sending in the middle of a request (408).
    pub const REQUEST_TIMEOUT: &str = "request-timeout";
    /// The client's connection was lost (never written: no answer can be sent).
    pub const CLIENT_GONE: &str = "client-gone";
    /// A composite that forwards the client's body got a chunked one (411).
    pub const LENGTH_REQUIRED: &str = "length-required";
    /// The body is over `max_body_bytes` (413).
    pub const BODY_TOO_LARGE: &str = "body-too-large";
    /// The request target is over `max_uri_bytes` (414).
    pub const URI_TOO_LONG: &str = "uri-too-long";
    /// An `Expect` other than `100-continue` (417).
    pub const EXPECTATION_FAILED: &str = "expectation-failed";
    /// The head is over `max_head_bytes` or `max_headers` (431).
    pub const HEADERS_TOO_LARGE: &str = "headers-too-large";
    /// A transfer coding or method the gateway does not implement (501).
    pub const NOT_IMPLEMENTED: &str = "not-implemented";
    /// An HTTP version other than 1.0 and 1.1 (505).
    pub const VERSION_NOT_SUPPORTED: &str = "version-not-supported";
    /// A malformed WebSocket handshake (400) or another WebSocket version (426).
    pub const BAD_HANDSHAKE: &str = "bad-handshake";
    /// No route matches (404).
    pub const NO_ROUTE: &str = "no-route";
    /// The route's group has no target (503).
    pub const NO_UPSTREAM_TARGET: &str = "no-upstream-target";
    /// Every target of the group is unhealthy or ejected (503).
    pub const NO_HEALTHY_UPSTREAM: &str = "no-healthy-upstream";
    /// The group's circuit breaker is open (503).
    pub const CIRCUIT_OPEN: &str = "circuit-open";
    /// The connection to the upstream could not be opened (502).
    pub const UPSTREAM_CONNECT_FAILED: &str = "upstream-connect-failed";
    /// The connection to the upstream was not established in time (504).
    pub const UPSTREAM_CONNECT_TIMEOUT: &str = "upstream-connect-timeout";
    /// The upstream did not answer in time (504).
    pub const UPSTREAM_TIMEOUT: &str = "upstream-timeout";
    /// The upstream closed or reset the connection before a complete answer (502).
    pub const UPSTREAM_CLOSED: &str = "upstream-closed";
    /// The upstream's answer is not valid HTTP, or an unasked-for upgrade (502).
    pub const UPSTREAM_INVALID_RESPONSE: &str = "upstream-invalid-response";
    /// The worker or the route holds as many tunnels as its cap allows (503).
    pub const TOO_MANY_TUNNELS: &str = "too-many-tunnels";
    /// No valid credential (401, from `api_key`, `basic`, `jwt`, `introspect`).
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The authorization server gave no usable answer (503, `introspect`).
    pub const INTROSPECTION_UNAVAILABLE: &str = "introspection-unavailable";
    /// The password verifier pool is busy (503, `basic`).
    pub const VERIFIER_BUSY: &str = "verifier-busy";
    /// `authz` with no authenticated identity before it (403).
    pub const NOT_AUTHENTICATED: &str = "not-authenticated";
    /// A group in `deny_groups` (403, `authz`).
    pub const GROUP_DENIED: &str = "group-denied";
    /// No group in `allow_groups` (403, `authz`).
    pub const GROUP_NOT_ALLOWED: &str = "group-not-allowed";
    /// `require_scopes` or `require_claims` without a token (403, `authz`).
    pub const TOKEN_REQUIRED: &str = "token-required";
    /// A scope in `require_scopes` is missing (403, `authz`).
    pub const INSUFFICIENT_SCOPE: &str = "insufficient-scope";
    /// A claim in `require_claims` is missing or has another value (403, `authz`).
    pub const CLAIM_MISMATCH: &str = "claim-mismatch";
    /// The client address is not allowed (403, `ip_filter`).
    pub const ADDRESS_DENIED: &str = "address-denied";
    /// A CORS preflight for an origin, method or header fields the route does not allow
    /// (403, `cors`).
    pub const CORS_PREFLIGHT_REFUSED: &str = "cors-preflight-refused";
    /// A WebSocket handshake from an origin the route's `cors` policy does not allow (403).
    pub const CROSS_ORIGIN_HANDSHAKE: &str = "cross-origin-handshake";
    /// A refusal by a stage that has no credential of its own (403).
    pub const FORBIDDEN: &str = "forbidden";
    /// A rate limit is exhausted (429, `rate_limit`).
    pub const RATE_LIMITED: &str = "rate-limited";
    /// The request does not match its contract (400 or 422, `validate`).
    pub const REQUEST_INVALID: &str = "request-invalid";
    /// A body of a media type or coding the contract does not accept (415, `validate`).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
}

/// Every cause in [`cause`], in its order.
pub const CAUSES: &[&str] = &[
    cause::MALFORMED_REQUEST,
    cause::INVALID_TARGET,
    cause::REQUEST_TIMEOUT,
    cause::CLIENT_GONE,
    cause::LENGTH_REQUIRED,
    cause::BODY_TOO_LARGE,
    cause::URI_TOO_LONG,
    cause::EXPECTATION_FAILED,
    cause::HEADERS_TOO_LARGE,
    cause::NOT_IMPLEMENTED,
    cause::VERSION_NOT_SUPPORTED,
    cause::BAD_HANDSHAKE,
    cause::NO_ROUTE,
    cause::NO_UPSTREAM_TARGET,
    cause::NO_HEALTHY_UPSTREAM,
    cause::CIRCUIT_OPEN,
    cause::UPSTREAM_CONNECT_FAILED,
    cause::UPSTREAM_CONNECT_TIMEOUT,
    cause::UPSTREAM_TIMEOUT,
    cause::UPSTREAM_CLOSED,
    cause::UPSTREAM_INVALID_RESPONSE,
    cause::TOO_MANY_TUNNELS,
    cause::UNAUTHENTICATED,
    cause::INTROSPECTION_UNAVAILABLE,
    cause::VERIFIER_BUSY,
    cause::NOT_AUTHENTICATED,
    cause::GROUP_DENIED,
    cause::GROUP_NOT_ALLOWED,
    cause::TOKEN_REQUIRED,
    cause::INSUFFICIENT_SCOPE,
    cause::CLAIM_MISMATCH,
    cause::ADDRESS_DENIED,
    cause::CORS_PREFLIGHT_REFUSED,
    cause::CROSS_ORIGIN_HANDSHAKE,
    cause::FORBIDDEN,
    cause::RATE_LIMITED,
    cause::REQUEST_INVALID,
    cause::UNSUPPORTED_MEDIA_TYPE,
];

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
    super::writer::push_decimal(out, u64::from(problem.status));
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

    /// The `type` names are an API: renaming one must break this test (and be a decision).
    #[test]
    fn the_causes_are_pinned() {
        let pinned = [
            "malformed-request",
            "invalid-target",
            "request-timeout",
            "client-gone",
            "length-required",
            "body-too-large",
            "uri-too-long",
            "expectation-failed",
            "headers-too-large",
            "not-implemented",
            "version-not-supported",
            "bad-handshake",
            "no-route",
            "no-upstream-target",
            "no-healthy-upstream",
            "circuit-open",
            "upstream-connect-failed",
            "upstream-connect-timeout",
            "upstream-timeout",
            "upstream-closed",
            "upstream-invalid-response",
            "too-many-tunnels",
            "unauthenticated",
            "introspection-unavailable",
            "verifier-busy",
            "not-authenticated",
            "group-denied",
            "group-not-allowed",
            "token-required",
            "insufficient-scope",
            "claim-mismatch",
            "address-denied",
            "cors-preflight-refused",
            "cross-origin-handshake",
            "forbidden",
            "rate-limited",
            "request-invalid",
            "unsupported-media-type",
        ];
        assert_eq!(CAUSES, pinned);
        assert_eq!(TYPE_BASE, "https://ringgate.dev/problems/");
        let mut unique = CAUSES.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), CAUSES.len(), "a cause is listed twice");
    }

    /// Every cause the gateway can write (all but `client-gone`) is in docs/contracts.md's
    /// list, and the list names nothing else.
    #[test]
    fn every_cause_is_documented() {
        let docs = include_str!("../../docs/contracts.md");
        let start = docs.find("### Problem types").expect("the list's heading");
        let list = &docs[start..];
        let list = &list[..list[4..].find("\n#").map_or(list.len(), |end| end + 4)];
        let documented: Vec<&str> = list
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let written: Vec<&str> = CAUSES
            .iter()
            .copied()
            .filter(|&c| c != cause::CLIENT_GONE)
            .collect();
        assert_eq!(documented, written);
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
