//! Path rewriting after a match: prefix stripping and template rewrites.

use super::{Params, PathMatch};

/// A compiled rewrite template (`/internal/{id}/{*}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {}

impl Rewrite {
    /// Compiles `template` against the route's path match (names must exist there).
    pub fn parse(_template: &str, _path: &PathMatch) -> Result<Self, String> {
        todo!("router helper")
    }

    /// Writes the rewritten path for `path` (which matched with `params`) into `out`.
    pub fn apply(&self, _path: &str, _params: &Params, _out: &mut String) {
        todo!("router helper")
    }
}

/// `path` without `prefix` (segment-aware); `None` if `path` does not start with it.
pub fn strip_prefix<'a>(_path: &'a str, _prefix: &str) -> Option<&'a str> {
    todo!("router helper")
}
