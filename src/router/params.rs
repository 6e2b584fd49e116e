//! Captured path parameters: byte ranges into the matched path, kept in a fixed inline array.
//!
//! No allocation: runs on the hot path. One `Params` lives per connection and is cleared by
//! every `Router::find`.

use std::ops::Range;

/// The most `{name}` parameters one route may capture.
pub const MAX_PARAMS: usize = 16;

/// A byte range into the matched path; `u32` keeps the array small (paths are bounded by the
/// URI length limit, far below 4 GiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Captured path parameters of the last match; reused across requests.
///
/// Values are ranges into the path given to `Router::find`: read them with the same path.
/// Parameters are numbered in the order their `{name}` appears in the route's template; the
/// rest is what a trailing `*` (or a prefix) matched, without its leading `/`.
#[derive(Debug, Clone, Default)]
pub struct Params {
    route: Option<u32>,
    len: u8,
    spans: [Span; MAX_PARAMS],
    rest: Option<Span>,
}

impl Params {
    /// Forgets the last match.
    pub fn clear(&mut self) {
        self.route = None;
        self.len = 0;
        self.rest = None;
    }

    /// Number of `{name}` values captured.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no `{name}` value was captured.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index (in the list given to `Router::build`) of the route that matched, if any.
    pub fn route_index(&self) -> Option<usize> {
        self.route.map(|r| r as usize)
    }

    /// Byte range of the `i`-th captured value.
    pub fn range(&self, i: usize) -> Option<Range<usize>> {
        self.spans.get(..self.len())?.get(i).map(|s| s.range())
    }

    /// The `i`-th captured value, read from `path` (the path that was matched).
    pub fn get<'p>(&self, i: usize, path: &'p str) -> Option<&'p str> {
        path.get(self.range(i)?)
    }

    /// Byte range of the rest matched by a trailing `*` or a prefix.
    pub fn rest_range(&self) -> Option<Range<usize>> {
        self.rest.map(Span::range)
    }

    /// The rest matched by a trailing `*` or a prefix (no leading `/`; may be empty).
    pub fn rest<'p>(&self, path: &'p str) -> Option<&'p str> {
        path.get(self.rest_range()?)
    }

    /// Appends a captured value; `false` when full (the router never captures more than
    /// [`MAX_PARAMS`], so this is a guard, not a path).
    pub(crate) fn push(&mut self, start: usize, end: usize) -> bool {
        let span = match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => Span { start, end },
            _ => return false,
        };
        let len = self.len();
        match self.spans.get_mut(len) {
            Some(slot) => {
                *slot = span;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Drops the last captured value (backtracking).
    pub(crate) fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Records the rest range.
    pub(crate) fn set_rest(&mut self, start: usize, end: usize) {
        self.rest = match (u32::try_from(start), u32::try_from(end)) {
            (Ok(start), Ok(end)) => Some(Span { start, end }),
            _ => None,
        };
    }

    /// Records which route matched.
    pub(crate) fn set_route(&mut self, route: u32) {
        self.route = Some(route);
    }

    /// Copies the captures of `other` without touching the heap (`Params` owns none).
    pub(crate) fn copy_from(&mut self, other: &Params) {
        self.route = other.route;
        self.len = other.len;
        self.rest = other.rest;
        let n = other.len();
        if let (Some(dst), Some(src)) = (self.spans.get_mut(..n), other.spans.get(..n)) {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_are_ranges_into_the_path() {
        let path = "/users/42/posts/a/b";
        let mut p = Params::default();
        assert!(p.push(7, 9));
        p.set_rest(16, path.len());
        assert_eq!(p.get(0, path), Some("42"));
        assert_eq!(p.get(1, path), None);
        assert_eq!(p.rest(path), Some("a/b"));
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.rest(path), None);
    }

    #[test]
    fn capacity_is_bounded_without_heap() {
        let mut p = Params::default();
        for i in 0..MAX_PARAMS {
            assert!(p.push(i, i + 1));
        }
        assert!(!p.push(0, 1));
        assert_eq!(p.len(), MAX_PARAMS);
        p.pop();
        assert_eq!(p.len(), MAX_PARAMS - 1);
    }
}
