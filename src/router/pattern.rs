//! Compiles a [`PathMatch`] into segments the trie can hold, and validates it.
//!
//! Build time only. Patterns are checked against the normalization rule so that a route can
//! never be written in a form that no normalized request path could match.

use super::normalize::normalize_path;
use super::params::MAX_PARAMS;
use super::PathMatch;

/// One segment of a compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches this segment exactly (case-sensitive; may be empty for a trailing `/`).
    Literal(Box<str>),
    /// `{name}`: matches exactly one non-empty segment.
    Param(Box<str>),
}

/// What may follow the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing: the path ends here.
    End,
    /// Zero or more segments (a prefix, `Any`, or a trailing `*`).
    Rest,
    /// One or more segments (a prefix written with a trailing `/`: `/v1/` does not match `/v1`).
    RestNonEmpty,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    pub(crate) segments: Vec<Segment>,
    pub(crate) tail: Tail,
}

impl Pattern {
    /// Names of the `{name}` segments, in capture order.
    pub(crate) fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(&**name),
            Segment::Literal(_) => None,
        })
    }

    /// Number of literal segments.
    pub(crate) fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }
}

/// Compiles a route's path condition.
pub(crate) fn compile(path: &PathMatch) -> Result<Pattern, String> {
    match path {
        PathMatch::Any => Ok(Pattern {
            segments: Vec::new(),
            tail: Tail::Rest,
        }),
        PathMatch::Exact(p) => compile_exact(p),
        PathMatch::Prefix(p) => compile_prefix(p),
        PathMatch::Template(t) => compile_template(t),
    }
}

fn compile_exact(path: &str) -> Result<Pattern, String> {
    check_normalized(path)?;
    let segments = split(path).map(|s| Segment::Literal(s.into())).collect();
    Ok(Pattern {
        segments,
        tail: Tail::End,
    })
}

fn compile_prefix(path: &str) -> Result<Pattern, String> {
    check_normalized(path)?;
    let (trimmed, tail) = match path.strip_suffix('/') {
        Some(t) if !t.is_empty() => (t, Tail::RestNonEmpty),
        _ => (path, Tail::Rest),
    };
    let segments = split(trimmed).map(|s| Segment::Literal(s.into())).collect();
    Ok(Pattern { segments, tail })
}

fn compile_template(template: &str) -> Result<Pattern, String> {
    if !template.starts_with('/') {
        return Err(format!("template {template:?} must start with `/`"));
    }
    let mut segments = Vec::new();
    let mut tail = Tail::End;
    let count = split(template).count();
    for (i, raw) in split(template).enumerate() {
        let last = i + 1 == count;
        if raw == "*" {
            if !last {
                return Err(format!("in {template:?}: `*` must be the last segment"));
            }
            tail = Tail::Rest;
        } else if raw.contains(['{', '}']) {
            segments.push(Segment::Param(param_name(raw, &segments, template)?.into()));
        } else {
            check_literal(raw, last, template)?;
            segments.push(Segment::Literal(raw.into()));
        }
    }
    let params = segments
        .iter()
        .filter(|s| matches!(s, Segment::Param(_)))
        .count();
    if params > MAX_PARAMS {
        return Err(format!(
            "template {template:?} has {params} parameters; at most {MAX_PARAMS}"
        ));
    }
    Ok(Pattern { segments, tail })
}

/// The name inside a `{name}` segment, checked for shape and uniqueness.
fn param_name<'a>(raw: &'a str, seen: &[Segment], template: &str) -> Result<&'a str, String> {
    let name = raw
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .filter(|n| !n.contains(['{', '}']))
        .ok_or_else(|| {
            format!("in {template:?}: {raw:?} must be a whole segment `{{name}}` (unclosed or mixed with text)")
        })?;
    if name.is_empty() {
        return Err(format!("in {template:?}: empty parameter name"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "in {template:?}: parameter name {name:?} may use only A-Z a-z 0-9 _ -"
        ));
    }
    if seen
        .iter()
        .any(|s| matches!(s, Segment::Param(n) if &**n == name))
    {
        return Err(format!("in {template:?}: duplicate parameter {name:?}"));
    }
    Ok(name)
}

