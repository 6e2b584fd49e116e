//! Version selection: a header or cookie that sends a request to a named upstream group
//! (`X-Api-Version: 2` or `canary=1` goes to `users-v2`), checked before the route's split or
//! default group.
//!
//! Runs on the hot path: rules are compiled to lower-case names and byte values; checking
//! them compares slices and allocates nothing.

use crate::config::UpstreamId;

/// Where a rule looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A request header (lower-case name; the first field of that name counts).
    Header(Box<str>),
    /// A cookie of the `Cookie` header (name compared exactly).
    Cookie(Box<str>),
}

/// One rule: requests whose header or cookie has `value` (or any value, when `None`) go to
/// `upstream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRule {
    /// The header or cookie looked at.
    pub selector: Selector,
    /// The value required; `None` accepts any value.
    pub value: Option<Box<[u8]>>,
    /// The group the request goes to.
    pub upstream: UpstreamId,
}

impl VersionRule {
    /// Whether the request matches, given its headers (`header(name)`: the first field named
    /// `name`) and every `Cookie` field value (`cookies`).
    fn accepts<'h>(
        &self,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
        cookies: &dyn Fn(&str) -> Option<&'h [u8]>,
    ) -> bool {
        let found = match &self.selector {
            Selector::Header(name) => header(name),
            Selector::Cookie(name) => cookies(name),
        };
        match (found, &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(got), Some(want)) => got == &**want,
        }
    }
}

/// The group of the first rule the request matches, in file order.
pub fn select<'h>(
    rules: &[VersionRule],
    header: &dyn Fn(&str) -> Option<&'h [u8]>,
    cookies: &dyn Fn(&str) -> Option<&'h [u8]>,
) -> Option<UpstreamId> {
    rules
        .iter()
        .find(|r| r.accepts(header, cookies))
        .map(|r| r.upstream)
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`), if present.
/// Values keep their bytes as sent (quotes included); the name must match exactly.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        (trim(&pair[..eq]) == name.as_bytes()).then(|| trim(&pair[eq + 1..]))
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = s.iter().position(|b| !blank(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !blank(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(selector: Selector, value: Option<&str>, upstream: usize) -> VersionRule {
        VersionRule {
            selector,
            value: value.map(|v| v.as_bytes().into()),
            upstream: UpstreamId(upstream),
        }
    }

    #[test]
    fn finds_a_cookie_among_several() {
        let h = b"session=abc; canary=1;theme = dark ";
        assert_eq!(cookie_value(h, "canary"), Some(&b"1"[..]));
        assert_eq!(cookie_value(h, "theme"), Some(&b"dark"[..]));
        assert_eq!(cookie_value(h, "session"), Some(&b"abc"[..]));
        assert_eq!(cookie_value(h, "canar"), None);
        assert_eq!(
            cookie_value(h, "Canary"),
            None,
            "cookie names are case-sensitive"
        );
        assert_eq!(cookie_value(b"", "a"), None);
        assert_eq!(cookie_value(b"flag", "flag"), None, "a pair needs `=`");
        assert_eq!(cookie_value(b"a=", "a"), Some(&b""[..]));
    }

    #[test]
    fn first_matching_rule_wins_and_values_must_match_exactly() {
        let rules = [
            rule(Selector::Header("x-api-version".into()), Some("2"), 1),
            rule(Selector::Cookie("canary".into()), Some("1"), 2),
            rule(Selector::Header("x-beta".into()), None, 3),
        ];
        let pick = |headers: &[(&str, &'static [u8])], cookie: &'static [u8]| {
            let headers = headers.to_vec();
            let header = move |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
            let cookies = |n: &str| cookie_value(cookie, n);
            select(&rules, &header, &cookies)
        };
        assert_eq!(
            pick(&[("x-api-version", b"2")], b"canary=1"),
            Some(UpstreamId(1))
        );
        assert_eq!(
            pick(&[("x-api-version", b"3")], b"canary=1"),
            Some(UpstreamId(2))
        );
        assert_eq!(pick(&[], b"canary=0"), None);
        assert_eq!(
            pick(&[("x-beta", b"")], b""),
            Some(UpstreamId(3)),
            "presence only"
        );
        assert_eq!(pick(&[("x-api-version", b"20")], b""), None);
    }
}
