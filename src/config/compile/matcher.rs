//! A route's `match` table: host, one path condition, methods and headers.
//!
//! Only the file-level rules live here (at most one path key, tokens, duplicates, case);
//! the path and host syntax itself is checked by `Router::build`, which owns those rules.

use std::collections::HashSet;

use super::Ctx;
use crate::config::file::RawMatch;
use crate::router::{HeaderMatch, PathMatch, RouteMatcher};

/// Compiles `routes[i].match` (absent: any request); `key` is `routes[i].match`.
pub(super) fn compile(cx: &mut Ctx<'_>, key: &str, raw: Option<&RawMatch>) -> RouteMatcher {
    let none = RawMatch::default();
    let raw = raw.unwrap_or(&none);
    RouteMatcher {
        host: host(cx, key, raw),
        path: path(cx, key, raw),
        methods: methods(cx, key, raw),
        headers: headers(cx, key, raw),
    }
}

fn host(cx: &mut Ctx<'_>, key: &str, raw: &RawMatch) -> Option<String> {
    let host = raw.host.as_ref()?;
    if host.get_ref().trim().is_empty() {
        let message = "must not be empty (leave `host` out to match any host)".to_string();
        cx.problem(format!("{key}.host"), Some(host.span()), message);
        return None;
    }
    // Request hosts are compared lower-cased, so the configured one is too.
    Some(host.get_ref().to_ascii_lowercase())
}

fn path(cx: &mut Ctx<'_>, key: &str, raw: &RawMatch) -> PathMatch {
    let set: Vec<_> = [
        ("path_exact", &raw.path_exact),
        ("path_prefix", &raw.path_prefix),
        ("path", &raw.path),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
    .collect();
    if let [_, (second, value), ..] = set.as_slice() {
        let message = "set at most one of `path_exact`, `path_prefix` and `path`".to_string();
        cx.problem(format!("{key}.{second}"), Some(value.span()), message);
    }
    match set.first() {
        None => PathMatch::Any,
        Some(("path_exact", v)) => PathMatch::Exact(v.get_ref().clone()),
        Some(("path_prefix", v)) => PathMatch::Prefix(v.get_ref().clone()),
        Some((_, v)) => PathMatch::Template(v.get_ref().clone()),
    }
}

fn methods(cx: &mut Ctx<'_>, key: &str, raw: &RawMatch) -> Vec<String> {
    let Some(list) = &raw.methods else {
        return Vec::new();
    };
    if list.is_empty() {
        let message = "must list at least one method (leave `methods` out to allow all)";
        cx.problem(format!("{key}.methods"), None, message.into());
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let method = m.get_ref().to_ascii_uppercase();
        let problem = if !is_token(&method) {
            Some(format!("invalid method `{}`", m.get_ref()))
        } else if out.contains(&method) {
            Some(format!("method `{method}` is listed twice"))
        } else {
            None
        };
        match problem {
            Some(message) => cx.problem(format!("{key}.methods[{i}]"), Some(m.span()), message),
            None => out.push(method),
        }
    }
    out
}

fn headers(cx: &mut Ctx<'_>, key: &str, raw: &RawMatch) -> Vec<(String, HeaderMatch)> {
    let Some(table) = &raw.headers else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(table.0.len());
    for (name, value) in &table.0 {
        let lower = name.get_ref().to_ascii_lowercase();
        let entry_key = format!("{key}.headers.{lower}");
        if !is_token(&lower) {
            let message = format!("invalid header name `{}`", name.get_ref());
            cx.problem(entry_key, Some(name.span()), message);
            continue;
        }
        // Names are case-insensitive: `X-A` and `x-a` would be two conditions on one header.
        if !seen.insert(lower.clone()) {
            let message = format!("header `{lower}` is listed twice (names are case-insensitive)");
            cx.problem(entry_key, Some(name.span()), message);
            continue;
        }
        let condition = match value.get_ref().as_str() {
            "*" => HeaderMatch::Present,
            v if has_control(v) => {
                let message = "header value must not contain control characters".to_string();
                cx.problem(entry_key, Some(value.span()), message);
                continue;
            }
            v => HeaderMatch::Exact(v.to_string()),
        };
        out.push((lower, condition));
    }
    out
}

/// An HTTP token (RFC 9110 `tchar`): method and header-name syntax.
pub(in crate::config) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `s` holds a control character other than tab (never valid in a header value).
pub(in crate::config) fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\t')
}
