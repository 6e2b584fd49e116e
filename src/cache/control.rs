//! `Cache-Control` (RFC 9111 §5.2) as a shared cache reads it, on requests and responses.
//!
//! Several fields, and several directives in one field, combine. A directive whose argument
//! is not a number where one is required, or that appears twice, makes the response stale
//! (§4.2.1: "invalid freshness information" is treated as stale): its smallest value wins
//! and a bad value counts as 0. The field-name forms of `no-cache="..."` and
//! `private="..."` are read as their unqualified forms (stricter: the whole response is
//! revalidated or not stored), which RFC 9111 §5.2.2.4 and §5.2.2.7 allow.

/// The directives of a response's `Cache-Control` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// `no-store`: never stored.
    pub no_store: bool,
    /// `no-cache`: stored, but revalidated before every use.
    pub no_cache: bool,
    /// `private`: never stored by a shared cache.
    pub private: bool,
    /// `public`: storable even where it would not be (Authorization, status).
    pub public: bool,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never served stale by a shared cache.
    pub proxy_revalidate: bool,
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds (shared caches; implies `proxy-revalidate`).
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate` (RFC 5861), seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861), seconds.
    pub stale_if_error: Option<u64>,
}

/// The directives of a request's `Cache-Control` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-store`: the response to this request is not stored.
    pub no_store: bool,
    /// `no-cache`: no stored response without revalidating it.
    pub no_cache: bool,
    /// `max-age`: no stored response older than this.
    pub max_age: Option<u64>,
    /// `min-fresh`: only a response fresh for at least this much longer.
    pub min_fresh: Option<u64>,
    /// `max-stale`: a stale response is acceptable this long past its lifetime
    /// (`u64::MAX` for `max-stale` without a value).
    pub max_stale: Option<u64>,
    /// `only-if-cached`: answer from the cache or 504.
    pub only_if_cached: bool,
}

impl ResponseDirectives {
    /// Adds the directives of one `Cache-Control` field value.
    pub fn add(&mut self, value: &[u8]) {
        for_each_directive(value, |name, arg| {
            let seconds = || Some(arg.and_then(parse_seconds).unwrap_or(0));
            match_ignore_case(name, |n| match n {
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "private" => self.private = true,
                "public" => self.public = true,
                "must-revalidate" => self.must_revalidate = true,
                "proxy-revalidate" => self.proxy_revalidate = true,
                "max-age" => self.max_age = smallest(self.max_age, seconds()),
                "s-maxage" => self.s_maxage = smallest(self.s_maxage, seconds()),
                "stale-while-revalidate" => {
                    self.stale_while_revalidate = smallest(self.stale_while_revalidate, seconds())
                }
                "stale-if-error" => self.stale_if_error = smallest(self.stale_if_error, seconds()),
                _ => {}
            });
        });
    }

