//! Measures `Router::find` on 10, 100 and 1,000 routes (several hosts, `/api/v{n}/service{k}`
//! prefixes, templates with params, a few method and header conditions), hitting routes near
//! the end of the declaration order, against the naive baseline: a linear scan that tests
//! every route and keeps the most specific. Also measures `normalize_path` on a typical path
//! and on a path full of dot segments and doubled slashes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::router::normalize::normalize_path;
use ringgate::router::{HeaderMatch, MatchRequest, Params, PathMatch, RouteMatcher, Router};

const HOSTS: [Option<&str>; 4] = [
    Some("api.example.com"),
    Some("*.tenant.example.com"),
    None,
    Some("admin.example.com"),
];

/// Route `k` of a realistic table.
fn route(k: usize) -> RouteMatcher {
    let v = k % 3 + 1;
    let base = format!("/api/v{v}/service{k}");
    let (path, methods, headers) = match k % 5 {
        0 => (PathMatch::Prefix(base), vec![], vec![]),
        1 => (
            PathMatch::Template(format!("{base}/users/{{id}}")),
            vec![],
            vec![],
        ),
        2 => (
            PathMatch::Template(format!("{base}/items/{{id}}/*")),
            vec!["GET".into()],
            vec![],
        ),
        3 => (PathMatch::Exact(format!("{base}/health")), vec![], vec![]),
        _ => (
            PathMatch::Prefix(base),
            vec![],
            vec![("x-canary".into(), HeaderMatch::Exact("1".into()))],
        ),
    };
    RouteMatcher {
        host: HOSTS[k % 4].map(Into::into),
        path,
        methods,
        headers,
    }
}

/// Requests that land on the last routes of an `n`-route table.
fn requests(n: usize) -> Vec<(Option<&'static str>, String)> {
    (n.saturating_sub(5)..n)
        .map(|k| {
            let v = k % 3 + 1;
            let host = match k % 4 {
                0 => Some("api.example.com"),
                1 => Some("eu.tenant.example.com"),
                2 => Some("www.example.com"),
                _ => Some("admin.example.com"),
            };
            let tail = ["/x/y", "/users/12345", "/items/9/a/b", "/health", "/z"][k % 5];
            (host, format!("/api/v{v}/service{k}{tail}"))
        })
        .collect()
}

fn header(name: &str) -> Option<&'static [u8]> {
    (name == "x-canary").then_some(&b"1"[..])
}

