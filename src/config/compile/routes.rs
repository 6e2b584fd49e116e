//! `[[routes]]`: names, the match table, the action (proxy or respond) and the router build.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use super::caches::CacheTable;
use super::composites::CompositeTable;
use super::matcher::{self, has_control, is_token};
use super::policies::PolicyTable;
use super::{check_name, route_traffic, Ctx};
use crate::config::file::{RawRedirect, RawRespond, RawRoute, RawUpstream};
use crate::config::{ComposeAction, HostPolicy, ProxyAction, Route, RouteAction, StaticResponse};
use crate::router::{Rewrite, RouteMatcher, Router};

/// Headers a static response may not set: the gateway frames the response itself.
const FRAMING_HEADERS: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// The compiled named tables routes refer to.
pub(super) struct Tables<'a> {
    /// `[policies.NAME]`.
    pub(super) policies: &'a PolicyTable,
    /// `[composites.NAME]`.
    pub(super) composites: &'a CompositeTable,
    /// `[caches.NAME]`.
    pub(super) caches: &'a CacheTable,
}

/// Checks every route and builds the router; `None` if any route could not be compiled.
pub(super) fn compile(
    cx: &mut Ctx<'_>,
    routes: &[RawRoute],
    upstreams: &[RawUpstream],
    tables: &Tables<'_>,
) -> Option<Router<Route>> {
    let compiled = check(cx, routes, upstreams, tables);
    build(cx, routes, compiled)
}

/// Compiles each route on its own; a route with problems is left out (as `None`).
/// `policies` are the compiled `[policies.NAME]` tables routes refer to.
pub(super) fn check(
    cx: &mut Ctx<'_>,
    routes: &[RawRoute],
    upstreams: &[RawUpstream],
    tables: &Tables<'_>,
) -> Vec<Option<(RouteMatcher, Route)>> {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(routes.len());
    for (i, raw) in routes.iter().enumerate() {
        let before = cx.problems.len();
        let name = raw.name.get_ref();
        if let Err(message) = check_name(name) {
            cx.problem(format!("routes[{i}].name"), Some(raw.name.span()), message);
        } else if let Some(line) = first_line.get(name.as_str()) {
            let message = format!("duplicate route name `{name}` (first defined on line {line})");
            cx.problem(format!("routes[{i}].name"), Some(raw.name.span()), message);
        } else {
            first_line.insert(name, cx.line(raw.name.span()));
        }
        let compiled = route(cx, i, raw, upstreams, tables);
        out.push(compiled.filter(|_| cx.problems.len() == before));
    }
    out
}

/// Builds the router from the routes that compiled, mapping its errors back to their routes.
fn build(
    cx: &mut Ctx<'_>,
    routes: &[RawRoute],
    compiled: Vec<Option<(RouteMatcher, Route)>>,
) -> Option<Router<Route>> {
    // The router numbers the routes it is given; `index` maps those back to file order.
    let (index, good): (Vec<usize>, Vec<_>) = compiled
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .unzip();
    let all_good = index.len() == routes.len();
    match Router::build(good) {
        Ok(router) => all_good.then_some(router),
        Err(errors) => {
            for err in errors {
                let i = index.get(err.index).copied().unwrap_or(err.index);
                let (key, span) = match routes.get(i) {
                    Some(raw) if err.field != "routes" => router_error_at(i, raw, err.field),
                    _ => ("routes".to_string(), None),
                };
                cx.problem(key, span, err.message);
            }
            None
        }
    }
}

/// The file key and span a router error on `field` (`match.path`, `match.host`, ...) is about:
/// `match.path` names whichever path key the route set. Falls back to the route's name line.
fn router_error_at(i: usize, raw: &RawRoute, field: &str) -> (String, Option<Range<usize>>) {
    let m = raw.matcher.as_ref();
    let path = m.and_then(|m| {
        [
            ("match.path_exact", &m.path_exact),
            ("match.path_prefix", &m.path_prefix),
            ("match.path", &m.path),
        ]
        .into_iter()
        .find_map(|(key, v)| v.as_ref().map(|v| (key, v.span())))
    });
    let found = match field {
        "match.path" => path,
        "match.host" => m
            .and_then(|m| m.host.as_ref())
            .map(|h| ("match.host", h.span())),
        _ => None,
    };
    match found {
        Some((key, span)) => (format!("routes[{i}].{key}"), Some(span)),
        None => (format!("routes[{i}].{field}"), Some(raw.name.span())),
    }
}