/// A literal template segment must survive normalization unchanged.
fn check_literal(raw: &str, last: bool, template: &str) -> Result<(), String> {
    if raw.is_empty() && !last {
        return Err(format!("in {template:?}: empty segment (`//`)"));
    }
    if raw.contains('*') {
        return Err(format!("in {template:?}: `*` must be a whole segment"));
    }
    let mut out = String::new();
    let spelled = format!("/{raw}");
    match normalize_path(spelled.as_bytes(), &mut out) {
        Ok(()) if out == spelled || raw.is_empty() => Ok(()),
        Ok(()) => Err(format!(
            "in {template:?}: segment {raw:?} is not in normalized form"
        )),
        Err(e) => Err(format!("in {template:?}: segment {raw:?}: {e}")),
    }
}

/// An exact or prefix path must be what `normalize_path` would produce.
fn check_normalized(path: &str) -> Result<(), String> {
    let mut out = String::new();
    match normalize_path(path.as_bytes(), &mut out) {
        Ok(()) if out == path => Ok(()),
        Ok(()) => Err(format!(
            "path {path:?} is not in normalized form; write {out:?}"
        )),
        Err(e) => Err(format!("path {path:?}: {e}")),
    }
}

/// The segments of a path that starts with `/`; `/` itself has none, and a trailing `/` yields
/// a final empty segment. Request paths are walked by the same rule in the trie.
fn split(path: &str) -> impl Iterator<Item = &str> {
    let body = match path {
        "/" => None,
        _ => path.strip_prefix('/'),
    };
    body.into_iter().flat_map(|b| b.split('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> Result<Pattern, String> {
        compile(&PathMatch::Template(t.into()))
    }

    fn lit(s: &str) -> Segment {
        Segment::Literal(s.into())
    }

    #[test]
    fn template_compiles_params_and_rest() {
        let p = template("/users/{id}/posts/*").unwrap();
        assert_eq!(
            p.segments,
            vec![lit("users"), Segment::Param("id".into()), lit("posts")]
        );
        assert_eq!(p.tail, Tail::Rest);
        assert_eq!(p.param_names().collect::<Vec<_>>(), vec!["id"]);
        assert_eq!(p.literal_count(), 2);
    }

    #[test]
    fn root_has_no_segments() {
        assert_eq!(
            compile(&PathMatch::Exact("/".into())).unwrap().segments,
            vec![]
        );
        let p = compile(&PathMatch::Prefix("/".into())).unwrap();
        assert_eq!((p.segments.len(), p.tail), (0, Tail::Rest));
    }

    #[test]
    fn trailing_slash_is_an_empty_literal() {
        let p = compile(&PathMatch::Exact("/a/".into())).unwrap();
        assert_eq!(p.segments, vec![lit("a"), lit("")]);
    }

    #[test]
    fn prefix_with_trailing_slash_needs_more() {
        let p = compile(&PathMatch::Prefix("/v1/".into())).unwrap();
        assert_eq!((p.segments, p.tail), (vec![lit("v1")], Tail::RestNonEmpty));
    }

    #[test]
    fn template_errors_are_reported() {
        for bad in [
            "users/{id}",
            "/users/{id",
            "/users/{}",
            "/a/{x}/{x}",
            "/a/*/b",
            "/a*",
            "/a{x}",
            "/a/{x y}",
            "/a//b",
            "/a/../b",
            "/a b",
        ] {
            assert!(template(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn at_most_sixteen_params() {
        let ok: String = (0..16).map(|i| format!("/{{p{i}}}")).collect();
        assert!(template(&ok).is_ok());
        let too_many: String = (0..17).map(|i| format!("/{{p{i}}}")).collect();
        assert!(template(&too_many).is_err());
    }

    #[test]
    fn exact_and_prefix_must_be_normalized() {
        assert!(compile(&PathMatch::Exact("/a/./b".into())).is_err());
        assert!(compile(&PathMatch::Prefix("a".into())).is_err());
        assert!(compile(&PathMatch::Prefix("//a".into())).is_err());
        assert!(compile(&PathMatch::Exact("/a%2eb".into())).is_err());
    }
}
