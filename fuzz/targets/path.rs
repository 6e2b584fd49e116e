//! Request-target splitting, path normalization, route matching and rewriting.
//!
//! No panic. A normalized path starts with `/`, has no empty, `.` or `..` segment, and
//! normalizes to itself. Every path finds a route (one route matches any path), and a
//! rewritten path is itself in normalized form: no `//` (an empty `{*}` included), no dot
//! segment.

use std::sync::OnceLock;

use ringgate::router::normalize::{normalize_path, split_target};
use ringgate::router::{MatchRequest, Params, PathMatch, Rewrite, RouteMatcher, Router};

/// A route's rewrite, if any.
type Routes = (Router<usize>, Vec<Option<Rewrite>>);

const HOSTS: [Option<&str>; 4] = [
    None,
    Some("api.example.com"),
    Some("a.b.example.com"),
    Some("other"),
];

fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let table: [(Option<&str>, PathMatch, Option<&str>); 7] = [
            (None, PathMatch::Any, None),
            (
                None,
                PathMatch::Prefix("/api".into()),
                Some("/internal/{*}/x"),
            ),
            (None, PathMatch::Prefix("/v1/".into()), Some("/{*}")),
            (None, PathMatch::Exact("/exact".into()), Some("/e")),
            (
                None,
                PathMatch::Template("/users/{id}/posts/*".into()),
                Some("/u/{id}/{*}/p"),
            ),
            (
                Some("*.example.com"),
                PathMatch::Template("/{a}/{b}".into()),
                Some("/{b}/{a}/"),
            ),
            (
                Some("api.example.com"),
                PathMatch::Prefix("/".into()),
                Some("/root/{*}"),
            ),
        ];
        let mut built = Vec::new();
        let mut rewrites = Vec::new();
        for (i, (host, path, rewrite)) in table.into_iter().enumerate() {
            rewrites.push(rewrite.map(|t| match Rewrite::parse(t, &path) {
                Ok(r) => r,
                Err(e) => panic!("fuzz route {i}: {e}"),
            }));
            let matcher = RouteMatcher {
                host: host.map(str::to_string),
                path,
                methods: Vec::new(),
                headers: Vec::new(),
            };
            built.push((matcher, i));
        }
        match Router::build(built) {
            Ok(router) => (router, rewrites),
            Err(e) => panic!("fuzz routes: {e:?}"),
        }
    })
}

/// Whether `path` is in the form normalization produces.
fn assert_normal(path: &str, what: &str) {
    assert!(
        path.starts_with('/'),
        "{what} {path:?} does not start with /"
    );
    let inner = path.trim_end_matches('/');
    for segment in inner.split('/').skip(1) {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{what} {path:?} has an empty or dot segment"
        );
    }
    assert!(!path.contains("//"), "{what} {path:?} has //");
    let mut again = String::new();
    assert_eq!(
        normalize_path(path.as_bytes(), &mut again),
        Ok(()),
        "{what} {path:?} does not normalize"
    );
    assert_eq!(again, path, "{what} {path:?} is not in normalized form");
}

pub fn run(data: &[u8]) {
    let Some((&selector, target)) = data.split_first() else {
        return;
    };
    let Ok(parts) = split_target(target) else {
        return;
    };
    assert!(parts.path.starts_with(b"/"));
    let mut path = String::new();
    if normalize_path(parts.path, &mut path).is_err() {
        return;
    }
    assert!(path.len() <= parts.path.len() + 1);
    assert_normal(&path, "normalized path");
    let (router, rewrites) = routes();
    let mut params = Params::default();
    let request = MatchRequest {
        host: HOSTS[usize::from(selector) % HOSTS.len()],
        path: &path,
        method: "GET",
    };
    let Some(&index) = router.find(&request, &|_| None, &mut params) else {
        panic!("no route for {path:?}, although one route matches any path");
    };
    assert_eq!(params.route_index(), Some(index));
    for i in 0..params.len() {
        assert!(params.get(i, &path).is_some_and(|p| !p.is_empty()));
    }
    if let Some(Some(rewrite)) = rewrites.get(index) {
        let mut out = String::new();
        rewrite.apply(&path, &params, &mut out);
        assert_normal(&out, &format!("rewrite of {path:?} by route {index} to"));
    }
}