fn route(
    cx: &mut Ctx<'_>,
    i: usize,
    raw: &RawRoute,
    upstreams: &[RawUpstream],
    tables: &Tables<'_>,
) -> Option<(RouteMatcher, Route)> {
    let (policies, composites) = (tables.policies, tables.composites);
    let key = format!("routes[{i}]");
    let chain = policies.chain(cx, &format!("{key}.policies"), raw.policies.as_ref());
    let matcher = matcher::compile(cx, &format!("{key}.match"), raw.matcher.as_ref());
    transform_params(cx, &key, raw, &chain, &matcher);
    let proxy_to = match (&raw.upstream, &raw.split) {
        (Some(_), Some(split)) => {
            let message = "set exactly one of `upstream` or `split`, not both".to_string();
            cx.problem(format!("{key}.split"), Some(split.span()), message);
            return None;
        }
        (Some(upstream), None) => Some(upstream.span()),
        (None, Some(split)) => Some(split.span()),
        (None, None) => None,
    };
    let action = if let Some(compose) = &raw.compose {
        if proxy_to.is_some() || raw.respond.is_some() {
            let message =
                "set exactly one of `upstream`, `split`, `respond` or `compose`, not several"
                    .to_string();
            cx.problem(format!("{key}.compose"), Some(compose.span()), message);
            return None;
        }
        refuse_proxy_keys(cx, &key, raw);
        super::upgrade::rules(cx, &key, raw, false);
        RouteAction::Compose(compose_action(cx, &key, compose, &matcher, composites)?)
    } else {
        match (proxy_to, &raw.respond) {
            (Some(_), None) => proxy(cx, &key, i, raw, upstreams, &matcher, tables.caches)?,
            (None, Some(respond)) => {
                refuse_proxy_keys(cx, &key, raw);
                super::upgrade::rules(cx, &key, raw, false);
                RouteAction::Respond(static_response(cx, &key, respond)?)
            }
            (Some(span), Some(_)) => {
                let message =
                    "set exactly one of `upstream`, `split` or `respond`, not several".to_string();
                cx.problem(format!("{key}.respond"), Some(span), message);
                return None;
            }
            (None, None) => {
                let message = "set one of `upstream` or `split` (proxy), `respond` (static response) or `compose` (composite)"
                .to_string();
                cx.problem(key, Some(raw.name.span()), message);
                return None;
            }
        }
    };
    let max_body_bytes = route_body_limit(cx, &key, raw, &action);
    let route = Route {
        name: raw.name.get_ref().clone(),
        policies: chain,
        action,
        max_body_bytes,
        redirect_https: redirect_https(cx, &key, raw),
        errors: super::errors::format(cx, &format!("{key}.errors"), raw.errors.as_ref()),
        matcher: matcher.clone(),
    };
    Some((matcher, route))
}

/// Every route parameter a `transform` policy's templates name must be captured by the
/// `match.path` of each route using the policy (a missing one would skip its operation on
/// every request): a problem at the template's key and line, naming the route.
fn transform_params(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawRoute,
    chain: &crate::policy::Chain,
    matcher: &RouteMatcher,
) {
    let Some(transform) = chain.transform() else {
        return;
    };
    if transform.params.is_empty() {
        return;
    }
    let names = crate::router::param_names(&matcher.path);
    for used in &transform.params {
        if names.iter().any(|n| **n == *used.name) {
            continue;
        }
        let captured = if names.is_empty() {
            "captures no parameters".to_string()
        } else {
            format!("captures only {}", names.join(", "))
        };
        let message = format!(
            "`{{{}}}` is not a parameter of route `{}` ({key}), which uses policy `{}`: \
             its `match.path` {captured}",
            used.name,
            raw.name.get_ref(),
            transform.name,
        );
        cx.problem(used.key.clone(), Some(used.span.clone()), message);
    }
}

