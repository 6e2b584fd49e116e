//! `kind = "compress"`: response compression (gzip, br, zstd) negotiated from the client's
//! `Accept-Encoding`, and, when enabled, decoding of compressed request bodies.
//!
//! This module holds the compiled policy and its pure decisions: which coding a request
//! accepts ([`Compress::negotiate`]), which content types are compressible
//! ([`TypePattern`]), and the response rules ([`Compress::refusal`]). The codecs and the
//! relay live in `proxy::compress`.
//!
//! Never compressed: a response to HEAD or to a `Range` request, 1xx/204/304, 206 or any
//! response with `Content-Range`, a response with a `Content-Encoding` (even `identity`),
//! `Cache-Control: no-transform`, a content type outside `types`, a known `Content-Length`
//! below `min_bytes`, a response without a body.

/// A content coding the gateway produces and decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// `gzip` (RFC 1952; flate2 with the zlib-rs backend).
    Gzip,
    /// `br` (RFC 7932).
    Br,
    /// `zstd` (RFC 8878, window within 8 MiB as RFC 9659 requires).
    Zstd,
}

impl Coding {
    /// Every coding, in the default preference order.
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// The coding's token (`Content-Encoding` value).
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The coding a token names (`x-gzip` is gzip, RFC 9110 §8.4.1.3).
    pub fn from_token(token: &[u8]) -> Option<Coding> {
        if token.eq_ignore_ascii_case(b"gzip") || token.eq_ignore_ascii_case(b"x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case(b"br") {
            Some(Coding::Br)
        } else if token.eq_ignore_ascii_case(b"zstd") {
            Some(Coding::Zstd)
        } else {
            None
        }
    }

    /// The levels a policy may set: gzip 1–9, br 0–11, zstd 1–19 (levels 20–22 need windows
    /// beyond RFC 9659's 8 MiB).
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Coding::Gzip => 1..=9,
            Coding::Br => 0..=11,
            Coding::Zstd => 1..=19,
        }
    }

    /// The level used when the policy sets none: gzip 6 (zlib's default, Nginx's usual
    /// setting), br 4 (the dynamic-content ceiling: q5+ costs twice as much for ~8%), zstd 3.
    pub fn default_level(self) -> u32 {
        match self {
            Coding::Gzip => 6,
            Coding::Br => 4,
            Coding::Zstd => 3,
        }
    }
}

/// One entry of `types`: `type/subtype`, `type/*`, `type/*+suffix` or `*/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    /// Exactly this media type (lower case).
    Exact(Box<str>),
    /// Any subtype of this type (`text/*`).
    AnySubtype(Box<str>),
    /// Any subtype of this type with this structured-syntax suffix (`application/*+json`).
    Suffix(Box<str>, Box<str>),
    /// Every media type.
    Any,
}

/// `types` when the policy sets none.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
];

impl TypePattern {
    /// Parses a pattern; `None` if it is not one of the accepted forms.
    pub fn parse(text: &str) -> Option<TypePattern> {
        let text = text.trim().to_ascii_lowercase();
        if text == "*/*" {
            return Some(TypePattern::Any);
        }
        let (ty, sub) = text.split_once('/')?;
        if !is_token(ty) || ty == "*" {
            return None;
        }
        if sub == "*" {
            return Some(TypePattern::AnySubtype(ty.into()));
        }
        if let Some(suffix) = sub.strip_prefix("*+") {
            return is_token(suffix).then(|| TypePattern::Suffix(ty.into(), suffix.into()));
        }
        (is_token(sub) && !sub.contains('*')).then(|| TypePattern::Exact(text.as_str().into()))
    }

