//! What the cache reads from a response's header fields, gathered in one pass: directives,
//! dates, validators, `Vary`, `Set-Cookie`, tags.

use super::control::{parse_seconds, ResponseDirectives};
use super::date::parse_http_date;
use super::rules::{Dates, ResponseFacts};

/// The cache-relevant fields of one response.
#[derive(Debug, Default, Clone)]
pub struct ResponseMeta<'a> {
    /// `Cache-Control`.
    pub directives: ResponseDirectives,
    /// `Date`, if valid.
    pub date: Option<u64>,
    /// `Expires`: `Some(None)` when present but invalid.
    pub expires: Option<Option<u64>>,
    /// `Last-Modified` as parsed and as sent.
    pub last_modified: Option<(u64, &'a [u8])>,
    /// `ETag`.
    pub etag: Option<&'a [u8]>,
    /// `Age`.
    pub age: Option<u64>,
    /// `Set-Cookie` present.
    pub set_cookie: bool,
    /// `Vary` values, as many fields as came (up to 4; more make the response uncacheable).
    pub vary: [Option<&'a [u8]>; 4],
    /// More `Vary` fields than `vary` holds, or `Vary: *`.
    pub vary_star: bool,
    /// The tag field's value.
    pub tags: Option<&'a [u8]>,
}

impl<'a> ResponseMeta<'a> {
    /// Reads `fields`; `tag_header` is the configured tag field (lower case).
    pub fn read(
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        tag_header: Option<&str>,
    ) -> Self {
        let mut m = ResponseMeta::default();
        let mut varies = 0;
        for (name, value) in fields {
            let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
            if is(b"cache-control") {
                m.directives.add(value);
            } else if is(b"date") {
                m.date = parse_http_date(value);
            } else if is(b"expires") {
                m.expires = Some(parse_http_date(value));
            } else if is(b"last-modified") {
                m.last_modified = parse_http_date(value).map(|t| (t, value));
            } else if is(b"etag") {
                m.etag = Some(value);
            } else if is(b"age") {
                m.age = parse_seconds(value);
            } else if is(b"set-cookie") {
                m.set_cookie = true;
            } else if is(b"vary") {
                if value
                    .split(|&b| b == b',')
                    .any(|v| crate::http::headers::trim_ows(v) == b"*")
                {
                    m.vary_star = true;
                }
                match m.vary.get_mut(varies) {
                    Some(slot) => *slot = Some(value),
                    None => m.vary_star = true,
                }
                varies += 1;
            } else if tag_header.is_some_and(|t| name.eq_ignore_ascii_case(t.as_bytes())) {
                m.tags = Some(value);
            }
        }
        m
    }

    /// The facts the storability rules need, for status `status`.
    pub fn facts(&self, status: u16) -> ResponseFacts {
        ResponseFacts {
            status,
            directives: self.directives,
            has_expires: self.expires.is_some(),
            set_cookie: self.set_cookie,
            vary_star: self.vary_star,
            has_validator: self.etag.is_some() || self.last_modified.is_some(),
        }
    }

    /// The dates a lifetime is computed from; the response arrived at `response_time`.
    pub fn dates(&self, response_time: u64) -> Dates {
        Dates {
            date: self.date,
            expires: self.expires,
            last_modified: self.last_modified.map(|(t, _)| t),
            response_time,
        }
    }

    /// The `Vary` field values.
    pub fn vary_values(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.vary.iter().flatten().copied()
    }
}

/// Whether `etag` matches one of the entity tags of an `If-None-Match` value (weak
/// comparison, RFC 9110 §13.1.2; `*` matches any).
pub fn none_match(if_none_match: &[u8], etag: &[u8]) -> bool {
    fn strip(t: &[u8]) -> &[u8] {
        let t = crate::http::headers::trim_ows(t);
        t.strip_prefix(b"W/").unwrap_or(t)
    }
    let ours = strip(etag);
    if_none_match.split(|&b| b == b',').any(|t| {
        let t = crate::http::headers::trim_ows(t);
        t == b"*" || strip(t) == ours
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_cache_field_in_one_pass() {
        let fields: Vec<(&[u8], &[u8])> = vec![
            (b"Cache-Control", b"max-age=60"),
            (b"Cache-Control", b"s-maxage=30"),
            (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"),
            (b"Expires", b"0"),
            (b"ETag", b"\"v1\""),
            (b"Age", b"7"),
            (b"Vary", b"Accept-Encoding"),
            (b"Surrogate-Key", b"a b"),
        ];
        let m = ResponseMeta::read(fields.into_iter(), Some("surrogate-key"));
        assert_eq!(m.directives.s_maxage, Some(30));
        assert_eq!(m.date, Some(784_111_777));
        assert_eq!(m.expires, Some(None));
        assert_eq!(m.etag, Some(&b"\"v1\""[..]));
        assert_eq!(m.age, Some(7));
        assert_eq!(m.tags, Some(&b"a b"[..]));
        assert_eq!(
            m.vary_values().collect::<Vec<_>>(),
            vec![&b"Accept-Encoding"[..]]
        );
        assert!(!m.vary_star && m.facts(200).has_validator);
        let star = ResponseMeta::read([(&b"vary"[..], &b"a, *"[..])].into_iter(), None);
        assert!(star.vary_star);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        assert!(none_match(b"\"a\", W/\"v1\"", b"\"v1\""));
        assert!(none_match(b"*", b"\"x\""));
        assert!(!none_match(b"\"v2\"", b"\"v1\""));
    }
}
