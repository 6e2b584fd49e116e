//! The specificity order within one host bucket, precomputed into one integer per route.
//!
//! Host specificity is not in the key: buckets are tried from the most specific host down
//! (exact, wildcards by longer suffix, any host), and a later bucket is consulted only when
//! nothing in the earlier one matched. Inside a bucket, higher [`Rank`] wins:
//!
//! 1. more literal path segments;
//! 2. a path that must end where the pattern ends (exact, template without `*`) over one
//!    that takes a rest (prefix, `*`, any);
//! 3. more path segments (literals and `{name}`);
//! 4. a method condition over none;
//! 5. more header conditions;
//! 6. earlier in declaration order.
//!
//! No allocation: ranks are compared as plain integers on the hot path.

use super::conditions::Conditions;
use super::pattern::{Pattern, Tail};

/// A route's precomputed position in the specificity order; higher is more specific.
pub(crate) type Rank = u64;

/// Lowest rank: below every route (a route's rank is never zero: see `declared`).
pub(crate) const NONE: Rank = 0;

/// Computes the rank of the route declared at `index`.
pub(crate) fn rank(pattern: &Pattern, conditions: &Conditions, index: usize) -> Rank {
    // Field widths: literals 10 bits, ends 1, segments 10, method 1, headers 4; counts beyond
    // the width saturate (no real route has 1,000 segments or 15 header conditions).
    let literals = capped(pattern.literal_count(), 10);
    let ends = u64::from(pattern.tail == Tail::End);
    let segments = capped(pattern.segments.len(), 10);
    let method = u64::from(conditions.has_methods());
    let headers = capped(conditions.header_count(), 4);
    let spec = (literals << 16) | (ends << 15) | (segments << 5) | (method << 4) | headers;
    // Earlier wins ties: invert the index into the low 32 bits (never all zero: u32::MAX - i
    // with i < u32::MAX).
    let declared = u64::from(u32::MAX - u32::try_from(index).unwrap_or(u32::MAX - 1));
    (spec << 32) | declared
}

fn capped(n: usize, bits: u32) -> u64 {
    (n as u64).min((1 << bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::pattern::compile;
    use crate::router::{HeaderMatch, PathMatch};

    fn r(path: PathMatch, methods: &[&str], headers: usize, index: usize) -> Rank {
        let p = compile(&path).unwrap();
        let m: Vec<String> = methods.iter().map(|s| s.to_string()).collect();
        let h: Vec<_> = (0..headers)
            .map(|i| (format!("x-{i}"), HeaderMatch::Present))
            .collect();
        rank(&p, &Conditions::compile(&m, &h).unwrap(), index)
    }

    fn t(s: &str) -> PathMatch {
        PathMatch::Template(s.into())
    }

    #[test]
    fn more_literal_segments_win() {
        assert!(r(t("/a/b/*"), &[], 0, 1) > r(t("/a/{x}/{y}"), &["GET"], 3, 0));
    }

    #[test]
    fn ending_pattern_beats_rest() {
        assert!(r(t("/a/{x}"), &[], 0, 1) > r(PathMatch::Prefix("/a".into()), &["GET"], 0, 0));
        assert!(r(PathMatch::Exact("/a".into()), &[], 0, 1) > r(t("/a/*"), &[], 0, 0));
    }

    #[test]
    fn more_segments_then_method_then_headers() {
        assert!(r(t("/a/{x}/{y}/*"), &[], 0, 1) > r(t("/a/{x}/*"), &["GET"], 2, 0));
        assert!(r(t("/a/{x}"), &["GET"], 0, 1) > r(t("/a/{x}"), &[], 2, 0));
        assert!(r(t("/a/{x}"), &[], 2, 1) > r(t("/a/{x}"), &[], 1, 0));
    }

    #[test]
    fn ties_go_to_declared_order() {
        assert!(r(t("/a"), &[], 0, 0) > r(t("/a"), &[], 0, 1));
        assert!(r(PathMatch::Any, &[], 0, 7) > NONE);
    }
}
