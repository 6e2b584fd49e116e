//! Host patterns: parsing at build time, and the suffix walk used to find wildcard buckets.
//!
//! No allocation: [`wildcard_suffixes`] runs on the hot path and only slices the host.

/// A compiled host condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Any host (no condition).
    Any,
    /// This host, lower-case.
    Exact(Box<str>),
    /// `*.suffix`: any host with at least one label before `.suffix` (stored lower-case,
    /// without `*.`).
    Wildcard(Box<str>),
}

/// Parses and lower-cases a host condition.
pub(crate) fn parse(host: Option<&str>) -> Result<HostPattern, String> {
    let Some(host) = host else {
        return Ok(HostPattern::Any);
    };
    let lower = host.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        check_name(suffix, host)?;
        return Ok(HostPattern::Wildcard(suffix.into()));
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        check_ipv6(inner, host)?;
    } else {
        check_name(&lower, host)?;
    }
    Ok(HostPattern::Exact(lower.into()))
}

/// A DNS name (or IPv4 address): dot-separated non-empty labels of letters, digits, `-`, `_`.
fn check_name(name: &str, original: &str) -> Result<(), String> {
    if name.contains(':') {
        return Err(format!("host {original:?}: host patterns have no port"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "host {original:?}: expected `name.example` or `*.example` (labels of a-z 0-9 - _; `*` only as the whole first label)"
        ))
    }
}

/// A bracketed IPv6 literal, as it appears in a `Host` header.
fn check_ipv6(inner: &str, original: &str) -> Result<(), String> {
    let ok = !inner.is_empty()
        && inner
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("host {original:?}: malformed IPv6 literal"))
    }
}

/// The suffixes of `host` that a wildcard pattern could be keyed by, longest first:
/// `a.b.example.com` gives `b.example.com`, `example.com`, `com`. The whole host is not
/// among them: `*.example.com` does not match `example.com`.
pub(crate) fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .filter_map(move |(dot, _)| host.get(dot + 1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_lower_cased() {
        assert_eq!(
            parse(Some("API.Example.com")),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse(Some("*.Example.COM")),
            Ok(HostPattern::Wildcard("example.com".into()))
        );
        assert_eq!(parse(None), Ok(HostPattern::Any));
        assert_eq!(parse(Some("[::1]")), Ok(HostPattern::Exact("[::1]".into())));
    }

    #[test]
    fn bad_host_patterns_are_refused() {
        for bad in [
            "",
            "a..b",
            "a.*.com",
            "*",
            "*.",
            "api.example.com:8080",
            "a b",
            "**.x",
            "x.",
            "[zz]",
        ] {
            assert!(parse(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn wildcard_suffixes_exclude_the_whole_host() {
        let s: Vec<_> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(s, vec!["b.example.com", "example.com", "com"]);
        assert_eq!(wildcard_suffixes("localhost").count(), 0);
    }
}