    /// Whether the media type `essence` (`type/subtype`, any case, no parameters) matches;
    /// `*/*` matches every response, one without a `Content-Type` too.
    pub fn matches(&self, essence: &[u8]) -> bool {
        if *self == TypePattern::Any {
            return true;
        }
        let Some(slash) = essence.iter().position(|&b| b == b'/') else {
            return false;
        };
        let (ty, sub) = (&essence[..slash], &essence[slash + 1..]);
        match self {
            TypePattern::Any => true,
            TypePattern::Exact(t) => essence.eq_ignore_ascii_case(t.as_bytes()),
            TypePattern::AnySubtype(t) => ty.eq_ignore_ascii_case(t.as_bytes()),
            TypePattern::Suffix(t, suffix) => {
                ty.eq_ignore_ascii_case(t.as_bytes())
                    && sub.len() > suffix.len() + 1
                    && sub[sub.len() - suffix.len() - 1] == b'+'
                    && sub[sub.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
}

/// A compiled `compress` policy.
#[derive(Debug, Clone)]
pub struct Compress {
    /// The policy's name.
    pub name: String,
    /// Codings the gateway produces, in its preference order (ties of q-values go to the
    /// first listed).
    pub algorithms: Box<[Coding]>,
    /// Level per coding: gzip, br, zstd.
    pub levels: [u32; 3],
    /// A response whose `Content-Length` is below this is sent as is.
    pub min_bytes: u64,
    /// Compressible content types.
    pub types: Box<[TypePattern]>,
    /// Whether compressed request bodies are decoded before they go upstream.
    pub decompress_requests: bool,
    /// Largest decoded request body; beyond it the request is answered 413.
    pub max_decompressed_bytes: u64,
}

/// Why a response is not compressed (for tests and debugging); `None` from
/// [`Compress::refusal`] means it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No body, 1xx/204/304, or 206.
    Status,
    /// `Content-Encoding` present.
    Encoded,
    /// `Content-Range` present.
    Range,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// Content type not in `types` (or absent).
    Type,
    /// `Content-Length` below `min_bytes`.
    Small,
}

/// What the response rules look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseFacts<'a> {
    /// The status code.
    pub status: u16,
    /// The body's length when the upstream said it; `Some(0)` for no body.
    pub length: Option<u64>,
    /// Whether the response has a body at all.
    pub has_body: bool,
    /// `Content-Type`.
    pub content_type: Option<&'a [u8]>,
    /// Whether a `Content-Encoding` field is present.
    pub encoded: bool,
    /// Whether a `Content-Range` field is present.
    pub content_range: bool,
    /// Whether `Cache-Control` has `no-transform`.
    pub no_transform: bool,
}

impl Compress {
    /// The level configured for `coding`.
    pub fn level(&self, coding: Coding) -> u32 {
        self.levels[coding as usize]
    }

    /// The coding to use for a request whose `Accept-Encoding` field values are `values`:
    /// the acceptable coding (q > 0, explicitly or through `*`) with the highest q-value,
    /// ties going to the policy's order; `None` when the client accepts none of them, or
    /// when it ranks `identity` above the best (an explicit `identity;q=0` never forces a
    /// coding the client did not accept: the response then goes uncompressed).
    pub fn negotiate<'a>(&self, values: impl Iterator<Item = &'a [u8]> + Clone) -> Option<Coding> {
        let mut best: Option<(Coding, u16)> = None;
        for &coding in self.algorithms.iter() {
            let q = q_of(values.clone(), coding);
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((coding, q));
            }
        }
        let (coding, q) = best?;
        match explicit_q(values, |t| t.eq_ignore_ascii_case(b"identity")) {
            Some(identity) if identity > q => None,
            _ => Some(coding),
        }
    }

    /// Why a response with these facts is not compressed; `None` when it is (given a
    /// negotiated coding).
    pub fn refusal(&self, r: &ResponseFacts<'_>) -> Option<Refusal> {
        if !r.has_body || (100..200).contains(&r.status) || matches!(r.status, 204 | 206 | 304) {
            return Some(Refusal::Status);
        }
        if r.encoded {
            return Some(Refusal::Encoded);
        }
        if r.content_range {
            return Some(Refusal::Range);
        }
        if r.no_transform {
            return Some(Refusal::NoTransform);
        }
        let essence = r.content_type.map(media_type).unwrap_or_default();
        if !self.types.iter().any(|t| t.matches(essence)) {
            return Some(Refusal::Type);
        }
        if r.length.is_some_and(|n| n < self.min_bytes.max(1)) {
            return Some(Refusal::Small);
        }
        None
    }
}

