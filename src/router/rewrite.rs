//! Path rewriting after a match: prefix stripping and template rewrites.
//!
//! Templates are compiled at build time into literal pieces and parameter indexes, so that
//! applying one is a sequence of `push_str` calls. No allocation: [`Rewrite::apply`] runs on
//! the hot path and writes into a reused `String`.

use super::normalize::{is_pchar, normalize_path};
use super::pattern::{self, Tail};
use super::{Params, PathMatch};

/// One piece of a compiled rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as is.
    Literal(Box<str>),
    /// The value of the route's `i`-th `{name}`.
    Param(usize),
    /// The rest matched by the route's trailing `*` (or prefix), without its leading `/`.
    Rest,
}

/// A compiled rewrite template (`/internal/{id}/{*}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pieces: Vec<Piece>,
}

impl Rewrite {
    /// Compiles `template` against the route's path match (names must exist there).
    ///
    /// `{name}` refers to a `{name}` of a `PathMatch::Template`; `{*}` to the rest matched by
    /// its trailing `*`, or by a `PathMatch::Prefix` / `PathMatch::Any` (what follows the
    /// prefix). The literal text must be valid, normalized path text.
    pub fn parse(template: &str, path: &PathMatch) -> Result<Self, String> {
        if !template.starts_with('/') {
            return Err(format!("rewrite {template:?} must start with `/`"));
        }
        let route = pattern::compile(path)?;
        let names: Vec<&str> = route.param_names().collect();
        let has_rest = route.tail != Tail::End;
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (text, after) = rest.split_at(open);
            push_literal(&mut pieces, text, template)?;
            let close = after
                .find('}')
                .ok_or_else(|| format!("rewrite {template:?}: unclosed `{{`"))?;
            let name = after.get(1..close).unwrap_or_default();
            pieces.push(resolve(name, &names, has_rest, template)?);
            rest = after.get(close + 1..).unwrap_or_default();
        }
        push_literal(&mut pieces, rest, template)?;
        Ok(Rewrite { pieces })
    }

    /// Writes the rewritten path for `path` (which matched with `params`) into `out`.
    ///
    /// Where an empty `{*}` leaves two slashes side by side (`/a/{*}/b` with nothing
    /// after the prefix), they are written as one: the result is `/a/b`, never `/a//b`,
    /// which an upstream could read as an empty segment.
    pub fn apply(&self, path: &str, params: &Params, out: &mut String) {
        out.clear();
        for piece in &self.pieces {
            let text = match piece {
                Piece::Literal(s) => Some(&**s),
                Piece::Param(i) => params.get(*i, path),
                Piece::Rest => params.rest(path),
            };
            let text = text.unwrap_or_default();
            let text = match text.strip_prefix('/') {
                Some(rest) if out.ends_with('/') => rest,
                _ => text,
            };
            out.push_str(text);
        }
    }
}

/// The piece a `{name}` stands for.
fn resolve(name: &str, names: &[&str], has_rest: bool, template: &str) -> Result<Piece, String> {
    if name == "*" {
        return if has_rest {
            Ok(Piece::Rest)
        } else {
            Err(format!(
                "rewrite {template:?}: `{{*}}` needs a route path with a trailing `*` or a prefix"
            ))
        };
    }
    match names.iter().position(|n| *n == name) {
        Some(i) => Ok(Piece::Param(i)),
        None => Err(format!(
            "rewrite {template:?}: the route's path has no parameter {name:?}"
        )),
    }
}

/// Adds literal text after checking it cannot smuggle in what normalization removed.
fn push_literal(pieces: &mut Vec<Piece>, text: &str, template: &str) -> Result<(), String> {
    if text.contains('}') {
        return Err(format!("rewrite {template:?}: `}}` without `{{`"));
    }
    let bad_byte = text
        .bytes()
        .find(|&b| !(is_pchar(b) || b == b'/' || b == b'%'));
    if let Some(b) = bad_byte {
        return Err(format!(
            "rewrite {template:?}: byte {:?} not allowed",
            char::from(b)
        ));
    }
    if text.contains("//") {
        return Err(format!("rewrite {template:?}: empty segment (`//`)"));
    }
    for segment in text.split('/') {
        let mut out = String::new();
        let spelled = format!("/{segment}");
        if segment.is_empty() {
            continue;
        }
        if normalize_path(spelled.as_bytes(), &mut out)
            .ok()
            .filter(|()| out == spelled)
            .is_none()
        {
            return Err(format!(
                "rewrite {template:?}: segment {segment:?} is not in normalized form"
            ));
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Literal(text.into()));
    }
    Ok(())
}

