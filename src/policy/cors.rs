//! `kind = "cors"`: Cross-Origin Resource Sharing answered by the gateway, following the
//! Fetch standard's CORS protocol.
//!
//! - A **preflight** is `OPTIONS` with both `Origin` and `Access-Control-Request-Method`; any
//!   other `OPTIONS` is an ordinary request. The gateway answers a preflight itself, before
//!   every other policy (it carries no credentials): `204` with the allow fields when the
//!   origin, the method and every requested header are allowed, `403` without any CORS field
//!   otherwise (Fetch fails a preflight whose status is not 2xx, so a refusal cannot be
//!   mistaken for a grant, and the log and metrics say what happened).
//! - An **actual** response (the upstream's, or the gateway's own 401/403/429/5xx) carries
//!   `Access-Control-Allow-Origin` (the request's origin, echoed), `-Allow-Credentials` and
//!   `-Expose-Headers` when the origin is allowed, and nothing when it is not (the request is
//!   still served: the browser withholds the response from the page).
//! - `Vary: Origin` is on every response of the route unless the policy allows `*` without
//!   credentials (then the answer does not depend on the origin).
//! - The upstream's own `Access-Control-*` fields are dropped, so a browser never sees two.
//!
//! Origins are compared in their serialized form (`scheme://host[:port]`, host lower case,
//! default port dropped): exact entries in a hash set, `https://*.example.com` patterns as a
//! suffix on a label boundary, and anchored regexes on the serialized form. Matching is done in
//! a stack buffer: no allocation per request.

use std::collections::HashSet;

use regex::Regex;

use super::{Denial, RequestView};

/// A compiled `cors` policy.
#[derive(Debug)]
pub struct Cors {
    /// The policy's name.
    pub name: String,
    /// The origins allowed.
    pub origins: Origins,
    /// Methods a preflight may ask for.
    pub methods: Allowed,
    /// Request headers a preflight may ask for.
    pub headers: RequestHeaders,
    /// `Access-Control-Expose-Headers` of actual responses (joined), if any.
    pub expose_headers: Option<Box<str>>,
    /// Whether credentialed requests are allowed (`Access-Control-Allow-Credentials: true`).
    pub credentials: bool,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    pub max_age: u64,
    /// Whether a preflight asking for private network access is granted it.
    pub private_network: bool,
}

/// The origins a policy allows.
#[derive(Debug, Default)]
pub struct Origins {
    /// `origins = ["*"]`: every origin.
    pub any: bool,
    /// Serialized origins (and `null` when listed literally).
    pub exact: HashSet<Box<str>>,
    /// `scheme://*.suffix[:port]` patterns.
    pub suffixes: Vec<Suffix>,
    /// Anchored regexes over the serialized origin.
    pub regexes: Vec<Regex>,
}

/// A `scheme://*.example.com[:port]` pattern: any host ending in `.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suffix {
    /// The scheme, lower case.
    pub scheme: Box<str>,
    /// The host suffix with its leading dot (`.example.com`), lower case.
    pub suffix: Box<str>,
    /// The port, `None` for the scheme's default.
    pub port: Option<u16>,
}

/// A list that may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `["*"]` (never with credentials).
    Any,
    /// The listed values and, for the response field, their join.
    List {
        /// The values.
        values: Box<[Box<str>]>,
        /// `values` joined with `, `.
        joined: Box<str>,
    },
}

impl Allowed {
    /// A list of `values`.
    pub fn list(values: Vec<String>) -> Self {
        let joined = values.join(", ").into();
        Allowed::List {
            values: values.into_iter().map(Into::into).collect(),
            joined,
        }
    }
}

/// The request headers a preflight may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestHeaders {
    /// `headers = ["*"]`: answered `Access-Control-Allow-Headers: *`, which by Fetch never
    /// covers `Authorization`.
    Any,
    /// `mirror_headers = true`: whatever the preflight asks for is echoed.
    Mirror,
    /// The listed names (lower case); a preflight asking for another is refused.
    List(Box<[Box<str>]>),
}

/// What the request's `Origin` field says under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck<'a> {
    /// No `Origin` field (not a cross-origin browser request).
    Absent,
    /// An allowed origin, as the request wrote it (echoed back).
    Allowed(&'a [u8]),
    /// An origin not allowed, or several `Origin` fields.
    Refused,
}

/// The `Vary` line of the actual responses of a route whose answers depend on the origin.
pub const VARY_ORIGIN: &[u8] = b"Vary: Origin\r\n";
/// The `Vary` line of preflight answers.
const VARY_PREFLIGHT: &[u8] =
    b"Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n";