/// `compose = "NAME"`: the composite, with its route parameters mapped onto this route's.
fn compose_action(
    cx: &mut Ctx<'_>,
    key: &str,
    name: &Spanned<String>,
    matcher: &RouteMatcher,
    composites: &CompositeTable,
) -> Option<ComposeAction> {
    let composite = match composites.get(name.get_ref()) {
        Some(Some(composite)) => composite,
        // Defined with problems: those are reported where they are.
        Some(None) => return None,
        None => {
            let defined = composites.names();
            let message = if defined.is_empty() {
                format!(
                    "unknown composite `{}`: no `[composites.NAME]` is defined",
                    name.get_ref()
                )
            } else {
                format!(
                    "unknown composite `{}`; defined: {}",
                    name.get_ref(),
                    defined.join(", ")
                )
            };
            cx.problem(format!("{key}.compose"), Some(name.span()), message);
            return None;
        }
    };
    let names = crate::router::param_names(&matcher.path);
    let mut params = Vec::with_capacity(composite.params.len());
    for param in &composite.params {
        match names.iter().position(|n| n == &**param) {
            Some(i) => params.push(i),
            None => {
                let message = format!(
                    "composite `{}` uses `{{{param}}}`, which this route's `match.path` does not capture",
                    name.get_ref()
                );
                cx.problem(format!("{key}.compose"), Some(name.span()), message);
                return None;
            }
        }
    }
    Some(ComposeAction {
        composite: std::sync::Arc::clone(composite),
        params,
    })
}

/// `redirect_https = true` (port 443) or a port; `false` or absent means none.
fn redirect_https(cx: &mut Ctx<'_>, key: &str, raw: &RawRoute) -> Option<u16> {
    let value = raw.redirect_https.as_ref()?;
    match *value.get_ref() {
        RawRedirect::Enabled(true) => Some(443),
        RawRedirect::Enabled(false) => None,
        RawRedirect::Port(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                let message = format!("{port} is out of range: expected true, false or 1 to 65535");
                cx.problem(format!("{key}.redirect_https"), Some(value.span()), message);
                None
            }
        },
    }
}

fn proxy(
    cx: &mut Ctx<'_>,
    key: &str,
    slot: usize,
    raw: &RawRoute,
    upstreams: &[RawUpstream],
    matcher: &RouteMatcher,
    caches: &super::caches::CacheTable,
) -> Option<RouteAction> {
    let cache = match &raw.cache {
        None => None,
        Some(name) => Some(caches.resolve(cx, key, name)?),
    };
    let groups = route_traffic::groups(cx, key, slot, raw, upstreams);
    let mirror = raw
        .mirror
        .as_ref()
        .map(|m| route_traffic::mirror(cx, key, slot, m, upstreams));
    let strip_prefix = raw.strip_prefix.as_ref().and_then(|p| {
        let prefix = p.get_ref();
        if prefix.starts_with('/') && !prefix.ends_with('/') && !has_control(prefix) {
            return Some(prefix.clone());
        }
        let message =
            format!("invalid prefix `{prefix}`: must start with `/` and not end with `/`");
        cx.problem(format!("{key}.strip_prefix"), Some(p.span()), message);
        None
    });
    let rewrite = raw.rewrite.as_ref().and_then(|t| {
        Rewrite::parse(t.get_ref(), &matcher.path)
            .map_err(|message| cx.problem(format!("{key}.rewrite"), Some(t.span()), message))
            .ok()
    });
    let host = match &raw.host_rewrite {
        None => HostPolicy::Preserve,
        Some(h) if is_host(h.get_ref()) => HostPolicy::Rewrite(h.get_ref().clone()),
        Some(h) => {
            let message = format!(
                "invalid host `{}`: expected e.g. \"users.internal\"",
                h.get_ref()
            );
            cx.problem(format!("{key}.host_rewrite"), Some(h.span()), message);
            HostPolicy::Preserve
        }
    };
    let mirror = match mirror {
        None => None,
        Some(compiled) => Some(compiled?),
    };
    let upgrade = super::upgrade::rules(cx, key, raw, true).map(Box::new);
    Some(RouteAction::Proxy(ProxyAction {
        upgrade,
        cache,
        groups: groups?,
        mirror,
        strip_prefix,
        rewrite,
        host,
        retry_non_idempotent: raw
            .retry_non_idempotent
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    }))
}

