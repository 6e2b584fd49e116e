//! [`Router`]: routes bucketed by host, each bucket a segment trie, compiled once.
//!
//! Lookup order: the exact-host bucket, then wildcard buckets keyed by each suffix of the
//! request host (longest first), then the any-host bucket; the first bucket with a match
//! answers. Within a bucket the trie search returns the most specific route.
//!
//! No allocation: [`Router::find`] runs on the hot path; it hashes slices of the request and
//! writes captures into the caller's [`Params`].

use ahash::AHashMap;

use super::conditions::Conditions;
use super::host::{self, HostPattern};
use super::params::Params;
use super::pattern::{self, Pattern};
use super::specificity::{self, Rank};
use super::trie::Trie;
use super::{MatchRequest, RouteMatcher, RouterError};

/// The compiled matcher. `T` is the route's payload.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<T>,
    conditions: Vec<Conditions>,
    ranks: Vec<Rank>,
    param_names: Vec<Box<[Box<str>]>>,
    exact: AHashMap<Box<str>, Trie>,
    wildcard: AHashMap<Box<str>, Trie>,
    any: Trie,
}

/// One route's compiled conditions, before bucketing.
struct Compiled {
    host: HostPattern,
    pattern: Pattern,
    conditions: Conditions,
}

impl<T> Router<T> {
    /// Compiles routes; returns every problem found.
    pub fn build(routes: Vec<(RouteMatcher, T)>) -> Result<Self, Vec<RouterError>> {
        let mut errors = Vec::new();
        let mut compiled = Vec::with_capacity(routes.len());
        let mut payloads = Vec::with_capacity(routes.len());
        for (index, (matcher, payload)) in routes.into_iter().enumerate() {
            if let Some(c) = compile_route(index, &matcher, &mut errors) {
                compiled.push(c);
            }
            payloads.push(payload);
        }
        if u32::try_from(payloads.len()).is_err() {
            errors.push(RouterError {
                index: 0,
                field: "routes",
                message: "too many routes".into(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self::assemble(payloads, compiled))
    }

    /// Buckets compiled routes by host and builds each bucket's trie.
    fn assemble(routes: Vec<T>, compiled: Vec<Compiled>) -> Self {
        let ranks: Vec<Rank> = compiled
            .iter()
            .enumerate()
            .map(|(i, c)| specificity::rank(&c.pattern, &c.conditions, i))
            .collect();
        let mut router = Router {
            routes,
            conditions: Vec::with_capacity(compiled.len()),
            ranks,
            param_names: Vec::with_capacity(compiled.len()),
            exact: AHashMap::new(),
            wildcard: AHashMap::new(),
            any: Trie::new(),
        };
        for (id, c) in (0u32..).zip(compiled) {
            let trie = match c.host {
                HostPattern::Any => &mut router.any,
                HostPattern::Exact(h) => router.exact.entry(h).or_insert_with(Trie::new),
                HostPattern::Wildcard(s) => router.wildcard.entry(s).or_insert_with(Trie::new),
            };
            trie.insert(&c.pattern, id);
            router
                .param_names
                .push(c.pattern.param_names().map(Box::from).collect());
            router.conditions.push(c.conditions);
        }
        let ranks = &router.ranks;
        let tries = router
            .exact
            .values_mut()
            .chain(router.wildcard.values_mut());
        for trie in tries.chain(std::iter::once(&mut router.any)) {
            trie.finish(ranks);
        }
        router
    }

    /// The most specific matching route (ties: declared order). `header` looks up a request
    /// header by lower-case name.
    ///
    /// `'h` lets the callback return values borrowed from the request head (with the lifetime
    /// elided, `Fn(&str) -> Option<&[u8]>` would tie them to the name argument instead).
    pub fn find<'r, 'h>(
        &'r self,
        req: &MatchRequest<'_>,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
        params: &mut Params,
    ) -> Option<&'r T> {
        params.clear();
        let accepts = |route: u32| {
            self.conditions
                .get(route as usize)
                .is_some_and(|c| c.accepts(req.method, header))
        };
        let host = req.host.unwrap_or_default();
        let exact = req.host.and_then(|h| self.exact.get(h));
        let wildcards = host::wildcard_suffixes(host)
            .take_while(|_| !self.wildcard.is_empty())
            .filter_map(|suffix| self.wildcard.get(suffix));
        let route = exact
            .into_iter()
            .chain(wildcards)
            .chain(std::iter::once(&self.any))
            .find_map(|trie| trie.search(req.path, &self.ranks, &accepts, params))?;
        self.routes.get(route as usize)
    }

    /// The parameter names of the route `params` last matched, in capture order (empty
    /// before a match).
    pub fn param_names(&self, params: &Params) -> &[Box<str>] {
        params
            .route_index()
            .and_then(|i| self.param_names.get(i))
            .map_or(&[], |names| names)
    }

    /// The value of parameter `name` in the last match (`params` and `path` as given to
    /// [`Router::find`]).
    pub fn param<'p>(&self, params: &Params, path: &'p str, name: &str) -> Option<&'p str> {
        let names = self.param_names.get(params.route_index()?)?;
        let i = names.iter().position(|n| &**n == name)?;
        params.get(i, path)
    }