fn bench_find(c: &mut Criterion) {
    let mut group = c.benchmark_group("find");
    for n in [10, 100, 1_000] {
        let routes: Vec<_> = (0..n).map(|k| (route(k), k)).collect();
        let naive = naive::Naive::new(&routes);
        let router = match Router::build(routes) {
            Ok(r) => r,
            Err(e) => panic!("bench routes do not compile: {e:?}"),
        };
        let reqs = requests(n);
        let mut params = Params::default();
        for (host, path) in &reqs {
            let req = MatchRequest {
                host: *host,
                path,
                method: "GET",
            };
            let got = router.find(&req, &header, &mut params).copied();
            assert_eq!(
                got,
                naive.find(&req, &header),
                "router and naive disagree on {path}"
            );
            assert!(got.is_some(), "bench request {path} matches nothing");
        }
        group.bench_with_input(BenchmarkId::new("trie", n), &reqs, |b, reqs| {
            b.iter(|| {
                for (host, path) in reqs {
                    let req = MatchRequest {
                        host: *host,
                        path,
                        method: "GET",
                    };
                    black_box(router.find(black_box(&req), &header, &mut params));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("linear_scan", n), &reqs, |b, reqs| {
            b.iter(|| {
                for (host, path) in reqs {
                    let req = MatchRequest {
                        host: *host,
                        path,
                        method: "GET",
                    };
                    black_box(naive.find(black_box(&req), &header));
                }
            })
        });
    }
    group.finish();
}

fn bench_normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize_path");
    let mut out = String::with_capacity(256);
    let typical = b"/api/v2/service17/users/12345/profile";
    let dotted = b"/api/v2/./service17/../service17//users/%2e%2e/users/12345/./profile/";
    group.bench_function("typical", |b| {
        b.iter(|| normalize_path(black_box(typical), &mut out))
    });
    group.bench_function("dot_segments", |b| {
        b.iter(|| normalize_path(black_box(dotted), &mut out))
    });
    group.finish();
}

/// The baseline: every route checked in declared order, the most specific kept.
mod naive {
    use ringgate::router::{HeaderMatch, MatchRequest, PathMatch, RouteMatcher};

    /// Host rank, host length, literals, ends, segments, method, headers, inverted index.
    type Key = (u8, usize, usize, bool, usize, bool, usize, usize);

    enum Seg {
        Lit(String),
        Param,
    }

    struct Route {
        host: Option<String>,
        prefix: bool,
        segs: Vec<Seg>,
        methods: Vec<String>,
        headers: Vec<(String, HeaderMatch)>,
        key: Key,
        payload: usize,
    }

    pub struct Naive {
        routes: Vec<Route>,
    }

    fn segs(path: &str) -> Vec<Seg> {
        let body = path.strip_prefix('/').filter(|b| !b.is_empty());
        body.into_iter()
            .flat_map(|b| b.split('/'))
            .map(|s| {
                if s.starts_with('{') {
                    Seg::Param
                } else {
                    Seg::Lit(s.to_string())
                }
            })
            .collect()
    }

    impl Naive {
        pub fn new(routes: &[(RouteMatcher, usize)]) -> Self {
            let routes = routes
                .iter()
                .map(|(m, payload)| compile(m, *payload))
                .collect();
            Naive { routes }
        }

        pub fn find(
            &self,
            req: &MatchRequest<'_>,
            header: &dyn Fn(&str) -> Option<&'static [u8]>,
        ) -> Option<usize> {
            let mut best: Option<&Route> = None;
            for r in &self.routes {
                let host_ok = match (&r.host, req.host) {
                    (None, _) => true,
                    (Some(h), Some(rh)) => match h.strip_prefix("*.") {
                        Some(s) => {
                            rh.len() > s.len() + 1
                                && rh.ends_with(s)
                                && rh[..rh.len() - s.len()].ends_with('.')
                        }
                        None => h == rh,
                    },
                    (Some(_), None) => false,
                };
                if host_ok
                    && path_ok(r, req.path)
                    && (r.methods.is_empty() || r.methods.iter().any(|m| m == req.method))
                    && r.headers.iter().all(|(n, m)| match (header(n), m) {
                        (Some(_), HeaderMatch::Present) => true,
                        (Some(v), HeaderMatch::Exact(want)) => v == want.as_bytes(),
                        (None, _) => false,
                    })
                    && best.is_none_or(|b| r.key > b.key)
                {
                    best = Some(r);
                }
            }
            best.map(|r| r.payload)
        }
    }

    fn path_ok(r: &Route, path: &str) -> bool {
        let body = path.strip_prefix('/').filter(|b| !b.is_empty());
        let mut parts = body.into_iter().flat_map(|b| b.split('/'));
        for seg in &r.segs {
            match (seg, parts.next()) {
                (Seg::Lit(l), Some(p)) if l == p => {}
                (Seg::Param, Some(p)) if !p.is_empty() => {}
                _ => return false,
            }
        }
        r.prefix || parts.next().is_none()
    }

    fn compile(m: &RouteMatcher, payload: usize) -> Route {
        let (prefix, path) = match &m.path {
            PathMatch::Any => (true, "/".to_string()),
            PathMatch::Exact(p) => (false, p.clone()),
            PathMatch::Prefix(p) => (true, p.clone()),
            PathMatch::Template(t) => match t.strip_suffix("/*") {
                Some(p) => (true, p.to_string()),
                None => (false, t.clone()),
            },
        };
        let segs = segs(&path);
        let host_rank = match &m.host {
            None => 0,
            Some(h) if h.starts_with("*.") => 1,
            Some(_) => 2,
        };
        let lits = segs.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
        let host_len = m.host.as_ref().map_or(0, |h| h.len());
        // Reverse of the declared index so that `>` keeps the earlier route on ties.
        let key = (
            host_rank,
            host_len,
            lits,
            !prefix,
            segs.len(),
            !m.methods.is_empty(),
            m.headers.len(),
            usize::MAX - payload,
        );
        Route {
            host: m.host.clone(),
            prefix,
            segs,
            methods: m.methods.clone(),
            headers: m.headers.clone(),
            key,
            payload,
        }
    }
}

criterion_group!(benches, bench_find, bench_normalize);
criterion_main!(benches);