/// `max_body_bytes`: a proxy route's own body limit (a static route reads no body).
fn route_body_limit(
    cx: &mut Ctx<'_>,
    key: &str,
    raw: &RawRoute,
    action: &RouteAction,
) -> Option<u64> {
    let value = raw.max_body_bytes.as_ref()?;
    if matches!(action, RouteAction::Respond(_)) {
        let message = "only allowed on proxy routes (with `upstream`)".to_string();
        cx.problem(format!("{key}.max_body_bytes"), Some(value.span()), message);
        return None;
    }
    Some(value.get_ref().0)
}

/// Proxy keys (`strip_prefix`, `rewrite`, `host_rewrite`, `sticky`, `versions`, `mirror`)
/// would do nothing on a static route.
fn refuse_proxy_keys(cx: &mut Ctx<'_>, key: &str, raw: &RawRoute) {
    let first_version = raw.versions.as_ref().and_then(|v| v.first());
    let set = [
        ("strip_prefix", raw.strip_prefix.as_ref().map(Spanned::span)),
        ("rewrite", raw.rewrite.as_ref().map(Spanned::span)),
        ("host_rewrite", raw.host_rewrite.as_ref().map(Spanned::span)),
        ("sticky", raw.sticky.as_ref().map(Spanned::span)),
        ("versions", first_version.map(|v| v.upstream.span())),
        ("mirror", raw.mirror.as_ref().map(|m| m.upstream.span())),
        ("cache", raw.cache.as_ref().map(Spanned::span)),
    ];
    for (name, span) in set {
        if let Some(span) = span {
            let message = "only allowed on proxy routes (with `upstream` or `split`)".to_string();
            cx.problem(format!("{key}.{name}"), Some(span), message);
        }
    }
    if let Some(value) = &raw.retry_non_idempotent {
        let message = "only allowed on proxy routes (with `upstream`)".to_string();
        cx.problem(
            format!("{key}.retry_non_idempotent"),
            Some(value.span()),
            message,
        );
    }
}

