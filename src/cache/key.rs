//! Cache keys.
//!
//! The primary key is the method class (GET and HEAD share one), the host, the path and the
//! configured part of the query: the bytes of the *URL key*, whose hash finds a chain of
//! entries. Inside the chain an entry matches when its URL key is equal byte for byte (a hash
//! collision never serves another URL), its *variant* (the configured request headers and
//! cookies) is equal, and the request's values of the fields the response's `Vary` named are
//! those stored (secondary keys, RFC 9111 §4.1).
//!
//! `Accept-Encoding` on a route with a `compress` policy is keyed by what it *means*, not by
//! its text: when the gateway's compressor made the response vary with it (the upstream's
//! own `Vary` does not name it), the secondary key holds the coding the policy negotiated
//! for the request (`gzip`, `br`, `zstd` or `identity`, marked with [`CODING_MARK`]) and a
//! later request matches when the policy negotiates the same coding for it. Raw
//! `Accept-Encoding` strings differ between clients (`gzip, deflate, br`, `br;q=1, gzip`,
//! ...) while the policy reduces them to four variants; an identity request never matches a
//! compressed variant.
//!
//! Both keys are built into buffers the connection reuses: no allocation per request.

use crate::http::HeaderSpan;

/// Which parts of the query are part of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryKey {
    /// The query as the client sent it.
    All,
    /// None of it.
    None,
    /// Only these parameters, in this order (values as sent).
    Names(Vec<String>),
}

/// `key = { query, headers, cookies }`: the request parts besides method, host and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShape {
    /// Query parameters in the key.
    pub query: QueryKey,
    /// Request header fields in the key (lower case).
    pub headers: Vec<String>,
    /// Cookies in the key.
    pub cookies: Vec<String>,
}

impl Default for KeyShape {
    fn default() -> Self {
        KeyShape {
            query: QueryKey::All,
            headers: Vec::new(),
            cookies: Vec::new(),
        }
    }
}

/// The method class of GET and HEAD, the only methods looked up.
const GET_CLASS: &[u8] = b"GET";

impl KeyShape {
    /// Writes the URL key of `host`, `path` and `query` into `out` (cleared first).
    pub fn url_key(&self, host: &[u8], path: &[u8], query: Option<&[u8]>, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(GET_CLASS);
        out.push(0);
        out.extend_from_slice(host);
        out.push(0);
        out.extend_from_slice(path);
        let Some(query) = query else { return };
        match &self.query {
            QueryKey::None => {}
            QueryKey::All => {
                out.push(b'?');
                out.extend_from_slice(query);
            }
            QueryKey::Names(names) => {
                out.push(b'?');
                for name in names {
                    for pair in query.split(|&b| b == b'&') {
                        let pname = pair.split(|&b| b == b'=').next().unwrap_or(pair);
                        if pname == name.as_bytes() {
                            out.extend_from_slice(pair);
                            out.push(b'&');
                        }
                    }
                }
            }
        }
    }

