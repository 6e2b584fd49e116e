//! The rules of RFC 9111 a shared cache follows: what may be stored (§3), for how long it is
//! fresh (§4.2.1, §4.2.2), how old it is (§4.2.3), and whether a stored response may answer
//! a request (§4.2, §5.2.1 request directives, RFC 5861 stale extensions).

use super::control::{RequestDirectives, ResponseDirectives};

/// Statuses stored when the response gives explicit freshness (or is `public`).
const UNDERSTOOD: &[u16] = &[
    200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 451, 501,
];
/// Statuses "heuristically cacheable by default" (RFC 9110 §15.1), minus 206 (no ranges).
const HEURISTIC: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Why a response was not stored (`Cache-Status: detail=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Request or response said `no-store`.
    NoStore,
    /// `private`.
    Private,
    /// The request carried `Authorization` and the response did not allow sharing (§3.5).
    Authorization,
    /// The response sets a cookie (never shared with other clients).
    SetCookie,
    /// `Vary: *`.
    VaryStar,
    /// A status this cache does not store, or one without freshness information.
    Status,
    /// Nothing to serve it with: no lifetime, no validator.
    Uncacheable,
    /// Larger than `max_object_bytes`.
    TooLarge,
    /// The body's end is the connection's close: a cut-off body cannot be told apart.
    UntilClose,
    /// The upstream failed before answering.
    UpstreamError,
}

impl NotStored {
    /// The token in `Cache-Status: ...; detail=`.
    pub fn detail(self) -> &'static str {
        match self {
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::SetCookie => "set-cookie",
            NotStored::VaryStar => "vary-star",
            NotStored::Status => "status",
            NotStored::Uncacheable => "no-freshness",
            NotStored::TooLarge => "too-large",
            NotStored::UntilClose => "close-delimited",
            NotStored::UpstreamError => "upstream-error",
        }
    }
}

/// What the storability rules look at in a response to a GET.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseFacts {
    /// Status code.
    pub status: u16,
    /// Its `Cache-Control`.
    pub directives: ResponseDirectives,
    /// An `Expires` field is present (valid or not).
    pub has_expires: bool,
    /// `Set-Cookie` is present.
    pub set_cookie: bool,
    /// `Vary` lists `*`.
    pub vary_star: bool,
    /// `ETag` or `Last-Modified` is present.
    pub has_validator: bool,
}

/// Whether a response to a GET may be stored by a shared cache (RFC 9111 §3, §3.5).
/// `authorization`: the request carried `Authorization`.
pub fn storable(
    request: &RequestDirectives,
    authorization: bool,
    facts: &ResponseFacts,
) -> Result<(), NotStored> {
    let d = &facts.directives;
    if request.no_store || d.no_store {
        return Err(NotStored::NoStore);
    }
    if d.private {
        return Err(NotStored::Private);
    }
    if authorization && !(d.public || d.s_maxage.is_some() || d.must_revalidate) {
        return Err(NotStored::Authorization);
    }
    if facts.set_cookie {
        return Err(NotStored::SetCookie);
    }
    if facts.vary_star {
        return Err(NotStored::VaryStar);
    }
    let explicit = d.max_age.is_some() || d.s_maxage.is_some() || facts.has_expires;
    let allowed = HEURISTIC.contains(&facts.status)
        || (UNDERSTOOD.contains(&facts.status) && (explicit || d.public));
    if !allowed {
        return Err(NotStored::Status);
    }
    Ok(())
}

/// The dates a freshness lifetime is computed from, in Unix seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dates {
    /// `Date`, if valid.
    pub date: Option<u64>,
    /// `Expires`: `None` absent, `Some(None)` present but invalid (already expired).
    pub expires: Option<Option<u64>>,
    /// `Last-Modified`, if valid.
    pub last_modified: Option<u64>,
    /// When the response arrived.
    pub response_time: u64,
}

/// The freshness lifetime in seconds (RFC 9111 §4.2.1): `s-maxage`, else `max-age`, else
/// `Expires` − `Date`, else (heuristically cacheable statuses only) 10% of the time since
/// `Last-Modified`, else `default_ttl`.
pub fn freshness_lifetime(
    status: u16,
    directives: &ResponseDirectives,
    dates: &Dates,
    default_ttl: u64,
) -> u64 {
    if let Some(s) = directives.s_maxage {
        return s;
    }
    if let Some(m) = directives.max_age {
        return m;
    }
    if let Some(expires) = dates.expires {
        let Some(expires) = expires else { return 0 };
        let date = dates.date.unwrap_or(dates.response_time);
        return expires.saturating_sub(date);
    }
    if HEURISTIC.contains(&status) {
        if let Some(modified) = dates.last_modified {
            let date = dates.date.unwrap_or(dates.response_time);
            let heuristic = date.saturating_sub(modified) / 10;
            if heuristic > 0 {
                return heuristic;
            }
        }
    }
    default_ttl
}

/// The age the response had when it arrived (RFC 9111 §4.2.3): `corrected_initial_age`.
/// Times in Unix seconds; `age` is the response's `Age` field.
pub fn initial_age(
    age: Option<u64>,
    date: Option<u64>,
    request_time: u64,
    response_time: u64,
) -> u64 {
    let apparent = date.map_or(0, |d| response_time.saturating_sub(d));
    let response_delay = response_time.saturating_sub(request_time);
    let corrected = age.unwrap_or(0).saturating_add(response_delay);
    apparent.max(corrected)
}

/// A stored response's freshness facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime, seconds.
    pub lifetime: u64,
    /// `no-cache`: revalidate before every use.
    pub no_cache: bool,
    /// Never served stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub never_stale: bool,
    /// `stale-while-revalidate` window, seconds.
    pub stale_while_revalidate: u64,
    /// `stale-if-error` window, seconds.
    pub stale_if_error: u64,
}

impl Freshness {
    /// The facts of a stored response with these directives and lifetime.
    pub fn of(directives: &ResponseDirectives, lifetime: u64) -> Self {
        Freshness {
            lifetime,
            no_cache: directives.no_cache,
            never_stale: directives.never_stale(),
            stale_while_revalidate: directives.stale_while_revalidate.unwrap_or(0),
            stale_if_error: directives.stale_if_error.unwrap_or(0),
        }
    }

    /// Whether the response, `age` seconds old, may be served stale because the upstream
    /// failed: inside its `stale-if-error` window.
    pub fn serves_on_error(&self, age: u64) -> bool {
        !self.never_stale
            && self.stale_if_error > 0
            && age.saturating_sub(self.lifetime) <= self.stale_if_error
    }
}

/// What a stored response may do for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Fresh enough: answer with it.
    Fresh,
    /// Stale, but the request accepts it (`max-stale`) or `stale-while-revalidate` lets it be
    /// served while one refresh runs in the background (`refresh`).
    Stale {
        /// Whether a background refresh should run.
        refresh: bool,
    },
    /// It must be validated with the upstream first (stale, or `no-cache` either side).
    Revalidate,
}

/// Whether a stored response of age `age` (seconds) may answer a request with `request`
/// directives (RFC 9111 §4.2, §5.2.1; RFC 5861 §3).
pub fn usable(freshness: &Freshness, age: u64, request: &RequestDirectives) -> Use {
    if freshness.no_cache || request.no_cache {
        return Use::Revalidate;
    }
    let lifetime = freshness.lifetime;
    let fresh = age < lifetime;
    let young_enough = request.max_age.is_none_or(|max| age <= max);
    let remaining = lifetime.saturating_sub(age);
    let fresh_enough = request.min_fresh.is_none_or(|min| remaining >= min);
    if fresh && young_enough && fresh_enough {
        return Use::Fresh;
    }
    if freshness.never_stale {
        return Use::Revalidate;
    }
    let staleness = age.saturating_sub(lifetime);
    if let Some(max_stale) = request.max_stale {
        if !fresh && staleness <= max_stale && young_enough {
            return Use::Stale { refresh: false };
        }
    }
    let swr = freshness.stale_while_revalidate;
    if !fresh && swr > 0 && staleness <= swr && request.max_age.is_none() {
        return Use::Stale { refresh: true };
    }
    Use::Revalidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directives(value: &str) -> ResponseDirectives {
        let mut d = ResponseDirectives::default();
        d.add(value.as_bytes());
        d
    }

    fn facts(status: u16, cc: &str) -> ResponseFacts {
        ResponseFacts {
            status,
            directives: directives(cc),
            ..ResponseFacts::default()
        }
    }

    fn request(value: &str) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        d.add(value.as_bytes());
        d
    }

    #[test]
    fn stores_only_what_a_shared_cache_may() {
        let none = RequestDirectives::default();
        assert_eq!(storable(&none, false, &facts(200, "max-age=60")), Ok(()));
        assert_eq!(storable(&none, false, &facts(200, "")), Ok(()));
        assert_eq!(
            storable(&none, false, &facts(200, "no-store")),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            storable(&request("no-store"), false, &facts(200, "max-age=6")),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            storable(&none, false, &facts(200, "private, max-age=60")),
            Err(NotStored::Private)
        );
        // 302 only with explicit freshness; 500 and 206 never.
        assert_eq!(
            storable(&none, false, &facts(302, "")),
            Err(NotStored::Status)
        );
        assert_eq!(storable(&none, false, &facts(302, "max-age=5")), Ok(()));
        assert_eq!(
            storable(&none, false, &facts(500, "max-age=5")),
            Err(NotStored::Status)
        );
        assert_eq!(
            storable(&none, false, &facts(206, "max-age=5")),
            Err(NotStored::Status)
        );
        let mut cookie = facts(200, "max-age=60");
        cookie.set_cookie = true;
        assert_eq!(storable(&none, false, &cookie), Err(NotStored::SetCookie));
        let mut star = facts(200, "max-age=60");
        star.vary_star = true;
        assert_eq!(storable(&none, false, &star), Err(NotStored::VaryStar));
    }

    #[test]
    fn authorization_requests_are_shared_only_where_section_3_5_allows() {
        let none = RequestDirectives::default();
        assert_eq!(
            storable(&none, true, &facts(200, "max-age=60")),
            Err(NotStored::Authorization)
        );
        for allowed in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=9",
        ] {
            assert_eq!(
                storable(&none, true, &facts(200, allowed)),
                Ok(()),
                "{allowed}"
            );
        }
    }

    #[test]
    fn lifetime_prefers_s_maxage_then_max_age_then_expires_then_heuristic() {
        let dates = Dates {
            date: Some(1000),
            expires: Some(Some(1300)),
            last_modified: Some(0),
            response_time: 1005,
        };
        let life = |cc: &str, status: u16, dates: &Dates| {
            freshness_lifetime(status, &directives(cc), dates, 7)
        };
        assert_eq!(life("max-age=60, s-maxage=30", 200, &dates), 30);
        assert_eq!(life("max-age=60", 200, &dates), 60);
        assert_eq!(life("", 200, &dates), 300);
        let invalid = Dates {
            expires: Some(None),
            ..dates
        };
        assert_eq!(life("", 200, &invalid), 0);
        let heuristic = Dates {
            expires: None,
            ..dates
        };
        assert_eq!(life("", 200, &heuristic), 100);
        // Not heuristically cacheable: the default.
        assert_eq!(life("", 302, &heuristic), 7);
        let nothing = Dates {
            last_modified: None,
            ..heuristic
        };
        assert_eq!(life("", 200, &nothing), 7);
    }

    #[test]
    fn age_follows_section_4_2_3() {
        // Apparent age 5 (Date 1000, arrived 1005); Age 2 + delay 1 = 3: the larger.
        assert_eq!(initial_age(Some(2), Some(1000), 1004, 1005), 5);
        // An upstream cache's Age dominates a skewed clock.
        assert_eq!(initial_age(Some(50), Some(1010), 1004, 1005), 51);
        assert_eq!(initial_age(None, None, 1005, 1005), 0);
    }

    #[test]
    fn request_directives_decide_what_is_fresh_enough() {
        let f = Freshness::of(&directives("max-age=100"), 100);
        let none = RequestDirectives::default();
        assert_eq!(usable(&f, 10, &none), Use::Fresh);
        assert_eq!(usable(&f, 100, &none), Use::Revalidate);
        assert_eq!(usable(&f, 10, &request("max-age=5")), Use::Revalidate);
        assert_eq!(usable(&f, 10, &request("min-fresh=95")), Use::Revalidate);
        assert_eq!(usable(&f, 10, &request("min-fresh=90")), Use::Fresh);
        assert_eq!(usable(&f, 10, &request("no-cache")), Use::Revalidate);
        assert_eq!(
            usable(&f, 120, &request("max-stale=30")),
            Use::Stale { refresh: false }
        );
        assert_eq!(usable(&f, 140, &request("max-stale=30")), Use::Revalidate);
        assert_eq!(
            usable(&f, 1000, &request("max-stale")),
            Use::Stale { refresh: false }
        );
        let strict = Freshness::of(&directives("max-age=100, must-revalidate"), 100);
        assert_eq!(usable(&strict, 120, &request("max-stale")), Use::Revalidate);
        let no_cache = Freshness::of(&directives("no-cache, max-age=100"), 100);
        assert_eq!(usable(&no_cache, 1, &none), Use::Revalidate);
    }

    #[test]
    fn stale_extensions_follow_rfc_5861() {
        let f = Freshness::of(
            &directives("max-age=10, stale-while-revalidate=20, stale-if-error=60"),
            10,
        );
        let none = RequestDirectives::default();
        assert_eq!(usable(&f, 25, &none), Use::Stale { refresh: true });
        assert_eq!(usable(&f, 31, &none), Use::Revalidate);
        assert!(f.serves_on_error(70));
        assert!(!f.serves_on_error(71));
        let strict = Freshness::of(&directives("s-maxage=10, stale-if-error=60"), 10);
        assert!(!strict.serves_on_error(11));
    }
}