/// The `Vary` line of preflight answers under `*` without credentials.
const VARY_PREFLIGHT_ANY: &[u8] =
    b"Vary: Access-Control-Request-Method, Access-Control-Request-Headers\r\n";

/// The CORS response fields the gateway owns: the upstream's copies are dropped.
pub const RESPONSE_FIELDS: &[&[u8]] = &[
    b"access-control-allow-origin",
    b"access-control-allow-credentials",
    b"access-control-allow-methods",
    b"access-control-allow-headers",
    b"access-control-expose-headers",
    b"access-control-max-age",
    b"access-control-allow-private-network",
];

/// CORS-safelisted methods: Fetch lets a preflight through for them whatever
/// `Access-Control-Allow-Methods` says.
const SAFELISTED_METHODS: &[&[u8]] = &[b"GET", b"HEAD", b"POST"];

/// Longest serialized origin compared (scheme, 253-byte host, port); longer ones never match.
const MAX_ORIGIN: usize = 320;

impl Cors {
    /// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &[u8], req: &RequestView<'_>) -> bool {
        method == b"OPTIONS"
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some()
    }

    /// Whether the route's answers depend on the request's origin (then they carry
    /// `Vary: Origin`): always, except for `*` without credentials.
    pub fn varies(&self) -> bool {
        !self.origins.any || self.credentials
    }

    /// The request's origin under this policy. Two `Origin` fields are refused.
    pub fn origin<'a>(&self, req: &RequestView<'a>) -> OriginCheck<'a> {
        let mut fields = req.headers_named("origin");
        let Some(origin) = fields.next() else {
            return OriginCheck::Absent;
        };
        if fields.next().is_some() {
            return OriginCheck::Refused;
        }
        if self.origins.allows(origin) {
            OriginCheck::Allowed(origin)
        } else {
            OriginCheck::Refused
        }
    }

    /// Appends the CORS fields of an actual response (lines ending in CRLF): the echoed
    /// origin (or `*`), credentials and exposed headers; nothing for an origin not allowed.
    pub fn write_actual(&self, origin: OriginCheck<'_>, out: &mut Vec<u8>) {
        if !self.write_allow_origin(origin, out) {
            return;
        }
        if let Some(expose) = &self.expose_headers {
            field(out, b"Access-Control-Expose-Headers", expose.as_bytes());
        }
    }

    /// Decides a preflight and appends its answer's fields: `Vary` always; on success the
    /// allow fields. A refused preflight is a 403 without CORS fields.
    pub fn preflight(
        &self,
        req: &RequestView<'_>,
        origin: OriginCheck<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Denial> {
        out.extend_from_slice(if self.varies() {
            VARY_PREFLIGHT
        } else {
            VARY_PREFLIGHT_ANY
        });
        let method = req.header("access-control-request-method").unwrap_or(b"");
        let granted = !matches!(origin, OriginCheck::Refused)
            && self.allows_method(method)
            && self.allows_headers(req);
        if !granted {
            return Err(Denial::forbidden(
                crate::http::problem::cause::CORS_PREFLIGHT_REFUSED,
                "forbidden: CORS preflight not allowed",
            ));
        }
        self.write_allow_origin(origin, out);
        match &self.methods {
            Allowed::Any => field(out, b"Access-Control-Allow-Methods", b"*"),
            Allowed::List { joined, .. } => {
                field(out, b"Access-Control-Allow-Methods", joined.as_bytes());
            }
        }
        self.write_allow_headers(req, out);
        out.extend_from_slice(b"Access-Control-Max-Age: ");
        crate::http::writer::push_decimal(out, self.max_age);
        out.extend_from_slice(b"\r\n");
        let private = req
            .header("access-control-request-private-network")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"true"));
        if private && self.private_network {
            field(out, b"Access-Control-Allow-Private-Network", b"true");
        }
        Ok(())
    }

    /// `Access-Control-Allow-Origin` and `-Allow-Credentials`; returns whether the origin
    /// is granted (`false` writes nothing).
    fn write_allow_origin(&self, origin: OriginCheck<'_>, out: &mut Vec<u8>) -> bool {
        let value = match origin {
            _ if self.origins.any && !self.credentials => &b"*"[..],
            OriginCheck::Allowed(origin) => origin,
            OriginCheck::Absent | OriginCheck::Refused => return false,
        };
        field(out, b"Access-Control-Allow-Origin", value);
        if self.credentials {
            field(out, b"Access-Control-Allow-Credentials", b"true");
        }
        true
    }

    /// Whether a preflight may ask for `method` (case-sensitive, as Fetch compares it).
    fn allows_method(&self, method: &[u8]) -> bool {
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return false;
        }
        if SAFELISTED_METHODS.contains(&method) {
            return true;
        }
        match &self.methods {
            Allowed::Any => true,
            Allowed::List { values, .. } => values.iter().any(|m| m.as_bytes() == method),
        }
    }

    /// Whether every header the preflight asks for is allowed.
    fn allows_headers(&self, req: &RequestView<'_>) -> bool {
        let mut names = requested_headers(req);
        match &self.headers {
            RequestHeaders::Any | RequestHeaders::Mirror => {
                names.all(|n| n.iter().all(|&b| is_tchar(b)))
            }
            RequestHeaders::List(allowed) => names.all(|name| {
                allowed
                    .iter()
                    .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
            }),
        }
    }

    /// `Access-Control-Allow-Headers` of a granted preflight: the requested list echoed
    /// (every name was checked), or `*`; absent when none were requested.
    fn write_allow_headers(&self, req: &RequestView<'_>, out: &mut Vec<u8>) {
        if requested_headers(req).next().is_none() {
            return;
        }
        if self.headers == RequestHeaders::Any {
            field(out, b"Access-Control-Allow-Headers", b"*");
            return;
        }
        out.extend_from_slice(b"Access-Control-Allow-Headers: ");
        for (i, name) in requested_headers(req).enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(name);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The names of every `Access-Control-Request-Headers` field, trimmed, empty ones skipped.
fn requested_headers<'a>(req: &RequestView<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
    let (data, headers) = (req.data, req.headers);
    headers
        .iter()
        .filter(move |h| {
            h.name
                .of(data)
                .eq_ignore_ascii_case(b"access-control-request-headers")
        })
        .flat_map(move |h| h.value.of(data).split(|&b| b == b','))
        .map(crate::http::headers::trim_ows)
        .filter(|n| !n.is_empty())
}