    /// The payload of the route declared at `index`.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.routes.get(index)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// Compiles one route, pushing every problem it has onto `errors`.
fn compile_route(
    index: usize,
    m: &RouteMatcher,
    errors: &mut Vec<RouterError>,
) -> Option<Compiled> {
    let mut fail = |field: &'static str, message: String| {
        errors.push(RouterError {
            index,
            field,
            message,
        });
    };
    let host = host::parse(m.host.as_deref())
        .map_err(|e| fail("match.host", e))
        .ok();
    let pattern = pattern::compile(&m.path)
        .map_err(|e| fail("match.path", e))
        .ok();
    let conditions = Conditions::compile(&m.methods, &m.headers)
        .map_err(|es| {
            es.into_iter()
                .for_each(|(field, message)| fail(field, message))
        })
        .ok();
    Some(Compiled {
        host: host?,
        pattern: pattern?,
        conditions: conditions?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{HeaderMatch, PathMatch};

    fn route(host: Option<&str>, path: PathMatch) -> RouteMatcher {
        RouteMatcher {
            host: host.map(Into::into),
            path,
            methods: vec![],
            headers: vec![],
        }
    }

    fn tpl(s: &str) -> PathMatch {
        PathMatch::Template(s.into())
    }

    fn prefix(s: &str) -> PathMatch {
        PathMatch::Prefix(s.into())
    }

    fn exact(s: &str) -> PathMatch {
        PathMatch::Exact(s.into())
    }

    fn router(routes: Vec<RouteMatcher>) -> Router<usize> {
        Router::build(routes.into_iter().zip(0..).collect()).unwrap()
    }

    fn find_with(
        r: &Router<usize>,
        host: Option<&str>,
        path: &str,
        method: &str,
        hs: &[(&str, &str)],
    ) -> Option<usize> {
        let header = |n: &str| hs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_bytes());
        let req = MatchRequest { host, path, method };
        r.find(&req, &header, &mut Params::default()).copied()
    }

    fn find(r: &Router<usize>, host: Option<&str>, path: &str) -> Option<usize> {
        find_with(r, host, path, "GET", &[])
    }

    #[test]
    fn prefix_is_segment_aware() {
        let r = router(vec![route(None, prefix("/v1"))]);
        for hit in ["/v1", "/v1/", "/v1/x/y"] {
            assert_eq!(find(&r, None, hit), Some(0), "{hit}");
        }
        assert_eq!(find(&r, None, "/v1x"), None);
        assert_eq!(find(&r, None, "/"), None);
    }

    #[test]
    fn prefix_with_trailing_slash_needs_a_segment_after_it() {
        let r = router(vec![route(None, prefix("/v1/"))]);
        assert_eq!(find(&r, None, "/v1"), None);
        assert_eq!(find(&r, None, "/v1/"), Some(0));
        assert_eq!(find(&r, None, "/v1/x"), Some(0));
    }

    #[test]
    fn root_prefix_matches_everything() {
        let r = router(vec![route(None, prefix("/"))]);
        assert_eq!(find(&r, None, "/"), Some(0));
        assert_eq!(find(&r, Some("h"), "/a/b/"), Some(0));
    }

    #[test]
    fn exact_path_is_exact() {
        let r = router(vec![route(None, exact("/a")), route(None, exact("/"))]);
        assert_eq!(find(&r, None, "/a"), Some(0));
        assert_eq!(find(&r, None, "/a/"), None);
        assert_eq!(find(&r, None, "/"), Some(1));
    }

    #[test]
    fn template_param_matches_one_non_empty_segment() {
        let r = router(vec![route(None, tpl("/users/{id}"))]);
        let mut p = Params::default();
        let req = MatchRequest {
            host: None,
            path: "/users/42",
            method: "GET",
        };
        assert_eq!(r.find(&req, &|_| None, &mut p), Some(&0));
        assert_eq!(r.param(&p, "/users/42", "id"), Some("42"));
        assert_eq!(find(&r, None, "/users/"), None);
        assert_eq!(find(&r, None, "/users"), None);
        assert_eq!(find(&r, None, "/users/4/2"), None);
    }

    #[test]
    fn trailing_star_matches_zero_or_more_segments() {
        let r = router(vec![route(None, tpl("/users/{id}/posts/*"))]);
        let path = "/users/7/posts/a/b";
        let mut p = Params::default();
        let req = MatchRequest {
            host: None,
            path,
            method: "GET",
        };
        assert_eq!(r.find(&req, &|_| None, &mut p), Some(&0));
        assert_eq!((p.get(0, path), p.rest(path)), (Some("7"), Some("a/b")));
        assert_eq!(find(&r, None, "/users/7/posts"), Some(0));
        assert_eq!(find(&r, None, "/users/7/postsx"), None);
    }

    #[test]
    fn exact_host_beats_wildcard() {
        let r = router(vec![
            route(Some("*.example.com"), prefix("/")),
            route(Some("API.example.com"), prefix("/")),
        ]);
        assert_eq!(find(&r, Some("api.example.com"), "/x"), Some(1));
        assert_eq!(find(&r, Some("www.example.com"), "/x"), Some(0));
    }

    #[test]
    fn wildcard_needs_a_label_and_prefers_longer_suffix() {
        let r = router(vec![
            route(Some("*.example.com"), prefix("/")),
            route(Some("*.eu.example.com"), prefix("/")),
        ]);
        assert_eq!(find(&r, Some("a.b.example.com"), "/"), Some(0));
        assert_eq!(find(&r, Some("x.eu.example.com"), "/"), Some(1));
        assert_eq!(find(&r, Some("example.com"), "/"), None);
    }

    #[test]
    fn host_beats_path_specificity() {
        let r = router(vec![
            route(None, exact("/a/b")),
            route(Some("h.com"), prefix("/")),
        ]);
        assert_eq!(find(&r, Some("h.com"), "/a/b"), Some(1));
        assert_eq!(find(&r, Some("other.com"), "/a/b"), Some(0));
        assert_eq!(find(&r, None, "/a/b"), Some(0));
    }

    #[test]
    fn falls_through_to_next_host_bucket_only_without_match() {
        let r = router(vec![
            route(Some("h.com"), prefix("/api")),
            route(None, prefix("/")),
        ]);
        assert_eq!(find(&r, Some("h.com"), "/api/x"), Some(0));
        assert_eq!(find(&r, Some("h.com"), "/web"), Some(1));
    }

    #[test]
    fn more_literal_segments_win() {
        let r = router(vec![
            route(None, tpl("/a/{x}")),
            route(None, prefix("/a/b")),
            route(None, prefix("/a")),
        ]);
        assert_eq!(find(&r, None, "/a/b"), Some(1));
        assert_eq!(find(&r, None, "/a/c"), Some(0));
        assert_eq!(find(&r, None, "/a/c/d"), Some(2));
    }

    #[test]
    fn literal_beats_param_even_when_param_is_declared_first() {
        let r = router(vec![
            route(None, tpl("/u/{id}/x")),
            route(None, tpl("/u/me/x")),
        ]);
        assert_eq!(find(&r, None, "/u/me/x"), Some(1));
        assert_eq!(find(&r, None, "/u/42/x"), Some(0));
    }

    #[test]
    fn backtracks_from_literal_to_param() {
        let r = router(vec![
            route(None, tpl("/u/me/profile")),
            route(None, tpl("/u/{id}/posts")),
        ]);
        assert_eq!(find(&r, None, "/u/me/posts"), Some(1));
    }

    #[test]
    fn exact_beats_prefix_with_same_literals() {
        let r = router(vec![route(None, prefix("/a")), route(None, exact("/a"))]);
        assert_eq!(find(&r, None, "/a"), Some(1));
    }

    #[test]
    fn method_condition_beats_none_and_is_skipped_when_failing() {
        let mut post = route(None, prefix("/a"));
        post.methods = vec!["POST".into()];
        let r = router(vec![route(None, prefix("/a")), post]);
        assert_eq!(find_with(&r, None, "/a", "POST", &[]), Some(1));
        assert_eq!(find_with(&r, None, "/a", "GET", &[]), Some(0));
    }

    #[test]
    fn more_header_conditions_win() {
        let mut one = route(None, prefix("/"));
        one.headers = vec![("x-a".into(), HeaderMatch::Present)];
        let mut two = one.clone();
        two.headers
            .push(("X-B".into(), HeaderMatch::Exact("1".into())));
        let r = router(vec![one, two]);
        assert_eq!(
            find_with(&r, None, "/", "GET", &[("x-a", ""), ("x-b", "1")]),
            Some(1)
        );
        assert_eq!(
            find_with(&r, None, "/", "GET", &[("x-a", ""), ("x-b", "2")]),
            Some(0)
        );
        assert_eq!(find_with(&r, None, "/", "GET", &[]), None);
    }

    #[test]
    fn failing_conditions_fall_back_to_less_specific_path() {
        let mut get_only = route(None, exact("/a/b"));
        get_only.methods = vec!["GET".into()];
        let r = router(vec![get_only, route(None, prefix("/a"))]);
        assert_eq!(find_with(&r, None, "/a/b", "DELETE", &[]), Some(1));
    }

    #[test]
    fn ties_go_to_declared_order() {
        let r = router(vec![
            route(None, prefix("/a")),
            route(None, prefix("/a")),
            route(None, tpl("/a/*")),
        ]);
        assert_eq!(find(&r, None, "/a/x"), Some(0));
    }

    #[test]
    fn paths_are_case_sensitive() {
        let r = router(vec![route(None, exact("/Admin"))]);
        assert_eq!(find(&r, None, "/admin"), None);
    }

    #[test]
    fn many_literal_children_are_indexed() {
        let routes = (0..50)
            .map(|i| route(None, prefix(&format!("/s{i}"))))
            .collect();
        let r = router(routes);
        assert_eq!(find(&r, None, "/s37/x"), Some(37));
        assert_eq!(find(&r, None, "/s50"), None);
    }

    #[test]
    fn params_are_cleared_per_find() {
        let r = router(vec![route(None, tpl("/u/{id}")), route(None, exact("/x"))]);
        let mut p = Params::default();
        let _ = r.find(
            &MatchRequest {
                host: None,
                path: "/u/1",
                method: "GET",
            },
            &|_| None,
            &mut p,
        );
        assert_eq!(p.len(), 1);
        let _ = r.find(
            &MatchRequest {
                host: None,
                path: "/x",
                method: "GET",
            },
            &|_| None,
            &mut p,
        );
        assert!(p.is_empty());
        assert_eq!(p.route_index(), Some(1));
    }

    #[test]
    fn build_collects_every_error() {
        let mut bad_method = route(None, prefix("/"));
        bad_method.methods = vec!["GE T".into()];
        let routes = vec![
            (route(Some("a..b"), tpl("/x/{")), 0),
            (route(None, tpl("no-slash")), 1),
            (bad_method, 2),
            (route(None, prefix("/ok")), 3),
        ];
        let errors = Router::build(routes).unwrap_err();
        let got: Vec<_> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            got,
            vec![
                (0, "match.host"),
                (0, "match.path"),
                (1, "match.path"),
                (2, "match.methods")
            ]
        );
    }
}
