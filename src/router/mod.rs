//! The compiled route matcher and path normalization.
//!
//! A [`Router`] is compiled once per snapshot and is read-only afterwards. Matching allocates
//! nothing: the caller passes a normalized path and a reusable [`Params`].
//!
//! CONTRACT (config and proxy depend on these):
//! - `RouteMatcher`, `PathMatch`, `HeaderMatch`, `Router::<T>::build`, `Router::find`,
//!   `MatchRequest`, `Params`, `RouterError`
//! - `normalize::{split_target, normalize_path, Target, PathError}`
//! - `Rewrite::parse(template, &PathMatch)`, `Rewrite::apply`, `strip_prefix`
//!
//! Layout: [`normalize`] turns the request-target into the path that is matched and forwarded;
//! `host` and `pattern` compile the conditions; `trie` holds one host bucket's paths;
//! `specificity` decides which of several matching routes wins; `table` ties them together
//! into [`Router`]; `rewrite` maps the matched path onto the upstream path. The user-facing
//! rules are in `docs/routing.md`.

mod conditions;
mod host;
pub mod normalize;
mod params;
mod pattern;
mod rewrite;
mod specificity;
mod table;
mod trie;

pub use params::{Params, MAX_PARAMS};
pub use rewrite::{strip_prefix, Rewrite};
pub use table::Router;

/// The `{name}` parameters a path match captures, in capture order (empty for paths without
/// a template; an invalid template's error is reported by `Router::build`, so it gives none).
pub fn param_names(path: &PathMatch) -> Vec<String> {
    pattern::compile(path)
        .map(|p| p.param_names().map(String::from).collect())
        .unwrap_or_default()
}

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// This exact path.
    Exact(String),
    /// This path or any path below it (segment-aware: `/v1` matches `/v1` and `/v1/x`, not `/v1x`).
    Prefix(String),
    /// A template: literal segments, `{name}` segments, and an optional trailing `*`.
    Template(String),
}

/// How a route matches one header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderMatch {
    /// The header is present with any value.
    Present,
    /// The header's value equals this (case-sensitive).
    Exact(String),
}

/// A route's match conditions, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatcher {
    /// Exact host (`api.example.com`) or wildcard (`*.example.com`); `None` matches any host.
    pub host: Option<String>,
    /// Path condition.
    pub path: PathMatch,
    /// Allowed methods (upper-case); empty allows all.
    pub methods: Vec<String>,
    /// Header conditions (names lower-case).
    pub headers: Vec<(String, HeaderMatch)>,
}

/// A route that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RouterError {
    /// Index of the route in the list given to [`Router::build`].
    pub index: usize,
    /// Which field is wrong (`match.path`, `match.host`, ...).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// What a request offers to the matcher.
#[derive(Debug, Clone, Copy)]
pub struct MatchRequest<'a> {
    /// Lower-case host without port, if the request had one.
    pub host: Option<&'a str>,
    /// Normalized path (see [`normalize::normalize_path`]).
    pub path: &'a str,
    /// Method token.
    pub method: &'a str,
}