fn static_response(cx: &mut Ctx<'_>, key: &str, raw: &RawRespond) -> Option<StaticResponse> {
    let status = *raw.status.get_ref();
    let status_ok = (200..=599).contains(&status);
    if !status_ok {
        let message = format!("status {status} is out of range: expected 200 to 599");
        cx.problem(
            format!("{key}.respond.status"),
            Some(raw.status.span()),
            message,
        );
    }
    let body = raw.body.clone().unwrap_or_default();
    if matches!(status, 204 | 304) && !body.is_empty() {
        let message = format!("a {status} response has no body");
        cx.problem(
            format!("{key}.respond.body"),
            Some(raw.status.span()),
            message,
        );
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers.iter().flat_map(|h| &h.0) {
        let entry_key = format!("{key}.respond.headers.{}", name.get_ref());
        let lower = name.get_ref().to_ascii_lowercase();
        let problem = if !is_token(name.get_ref()) {
            Some(format!("invalid header name `{}`", name.get_ref()))
        } else if FRAMING_HEADERS.contains(&lower.as_str()) {
            Some(format!(
                "`{lower}` is set by the gateway and cannot be configured"
            ))
        } else if has_control(value.get_ref()) {
            Some("header value must not contain control characters".to_string())
        } else {
            None
        };
        match problem {
            Some(message) => cx.problem(entry_key, Some(name.span()), message),
            None => headers.push((name.get_ref().clone(), value.get_ref().clone())),
        }
    }
    Some(StaticResponse {
        status: u16::try_from(status).ok().filter(|_| status_ok)?,
        headers,
        body: bytes::Bytes::from(body),
    })
}

/// A `Host` value: a name or address with an optional port, nothing that could break a header.
fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']' | b'_')
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::compile::{check_without_router, keys_and_lines};
    use crate::config::file::RawConfig;
    use crate::config::{GroupChoice, UpstreamId};
    use crate::router::{HeaderMatch, PathMatch};

    const UPSTREAMS: &str = "[[upstreams]]\nname = \"users\"\ntargets = [{ addr = \"127.0.0.1:1\" }]\n\
                             [[upstreams]]\nname = \"orders\"\ntargets = [{ addr = \"127.0.0.1:2\" }]\n";

    /// The routes of `UPSTREAMS` + `routes`, compiled without the router build.
    pub(in crate::config::compile) fn routes(routes: &str) -> Vec<(RouteMatcher, Route)> {
        let text = format!("{UPSTREAMS}{routes}");
        let raw: RawConfig = toml::from_str(&text).expect("valid toml");
        let mut cx = Ctx::new(&text);
        let tables = Tables {
            policies: &PolicyTable::default(),
            composites: &CompositeTable::default(),
            caches: &CacheTable::default(),
        };
        let out = check(&mut cx, &raw.routes, &raw.upstreams, &tables);
        assert!(cx.problems.is_empty(), "{:?}", cx.problems);
        out.into_iter().map(|r| r.expect("compiled")).collect()
    }

    /// `(key, line)` of each problem; lines count from the first line of `routes`.
    pub(in crate::config::compile) fn problems(routes: &str) -> Vec<(String, Option<usize>)> {
        let offset = UPSTREAMS.lines().count();
        let found = check_without_router(&format!("{UPSTREAMS}{routes}"));
        keys_and_lines(&found)
            .into_iter()
            .map(|(k, l)| (k, l.map(|l| l - offset)))
            .collect()
    }

    fn one(key: &str, line: usize) -> Vec<(String, Option<usize>)> {
        vec![(key.to_string(), Some(line))]
    }

    #[test]
    fn compiles_a_proxy_route_with_every_key() {
        let out = routes(
            r#"[[routes]]
name = "users-v1"
match = { host = "API.Example.com", path_prefix = "/v1/users", methods = ["get", "POST"], headers = { "X-Version" = "2", "x-debug" = "*" } }
upstream = "orders"
strip_prefix = "/v1"
host_rewrite = "users.internal"
"#,
        );
        let (m, route) = &out[0];
        assert_eq!(m.host.as_deref(), Some("api.example.com"));
        assert_eq!(m.path, PathMatch::Prefix("/v1/users".into()));
        assert_eq!(m.methods, ["GET", "POST"]);
        assert_eq!(
            m.headers,
            vec![
                ("x-version".to_string(), HeaderMatch::Exact("2".into())),
                ("x-debug".to_string(), HeaderMatch::Present),
            ]
        );
        assert_eq!(route.name, "users-v1");
        let RouteAction::Proxy(p) = &route.action else {
            panic!("expected a proxy route")
        };
        assert_eq!(p.groups, GroupChoice::single(UpstreamId(1)));
        assert!(p.mirror.is_none());
        assert_eq!(p.strip_prefix.as_deref(), Some("/v1"));
        assert!(p.rewrite.is_none());
        assert_eq!(p.host, HostPolicy::Rewrite("users.internal".into()));
    }

    #[test]
    fn compiles_a_static_route_keeping_header_order() {
        let out = routes(
            "[[routes]]\nname = \"health\"\nmatch = { path_exact = \"/health\" }\n\
             respond = { status = 200, body = \"ok\\n\", headers = { \"x-b\" = \"1\", \"X-A\" = \"2\" } }\n\
             [[routes]]\nname = \"empty\"\nrespond = { status = 204 }\n",
        );
        assert_eq!(out[0].0.path, PathMatch::Exact("/health".into()));
        let RouteAction::Respond(r) = &out[0].1.action else {
            panic!("expected a static route")
        };
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"ok\n");
        assert_eq!(
            r.headers,
            vec![("x-b".into(), "1".into()), ("X-A".into(), "2".into())]
        );
        assert_eq!(out[1].0.path, PathMatch::Any);
        assert!(out[1].0.methods.is_empty() && out[1].0.host.is_none());
    }

    #[test]
    fn reads_a_path_template() {
        let out = routes(
            "[[routes]]\nname = \"t\"\nmatch = { path = \"/u/{id}/*\" }\nupstream = \"users\"\n",
        );
        assert_eq!(out[0].0.path, PathMatch::Template("/u/{id}/*".into()));
    }

    #[test]
    fn rejects_an_unknown_upstream_listing_the_defined_ones() {
        let text = "[[routes]]\nname = \"r\"\n\nupstream = \"nope\"\n";
        assert_eq!(problems(text), one("routes[0].upstream", 4));
        let found = check_without_router(&format!("{UPSTREAMS}{text}"));
        assert!(
            found[0].message.ends_with("defined: users, orders"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn rejects_a_route_with_both_upstream_and_respond() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\nrespond = { status = 200 }\n";
        assert_eq!(problems(text), one("routes[0].respond", 3));
    }

    #[test]
    fn rejects_a_route_with_neither_upstream_nor_respond() {
        assert_eq!(problems("[[routes]]\nname = \"r\"\n"), one("routes[0]", 2));
    }

    #[test]
    fn rejects_proxy_keys_on_a_static_route() {
        let text = "[[routes]]\nname = \"r\"\nrespond = { status = 200 }\nstrip_prefix = \"/v1\"\n\
                    rewrite = \"/x\"\nhost_rewrite = \"h\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].strip_prefix".to_string(), Some(4)),
                ("routes[0].rewrite".to_string(), Some(5)),
                ("routes[0].host_rewrite".to_string(), Some(6)),
            ]
        );
    }

    #[test]
    fn rejects_duplicate_route_names() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\n\
                    [[routes]]\nname = \"r\"\nupstream = \"users\"\n";
        assert_eq!(problems(text), one("routes[1].name", 5));
    }

    #[test]
    fn rejects_more_than_one_path_condition() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\n\
                    match = { path_exact = \"/a\", path_prefix = \"/b\" }\n";
        assert_eq!(problems(text), one("routes[0].match.path_prefix", 4));
    }

    #[test]
    fn rejects_bad_methods_and_header_names() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\n\
                    match = { methods = [\"GET\", \"get\", \"B AD\"], headers = { \"a b\" = \"1\" } }\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].match.methods[1]".to_string(), Some(4)),
                ("routes[0].match.methods[2]".to_string(), Some(4)),
                ("routes[0].match.headers.a b".to_string(), Some(4)),
            ]
        );
    }

    #[test]
    fn rejects_a_malformed_strip_prefix_and_host_rewrite() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\nstrip_prefix = \"v1/\"\n\
                    host_rewrite = \"a b\"\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].strip_prefix".to_string(), Some(4)),
                ("routes[0].host_rewrite".to_string(), Some(5)),
            ]
        );
    }

    #[test]
    fn rejects_bad_static_responses() {
        let text = "[[routes]]\nname = \"a\"\nrespond = { status = 100 }\n\
                    [[routes]]\nname = \"b\"\nrespond = { status = 204, body = \"x\" }\n\
                    [[routes]]\nname = \"c\"\nrespond = { status = 200, headers = { \"Content-Length\" = \"1\" } }\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].respond.status".to_string(), Some(3)),
                ("routes[1].respond.body".to_string(), Some(6)),
                (
                    "routes[2].respond.headers.Content-Length".to_string(),
                    Some(9)
                ),
            ]
        );
    }

    #[test]
    fn rejects_traffic_keys_on_a_static_route() {
        let text = "[[routes]]\nname = \"r\"\nrespond = { status = 200 }\nsticky = \"ip\"\n\
                    versions = [{ cookie = \"c\", upstream = \"users\" }]\n\
                    mirror = { upstream = \"users\" }\n";
        assert_eq!(
            problems(text),
            vec![
                ("routes[0].sticky".to_string(), Some(4)),
                ("routes[0].versions".to_string(), Some(5)),
                ("routes[0].mirror".to_string(), Some(6)),
            ]
        );
    }

    #[test]
    fn a_route_body_limit_overrides_the_server_one() {
        let out = routes(
            "[[routes]]\nname = \"uploads\"\nupstream = \"users\"\nmax_body_bytes = \"100MiB\"\n\
             [[routes]]\nname = \"rest\"\nupstream = \"users\"\n",
        );
        assert_eq!(out[0].1.max_body_bytes, Some(100 << 20));
        assert_eq!(out[1].1.max_body_bytes, None);
    }

    #[test]
    fn rejects_a_body_limit_on_a_static_route() {
        let text = "[[routes]]\nname = \"r\"\nrespond = { status = 200 }\nmax_body_bytes = 10\n";
        assert_eq!(problems(text), one("routes[0].max_body_bytes", 4));
    }

    #[test]
    fn rejects_an_unknown_policy_name_with_its_line() {
        let text = "[[routes]]\nname = \"r\"\nupstream = \"users\"\npolicies = [\"cors\"]\n";
        assert_eq!(problems(text), one("routes[0].policies[0]", 4));
    }
}