/// The media type of a `Content-Type` value, without parameters or whitespace.
pub fn media_type(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
    crate::http::headers::trim_ows(&value[..end])
}

/// Whether a comma-separated field value lists `token` (any case), ignoring parameters.
pub fn lists_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &[u8]) -> bool {
    values.any(|v| {
        v.split(|&b| b == b',').any(|e| {
            let name = e.split(|&b| b == b'=').next().unwrap_or_default();
            crate::http::headers::trim_ows(name).eq_ignore_ascii_case(token)
        })
    })
}

/// The q-value (in thousandths) the `Accept-Encoding` values give `coding`: its own entry,
/// else `*`'s, else 0.
fn q_of<'a>(values: impl Iterator<Item = &'a [u8]> + Clone, coding: Coding) -> u16 {
    explicit_q(values.clone(), |t| Coding::from_token(t) == Some(coding))
        .or_else(|| explicit_q(values, |t| t == b"*"))
        .unwrap_or(0)
}

/// The highest q-value of the entries whose coding `is` accepts; `None` if none is listed.
fn explicit_q<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    is: impl Fn(&[u8]) -> bool,
) -> Option<u16> {
    let mut found = None;
    for element in values.flat_map(|v| v.split(|&b| b == b',')) {
        let mut parts = element.split(|&b| b == b';');
        let token = crate::http::headers::trim_ows(parts.next().unwrap_or_default());
        if token.is_empty() || !is(token) {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let param = crate::http::headers::trim_ows(param);
            if param.len() >= 2 && param[..2].eq_ignore_ascii_case(b"q=") {
                q = parse_q(&param[2..]);
            }
        }
        if let Some(q) = q {
            found = Some(found.map_or(q, |f: u16| f.max(q)));
        }
    }
    found
}