impl Origins {
    /// Whether the request origin `value` is allowed.
    pub fn allows(&self, value: &[u8]) -> bool {
        if self.any {
            return true;
        }
        if value == b"null" {
            return self.exact.contains("null");
        }
        let Some(origin) = parse_origin(value) else {
            return false;
        };
        let mut buf = [0u8; MAX_ORIGIN];
        let Some(serialized) = origin.serialize(&mut buf) else {
            return false;
        };
        self.exact.contains(serialized)
            || self.suffixes.iter().any(|s| s.matches(&origin))
            || self.regexes.iter().any(|r| r.is_match(serialized))
    }
}

impl Suffix {
    /// Whether `origin` has this scheme and port and a host ending in the suffix after at
    /// least one label of its own.
    fn matches(&self, origin: &Origin<'_>) -> bool {
        let host = origin.host;
        origin.scheme.eq_ignore_ascii_case(self.scheme.as_bytes())
            && origin.port == self.port
            && host.len() > self.suffix.len()
            && host[host.len() - self.suffix.len()..].eq_ignore_ascii_case(self.suffix.as_bytes())
    }
}

/// A parsed origin: scheme, host (as written), port (`None` when absent or the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The scheme.
    pub scheme: &'a [u8],
    /// The host: a name, an IPv4 address or a bracketed IPv6 address.
    pub host: &'a [u8],
    /// The port, unless absent or the scheme's default.
    pub port: Option<u16>,
}

impl Origin<'_> {
    /// The serialized origin (`scheme://host[:port]`, lower case) written into `buf`.
    pub fn serialize<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        let mut len = 0;
        let mut put = |bytes: &[u8]| -> Option<()> {
            let end = len + bytes.len();
            let dest = buf.get_mut(len..end)?;
            for (d, s) in dest.iter_mut().zip(bytes) {
                *d = s.to_ascii_lowercase();
            }
            len = end;
            Some(())
        };
        put(self.scheme)?;
        put(b"://")?;
        put(self.host)?;
        if let Some(port) = self.port {
            let mut digits = [0u8; 6];
            digits[0] = b':';
            let n = write_port(port, &mut digits[1..]);
            put(&digits[..=n])?;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }
}

/// Writes `port` in decimal at the start of `out`; returns the digit count.
fn write_port(port: u16, out: &mut [u8]) -> usize {
    let text = [
        port / 10000,
        port / 1000 % 10,
        port / 100 % 10,
        port / 10 % 10,
        port % 10,
    ];
    let first = text.iter().position(|&d| d != 0).unwrap_or(4);
    for (o, d) in out.iter_mut().zip(&text[first..]) {
        *o = b'0' + *d as u8;
    }
    5 - first
}