/// `path` without `prefix` (segment-aware); `None` if `path` does not start with it.
///
/// The result always starts with `/`: `("/v1/users", "/v1")` gives `/users`, `("/v1", "/v1")`
/// gives `/`, and `("/v1x", "/v1")` gives `None`. A prefix written with a trailing `/` needs
/// that `/` in the path: `("/v1", "/v1/")` gives `None`.
pub fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.len() > 1 {
        if let Some(trimmed) = prefix.strip_suffix('/') {
            // Keep the prefix's `/` as the result's leading `/`.
            return path
                .starts_with(prefix)
                .then(|| path.get(trimmed.len()..))
                .flatten();
        }
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix)? {
        "" => Some("/"),
        rest if rest.starts_with('/') => Some(rest),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(spans: &[(usize, usize)], rest: Option<usize>, path: &str) -> Params {
        let mut p = Params::default();
        for &(s, e) in spans {
            assert!(p.push(s, e));
        }
        if let Some(r) = rest {
            p.set_rest(r, path.len());
        }
        p
    }

    #[test]
    fn strip_prefix_is_segment_aware() {
        assert_eq!(strip_prefix("/v1/users", "/v1"), Some("/users"));
        assert_eq!(strip_prefix("/v1", "/v1"), Some("/"));
        assert_eq!(strip_prefix("/v1/", "/v1"), Some("/"));
        assert_eq!(strip_prefix("/v1x", "/v1"), None);
        assert_eq!(strip_prefix("/v2/a", "/v1"), None);
    }

    #[test]
    fn strip_prefix_with_trailing_slash() {
        assert_eq!(strip_prefix("/v1/users", "/v1/"), Some("/users"));
        assert_eq!(strip_prefix("/v1/", "/v1/"), Some("/"));
        assert_eq!(strip_prefix("/v1", "/v1/"), None);
    }

    #[test]
    fn strip_root_prefix_keeps_path() {
        assert_eq!(strip_prefix("/a/b", "/"), Some("/a/b"));
        assert_eq!(strip_prefix("/", "/"), Some("/"));
    }

    #[test]
    fn rewrite_substitutes_params_and_rest() {
        let route = PathMatch::Template("/users/{id}/files/*".into());
        let rw = Rewrite::parse("/internal/{id}/{*}", &route).unwrap();
        let path = "/users/42/files/a/b.txt";
        let p = params(&[(7, 9)], Some(16), path);
        let mut out = String::with_capacity(64);
        rw.apply(path, &p, &mut out);
        assert_eq!(out, "/internal/42/a/b.txt");
    }

    #[test]
    fn rewrite_rest_of_a_prefix() {
        let rw = Rewrite::parse("/v2/{*}", &PathMatch::Prefix("/api".into())).unwrap();
        let path = "/api/x/y";
        let mut out = String::new();
        rw.apply(path, &params(&[], Some(5), path), &mut out);
        assert_eq!(out, "/v2/x/y");
    }

    #[test]
    fn an_empty_rest_leaves_no_double_slash() {
        let route = PathMatch::Prefix("/api".into());
        let mut out = String::new();
        let inner = Rewrite::parse("/internal/{*}/x", &route).unwrap();
        inner.apply("/api", &params(&[], Some(4), "/api"), &mut out);
        assert_eq!(out, "/internal/x");
        inner.apply("/api/", &params(&[], Some(5), "/api/"), &mut out);
        assert_eq!(out, "/internal/x");
        inner.apply("/api/a/b", &params(&[], Some(5), "/api/a/b"), &mut out);
        assert_eq!(out, "/internal/a/b/x");
        let trailing = Rewrite::parse("/internal/{*}", &route).unwrap();
        trailing.apply("/api", &params(&[], Some(4), "/api"), &mut out);
        assert_eq!(out, "/internal/");
        let only = Rewrite::parse("/{*}", &route).unwrap();
        only.apply("/api", &params(&[], Some(4), "/api"), &mut out);
        assert_eq!(out, "/");
    }

    #[test]
    fn rewrite_params_may_sit_inside_a_segment() {
        let route = PathMatch::Template("/u/{id}".into());
        let rw = Rewrite::parse("/user-{id}.json", &route).unwrap();
        let mut out = String::new();
        rw.apply("/u/7", &params(&[(3, 4)], None, "/u/7"), &mut out);
        assert_eq!(out, "/user-7.json");
    }

    #[test]
    fn rewrite_names_must_exist_in_route() {
        let route = PathMatch::Template("/u/{id}".into());
        assert!(Rewrite::parse("/x/{name}", &route).is_err());
        assert!(Rewrite::parse("/x/{*}", &route).is_err());
        assert!(Rewrite::parse("/x/{*}", &PathMatch::Exact("/u".into())).is_err());
    }

    #[test]
    fn rewrite_template_errors() {
        let route = PathMatch::Template("/u/{id}/*".into());
        for bad in [
            "x/{id}",
            "/x/{id",
            "/x/id}",
            "/x/../{id}",
            "/x y/{id}",
            "/x/%2e%2e/{*}",
            "/x//{id}",
        ] {
            assert!(Rewrite::parse(bad, &route).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn apply_reuses_capacity() {
        let rw = Rewrite::parse("/static/page", &PathMatch::Any).unwrap();
        let mut out = String::with_capacity(32);
        let cap = out.capacity();
        rw.apply("/anything", &Params::default(), &mut out);
        assert_eq!((out.as_str(), out.capacity()), ("/static/page", cap));
    }
}
