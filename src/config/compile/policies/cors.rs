//! `kind = "cors"`: `origins`, `origin_regexes`, `methods`, `headers`, `mirror_headers`,
//! `expose_headers`, `credentials`, `max_age`, `private_network`.
//!
//! Every combination a browser would reject or that would grant more than it says is refused
//! here, with its key and line: `*` with credentials (in `origins`, `methods`, `headers` or
//! `expose_headers`), `*` next to other entries, malformed origins and patterns, regexes
//! that do not compile.

use std::sync::Arc;

use toml::Spanned;

use super::super::matcher::is_token;
use super::KindCx;
use crate::policy::cors::{parse_origin, Allowed, Cors, Origins, RequestHeaders, Suffix};

/// The keys this kind accepts besides `kind`.
pub(super) const KEYS: &[&str] = &[
    "origins",
    "origin_regexes",
    "methods",
    "headers",
    "mirror_headers",
    "expose_headers",
    "credentials",
    "max_age",
    "private_network",
];

/// `methods` when absent.
const DEFAULT_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// `max_age` when absent: ten minutes (browsers cap it: Chromium at 2 h, Firefox at 24 h).
const DEFAULT_MAX_AGE: u64 = 600;

/// Compiles a `cors` table.
pub(super) fn compile(k: &mut KindCx<'_, '_, '_>) -> Option<Arc<Cors>> {
    let raw = k.raw;
    let credentials = raw.credentials.as_ref().is_some_and(|c| *c.get_ref());
    if raw.origins.is_none() && raw.origin_regexes.is_none() {
        k.problem_at_kind("set `origins`, `origin_regexes` or both".to_string());
        return None;
    }
    let mut origins = origins(k, raw.origins.as_ref());
    origins.regexes = regexes(k, raw.origin_regexes.as_ref());
    let methods = allowed(k, "methods", raw.methods.as_ref(), false)
        .unwrap_or_else(|| Allowed::list(DEFAULT_METHODS.iter().map(|m| m.to_string()).collect()));
    let headers = request_headers(k);
    let expose_headers = match allowed(k, "expose_headers", raw.expose_headers.as_ref(), true) {
        None => None,
        Some(Allowed::Any) => Some("*".into()),
        Some(Allowed::List { joined, .. }) => Some(joined),
    };
    if credentials {
        refuse_wildcards_with_credentials(
            k,
            &origins,
            &methods,
            &headers,
            expose_headers.as_deref(),
        );
    }
    let max_age = raw
        .max_age
        .as_ref()
        .map_or(DEFAULT_MAX_AGE, |d| d.get_ref().0.as_secs());
    Some(Arc::new(Cors {
        name: k.name.to_string(),
        origins,
        methods,
        headers,
        expose_headers,
        credentials,
        max_age,
        private_network: raw.private_network.as_ref().is_some_and(|p| *p.get_ref()),
    }))
}