    /// Writes the variant key (configured header values, then cookie values) of the request
    /// whose fields are `headers` (spans into `data`) into `out` (cleared first).
    pub fn variant_key(&self, data: &[u8], headers: &[HeaderSpan], out: &mut Vec<u8>) {
        out.clear();
        for name in &self.headers {
            for h in headers {
                if h.name.of(data).eq_ignore_ascii_case(name.as_bytes()) {
                    out.extend_from_slice(h.value.of(data));
                    out.push(b',');
                }
            }
            out.push(0);
        }
        for name in &self.cookies {
            if let Some(value) = cookie(data, headers, name.as_bytes()) {
                out.push(b'=');
                out.extend_from_slice(value);
            }
            out.push(0);
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` fields.
fn cookie<'a>(data: &'a [u8], headers: &[HeaderSpan], name: &[u8]) -> Option<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.of(data).eq_ignore_ascii_case(b"cookie"))
        .flat_map(|h| h.value.of(data).split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
        })
}

fn trim(s: &[u8]) -> &[u8] {
    crate::http::headers::trim_ows(s)
}

/// Appends to `out` the secondary key of a response whose `Vary` fields are `vary` (values
/// of the response's `Vary` fields), from the request's fields: `name\0value\0` per name,
/// the request's values of that field joined with `, `. Returns `false` for `Vary: *`.
pub fn secondary_key<'a>(
    vary: impl Iterator<Item = &'a [u8]>,
    data: &[u8],
    headers: &[HeaderSpan],
    out: &mut Vec<u8>,
) -> bool {
    for value in vary {
        for name in value.split(|&b| b == b',') {
            let name = trim(name);
            if name.is_empty() {
                continue;
            }
            if name == b"*" {
                return false;
            }
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.push(0);
            let mut first = true;
            for h in headers
                .iter()
                .filter(|h| h.name.of(data).eq_ignore_ascii_case(name))
            {
                if !first {
                    out.extend_from_slice(b", ");
                }
                first = false;
                out.extend_from_slice(trim(h.value.of(data)));
            }
            out.push(0);
        }
    }
    true
}

/// Marks a secondary key value that is a negotiated coding rather than the request's text.
/// (No request field value holds this byte: the parser refuses control characters.)
pub const CODING_MARK: u8 = 0x01;

/// The name under which a negotiated coding is keyed.
const CODING_NAME: &[u8] = b"accept-encoding";

/// Appends to the secondary key `out` the coding the route's `compress` policy negotiated
/// for the request (`token`: `gzip`, `br`, `zstd`, or `identity` when none).
pub fn push_coding_key(out: &mut Vec<u8>, token: &[u8]) {
    out.extend_from_slice(CODING_NAME);
    out.push(0);
    out.push(CODING_MARK);
    out.extend_from_slice(token);
    out.push(0);
}

/// The negotiated coding a stored secondary key holds, if it was keyed by one.
pub fn stored_coding(stored: &[u8]) -> Option<&[u8]> {
    let mut parts = stored.split(|&b| b == 0);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if name == CODING_NAME {
            if let Some(token) = value.strip_prefix(&[CODING_MARK]) {
                return Some(token);
            }
        }
    }
    None
}

/// Whether the request's fields (spans into `data`) match a stored secondary key; `coding`
/// is the coding the route's `compress` policy negotiated for the request (`None`: the route
/// has none), compared with a negotiated coding in the key.
pub fn secondary_matches(
    stored: &[u8],
    data: &[u8],
    headers: &[HeaderSpan],
    coding: Option<&[u8]>,
) -> bool {
    let mut parts = stored.split(|&b| b == 0);
    loop {
        let Some(name) = parts.next() else {
            return true;
        };
        if name.is_empty() {
            return true;
        }
        let Some(expected) = parts.next() else {
            return false;
        };
        if let Some(token) = expected.strip_prefix(&[CODING_MARK]) {
            if coding != Some(token) {
                return false;
            }
            continue;
        }
        let mut rest = expected;
        let mut first = true;
        for h in headers
            .iter()
            .filter(|h| h.name.of(data).eq_ignore_ascii_case(name))
        {
            if !first {
                let Some(r) = rest.strip_prefix(b", ") else {
                    return false;
                };
                rest = r;
            }
            first = false;
            let Some(r) = rest.strip_prefix(trim(h.value.of(data))) else {
                return false;
            };
            rest = r;
        }
        if !rest.is_empty() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Span;

    /// Header spans over `text` (`Name: value\n` lines).
    fn fields(text: &str) -> (Vec<u8>, Vec<HeaderSpan>) {
        let data = text.as_bytes().to_vec();
        let mut spans = Vec::new();
        let mut at = 0;
        for line in text.split('\n') {
            if let Some(colon) = line.find(':') {
                let value_start = at + colon + 2;
                spans.push(HeaderSpan {
                    name: Span {
                        start: at as u32,
                        end: (at + colon) as u32,
                    },
                    value: Span {
                        start: value_start as u32,
                        end: (at + line.len()) as u32,
                    },
                });
            }
            at += line.len() + 1;
        }
        (data, spans)
    }

    #[test]
    fn url_key_keeps_host_and_method_class_apart() {
        let shape = KeyShape::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        shape.url_key(b"a.example", b"/x", Some(b"q=1"), &mut a);
        shape.url_key(b"b.example", b"/x", Some(b"q=1"), &mut b);
        assert_ne!(a, b);
        assert_eq!(a, b"GET\0a.example\0/x?q=1");
        // No way to forge another host through the path.
        shape.url_key(b"a.example\0/y", b"", None, &mut b);
        shape.url_key(b"a.example", b"/y", None, &mut a);
        assert_ne!(a, b);
    }

    #[test]
    fn query_shape_selects_parameters() {
        let mut out = Vec::new();
        let none = KeyShape {
            query: QueryKey::None,
            ..KeyShape::default()
        };
        none.url_key(b"h", b"/p", Some(b"a=1&b=2"), &mut out);
        assert_eq!(out, b"GET\0h\0/p");
        let names = KeyShape {
            query: QueryKey::Names(vec!["b".into(), "a".into()]),
            ..KeyShape::default()
        };
        names.url_key(b"h", b"/p", Some(b"a=1&utm=x&b=2"), &mut out);
        assert_eq!(out, b"GET\0h\0/p?b=2&a=1&");
        let mut other = Vec::new();
        names.url_key(b"h", b"/p", Some(b"b=2&a=1&utm=y"), &mut other);
        assert_eq!(out, other);
    }

    #[test]
    fn variant_key_reads_headers_and_cookies() {
        let shape = KeyShape {
            query: QueryKey::All,
            headers: vec!["accept-language".into()],
            cookies: vec!["tenant".into()],
        };
        let (data, spans) = fields("Accept-Language: de\nCookie: a=1; tenant=t7\n");
        let mut out = Vec::new();
        shape.variant_key(&data, &spans, &mut out);
        assert_eq!(out, b"de,\0=t7\0");
        let (data, spans) = fields("Cookie: tenant=t8\n");
        let mut other = Vec::new();
        shape.variant_key(&data, &spans, &mut other);
        assert_ne!(out, other);
    }

    #[test]
    fn secondary_keys_match_only_the_same_values() {
        let (data, spans) = fields("Accept-Encoding: gzip\nAccept-Encoding: br\nX: 1\n");
        let mut stored = Vec::new();
        let vary = [&b"Accept-Encoding, x"[..]];
        assert!(secondary_key(vary.into_iter(), &data, &spans, &mut stored));
        assert_eq!(stored, b"accept-encoding\0gzip, br\0x\x001\0");
        assert!(secondary_matches(&stored, &data, &spans, None));
        let (other, other_spans) = fields("Accept-Encoding: gzip\nX: 1\n");
        assert!(!secondary_matches(&stored, &other, &other_spans, None));
        let (absent, absent_spans) = fields("Accept-Encoding: gzip\nAccept-Encoding: br\n");
        assert!(!secondary_matches(&stored, &absent, &absent_spans, None));
        assert!(secondary_matches(b"", &absent, &absent_spans, None));
        let mut star = Vec::new();
        assert!(!secondary_key(
            [&b"*"[..]].into_iter(),
            &data,
            &spans,
            &mut star
        ));
    }

    #[test]
    fn a_negotiated_coding_keys_by_meaning_not_text() {
        let (data, spans) = fields("Accept-Encoding: gzip, deflate\nX: 1\n");
        let mut stored = Vec::new();
        assert!(secondary_key(
            [&b"x"[..]].into_iter(),
            &data,
            &spans,
            &mut stored
        ));
        push_coding_key(&mut stored, b"gzip");
        assert_eq!(stored_coding(&stored), Some(&b"gzip"[..]));
        // Another text negotiating the same coding matches; another coding or a route
        // without the policy does not.
        let (other, other_spans) = fields("Accept-Encoding: br;q=0.1, gzip\nX: 1\n");
        assert!(secondary_matches(
            &stored,
            &other,
            &other_spans,
            Some(b"gzip")
        ));
        assert!(!secondary_matches(
            &stored,
            &other,
            &other_spans,
            Some(b"identity")
        ));
        assert!(!secondary_matches(&stored, &other, &other_spans, None));
        // The other fields still count.
        let (x2, x2_spans) = fields("Accept-Encoding: gzip\nX: 2\n");
        assert!(!secondary_matches(&stored, &x2, &x2_spans, Some(b"gzip")));
        assert_eq!(stored_coding(b"accept-encoding\0gzip\0"), None);
    }
}