/// Parses `scheme://host[:port]` (no path, user info, query or fragment). `None` for
/// anything else, including `null`.
pub fn parse_origin(value: &[u8]) -> Option<Origin<'_>> {
    let sep = value.windows(3).position(|w| w == b"://")?;
    let (scheme, rest) = (&value[..sep], &value[sep + 3..]);
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    let (host, port) = if rest.first() == Some(&b'[') {
        let close = rest.iter().position(|&b| b == b']')?;
        let host = &rest[..=close];
        let inner = &host[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (host, &rest[close + 1..])
    } else {
        let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
        let host = &rest[..end];
        let host_ok = !host.is_empty()
            && host
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !host_ok {
            return None;
        }
        (host, &rest[end..])
    };
    let port = match port {
        [] => None,
        [b':', digits @ ..] if !digits.is_empty() && digits.len() <= 5 => {
            let n = digits.iter().try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })?;
            Some(u16::try_from(n).ok()?)
        }
        _ => return None,
    };
    let port = port.filter(|&p| Some(p) != default_port(scheme));
    Some(Origin { scheme, host, port })
}

/// The default port of a scheme an origin may have.
pub fn default_port(scheme: &[u8]) -> Option<u16> {
    if scheme.eq_ignore_ascii_case(b"https") || scheme.eq_ignore_ascii_case(b"wss") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"ws") {
        Some(80)
    } else {
        None
    }
}

/// An RFC 9110 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `{name}: {value}\r\n`
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(exact: &[&str], suffixes: &[(&str, &str, Option<u16>)]) -> Origins {
        Origins {
            any: false,
            exact: exact.iter().map(|s| Box::from(*s)).collect(),
            suffixes: suffixes
                .iter()
                .map(|(scheme, suffix, port)| Suffix {
                    scheme: (*scheme).into(),
                    suffix: (*suffix).into(),
                    port: *port,
                })
                .collect(),
            regexes: Vec::new(),
        }
    }

    #[test]
    fn origins_are_compared_serialized() {
        let o = origins(&["https://app.example.com", "http://localhost:3000"], &[]);
        assert!(o.allows(b"https://app.example.com"));
        assert!(o.allows(b"HTTPS://App.Example.COM:443"));
        assert!(o.allows(b"http://localhost:3000"));
        assert!(!o.allows(b"http://localhost:3001"));
        assert!(!o.allows(b"http://app.example.com"));
        assert!(!o.allows(b"https://app.example.com/"));
        assert!(!o.allows(b"https://app.example.com.evil.com"));
        assert!(!o.allows(b"null"));
    }

    #[test]
    fn null_matches_only_when_listed() {
        assert!(origins(&["null"], &[]).allows(b"null"));
        assert!(!origins(&["https://a.example"], &[]).allows(b"null"));
    }

    #[test]
    fn suffixes_match_on_a_label_boundary() {
        let o = origins(&[], &[("https", ".example.com", None)]);
        assert!(o.allows(b"https://api.example.com"));
        assert!(o.allows(b"https://a.b.example.com"));
        assert!(!o.allows(b"https://example.com"));
        assert!(!o.allows(b"https://evil-example.com"));
        assert!(!o.allows(b"https://example.com.evil.com"));
        assert!(!o.allows(b"http://api.example.com"));
        assert!(!o.allows(b"https://api.example.com:8443"));
    }

    #[test]
    fn origins_parse_strictly() {
        let p = parse_origin(b"https://[::1]:8443").expect("v6");
        assert_eq!((p.host, p.port), (&b"[::1]"[..], Some(8443)));
        assert_eq!(
            parse_origin(b"https://a.example:443").and_then(|o| o.port),
            None
        );
        for bad in [
            &b"https://a.example/path"[..],
            b"https://user@a.example",
            b"https://a.example:99999",
            b"https://",
            b"a.example",
            b"null",
        ] {
            assert_eq!(parse_origin(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn serialized_origin_writes_ports_in_decimal() {
        let mut buf = [0u8; MAX_ORIGIN];
        let o = parse_origin(b"http://H:8").expect("origin");
        assert_eq!(o.serialize(&mut buf), Some("http://h:8"));
        let o = parse_origin(b"http://h:65535").expect("origin");
        assert_eq!(o.serialize(&mut buf), Some("http://h:65535"));
        let o = parse_origin(b"https://h:80").expect("origin");
        assert_eq!(o.serialize(&mut buf), Some("https://h:80"));
    }
}