/// `credentials = true` next to a `*`: Fetch ignores `*` in credentialed responses, so the
/// combination would not do what it says; the problem is reported at `credentials`.
fn refuse_wildcards_with_credentials(
    k: &mut KindCx<'_, '_, '_>,
    origins: &Origins,
    methods: &Allowed,
    headers: &RequestHeaders,
    expose: Option<&str>,
) {
    let mut keys = Vec::new();
    if origins.any {
        keys.push("origins");
    }
    if *methods == Allowed::Any {
        keys.push("methods");
    }
    if *headers == RequestHeaders::Any {
        keys.push("headers");
    }
    if expose == Some("*") {
        keys.push("expose_headers");
    }
    if keys.is_empty() {
        return;
    }
    let span = k
        .raw
        .credentials
        .as_ref()
        .map(Spanned::span)
        .unwrap_or_default();
    let message = format!(
        "`credentials = true` cannot be combined with `*` in {}: list the allowed values \
         (browsers ignore `*` on credentialed requests)",
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    k.problem("credentials", span, message);
}

/// `origins`: `*` alone, serialized origins, `null`, or `scheme://*.suffix[:port]`.
fn origins(k: &mut KindCx<'_, '_, '_>, list: Option<&Spanned<Vec<Spanned<String>>>>) -> Origins {
    let mut origins = Origins::default();
    let Some(list) = list else { return origins };
    let entries = list.get_ref();
    for (i, entry) in entries.iter().enumerate() {
        let text = entry.get_ref().as_str();
        let sub = format!("origins[{i}]");
        if text == "*" {
            if entries.len() > 1 {
                k.problem(
                    &sub,
                    entry.span(),
                    "`*` allows every origin: list it alone".into(),
                );
            }
            origins.any = true;
        } else if text == "null" {
            origins.exact.insert("null".into());
        } else if text.contains('*') {
            match suffix(text) {
                Ok(s) => origins.suffixes.push(s),
                Err(message) => k.problem(&sub, entry.span(), message),
            }
        } else {
            match serialized(text) {
                Ok(s) => {
                    origins.exact.insert(s.into());
                }
                Err(message) => k.problem(&sub, entry.span(), message),
            }
        }
    }
    origins
}

/// The serialized form of an origin written in the config.
fn serialized(text: &str) -> Result<String, String> {
    let origin = parse_origin(text.as_bytes()).ok_or_else(|| {
        format!(
            "invalid origin `{text}`: expected `scheme://host[:port]` without a path, \
             e.g. \"https://app.example.com\""
        )
    })?;
    let mut buf = [0u8; 320];
    origin
        .serialize(&mut buf)
        .map(str::to_string)
        .ok_or_else(|| format!("origin `{text}` is too long"))
}

/// A `scheme://*.example.com[:port]` pattern.
fn suffix(text: &str) -> Result<Suffix, String> {
    let bad = |why: &str| {
        format!(
            "invalid origin pattern `{text}`: {why}; a pattern is `scheme://*.domain[:port]`, \
             e.g. \"https://*.example.com\""
        )
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let rest = rest
        .strip_prefix("*.")
        .ok_or_else(|| bad("`*` must be the whole first label"))?;
    // The rest must itself be a valid origin once given a first label.
    let probe = format!("{scheme}://x.{rest}");
    let origin = parse_origin(probe.as_bytes()).ok_or_else(|| bad("not an origin"))?;
    let host = std::str::from_utf8(&origin.host[2..]).map_err(|_| bad("not an origin"))?;
    if host.starts_with('[') || !host.contains('.') || host.split('.').any(str::is_empty) {
        return Err(bad("the domain needs at least two labels"));
    }
    Ok(Suffix {
        scheme: scheme.to_ascii_lowercase().into(),
        suffix: format!(".{}", host.to_ascii_lowercase()).into(),
        port: origin.port,
    })
}

/// `origin_regexes`: each compiled once, anchored at both ends.
fn regexes(
    k: &mut KindCx<'_, '_, '_>,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
) -> Vec<regex::Regex> {
    let mut out = Vec::new();
    for (i, entry) in list.iter().flat_map(|l| l.get_ref()).enumerate() {
        match regex::Regex::new(&format!("^(?:{})$", entry.get_ref())) {
            Ok(r) => out.push(r),
            Err(e) => {
                let message = format!("invalid regex: {e}");
                k.problem(&format!("origin_regexes[{i}]"), entry.span(), message);
            }
        }
    }
    out
}

/// A list of tokens that may be `["*"]`; `None` when absent. `names` says whether entries
/// are header names (else methods, kept case-sensitive as Fetch compares them).
fn allowed(
    k: &mut KindCx<'_, '_, '_>,
    key: &str,
    list: Option<&Spanned<Vec<Spanned<String>>>>,
    names: bool,
) -> Option<Allowed> {
    let entries = list?.get_ref();
    if entries.len() == 1 && entries[0].get_ref() == "*" {
        return Some(Allowed::Any);
    }
    let mut values = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let text = entry.get_ref();
        if !is_token(text) {
            let what = if names { "header name" } else { "method" };
            let message = if text == "*" {
                "`*` must be the only entry".to_string()
            } else {
                format!("invalid {what} `{text}`")
            };
            k.problem(&format!("{key}[{i}]"), entry.span(), message);
            continue;
        }
        values.push(if names {
            text.to_ascii_lowercase()
        } else {
            text.clone()
        });
    }
    Some(Allowed::list(values))
}

/// `headers` and `mirror_headers` (not both).
fn request_headers(k: &mut KindCx<'_, '_, '_>) -> RequestHeaders {
    let mirror = k.raw.mirror_headers.as_ref().is_some_and(|m| *m.get_ref());
    let listed = allowed(k, "headers", k.raw.headers.as_ref(), true);
    match (mirror, listed) {
        (true, Some(_)) => {
            let span = k
                .raw
                .mirror_headers
                .as_ref()
                .map(Spanned::span)
                .unwrap_or_default();
            let message = "`mirror_headers = true` allows every header: drop `headers`".into();
            k.problem("mirror_headers", span, message);
            RequestHeaders::Mirror
        }
        (true, None) => RequestHeaders::Mirror,
        (false, Some(Allowed::Any)) => RequestHeaders::Any,
        (false, Some(Allowed::List { values, .. })) => RequestHeaders::List(values),
        (false, None) => RequestHeaders::List(Box::new([])),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::problems;

    fn at(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(format!("policies.c.{key}"), Some(line))]
    }

    #[test]
    fn credentials_with_a_wildcard_origin_is_refused_at_credentials() {
        let text = "[policies.c]\nkind = \"cors\"\norigins = [\"*\"]\ncredentials = true\n";
        assert_eq!(problems(text), at("credentials", 4));
    }

    #[test]
    fn credentials_with_wildcard_methods_headers_or_expose_is_refused() {
        for key in ["methods", "headers", "expose_headers"] {
            let text = format!(
                "[policies.c]\nkind = \"cors\"\norigins = [\"https://a.example\"]\n\
                 {key} = [\"*\"]\ncredentials = true\n"
            );
            assert_eq!(problems(&text), at("credentials", 5), "{key}");
        }
    }

    #[test]
    fn a_wildcard_without_credentials_is_fine() {
        let text = "[policies.c]\nkind = \"cors\"\norigins = [\"*\"]\nheaders = [\"*\"]\n";
        assert_eq!(problems(text), vec![]);
    }

    #[test]
    fn bad_regexes_are_refused_with_their_index() {
        let text = "[policies.c]\nkind = \"cors\"\n\
                    origin_regexes = ['https://[a-z]+\\.example\\.com', 'https://(']\n";
        assert_eq!(problems(text), at("origin_regexes[1]", 3));
    }

    #[test]
    fn bad_wildcards_are_refused_with_their_index() {
        for bad in [
            "https://*example.com",
            "https://a.*.example.com",
            "*.example.com",
            "https://*.com",
            "https://*.example.com/x",
        ] {
            let text = format!(
                "[policies.c]\nkind = \"cors\"\n\
                 origins = [\"https://*.example.com\",\n  \"{bad}\"]\n"
            );
            assert_eq!(problems(&text), at("origins[1]", 4), "{bad}");
        }
    }

    #[test]
    fn malformed_origins_and_a_mixed_star_are_refused() {
        let text = "[policies.c]\nkind = \"cors\"\n\
                    origins = [\"https://a.example/\", \"*\"]\n";
        assert_eq!(
            problems(text),
            vec![
                ("policies.c.origins[0]".to_string(), Some(3)),
                ("policies.c.origins[1]".to_string(), Some(3)),
            ]
        );
    }

    #[test]
    fn origins_are_required() {
        let text = "[policies.c]\nkind = \"cors\"\ncredentials = true\n";
        assert_eq!(problems(text), vec![("policies.c".to_string(), Some(2))]);
    }

    #[test]
    fn a_route_takes_one_cors_policy() {
        let text = "[policies.a]\nkind = \"cors\"\norigins = [\"*\"]\n\
                    [policies.b]\nkind = \"cors\"\norigins = [\"*\"]\n\
                    [[routes]]\nname = \"r\"\nupstream = \"u\"\npolicies = [\"a\", \"b\"]\n";
        assert_eq!(
            problems(text),
            vec![("routes[0].policies".to_string(), Some(10))]
        );
    }
}