    /// Whether a shared cache may never serve this response stale (`must-revalidate`,
    /// `proxy-revalidate`, or `s-maxage`, RFC 9111 §5.2.2.10).
    pub fn never_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

impl RequestDirectives {
    /// Adds the directives of one `Cache-Control` field value.
    pub fn add(&mut self, value: &[u8]) {
        for_each_directive(value, |name, arg| {
            let seconds = || Some(arg.and_then(parse_seconds).unwrap_or(0));
            match_ignore_case(name, |n| match n {
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "only-if-cached" => self.only_if_cached = true,
                "max-age" => self.max_age = smallest(self.max_age, seconds()),
                "min-fresh" => self.min_fresh = largest(self.min_fresh, seconds()),
                "max-stale" => {
                    let limit = match arg {
                        None => u64::MAX,
                        Some(a) => parse_seconds(a).unwrap_or(0),
                    };
                    self.max_stale = smallest(self.max_stale, Some(limit));
                }
                _ => {}
            });
        });
    }
}

fn smallest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn largest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Delta-seconds (RFC 9111 §1.2.2): digits only; values past `u64` saturate.
pub fn parse_seconds(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Calls `f` with the lower-cased directive name (directive names are short: longer ones
/// are no directive a cache knows and are skipped).
fn match_ignore_case(name: &[u8], f: impl FnOnce(&str)) {
    let mut lower = [0u8; 32];
    if name.len() > lower.len() {
        return;
    }
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    if let Ok(name) = std::str::from_utf8(&lower[..name.len()]) {
        f(name);
    }
}

/// Splits a field value into `name[=arg]` directives (commas inside quoted strings do not
/// split; quotes are removed from the argument).
fn for_each_directive(value: &[u8], mut f: impl FnMut(&[u8], Option<&[u8]>)) {
    let mut start = 0;
    let mut quoted = false;
    for i in 0..=value.len() {
        let b = value.get(i).copied();
        match b {
            Some(b'"') => quoted = !quoted,
            Some(b',') if !quoted => {}
            None => {}
            Some(_) => continue,
        }
        if b == Some(b'"') {
            continue;
        }
        let item = trim(&value[start..i]);
        start = i + 1;
        if item.is_empty() {
            continue;
        }
        match item.iter().position(|&c| c == b'=') {
            Some(eq) => {
                let arg = trim(&item[eq + 1..]);
                let arg = arg
                    .strip_prefix(b"\"")
                    .and_then(|a| a.strip_suffix(b"\""))
                    .unwrap_or(arg);
                f(trim(&item[..eq]), Some(arg));
            }
            None => f(item, None),
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(value: &str) -> ResponseDirectives {
        let mut d = ResponseDirectives::default();
        d.add(value.as_bytes());
        d
    }

    fn request(value: &str) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        d.add(value.as_bytes());
        d
    }

    #[test]
    fn reads_response_directives_case_insensitively() {
        let d = response("Public, MAX-AGE=60, s-maxage=\"30\", must-revalidate");
        assert!(d.public && d.must_revalidate);
        assert_eq!((d.max_age, d.s_maxage), (Some(60), Some(30)));
        assert!(d.never_stale());
        let d = response("no-store, private, no-cache, proxy-revalidate");
        assert!(d.no_store && d.private && d.no_cache && d.proxy_revalidate);
        let d = response("max-age=10, stale-while-revalidate=5, stale-if-error=600");
        assert_eq!(d.stale_while_revalidate, Some(5));
        assert_eq!(d.stale_if_error, Some(600));
        assert!(!d.never_stale());
    }

    #[test]
    fn qualified_forms_count_as_unqualified_and_quotes_keep_commas() {
        let d = response("private=\"set-cookie, x-a\", max-age=5");
        assert!(d.private);
        assert_eq!(d.max_age, Some(5));
        let d = response("no-cache=\"set-cookie\"");
        assert!(d.no_cache);
    }

    #[test]
    fn invalid_or_repeated_ages_are_the_stalest() {
        assert_eq!(response("max-age=abc").max_age, Some(0));
        assert_eq!(response("max-age").max_age, Some(0));
        assert_eq!(response("max-age=60, max-age=10").max_age, Some(10));
        let mut d = response("max-age=60");
        d.add(b"max-age=5");
        assert_eq!(d.max_age, Some(5));
        assert_eq!(
            response("max-age=99999999999999999999999").max_age,
            Some(u64::MAX)
        );
    }

    #[test]
    fn reads_request_directives() {
        let d = request("no-cache, max-age=5, min-fresh=3, only-if-cached");
        assert!(d.no_cache && d.only_if_cached && !d.no_store);
        assert_eq!((d.max_age, d.min_fresh), (Some(5), Some(3)));
        assert_eq!(request("max-stale").max_stale, Some(u64::MAX));
        assert_eq!(request("max-stale=20").max_stale, Some(20));
        assert!(request("no-store").no_store);
        assert_eq!(request("").max_age, None);
    }
}