/// A qvalue (RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`) in thousandths; `None` if malformed.
fn parse_q(text: &[u8]) -> Option<u16> {
    let (whole, frac) = match text.iter().position(|&b| b == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &b""[..]),
    };
    if whole.len() != 1 || frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut q = match whole[0] {
        b'0' => 0u16,
        b'1' => 1000,
        _ => return None,
    };
    let mut scale = 100;
    for d in frac {
        q += u16::from(d - b'0') * scale;
        scale /= 10;
    }
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(algorithms: &[Coding]) -> Compress {
        Compress {
            name: "c".into(),
            algorithms: algorithms.into(),
            levels: [6, 4, 3],
            min_bytes: 100,
            types: DEFAULT_TYPES
                .iter()
                .map(|t| TypePattern::parse(t).expect("pattern"))
                .collect(),
            decompress_requests: false,
            max_decompressed_bytes: 1 << 20,
        }
    }

    fn pick(p: &Compress, accept: &[&str]) -> Option<Coding> {
        p.negotiate(accept.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn negotiation_follows_q_values_then_policy_order() {
        use Coding::*;
        let p = policy(&[Br, Zstd, Gzip]);
        assert_eq!(pick(&p, &[]), None);
        assert_eq!(pick(&p, &["gzip"]), Some(Gzip));
        assert_eq!(pick(&p, &["gzip, deflate, br, zstd"]), Some(Br));
        assert_eq!(pick(&p, &["gzip;q=1, br;q=0.5"]), Some(Gzip));
        assert_eq!(pick(&p, &["gzip", "zstd"]), Some(Zstd));
        assert_eq!(pick(&p, &["*"]), Some(Br));
        assert_eq!(pick(&p, &["*;q=0, gzip"]), Some(Gzip));
        assert_eq!(pick(&p, &["gzip;q=0, *"]), Some(Br));
        assert_eq!(pick(&p, &["br;q=0, zstd;q=0, *;q=0.1"]), Some(Gzip));
        assert_eq!(pick(&p, &["gzip;q=0"]), None);
        assert_eq!(pick(&p, &["deflate"]), None);
        assert_eq!(pick(&p, &["identity"]), None);
        assert_eq!(pick(&p, &["identity;q=0"]), None);
        assert_eq!(pick(&p, &["identity;q=0, gzip;q=0.2"]), Some(Gzip));
        assert_eq!(pick(&p, &["identity, gzip;q=0.5"]), None);
        assert_eq!(pick(&p, &["x-gzip"]), Some(Gzip));
        assert_eq!(pick(&p, &["GZIP ; Q=0.500"]), Some(Gzip));
        // Malformed q-values make the entry unusable.
        assert_eq!(pick(&p, &["gzip;q=2"]), None);
        assert_eq!(pick(&p, &["gzip;q=0.5000"]), None);
        let only_gzip = policy(&[Gzip]);
        assert_eq!(pick(&only_gzip, &["br, zstd"]), None);
    }

    #[test]
    fn type_patterns_match_essences() {
        let t = |p: &str, e: &str| TypePattern::parse(p).expect(p).matches(e.as_bytes());
        assert!(t("text/*", "text/html"));
        assert!(t("text/*", "TEXT/CSS"));
        assert!(!t("text/*", "textual/html"));
        assert!(t("application/json", "Application/JSON"));
        assert!(t("application/*+json", "application/problem+json"));
        assert!(!t("application/*+json", "application/json"));
        assert!(!t("application/*+json", "application/problemjson"));
        assert!(t("*/*", "image/png"));
        assert!(t("*/*", ""), "*/* covers a response without a type");
        for bad in [
            "text",
            "*/json",
            "text/ht*ml",
            "a b/c",
            "application/*+",
            "/x",
        ] {
            assert_eq!(TypePattern::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn response_rules() {
        let p = policy(&[Coding::Gzip]);
        let ok = ResponseFacts {
            status: 200,
            length: Some(1000),
            has_body: true,
            content_type: Some(b"application/json; charset=utf-8"),
            ..Default::default()
        };
        assert_eq!(p.refusal(&ok), None);
        assert_eq!(p.refusal(&ResponseFacts { length: None, ..ok }), None);
        let cases = [
            (ResponseFacts { status: 204, ..ok }, Refusal::Status),
            (ResponseFacts { status: 304, ..ok }, Refusal::Status),
            (ResponseFacts { status: 206, ..ok }, Refusal::Status),
            (
                ResponseFacts {
                    has_body: false,
                    ..ok
                },
                Refusal::Status,
            ),
            (
                ResponseFacts {
                    encoded: true,
                    ..ok
                },
                Refusal::Encoded,
            ),
            (
                ResponseFacts {
                    content_range: true,
                    ..ok
                },
                Refusal::Range,
            ),
            (
                ResponseFacts {
                    no_transform: true,
                    ..ok
                },
                Refusal::NoTransform,
            ),
            (
                ResponseFacts {
                    content_type: Some(b"image/png"),
                    ..ok
                },
                Refusal::Type,
            ),
            (
                ResponseFacts {
                    content_type: None,
                    ..ok
                },
                Refusal::Type,
            ),
            (
                ResponseFacts {
                    length: Some(99),
                    ..ok
                },
                Refusal::Small,
            ),
        ];
        for (facts, why) in cases {
            assert_eq!(p.refusal(&facts), Some(why), "{facts:?}");
        }
    }

    #[test]
    fn tokens_are_found_in_lists() {
        let v: [&[u8]; 2] = [b"public, max-age=60", b"No-Transform"];
        assert!(lists_token(v.iter().copied(), b"no-transform"));
        assert!(!lists_token(v.iter().copied(), b"private"));
    }
}
